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
