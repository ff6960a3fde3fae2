# Performance benchmark: every workload against its hardware limit (python -m mixup_inference.perf.bench
# as a job, e.g. on a cluster's GPU node). Not part of `all`; run it by name:
#   snakemake --cores all bench


rule bench:
    output:
        markdown="reports/bench/bench.md",
        json="reports/bench/bench.json",
        plot="reports/bench/scaling.png",
    log:
        "logs/bench.log",
    benchmark:
        "benchmarks/bench.tsv"
    conda:
        ENV
    threads: 8  # all cores up to 8 (Snakemake lowers it to --cores): the benchmark's limits use them all
    resources:
        **GPU_RESOURCES,
        runtime=30,
    params:
        device=config["device"],
    script:
        "../scripts/bench.py"


# The training frontier (issue 24): test accuracy against training core-seconds per regime, the old
# default recipe beside the fast one, fp32 and (where the hardware has it) bf16. Hours on 2 cores and
# meaningful only on a quiet machine; not part of `all`: snakemake --cores 2 frontier
rule frontier:
    input:
        # the config's first data set (CIFAR-10 in the default preset), as the train jobs see it
        data=DATA.format(dataset=next(iter(config["datasets"]))),
    output:
        markdown="reports/bench/frontier.md",
        json="reports/bench/frontier.json",
        plot="reports/bench/frontier.png",
    log:
        "logs/frontier.log",
    benchmark:
        "benchmarks/frontier.tsv"
    conda:
        ENV
    threads: 2  # the issue's measurements used 2 threads; core-seconds are comparable at any count
    resources:
        **GPU_RESOURCES,
        runtime=1440,
    params:
        device=config["device"],
        grid="full",
    script:
        "../scripts/frontier.py"


# The measured estimate before a long run (issue 34): a minute of probes on this machine (a training step per
# model, an attack step, each defense, a job's start-up, on one thread), times the plan's work, scheduled at
# --cores 2, 8, 16, 32 and this invocation's with the thread policy. Not part of `all`:
#   snakemake --cores 2 estimate      (or: python -m mixup_inference.perf.estimate --configfile ...)
# Its log and benchmark live outside logs/<run>/ and benchmarks/<run>/, so the run's provenance does not
# count it among the run's rules.
rule estimate:
    input:
        data=[DATA.format(dataset=name) for name in used_datasets()],
    output:
        markdown=f"{REPORTS}/estimate.md",
        json=f"{REPORTS}/estimate.json",
    log:
        f"logs/estimate/{RUN}.log",
    benchmark:
        f"benchmarks/estimate/{RUN}.tsv"
    conda:
        ENV
    threads: 1  # the probes time one thread
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=20,
    params:
        config=config,
        data={name: DATA.format(dataset=name) for name in used_datasets()},
        cores=sorted({2, 8, 16, 32, local_cores() or 1}),
        # the committed run's robustness survivors (targets it does not have: a stated fraction)
        survivors=workflow_file("../../reports/cifar10-jpeg-cpu/results.csv"),
    script:
        "../scripts/estimate.py"
