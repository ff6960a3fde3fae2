"""Config checks: a bad config gets one line naming the key and the fix before any job runs
(schema, semantic checks, sizes that cannot fit in memory), and the workflow prints just that line."""

from __future__ import annotations

import pytest
import yaml
from reliability_helpers import (
    SCHEMA,
    config_problem,
    image_folder,
    set_key,
    smoke_config,
)
from workflow_helpers import REPO, snakemake

from mixup_inference.design.configcheck import (
    check_config,
    check_memory,
    machine_memory_bytes,
    validate_config,
)

# ================================================================ bad config: one line per problem


REGIMES = "erm, mixup, at, interpolated_at"
ATTACK_HELP = "clean, pgdK (untargeted PGD with K >= 1 steps) or tpgdK (targeted PGD with K >= 1 steps), e.g. pgd10, tpgd50"

# (config key, bad value, the exact message). The workflow prints it after "invalid config: ".
BAD_CONFIGS = [
    ("training.regimes.ermm", {},
     f"config key training.regimes.ermm: unknown regime 'ermm'; expected one of {REGIMES}"),
    ("grids.regimes", ["mixupp"],
     f"config key grids.regimes[0]: unknown regime 'mixupp'; expected one of {REGIMES}, or a model defined under "
     "models.synth"),
    ("adaptive.regime", "iat",
     f"config key adaptive.regime: unknown regime 'iat'; expected one of {REGIMES}, or a model defined under "
     "models.synth"),
    # models from files (config models:)
    ("models", {"synth": {"mine": {"file": "no/such/mine.pt", "format": "torchscript"}}},
     "models.synth.mine.file: model file 'no/such/mine.pt' does not exist; fix the path, or give a URL to download "
     "it from"),
    ("models", {"synth": {"mine": {"file": "https://example.org/m.pt", "format": "state_dict"}}},
     "models.synth.mine: format state_dict needs arch (one of resnet50_paper, preact_resnet18, compact_resnet, "
     "tiny_cnn, airbench94, airbench94_narrow); add it"),
    ("models", {"cifar10": {"mixup": {"file": "https://example.org/m.ckpt"}}},
     "models.cifar10: dataset 'cifar10' is not defined under datasets (defined: synth); fix the name or define it"),
    ("models", {"synth": {"mine": {"file": "https://example.org/m.pt", "format": "onnx"}}},
     "config key models.synth.mine.format: unknown value 'onnx'; expected one of auto, authors, project, state_dict, "
     "torchscript, export"),
    ("models", {"synth": {"mine": {"file": "https://example.org/m.pt", "sha256": "abc"}}},
     "config key models.synth.mine.sha256: 'abc' is not a valid value; expected the file's expected sha256 (64 hex "
     "digits); checked before use"),
    ("grids.regimes", ["mine"],
     f"config key grids.regimes[0]: unknown regime 'mine'; expected one of {REGIMES}, or a model defined under "
     "models.synth"),
    ("attacks.names", ["clean", "pgdx"],
     f"config key attacks.names[1]: 'pgdx' is not a valid attack; expected {ATTACK_HELP}"),
    ("tables.table2.attacks", ["clean", "pgd7"],
     "tables.table2.attacks: attack 'pgd7' is not in attacks.names; add it there or remove it here"),
    ("grids.settings.mi_xx", ["lam=0.5"],
     "config key grids.settings.mi_xx: unknown defense 'mi_xx'; expected one of mi_pl, mi_ol, mi_combined, "
     "gaussian, rotation, xie, xie_resize, guo"),
    ("adaptive.defense", "mi_combined",
     "config key adaptive.defense: unknown defense 'mi_combined'; expected one of mi_pl, mi_ol"),
    ("grids.settings.gaussian", ["sigma=abc"],
     "config key grids.settings.gaussian[0]: 'sigma=abc' is not a valid defense setting; expected canonical "
     "defense setting, e.g. lam=0.5, sigma=0.04, deg=40, size=16-24, pl=0.5_ol=0.4_th=0.2"),
    ("model", "resnet18",
     "config key model: unknown model 'resnet18'; expected one of resnet50_paper, preact_resnet18, compact_resnet, "
     "tiny_cnn, airbench94, airbench94_narrow"),
    ("tables.table2.dataset", "cifar11",
     "tables.table2.dataset: dataset 'cifar11' is not defined under datasets (defined: synth)"),
    # robustness.targets: tables (every randomized row), filtered tables and explicit targets
    ("robustness.targets", ["table9"],
     "config key robustness.targets[0]: unknown table 'table9'; expected one of table2, table3"),
    ("robustness.targets", ["table2", "table3"],
     "robustness.targets[1]: table 'table3' is not under tables: (configured: table2); add tables.table3 or name a "
     "configured table"),
    ("robustness.targets", [{"table": "table2", "regimes": ["erm"], "defenses": ["xie"]}],
     "robustness.targets[0]: {'table': 'table2', 'regimes': ['erm'], 'defenses': ['xie']} selects no row with a "
     "randomized defense of the table as configured under tables:; widen its regimes/defenses or remove it"),
    ("robustness.targets", [{"table": "table2", "regime": ["mixup"]}],
     "config key robustness.targets[0].regime is not allowed (misspelled? did you mean regimes?); allowed keys: "
     "table, regimes, defenses"),
    ("robustness.targets", ["table2", ["mixup", "jpeg", "q=75"]],
     "config key robustness.targets[1][1]: unknown randomized defense 'jpeg'; expected one of mi_pl, mi_ol, "
     "mi_combined, gaussian, rotation, xie, xie_resize, guo"),
    ("datasets.synth.source", "cifar11",
     "datasets.synth.source: 'cifar11' is neither a known data set (cifar10, cifar100, synthetic) nor an existing "
     "folder or archive; fix the path"),
    ("datasets.synth.source", "/nonexistent/cifar.tar.gz",
     "datasets.synth.source: '/nonexistent/cifar.tar.gz' is neither a known data set (cifar10, cifar100, synthetic) "
     "nor an existing folder or archive; fix the path"),
    ("grids.settings.mi_ol", ["lam=1.5"], "grids.settings.mi_ol[0]: mi_ol lam=1.5 must lie in (0, 1] (a mixup ratio)"),
    ("detection.setting", "lam=0", "detection.setting: mi_pl lam=0 must lie in (0, 1] (a mixup ratio)"),
    ("adaptive.setting", "lam=-0.5", "adaptive.setting: mi_ol lam=-0.5 must lie in (0, 1] (a mixup ratio)"),
    ("components.lams", [0.4, 1.5], "config key components.lams[1]: 1.5 is above the maximum 1; use a value <= 1"),
    ("components.lams", [0, 0.5], "config key components.lams[0]: 0 must be greater than 0"),
    ("attacks.eps", -0.1, "config key attacks.eps: -0.1 is below the minimum 0; use a value >= 0"),
    ("training.at.eps", -0.1, "config key training.at.eps: -0.1 is below the minimum 0; use a value >= 0"),
    ("attacks.step_size", -0.01, "config key attacks.step_size: -0.01 must be greater than 0"),
    ("attacks.step_size", 0.1,
     "attacks: step_size=0.1 is larger than 2 x eps=0.062745; use a step size <= 2 x eps (paper: 2/255 for 8/255; FGSM with a random start: 1.25 x eps)"),
    ("training.at.step_size", 0.1,
     "training.at: step_size=0.1 is larger than 2 x eps=0.062745; use a step size <= 2 x eps (paper: 2/255 for 8/255; FGSM with a random start: 1.25 x eps)"),
    ("attacks.names", ["clean", "pgd0"],
     f"config key attacks.names[1]: 'pgd0' is not a valid attack; expected {ATTACK_HELP}"),
    ("training.at.steps", 0, "config key training.at.steps: 0 is below the minimum 1; use a value >= 1"),
    ("defenses.n_samples", 0, "config key defenses.n_samples: 0 is below the minimum 1; use a value >= 1"),
    ("defenses.chunk_size", "big",
     "config key defenses.chunk_size: 'big' is not valid; expected a whole number >= 1, or auto (a per-device default)"),
    ("attacks.batch_size", 0,
     "config key attacks.batch_size: 0 is not valid; expected a whole number >= 1, or auto (a per-device default)"),
    ("resources.threads", "all",
     "config key resources.threads: 'all' is not valid; expected a whole number >= 1 (that many threads for every such "
     "job), or auto (train jobs share --cores among the models being trained, one alone gets them all; every other job "
     "1 thread; 1 on a cluster executor)"),
    ("adaptive.n_adaptive", [0, 1], "config key adaptive.n_adaptive[0]: 0 is below the minimum 1; use a value >= 1"),
    ("datasets.synth.n_test", 500,
     "datasets.synth.n_test=500 exceeds the 200 images of its test split; use at most 200"),
    ("adaptive.n_test", 100,
     "adaptive.n_test=100 exceeds datasets.synth.n_test=40; adaptive attacks use a prefix of the run's test subset"),
    ("attacks.stepsize", 0.01,
     "config key attacks.stepsize is not allowed (misspelled? did you mean step_size?); allowed keys: eps, step_size, "
     "labels, names, batch_size"),
    ("sead", 1,
     "config key sead is not allowed (misspelled? did you mean seed?); allowed keys: run, seed, device, datasets, "
     "model, models, training, attacks, defenses, tables, grids, components, detection, adaptive, study, robustness, speed, resources"),
    ("datasets.synth.ntest", 40,
     "config key datasets.synth.ntest is not allowed (misspelled? did you mean n_test?); allowed keys: source, "
     "download_root, image_size, synthetic, n_test, pool_per_class"),
    ("training.epochs", "ten", "config key training.epochs: expected an integer, got a string 'ten'"),
    # the fast recipe's options
    ("training.label_smoothing", 0.2,
     "config key training.label_smoothing: 0.2 would apply to regime mixup; label smoothing is for erm only (mixup's "
     "targets are already soft, AT and interpolated AT keep the paper's targets): set it under training.regimes.erm"),
    ("training.regimes.at", {"label_smoothing": 0.1},
     "config key training.regimes.at.label_smoothing: 0.1 would apply to regime at; label smoothing is for erm only "
     "(mixup's targets are already soft, AT and interpolated AT keep the paper's targets): set it under "
     "training.regimes.erm"),
    ("training.optimizer", "adam", "config key training.optimizer: unknown value 'adam'; expected one of sgd, "
     "sgd_decoupled"),
    ("training.schedule", "cosine", "config key training.schedule: unknown schedule 'cosine'; expected one of step, "
     "onecycle, triangular"),
    ("attacks.eps", "8e-3",
     "config key attacks.eps: expected a number, got a string '8e-3' (YAML reads a number like 8e-3 as text: "
     "write 0.008 or 8.0e-3)"),
    ("attacks.names", ["clean", "pgd5", "pgd5", "tpgd5"],
     "config key attacks.names: has duplicate entries ['pgd5']; list each once"),
]


