# Stage 1: data. Local (compute nodes of many clusters have no internet for the download).


localrules:
    prepare_data,


rule prepare_data:
    output:
        data=DATA,
    params:
        source=lambda wc: dataset_config(wc)["source"],
        download_root=lambda wc: dataset_config(wc).get("download_root", "data/downloads"),
        image_size=lambda wc: dataset_config(wc).get("image_size", 32),
        synthetic=lambda wc: dataset_config(wc).get("synthetic", {}),
        seed=config["seed"],
    log:
        LOGS + "/{dataset}/prepare_data.log",
    benchmark:
        BENCHMARKS + "/{dataset}/prepare_data.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/prepare_data.py"
