# Shared by every stage: config validation, wildcard constraints, output paths, the job lists
# derived from the config, and the input functions. Stage files hold rules only.

import dataclasses
import functools
import os
import re
import sys

from snakemake.exceptions import WorkflowError

# The workflow's own files (schema, library, presets) are found from this file, never from
# workflow.basedir: used as a module (snakedeploy, README "Deploy into your own project"), basedir is
# the user's project, while current_basedir is this file's folder (workflow/rules/ of the clone, or
# of a github() source). Outputs stay relative to the working directory. `conda:`, `script:` and
# report captions are relative to the file that declares them, so they need nothing here.
RULES_DIR = workflow.current_basedir


def workflow_file(path):
    """A local path to a file of this workflow, from its path relative to workflow/rules/: in the
    clone, or Snakemake's cached copy when the workflow is a remote (github()) module."""
    if RULES_DIR.is_local:
        return os.path.normpath(os.path.join(RULES_DIR.get_path_or_uri(secret_free=False), path))
    return str(workflow.source_path(path))


# The library lives in src/ of the clone. Putting it on the path here and in the jobs' environment
# makes the workflow run from a clone, in place or as a module, without `pip install -e .`, and inside
# the per-rule conda environment (workflow/envs/, only third-party packages; Snakemake passes
# PYTHONPATH to conda jobs with --conda-not-block-search-path-envvars, which profiles/ set). A remote
# (github()) module has no src/ on disk: there the library must be installed (README).
if RULES_DIR.is_local:
    CLONE = workflow_file("../..")
    SRC = os.path.join(CLONE, "src")
    sys.path.insert(0, SRC)
    os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
    # Run from outside the clone (a module deployment, or --directory), the workflow writes nothing
    # inside it: no bytecode caches in its src/ (here and in the jobs).
    if os.path.commonpath([CLONE, os.path.abspath(".")]) != CLONE:
        os.environ.update(PYTHONDONTWRITEBYTECODE="1")
        sys.dont_write_bytecode = True
# The provenance reads the clone's commit with `git status`, which may otherwise rewrite its index.
os.environ.setdefault("GIT_OPTIONAL_LOCKS", "0")
ENV = "../envs/mixup-inference.yaml"

try:
    from mixup_inference.design.configcheck import check_config, validate_config
    from mixup_inference.core.models.downloads import is_url, url_filename
    from mixup_inference.design import plan, study
    from mixup_inference.jobs import threads as thread_policy
    from mixup_inference.jobs.context import JobContext
    from mixup_inference.report.findings import FINDINGS
    from mixup_inference.core.attacks.specs import ADAPTIVE_KINDS, attack_pattern, parse_attack
    from mixup_inference.core.defenses.specs import DEFENSES
    from mixup_inference.core.models.speed import DEFAULT_SPEED
except ImportError as error:  # the library is the workflow's only dependency besides Snakemake
    raise WorkflowError(
        f"cannot import the mixup_inference package ({error}); install it with `pip install -e .` "
        "from the repository root"
    )

# The config against the schema (unknown keys, types, names, ranges; one line per problem instead
# of snakemake.utils.validate's schema dump), then semantic checks the schema cannot express (lambda
# in (0, 1], step <= eps, attacks referenced but not crafted, n_test vs the test split, ...): one
# clear message before any job runs.
try:
    validate_config(config, workflow_file("../schemas/config.schema.yaml"))
    check_config(config)
except ValueError as error:
    raise WorkflowError(f"invalid config: {error}") from None

RUN = config["run"]
RESULTS = f"results/{RUN}"
REPORTS = f"reports/{RUN}"
LOGS = f"logs/{RUN}"
BENCHMARKS = f"benchmarks/{RUN}"


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    # a model (README "Glossary"): a training regime's (erm, mixup, at, interpolated_at), a study model's
    # (<regime>-<recipe>-e<epochs>-s<seed>) or one from a file (config models:)
    regime=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    attack=attack_pattern(oblivious_only=True),
    defense="|".join(DEFENSES),
    setting=r"[a-z]+=[^/]+|plain",
    fig4_kind="|".join(kind for kind, spec in ADAPTIVE_KINDS.items() if spec.rule == "adaptive"),
    # a randomized defense, or none: the bare model's robust job (plan.bare_targets)
    robust_defense="|".join(DEFENSES),
    n_adaptive=r"[0-9]+",
    table=r"table[23](_[A-Za-z0-9][A-Za-z0-9_-]*)?",


