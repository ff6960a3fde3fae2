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
