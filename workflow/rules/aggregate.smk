# Stage 5: aggregation into tidy CSVs, the paper's tables and figures, and the run's provenance.
# Cheap and I/O-bound: run where Snakemake runs, not as cluster jobs.


localrules:
    aggregate,
    tables,
    figures,
    provenance,


rule aggregate:
    input:
        evaluations=evaluation_paths(),
        adaptive=adaptive_paths(),
    output:
        results=report(
            REPORTS + "/results.csv",
            caption="../report/results.rst",
            category="Data",
        ),
        detection=REPORTS + "/detection.csv",
        components=REPORTS + "/components.csv",
    params:
        component_attack=config["components"]["attack"],
    log:
        LOGS + "/aggregate.log",
    benchmark:
        BENCHMARKS + "/aggregate.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/aggregate.py"


rule tables:
    input:
        results=REPORTS + "/results.csv",
    output:
        markdown=REPORTS + "/tables/{table}.md",
        csv=REPORTS + "/tables/{table}.csv",
        latex=REPORTS + "/tables/{table}.tex",
        html=report(
            REPORTS + "/tables/{table}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    params:
        dataset=lambda wc: config["tables"][wc.table]["dataset"],
        attacks=lambda wc: config["tables"][wc.table]["attacks"],
    log:
        LOGS + "/tables/{table}.log",
    benchmark:
        BENCHMARKS + "/tables/{table}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/tables.py"


rule figures:
    input:
        results=REPORTS + "/results.csv",
        detection=REPORTS + "/detection.csv",
        components=REPORTS + "/components.csv",
    output:
        fig2=report(
            multiext(REPORTS + "/figures/fig2_components", ".png", ".svg"),
            caption="../report/fig2.rst",
            category="Figures",
            labels={"figure": "Fig. 2: MI output components"},
        ),
        fig3a=report(
            multiext(REPORTS + "/figures/fig3a_detection", ".png", ".svg"),
            caption="../report/fig3a.rst",
            category="Figures",
            labels={"figure": "Fig. 3a: detection AUC"},
        ),
        fig3b=report(
            multiext(REPORTS + "/figures/fig3b_tradeoff", ".png", ".svg"),
            caption="../report/fig3b.rst",
            category="Figures",
            labels={"figure": "Fig. 3b: robustness vs clean accuracy"},
        ),
        fig4=report(
            multiext(REPORTS + "/figures/fig4_adaptive", ".png", ".svg"),
            caption="../report/fig4.rst",
            category="Figures",
            labels={"figure": "Fig. 4: adaptive attacks"},
        ),
    params:
        tradeoff_attack=config["grids"]["attack"],
    log:
        LOGS + "/figures.log",
    benchmark:
        BENCHMARKS + "/figures.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/figures.py"


rule provenance:
    input:
        data=[DATA.format(dataset=name) for name in config["datasets"] if name in used_datasets()],
        metrics=[TRAIN_METRICS.format(dataset=d, regime=r) for d, r in trained_models()],
        results=REPORTS + "/results.csv",
    output:
        yaml=REPORTS + "/provenance.yaml",
        html=report(
            REPORTS + "/provenance.html",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    params:
        config=config,
        benchmarks=BENCHMARKS,
    log:
        LOGS + "/provenance.log",
    benchmark:
        BENCHMARKS + "/provenance.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/provenance.py"