# Output paths: one obvious place for each artifact.
DATA = f"{RESULTS}/{{dataset}}/data.pt"
MODEL = f"{RESULTS}/{{dataset}}/{{regime}}/model.pt"
TRAIN_LOG = f"{RESULTS}/{{dataset}}/{{regime}}/train_log.jsonl"
TRAIN_METRICS = f"{RESULTS}/{{dataset}}/{{regime}}/train_metrics.json"
# Per-epoch checkpoints live next to the model but are NOT declared outputs: Snakemake deletes
# declared outputs before rerunning a job, which would throw away the progress a resumed job needs.
CHECKPOINTS = f"{RESULTS}/{{dataset}}/{{regime}}/checkpoints"
ATTACK = f"{RESULTS}/{{dataset}}/{{regime}}/attacks/{{attack}}.pt"
EVALUATION = f"{RESULTS}/{{dataset}}/{{regime}}/eval/{{attack}}/{{defense}}/{{setting}}.pt"
# One evaluate job writes every EVALUATION of one (dataset, regime, attack) into this directory.
EVALUATIONS = f"{RESULTS}/{{dataset}}/{{regime}}/eval/{{attack}}"
# One robust job writes every adaptive attack run of the `robustness:` section against one defense setting.
ROBUST = f"{RESULTS}/{{dataset}}/{{regime}}/robust/{{robust_defense}}/{{setting}}"
ADAPTIVE = (
    f"{RESULTS}/{{dataset}}/{{regime}}/adaptive/{{defense}}/{{setting}}/{{fig4_kind}}-{{attack}}-n{{n_adaptive}}.pt"
)


# ---------------------------------------------------------------- job lists derived from the config
# The study design lives in the library (mixup_inference.design.plan), so tests and the workflow benchmark
# derive the same lists; these wrappers only bind this run's config.
def evaluations():
    """Every oblivious evaluation as (dataset, regime, attack, defense, setting)."""
    return plan.evaluations(config)


def evaluation_groups():
    """(dataset, regime, attack) -> [(defense, setting), ...]: one evaluate job each."""
    return plan.evaluation_groups(config)


def adaptive_runs():
    """Every run of the paper's adaptive attack as (dataset, regime, defense, setting, fig4_kind, attack, n_adaptive)."""
    return plan.adaptive_runs(config)


def robust_dirs():
    return [
        ROBUST.format(dataset=d, regime=r, robust_defense=f, setting=s) for d, r, f, s in plan.robust_targets(config)
    ]


def robust_paths():
    """The schedule of every robust job (schedule.json in its directory): it lists the artifacts of the
    runs its convergence schedule ran (jobs.artifacts.expand_paths reads them)."""
    return [f"{directory}/schedule.json" for directory in robust_dirs()]


def robust_oblivious_dirs(wildcards):
    """The evaluate jobs' directories holding this robust job's oblivious evaluations (the cascade's first
    step), as ancient(): an evaluate job rewrites its whole directory when any setting of its group
    changes (a Fig. 3b grid value, say), but this job reads only its own setting's files, which change
    only with what it depends on itself: the model, the attacks' examples (robust_attacks) and the
    params it shares with the evaluate job. So a change elsewhere in the grid does not rerun the
    robustness evaluation, its most expensive stage."""
    return [
        ancient(EVALUATIONS.format(dataset=wildcards.dataset, regime=wildcards.regime, attack=a))
        for a in config["attacks"]["names"]
    ]


def robust_attacks(wildcards):
    """The oblivious attacks' examples behind this robust job's oblivious evaluations."""
    return [
        ATTACK.format(dataset=wildcards.dataset, regime=wildcards.regime, attack=a) for a in config["attacks"]["names"]
    ]


def robust_oblivious(wildcards):
    """The oblivious evaluations of this robust job's defense setting (plan.evaluations adds them for every target)."""
    return [
        EVALUATION.format(
            dataset=wildcards.dataset,
            regime=wildcards.regime,
            attack=a,
            defense=wildcards.robust_defense,
            setting=wildcards.setting,
        )
        for a in config["attacks"]["names"]
    ]


def evaluation_paths():
    return [EVALUATION.format(dataset=d, regime=r, attack=a, defense=f, setting=s) for d, r, a, f, s in evaluations()]


def evaluation_dirs():
    """The evaluate jobs' directories the run's report reads (not the study's models': the study target asks for
    those, study_outputs)."""
    return [EVALUATIONS.format(dataset=d, regime=r, attack=a) for d, r, a in sorted({e[:3] for e in evaluations()})]


def adaptive_paths():
    return [
        ADAPTIVE.format(dataset=d, regime=r, defense=f, setting=s, fig4_kind=k, attack=a, n_adaptive=n)
        for d, r, f, s, k, a, n in adaptive_runs()
    ]


