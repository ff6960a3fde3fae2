# Stage 2, for models from files (config models:): download once (local: compute nodes of many
# clusters have no internet), then import into this project's model format, in place of training.


rule download_model:
    output:
        model_file=MODEL_DOWNLOAD,
    log:
        f"{LOGS}/download_model/{{root}}/{{dataset}}/{{regime}}/{{filename}}.log",
    benchmark:
        f"{BENCHMARKS}/download_model/{{root}}/{{dataset}}/{{regime}}/{{filename}}.tsv"
    wildcard_constraints:
        # only the data folders of this config's downloads (a never-matching pattern when there are none)
        root="|".join(re.escape(root) for root in DOWNLOAD_ROOTS) or r"(?!)",
        filename=r"[^/]+",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
    params:
        url=download_url,
        sha256=lambda wc: model_spec(wc).get("sha256"),
    script:
        "../scripts/download_model.py"


rule import_model:
    input:
        data=DATA,
        model_file=import_input,
    output:
        model=MODEL,
        metrics=TRAIN_METRICS,
    log:
        f"{LOGS}/{{dataset}}/{{regime}}/import_model.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/{{regime}}/import_model.tsv"
    priority: 2
    conda:
        ENV
    threads: JOB_THREADS
    resources:
        **GPU_RESOURCES,
        runtime=60,
    params:
        name="{regime}",
        format=lambda wc: model_spec(wc).get("format", "auto"),
        arch=lambda wc: model_spec(wc).get("arch"),
        sha256=lambda wc: model_spec(wc).get("sha256"),
        source=lambda wc: model_spec(wc)["file"],
        device=config["device"],
    script:
        "../scripts/import_model.py"


# Not part of `all`: `snakemake --cores 1 publish_models` after a run writes its trained models, weights
# only, to reports/<run>/models/ with the overlay that re-runs everything after training from them. The
# models are read, not declared as inputs, so a publish never plans training (a config that differs from
# the run's in a training param, the data source say, would otherwise retrain the run's models): the job
# refuses a missing model instead. Republish after a retrain with --forcerun publish_models.
rule publish_models:
    output:
        models=[published for *_, published in published_models()],
        overlay=PUBLISHED_OVERLAY,
    log:
        f"{LOGS}/publish_models.log",
    benchmark:
        f"{BENCHMARKS}/publish_models.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
    params:
        models=published_models(),  # [dataset, regime, model.pt, published file]
        run=RUN,
    script:
        "../scripts/publish_models.py"
