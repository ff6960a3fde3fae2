# Stage 2: one model per (dataset, training regime). Resumes from its last checkpoint when rerun.


rule train:
    input:
        data=DATA,
        # a file that never exists for a model from a file (config models:): import_model makes those
        not_imported=train_guard,
    output:
        model=MODEL,
        log=TRAIN_LOG,
        metrics=TRAIN_METRICS,
    log:
        f"{LOGS}/{{dataset}}/{{regime}}/train.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/{{regime}}/train.tsv"
    # Training is the long head of every chain (many attacks and evaluations wait on one model):
    # start it before anything else that is ready, so no core idles at the end of the run.
    priority: 2
    conda:
        ENV
    threads: train_threads
    resources:
        **GPU_RESOURCES,
        runtime=720,
    params:
        model=config["model"],
        training=training_params,
        checkpoint_dir=lambda wc: CHECKPOINTS.format(**wc),
        device=config["device"],
        speed=SPEED,
    script:
        "../scripts/train.py"