@pytest.mark.parametrize("key, value, message", BAD_CONFIGS, ids=[f"{k}={v!r}" for k, v, _ in BAD_CONFIGS])
def test_bad_config_gets_one_line_naming_the_key_and_fix(key, value, message):
    config = smoke_config()
    set_key(config, key, value)
    assert config_problem(config) == message


def test_missing_key_and_several_problems_give_one_line_each():
    config = smoke_config()
    del config["attacks"]["names"]
    assert config_problem(config) == "config key attacks.names is missing; add it (config/config.yaml shows every key)"
    config = smoke_config()
    config["sead"] = 1
    config["attacks"]["eps"] = -1
    config["training"]["regimes"]["ermm"] = {}
    lines = config_problem(config).splitlines()
    assert len(lines) == 3
    assert [line.split(":")[0].split(" is ")[0] for line in lines] == [
        "config key sead", "config key attacks.eps", "config key training.regimes.ermm"]


def test_every_preset_is_valid():
    for preset in ("config", "paper", "smoke", "authors", "paper-fast"):
        config = yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text())
        validate_config(config, SCHEMA)


def test_image_folder_with_too_few_test_images_is_caught_before_any_job(tmp_path):
    folder = image_folder(tmp_path / "imgs", {"cat": (4, 3), "dog": (4, 2)})
    config = smoke_config()
    config["datasets"]["synth"] = {"source": str(folder), "n_test": 10, "pool_per_class": 2}
    assert config_problem(config) == "datasets.synth.n_test=10 exceeds the 5 images of its test split; use at most 5"
    config["datasets"]["synth"]["n_test"] = 5
    config["adaptive"]["n_test"] = 5
    config["robustness"]["n_test"] = 5
    check_config(config)



