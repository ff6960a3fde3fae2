# Stage 3: oblivious adversarial examples, crafted once on the bare model and reused by every defense.


rule attack:
    input:
        data=DATA,
        model=MODEL,
    output:
        examples=ATTACK,
    log:
        f"{LOGS}/{{dataset}}/{{regime}}/attack/{{attack}}.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/{{regime}}/attack/{{attack}}.tsv"
    # An attack unlocks a dozen evaluations: run it before the evaluations that are already ready.
    priority: 1
    conda:
        ENV
    threads: JOB_THREADS
    resources:
        **GPU_RESOURCES,
        runtime=240,
    params:
        attack=attack_params,
        job=job_params(["n_subset", "batch_size", "seed", "device", "speed"]),
    script:
        "../scripts/attack.py"
