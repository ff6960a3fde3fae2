# The training study (config study:, issue 35): models at other seeds, lengths and recipes than the
# preset's. Each is a model of the run, named <regime>-<recipe>-e<epochs>-s<seed> (design/study.py), that the
# train rule makes like the regimes' (resuming from its checkpoints). `snakemake study_models` trains them.


rule study_models:
    input:
        study_model_files(),


rule study:
    input:
        metrics=study_metrics(),
        evaluations=study_evaluation_dirs(),
        robust=study_robust_dirs(),
    output:
        csv=report(
            f"{REPORTS}/study/training_study.csv",
            caption="../report/study.rst",
            category="Training study",
        ),
        markdown=report(
            f"{REPORTS}/study/study.md",
            caption="../report/study.rst",
            category="Training study",
        ),
        # the training-length section's figures (report.plots.study), PNG in the report, SVG beside it
        gain_vs_epochs=report(
            f"{REPORTS}/study/study_gain_vs_epochs.png",
            caption="../report/study_figures.rst",
            category="Training study",
        ),
        gain_vs_epochs_svg=f"{REPORTS}/study/study_gain_vs_epochs.svg",
        gain_vs_fy=report(
            f"{REPORTS}/study/study_gain_vs_fy.png",
            caption="../report/study_figures.rst",
            category="Training study",
        ),
        gain_vs_fy_svg=f"{REPORTS}/study/study_gain_vs_fy.svg",
    log:
        f"{LOGS}/study.log",
    benchmark:
        f"{BENCHMARKS}/study.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
    params:
        entries=study_entries(),
        evaluations=study_evaluation_paths(),
        robust=[f"{d}/schedule.json" for d in study_robust_dirs()],
        seed=config["seed"],
        table=config["study"]["table"] if config.get("study") else None,
        # the seed section's attacks: the study's own, whatever else the robustness evaluation's cascade evaluated
        attacks=config["study"]["attacks"] if config.get("study") else None,
        # the attack of the training-length and recipe sections: the first of study.attacks that is not clean
        attack=next((a for a in config["study"]["attacks"] if a != "clean"), None) if config.get("study") else None,
    script:
        "../scripts/study.py"
