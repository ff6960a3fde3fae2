# The training study (config study:, issue 35): models at other seeds, lengths and recipes than the
# preset's. `snakemake study_models` trains them (resumes from checkpoints like the train rule).


rule study_train:
    input:
        data=DATA,
    output:
        model=STUDY_MODEL,
        log=f"{STUDY}/train_log.jsonl",
        metrics=f"{STUDY}/train_metrics.json",
    log:
        f"{LOGS}/{{dataset}}/study/{{regime}}/{{recipe}}-e{{epochs}}-s{{seed}}/train.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/study/{{regime}}/{{recipe}}-e{{epochs}}-s{{seed}}/train.tsv"
    priority: 2
    conda:
        ENV
    threads: config["resources"]["threads"]
    resources:
        **GPU_RESOURCES,
        runtime=720,
    params:
        model=config["model"],
        training=study_training_params,
        checkpoint_dir=lambda wc: f"{STUDY.format(**wc)}/checkpoints",
        device=config["device"],
        speed=SPEED,
    script:
        "../scripts/train.py"


rule study_models:
    input:
        study_model_files(),
