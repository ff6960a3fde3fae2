# The training study (config study:, issue 35): models at other seeds, lengths and recipes than the
# preset's. Each is a model of the run, named <regime>-<recipe>-e<epochs>-s<seed> (jobs/study.py), that the
# train rule makes like the regimes' (resuming from its checkpoints). `snakemake study_models` trains them.


rule study_models:
    input:
        study_model_files(),
