# Stage 4: defenses. Oblivious evaluation per (attack, defense, setting), and adaptive attacks
# that see the MI defense (the paper's adaptive PGD and EOT).


rule evaluate:
    input:
        data=DATA,
        model=MODEL,
        examples=ATTACK,
    output:
        evaluation=EVALUATION,
    params:
        defense="{defense}",
        setting="{setting}",
        n_samples=config["defenses"]["n_samples"],
        chunk_size=config["defenses"].get("chunk_size", "auto"),
        pool_per_class=lambda wc: dataset_config(wc)["pool_per_class"],
        seed=config["seed"],
        device=config["device"],
    log:
        f"{LOGS}/{{dataset}}/{{regime}}/eval/{{attack}}/{{defense}}/{{setting}}.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/{{regime}}/eval/{{attack}}/{{defense}}/{{setting}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        **GPU_RESOURCES,
        runtime=120,
    conda:
        ENV
    script:
        "../scripts/evaluate.py"


rule adaptive:
    input:
        data=DATA,
        model=MODEL,
    output:
        evaluation=ADAPTIVE,
    params:
        attack=attack_params,
        defense="{defense}",
        setting="{setting}",
        kind="{kind}",
        n_adaptive=lambda wc: int(wc.n_adaptive),
        n_test=config["adaptive"]["n_test"],
        n_subset=lambda wc: dataset_config(wc)["n_test"],
        n_samples=config["defenses"]["n_samples"],
        chunk_size=config["defenses"].get("chunk_size", "auto"),
        pool_per_class=lambda wc: dataset_config(wc)["pool_per_class"],
        batch_size=config["attacks"].get("batch_size", "auto"),
        seed=config["seed"],
        device=config["device"],
    log:
        f"{LOGS}/{{dataset}}/{{regime}}/adaptive/{{defense}}/{{setting}}/{{kind}}-{{attack}}-n{{n_adaptive}}.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/{{regime}}/adaptive/{{defense}}/{{setting}}/{{kind}}-{{attack}}-n{{n_adaptive}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        **GPU_RESOURCES,
        runtime=480,
    conda:
        ENV
    script:
        "../scripts/adaptive.py"