def test_a_robustness_target_naming_an_unknown_dataset_is_caught():
    config = smoke_config()
    config["robustness"]["targets"].append(["cifar10", "mixup", "xie", "size=16-24"])
    assert config_problem(config) == ("robustness.targets[1]: dataset 'cifar10' is not defined under datasets "
                                      "(defined: synth)")
    config["robustness"]["targets"][-1] = ["synth", "mixup", "xie", "size=16-24"]
    check_config(config)


# ---------------------------------------------------------------- what the workflow prints


@pytest.mark.parametrize("key, value, message", [
    ("attacks.stepsize", 0.01, "config key attacks.stepsize is not allowed (misspelled? did you mean step_size?)"),
    ("training.regimes.ermm", {}, f"config key training.regimes.ermm: unknown regime 'ermm'; expected one of {REGIMES}"),
    ("attacks.step_size", 0.1, "attacks: step_size=0.1 is larger than 2 x eps=0.062745; use a step size <= 2 x eps"),
])
def test_workflow_stops_on_bad_config_with_the_message_and_no_traceback(workdir, key, value, message):
    config = smoke_config()
    set_key(config, key, value)
    config["run"] = "badconfig"
    (workdir / "config" / "bad.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workdir, "--cores", "1", "--configfile", "config/bad.yaml", check=False, timeout=300)
    output = proc.stdout + proc.stderr  # Snakemake 9 logs to stderr (to stdout in a dry run)
    assert proc.returncode == 1
    assert f"invalid config: {message}" in output
    assert "Traceback" not in output and "Failed validating" not in output
    assert not (workdir / "results" / "badconfig").exists()  # no job ran


def test_a_config_file_missing_a_key_is_an_error_not_filled_from_the_default(workdir):
    """--configfile replaces the default preset; it is not merged over it (a key missing from the
    user's file would otherwise silently take config/config.yaml's value)."""
    config = smoke_config()
    del config["seed"]
    config["run"] = "missingkey"
    (workdir / "config" / "missing.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workdir, "-n", "--configfile", "config/missing.yaml", check=False, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "invalid config: config key seed is missing; add it (config/config.yaml shows every key)" in output
    assert "Traceback" not in output


# ================================================================ sizes that cannot fit in memory


def test_a_synthetic_split_of_a_billion_images_is_refused_with_the_key_and_estimate():
    config = smoke_config()
    config["datasets"]["synth"]["synthetic"]["n_train"] = 10**9
    gib = (10**9 + 200) * 3 * 32 * 32 * 5 / 2**30  # uint8 cache + one float32 copy of every image
    assert machine_memory_bytes() < gib * 2**30
    assert config_problem(config) == (
        f"config key datasets.synth.synthetic: 1,000,000,200 images of 3x32x32 (uint8 cache + one float32 copy) "
        f"needs about {gib:,.1f} GiB, more than this machine's {machine_memory_bytes() / 2**30:,.1f} GiB of memory; "
        "lower n_train, n_test, image_size or channels (or run on a machine with more memory)")


@pytest.mark.parametrize("key, value, named", [
    ("datasets.synth.pool_per_class", 10**9, "datasets.synth.pool_per_class"),
    ("defenses.chunk_size", 10**9, "defenses.chunk_size"),
    ("attacks.batch_size", 10**9, "attacks.batch_size"),
    ("training.batch_size", 10**9, "training.batch_size"),
])
def test_pools_and_batches_beyond_memory_are_refused_naming_the_key(key, value, named):
    config = smoke_config()
    set_key(config, key, value)
    assert config_problem(config).startswith(f"config key {named}: ")


def test_the_memory_estimate_is_compared_with_the_given_memory():
    config = smoke_config()  # the largest estimate: a chunk of 1024 float32 images of 3x32x32 values
    check_memory(config, memory_bytes=1024 * 3 * 32 * 32 * 4)
    with pytest.raises(ValueError, match=r"^config key defenses\.chunk_size: 1,024 float32 images"):
        check_memory(config, memory_bytes=1024 * 3 * 32 * 32 * 4 - 1)
    config["defenses"]["chunk_size"] = "auto"  # then the data set: 800 images, uint8 + float32
    check_memory(config, memory_bytes=800 * 3 * 32 * 32 * 5)
    with pytest.raises(ValueError, match=r"^config key datasets\.synth\.synthetic: 800 images"):
        check_memory(config, memory_bytes=800 * 3 * 32 * 32 * 5 - 1)