def report_outputs():
    tables = [f"{REPORTS}/tables/{table}.{ext}" for table in TABLES for ext in ("md", "csv", "tex", "html")]
    figures = [f"{REPORTS}/figures/{fig}.{ext}" for fig in FIGURES for ext in ("png", "svg")]
    csvs = [f"{REPORTS}/{name}.csv" for name in ("results", "detection", "components")]
    findings = [f"{REPORTS}/findings.{ext}" for ext in ("md", "html")]
    return csvs + tables + figures + findings + [f"{REPORTS}/provenance.yaml", f"{REPORTS}/provenance.html"]


FIGURES = ("fig2_components", "fig3a_detection", "fig3b_tradeoff", "fig4_adaptive", "fig5_convergence")


def trained_models():
    """(dataset, regime) pairs that some evaluation or adaptive run needs."""
    return plan.trained_models(config)


def used_datasets():
    return plan.used_datasets(config)


# Every table: the paper's tables of the config, and one per user model (<table>_<model>); rows as
# plain [label, regime, defense, setting] lists (params are compared between runs).
TABLES = {
    name: {**spec, "rows": [[row.label, row.regime, row.defense, row.setting] for row in spec["rows"]]}
    for name, spec in plan.table_specs(config).items()
}


def table_params(wildcards):
    return TABLES[wildcards.table]


# ---------------------------------------------------------------- models from files (config models:)
# A needed (dataset, regime) whose model comes from a file is made by import_model, every other one by
# train. Both rules can write MODEL; each one's input names a file that never exists and that no rule
# makes for the models that are the other's, so Snakemake picks the right one and plans no train job
# for a loaded model.
MODEL_FILES = plan.model_files(config)
IMPORTED = set(plan.imported_models(config))
NOT_HERE = f"{RESULTS}/{{dataset}}/{{regime}}/.made-by-the-other-rule"
# A URL is downloaded once into the data set's download_root (the data folder), where a user without
# internet can put the file instead: <download_root>/models/<dataset>/<model>/<file name of the URL>.
MODEL_DOWNLOAD = "{root}/models/{dataset}/{regime}/{filename}"


def download_root(dataset):
    return config["datasets"][dataset].get("download_root", "data/downloads")


def model_source(dataset, regime):
    """The local file of a model from a file: its path, or where its URL is downloaded to."""
    spec = MODEL_FILES[dataset, regime]
    if not is_url(spec["file"]):
        return spec["file"]
    return MODEL_DOWNLOAD.format(
        root=download_root(dataset), dataset=dataset, regime=regime, filename=url_filename(spec["file"])
    )


def train_guard(wildcards):
    return NOT_HERE.format(**wildcards) if (wildcards.dataset, wildcards.regime) in IMPORTED else []


def import_input(wildcards):
    key = (wildcards.dataset, wildcards.regime)
    return model_source(*key) if key in IMPORTED else NOT_HERE.format(**wildcards)


def model_spec(wildcards):
    return MODEL_FILES[wildcards.dataset, wildcards.regime]


def download_url(wildcards):
    return MODEL_FILES[wildcards.dataset, wildcards.regime]["file"]


# The run's trained models published beside its report, weights only (publish_models, outside `all`), and
# the config overlay that re-runs everything after training from them (README "Re-evaluating from the
# published models").
PUBLISHED = f"{REPORTS}/models/{{dataset}}/{{regime}}.pt"
PUBLISHED_OVERLAY = f"{REPORTS}/models/published.yaml"


def published_models():
    """[dataset, regime, model.pt, published file] of every model the run trains (not those from files)."""
    return [
        [d, r, MODEL.format(dataset=d, regime=r), PUBLISHED.format(dataset=d, regime=r)]
        for d, r in plan.models_to_train(config)
    ]


DOWNLOAD_ROOTS = sorted({download_root(d) for d, r in IMPORTED if is_url(MODEL_FILES[d, r]["file"])})


def all_outputs():
    return report_outputs()


# ---------------------------------------------------------------- params (canonical, from config only)
def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def training_params(wildcards):
    """The resolved training config of one model: the preset's of its regime, or a study model's (config study:)."""
    return study.model_training(config, wildcards.regime)


def study_entries():
    """[model name, regime, recipe, epochs, seed] of every study model (the study rule's param)."""
    if not config.get("study"):
        return []
    return [[study.model_name(config, m), m.regime, m.recipe, m.epochs, m.seed] for m in study.study_models(config)]


def study_metrics():
    dataset = config["study"]["dataset"] if config.get("study") else None
    return [TRAIN_METRICS.format(dataset=dataset, regime=name) for name, *_ in study_entries()]


def study_evaluation_dirs():
    groups = sorted({e[:3] for e in plan.study_evaluations(config)})
    return [EVALUATIONS.format(dataset=d, regime=r, attack=a) for d, r, a in groups]


