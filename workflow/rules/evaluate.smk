# Stage 4: defenses. Oblivious evaluation, and adaptive attacks that see the MI defense (the
# paper's adaptive PGD and EOT).
#
# One evaluate job per (dataset, regime, attack), writing every (defense, setting) artifact of it
# (EVALUATION, one file each, inside the job's output directory), not one job per setting: a
# setting's own work is 0.1-1 s on a CPU and far less on a GPU, while each job pays Python + torch
# start-up, loading the model, the examples and the pool, and (under SLURM) a submission. Snakemake
# job groups were the alternative, but locally each grouped job still starts its own script
# process, so they cut only the cluster submissions, not the start-up. Each setting keeps its own
# seed (derive_seed(seed, "defense", defense, setting)), so regrouping changes no number; a changed
# setting reruns the jobs whose settings list (a param) changed.


rule evaluate:
    input:
        data=DATA,
        model=MODEL,
        examples=ATTACK,
    output:
        evaluations=directory(EVALUATIONS),
    log:
        f"{LOGS}/{{dataset}}/{{regime}}/eval/{{attack}}.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/{{regime}}/eval/{{attack}}.tsv"
    conda:
        ENV
    threads: JOB_THREADS
    resources:
        **GPU_RESOURCES,
        runtime=120,
    params:
        settings=evaluate_settings,
        job=job_params(["n_samples", "chunk_size", "pool_per_class", "seed", "device", "speed"]),
    script:
        "../scripts/evaluate.py"


rule adaptive:
    input:
        data=DATA,
        model=MODEL,
    output:
        evaluation=ADAPTIVE,
    log:
        f"{LOGS}/{{dataset}}/{{regime}}/adaptive/{{defense}}/{{setting}}/{{fig4_kind}}-{{attack}}-n{{n_adaptive}}.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/{{regime}}/adaptive/{{defense}}/{{setting}}/{{fig4_kind}}-{{attack}}-n{{n_adaptive}}.tsv"
    conda:
        ENV
    threads: JOB_THREADS
    resources:
        **GPU_RESOURCES,
        runtime=480,
    params:
        attack=attack_params,
        defense="{defense}",
        setting="{setting}",
        fig4_kind="{fig4_kind}",
        n_adaptive=lambda wc: int(wc.n_adaptive),
        n_test=config["adaptive"]["n_test"],
        job=job_params(ALL_JOB_SETTINGS),
    script:
        "../scripts/adaptive.py"
