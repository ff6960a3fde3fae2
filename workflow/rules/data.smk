# Stage 1: data. Local (compute nodes of many clusters have no internet for the download). Local rules
# say so with `localrule: True` (here, models.smk, aggregate.smk), not a `localrules:` list: a list
# names rules without the prefix of `use rule * from ... as mi_*` and misses them in a module.


rule prepare_data:
    output:
        data=DATA,
    log:
        f"{LOGS}/{{dataset}}/prepare_data.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/prepare_data.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
    params:
        source=lambda wc: dataset_config(wc)["source"],
        download_root=lambda wc: dataset_config(wc).get("download_root", "data/downloads"),
        image_size=lambda wc: dataset_config(wc).get("image_size", 32),
        synthetic=lambda wc: dataset_config(wc).get("synthetic", {}),
        seed=config["seed"],
    script:
        "../scripts/prepare_data.py"
