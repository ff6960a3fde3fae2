# Stage 4b: the robustness evaluation of every randomized defense (core/attacks/defended.py): AutoAttack's protocol
# for randomized defenses and EOT PGD (steps and EOT draws swept), each through the defended
# prediction. One job per (dataset, regime, defense, setting) runs every attack run of the config's
# `robustness:` section, as the evaluate jobs group their settings (start-up, model and pool loaded
# once); each run writes its own evaluation artifact, so the aggregate takes the worst case per point.
# Issue 25: the runs go in a cascade that starts from the points the oblivious evaluations of the same
# setting left (their evaluate jobs' directories are inputs, as ancient(): see common.smk), budgets double until the worst case stops
# falling, and schedule.json lists the runs that ran.


rule robust:
    input:
        data=DATA,
        model=MODEL,
        oblivious=robust_oblivious_dirs,
        attacks=robust_attacks,
    output:
        runs=directory(ROBUST),
    log:
        f"{LOGS}/{{dataset}}/{{regime}}/robust/{{robust_defense}}/{{setting}}.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/{{regime}}/robust/{{robust_defense}}/{{setting}}.tsv"
    conda:
        ENV
    threads: JOB_THREADS
    resources:
        **GPU_RESOURCES,
        runtime=480,
    params:
        defense="{robust_defense}",
        setting="{setting}",
        robustness=config.get("robustness", {}),
        attack=threat_model(),
        oblivious=robust_oblivious,
        job=job_params(ALL_JOB_SETTINGS),
    script:
        "../scripts/robust.py"