def study_evaluation_paths():
    return [
        EVALUATION.format(dataset=d, regime=r, attack=a, defense=f, setting=s)
        for d, r, a, f, s in plan.study_evaluations(config)
    ]


def study_robust_dirs():
    return [
        ROBUST.format(dataset=d, regime=r, robust_defense=f, setting=s)
        for d, r, f, s in plan.study_robust_targets(config)
    ]


def study_model_files():
    """The model file of every model of the study (config study:), in the config's order."""
    if not config.get("study"):
        return []
    dataset = config["study"]["dataset"]
    return [MODEL.format(dataset=dataset, regime=study.model_name(config, m)) for m in study.study_models(config)]


def evaluate_settings(wildcards):
    """[[defense, setting, EVALUATION path], ...] that the evaluate job of these wildcards writes (a
    param, so a changed setting reruns exactly the (dataset, regime, attack) jobs whose list changed)."""
    key = (wildcards.dataset, wildcards.regime, wildcards.attack)
    return [[f, s, EVALUATION.format(**wildcards, defense=f, setting=s)] for f, s in evaluation_groups().get(key, [])]


def threat_model():
    """eps, step size and what untargeted attacks push away from, shared by every attack rule."""
    return {
        "eps": config["attacks"]["eps"],
        "step_size": config["attacks"]["step_size"],
        # an unquoted `labels: true` reaches us as YAML's boolean
        "labels": "true" if config["attacks"]["labels"] is True else config["attacks"]["labels"],
    }


def attack_params(wildcards):
    attack = parse_attack(wildcards.attack)
    return {"targeted": attack.targeted, "steps": attack.steps, **threat_model()}


# The fast paths of the train, attack, evaluate and adaptive jobs (core/models/speed.py): the config's `speed:`
# section over its auto defaults. A param, so switching a fast path reruns what it may change.
SPEED = {**DEFAULT_SPEED, **config.get("speed", {})}

# Every setting of jobs.context.JobContext, in its order.
ALL_JOB_SETTINGS = [field.name for field in dataclasses.fields(JobContext)]


def job_params(names):
    """The `job` param of an attack, evaluate, adaptive or robust rule: the shared job settings
    (jobs.context.JobContext) of `names`, from the config; the pool and the test subset are the
    dataset's. A rule names only the settings its job reads, so changing another never reruns it."""

    def params(wildcards):
        dataset = config["datasets"][wildcards.dataset]
        settings = {
            "seed": config["seed"],
            "device": config["device"],
            "speed": SPEED,
            "batch_size": config["attacks"].get("batch_size", "auto"),
            "chunk_size": config["defenses"].get("chunk_size", "auto"),
            "n_samples": config["defenses"]["n_samples"],
            "pool_per_class": dataset["pool_per_class"],
            "n_subset": dataset["n_test"],
        }
        return {name: settings[name] for name in names}

    return params


# Resources of the rules that want a GPU (train, attack, evaluate, adaptive); a profile maps `gpu`
# to its scheduler's request (SLURM: --gpus), a workstation caps it with --resources gpu=N.
GPU_RESOURCES = {"gpu": config["resources"]["gpu"], "mem_mb": config["resources"]["mem_mb"]}


# Threads per job (config resources.threads; the policy and its reasons: jobs/threads.py). Under auto the
# train jobs share --cores among the models this invocation trains and every other job runs on 1 thread.
def local_cores():
    """--cores of a local run (`all`: Snakemake's available_cpu_count(), the CPUs this process may run on;
    --jobs N without --cores: N); None where every job is an allocation of its own (a cluster executor,
    where --cores is unset, and the Snakemake it starts inside each job, which must decide as the
    submitting one did). A dry run plans locally: `-n --executor slurm --cores 16` shows the local counts."""
    if workflow.non_local_exec or workflow.remote_exec:
        return None
    return workflow.resource_settings.cores or 1


@functools.cache  # once per invocation, before any train job ran: a finished one must not change the others' count
def train_jobs_to_run():
    """How many train jobs this invocation runs: the models its targets need (trained, not imported)
    that are missing."""
    run_models = [MODEL.format(dataset=d, regime=r) for d, r in plan.models_to_train(config)]
    models = thread_policy.models_for_targets(workflow.dag_settings.targets, run_models, study_model_files())
    return sum(not os.path.exists(model) for model in models)


def train_threads(wildcards):
    return thread_policy.train_threads(
        config["resources"]["threads"], cores=local_cores(), train_jobs=train_jobs_to_run()
    )


JOB_THREADS = thread_policy.job_threads(config["resources"]["threads"])
