# Stage 4b: the robustness evaluation (core/attacks/kinds): every randomized defense faces attacks through
# its defended prediction (AutoAttack rand, EOT PGD, Tramer et al.'s), and the bare model of every regime
# the targets name (defense none) faces the strongest attacks for a deterministic model (AutoAttack
# standard, PGD), so that findings compare like with like. One job per (dataset, regime, defense,
# setting) runs every attack run of the config's `robustness:` section that applies to it, as the
# evaluate jobs group their settings (start-up, model and pool loaded once); each run writes its own
# evaluation artifact, so the aggregate takes the worst case per point. The runs go in a cascade that
# starts from the points the oblivious evaluations of the same setting left (their evaluate jobs'
# directories are inputs, as ancient(): see common.smk), level by level with budgets doubled until the
# worst case stops falling, and schedule.json lists the runs that ran.


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
