# Stage 5: aggregation into tidy CSVs, the paper's tables and figures, and the run's provenance.
# Cheap and I/O-bound: run where Snakemake runs, not as cluster jobs.


rule aggregate:
    input:
        evaluations=evaluation_dirs(),
        adaptive=adaptive_paths(),
        robust=robust_dirs(),
    output:
        results=report(
            f"{REPORTS}/results.csv",
            caption="../report/results.rst",
            category="Data",
        ),
        detection=f"{REPORTS}/detection.csv",
        components=f"{REPORTS}/components.csv",
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCHMARKS}/aggregate.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
    params:
        evaluations=evaluation_paths(),  # the artifacts inside the evaluate jobs' directories
        robust=robust_paths(),  # the artifacts inside the robust jobs' directories
        component_attack=config["components"]["attack"],
        seed=config["seed"],  # seeds the detection bootstrap
    script:
        "../scripts/aggregate.py"


rule tables:
    input:
        results=f"{REPORTS}/results.csv",
    output:
        markdown=f"{REPORTS}/tables/{{table}}.md",
        csv=f"{REPORTS}/tables/{{table}}.csv",
        latex=f"{REPORTS}/tables/{{table}}.tex",
        html=report(
            f"{REPORTS}/tables/{{table}}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        f"{LOGS}/tables/{{table}}.log",
    benchmark:
        f"{BENCHMARKS}/tables/{{table}}.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
    params:
        # the paper's rows (or a user model's, <table>_<model>), data set and attack columns: plan.table_specs
        table=table_params,
    script:
        "../scripts/tables.py"


rule findings:
    input:
        evaluations=evaluation_dirs(),
        adaptive=adaptive_paths(),
        robust=robust_dirs(),
    output:
        markdown=f"{REPORTS}/findings.md",
        html=report(f"{REPORTS}/findings.html", caption="../report/findings.rst", category="Findings"),
        csvs=[f"{REPORTS}/findings_{name}.csv" for name in FINDINGS],
    log:
        f"{LOGS}/findings.log",
    benchmark:
        f"{BENCHMARKS}/findings.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
    params:
        evaluations=evaluation_paths(),
        robust=robust_paths(),
        tables=TABLES,
        grids=config["grids"],
        detection=config["detection"],
        adaptive=config["adaptive"],
        seed=config["seed"],  # seeds the detection bootstrap
    script:
        "../scripts/findings.py"


rule figures:
    input:
        results=f"{REPORTS}/results.csv",
        detection=f"{REPORTS}/detection.csv",
        components=f"{REPORTS}/components.csv",
    output:
        # PNG in the report (one entry per figure; the viewer shows PNG inline), SVG beside it for papers
        fig2=report(
            f"{REPORTS}/figures/fig2_components.png",
            caption="../report/fig2.rst",
            category="Figures",
            labels={"figure": "Fig. 2: MI output components"},
        ),
        fig2_svg=f"{REPORTS}/figures/fig2_components.svg",
        fig3a=report(
            f"{REPORTS}/figures/fig3a_detection.png",
            caption="../report/fig3a.rst",
            category="Figures",
            labels={"figure": "Fig. 3a: detection AUC"},
        ),
        fig3a_svg=f"{REPORTS}/figures/fig3a_detection.svg",
        fig3b=report(
            f"{REPORTS}/figures/fig3b_tradeoff.png",
            caption="../report/fig3b.rst",
            category="Figures",
            labels={"figure": "Fig. 3b: robustness vs clean accuracy"},
        ),
        fig3b_svg=f"{REPORTS}/figures/fig3b_tradeoff.svg",
        fig4=report(
            f"{REPORTS}/figures/fig4_adaptive.png",
            caption="../report/fig4.rst",
            category="Figures",
            labels={"figure": "Fig. 4: adaptive attacks"},
        ),
        fig4_svg=f"{REPORTS}/figures/fig4_adaptive.svg",
        fig5=report(
            f"{REPORTS}/figures/fig5_convergence.png",
            caption="../report/fig5.rst",
            category="Figures",
            labels={"figure": "Fig. 5: robustness evaluation, convergence"},
        ),
        fig5_svg=f"{REPORTS}/figures/fig5_convergence.svg",
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCHMARKS}/figures.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
    params:
        tradeoff_attack=config["grids"]["attack"],
    script:
        "../scripts/figures.py"


rule provenance:
    input:
        data=[DATA.format(dataset=name) for name in config["datasets"] if name in used_datasets()],
        metrics=[TRAIN_METRICS.format(dataset=d, regime=r) for d, r in trained_models()],
        # their sha256, and that of their weights-only form (what publish_models writes)
        models=[MODEL.format(dataset=d, regime=r) for d, r in trained_models()],
        results=f"{REPORTS}/results.csv",
        # compared with this run's config: the provenance lists every cut relative to the paper
        paper_preset=workflow_file("../../config/paper.yaml"),
    output:
        yaml=f"{REPORTS}/provenance.yaml",
        html=report(
            f"{REPORTS}/provenance.html",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    log:
        f"{LOGS}/provenance.log",
    benchmark:
        f"{BENCHMARKS}/provenance.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
    params:
        config=config,
        benchmarks=BENCHMARKS,
    script:
        "../scripts/provenance.py"
