"""Checks of a workflow config, run by the workflow before any job starts.

`validate_config` checks the config against the JSON schema (workflow/schemas/config.schema.yaml):
unknown (misspelled) keys, wrong types, unknown names, out-of-range numbers. `check_config` catches
values that are individually valid but wrong together (a step larger than eps, a test subset larger
than the test split, an attack a table needs but the run never crafts, ...). Each problem is
reported as one line that names the config key and the fix, e.g.

    config key training.regimes.ermm: unknown regime 'ermm'; expected one of erm, mixup, at, interpolated_at
    config key attacks.stepsize is not allowed (misspelled? did you mean step_size?); allowed keys: eps, step_size, names, batch_size
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

from ..core.attacks.kinds import ROBUST_KINDS, robust_kind
from ..core.attacks.specs import attack_pattern, parse_attack
from ..core.defenses.specs import DEFENSES, SETTING_PATTERN, parse_setting
from ..core.data.sources import KNOWN_TEST_SIZES, KNOWN_TRAIN_SIZES, SYNTHETIC_DEFAULTS
from ..core.models.downloads import is_url
from ..core.models.networks import MODEL_NAMES
from ..core.training.config import REGIMES, TrainConfig
from .paper_tables import TABLES
from .plan import robust_target_item
from .study import StudyModel, is_run_model, study_models, study_training


# What a value under a given key names, for messages like "unknown regime 'ermm'".
_NOUNS = {"regimes": "regime", "regime": "regime", "model": "model", "defense": "defense", "settings": "defense",
          "kinds": "attack kind", "schedule": "schedule", "tables": "table", "names": "attack",
          "attacks": "attack", "attack": "attack", "channels": "channel count", "datasets": "dataset name",
          "dataset": "dataset name", "setting": "defense setting", "device": "device", "run": "run name"}
_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
          "object": "a mapping (key: value)", "array": "a list"}


def _key(path: list) -> str:
    """A config key as written in messages: training.regimes.erm, attacks.names[1]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _noun(path: list) -> str:
    names = [p for p in path if isinstance(p, str)]
    if len(names) >= 2 and names[-2] == "settings":  # grids.settings.<defense>[i]
        return "defense setting"
    return _NOUNS.get(names[-1], "value") if names else "value"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping",
            type(None): "empty"}.get(type(value), type(value).__name__)


def _schema_problems(error) -> list[str]:
    """One line per problem of one jsonschema ValidationError."""
    path, value, kind, rule = list(error.absolute_path), error.instance, error.validator, error.validator_value
    key = _key(path)
    if "propertyNames" in error.absolute_schema_path:  # the bad value is a key of the mapping at `path`
        noun, key = _noun(path), _key([*path, value])
        if kind == "enum":
            return [f"config key {key}: unknown {noun} {value!r}; expected one of {', '.join(map(str, rule))}"]
        return [f"config key {key}: {value!r} is not a valid {noun} (use letters, digits, '_', '.', '-')"]
    if kind == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        lines = []
        for extra in (k for k in value if k not in allowed):
            guess = difflib.get_close_matches(str(extra), allowed, n=1)
            hint = f" did you mean {guess[0]}?" if guess else ""
            lines.append(f"config key {_key([*path, extra])} is not allowed (misspelled?{hint}); "
                         f"allowed keys: {', '.join(allowed)}")
        return lines
    if kind == "required":
        return [f"config key {_key([*path, name])} is missing; add it (config/config.yaml shows every key)"
                for name in rule if name not in value]
    if kind == "enum":
        noun = error.schema.get("title") or _noun(path)
        return [f"config key {key}: unknown {noun} {value!r}; expected one of {', '.join(map(str, rule))}"]
    if kind in ("anyOf", "oneOf"):
        # The one typed alternative the value has the shape of (its type and length), for a line naming the
        # wrong part (robustness.targets: an unknown table, a bad defense inside a target list).
        shape = ("type", "minItems", "maxItems")
        by_alternative: dict[Any, list] = {}
        for sub in error.context:
            by_alternative.setdefault(sub.schema_path[0], []).append(sub)
        fitting = [subs for subs in by_alternative.values() if not any(sub.validator in shape for sub in subs)]
        if len(fitting) == 1 and all(sub.relative_path or "type" in sub.schema for sub in fitting[0]):
            return [line for sub in fitting[0] for line in _schema_problems(sub)]
        if "description" in error.schema:
            return [f"config key {key}: {value!r} is not valid; expected {error.schema['description']}"]
    if kind == "pattern":
        expected = error.schema.get("description", f"a value matching {rule}")
        return [f"config key {key}: {value!r} is not a valid {_noun(path)}; expected {expected}"]
    if kind == "type":
        wanted = " or ".join(_TYPES.get(t, t) for t in ([rule] if isinstance(rule, str) else rule))
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = " (YAML reads a number like 8e-3 as text: write 0.008 or 8.0e-3)"
            except ValueError:
                pass
        return [f"config key {key}: expected {wanted}, got {_type_name(value)} {value!r}{hint}"]
    if kind == "minimum":
        return [f"config key {key}: {value!r} is below the minimum {rule}; use a value >= {rule}"]
    if kind == "exclusiveMinimum":
        return [f"config key {key}: {value!r} must be greater than {rule}"]
    if kind == "maximum":
        return [f"config key {key}: {value!r} is above the maximum {rule}; use a value <= {rule}"]
    if kind in ("minItems", "minProperties"):
        return [f"config key {key}: needs at least {rule} entr{'y' if rule == 1 else 'ies'}"]
    if kind == "uniqueItems":
        seen, dups = [], []
        for item in value:
            (dups if item in seen and item not in dups else seen).append(item)
        return [f"config key {key}: has duplicate entries {dups}; list each once"]
    return [f"config key {key}: {error.message}"]


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Check `config` against the workflow's JSON schema (a YAML file).

    Raises ValueError whose message has one line per problem, each naming the config key and the
    fix (unknown keys are errors: a misspelled key never passes silently). Unlike
    ``snakemake.utils.validate`` it reports every problem at once and prints no schema dump.
    """
    import jsonschema  # a Snakemake dependency
    import yaml

    schema = schema_with_registries(yaml.safe_load(Path(schema_path).read_text(encoding="utf-8")))
    validator = jsonschema.Draft202012Validator(schema)
    lines: list[str] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        lines += [line for line in _schema_problems(error) if line not in lines]
    if lines:
        raise ValueError("\n".join(lines))


def schema_with_registries(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its defense, table and regime enums, attack/setting patterns and robustness kinds
    taken from the registries (core.defenses.specs, design.paper_tables.TABLES, core.training.config.REGIMES,
    core.attacks.specs, core.attacks.kinds), so a defense, attack or attack kind registered at run time is a
    valid config value. Each robustness kind brings its enum value, its section's schema
    (`RobustKind.config_key`, `.schema`) and the rule that a config naming the kind has that section. The
    schema file lists the built-in ones for its readers; a test keeps them equal."""
    randomized = [name for name, spec in DEFENSES.items() if spec.randomized]
    oblivious = attack_pattern(oblivious_only=True)
    defs = schema["$defs"]
    defs["robust_defense"]["enum"] = randomized
    defs["table"]["enum"] = list(TABLES)
    defs["regime"]["enum"] = list(REGIMES)
    defs["attack"]["pattern"] = f"^({oblivious})$"
    defs["adversarial_attack"]["pattern"] = "^(" + "|".join(p for p in oblivious.split("|") if p != "clean") + ")$"
    defs["setting"]["pattern"] = SETTING_PATTERN
    for section in ("grids", "study"):  # defense -> settings mappings
        schema["properties"][section]["properties"]["settings"]["propertyNames"]["enum"] = randomized
    robustness = schema["properties"]["robustness"]
    robustness["properties"]["kinds"]["items"]["enum"] = list(ROBUST_KINDS)
    sections = {kind.name: kind.config_key for kind in ROBUST_KINDS.values() if kind.config_key}
    shared = set(robustness["properties"]) - set(sections.values())  # the section's own keys (dataset, ...)
    for kind in ROBUST_KINDS.values():
        if kind.config_key in shared:
            raise ValueError(f"attack kind {kind.name!r}: config_key {kind.config_key!r} is a key of robustness: "
                             "itself; name its section after the kind")
        if kind.config_key:
            robustness["properties"][kind.config_key] = copy.deepcopy(dict(kind.schema))
    robustness["allOf"] = [{"if": {"properties": {"kinds": {"contains": {"const": name}}}},
                            "then": {"required": [key]}} for name, key in sections.items()]
    return schema


def _image_size(dataset: dict) -> int:
    if dataset["source"] == "synthetic":
        return dataset.get("synthetic", {}).get("image_size", SYNTHETIC_DEFAULTS["image_size"])
    return dataset.get("image_size", 32)


def check_setting(defense: str, setting: str, *, image_size: int, key: str) -> None:
    """Raise ValueError (prefixed with the config `key`) if a defense setting is malformed or out of
    the valid range its spec declares (core.defenses.specs), window sizes included (<= `image_size`)."""
    try:
        parse_setting(defense, setting, image_size=image_size)
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None


def _folder_test_size(source: str) -> int | None:
    """Files under an image folder's test/ (or <wrapper>/test/) split, without reading them; None
    for an archive or an unexpected layout (the prepare job reports the layout problem)."""
    if not os.path.isdir(source):
        return None
    entries = [e for e in os.listdir(source) if not e.startswith(".")]
    if "test" in entries:
        test = os.path.join(source, "test")
    elif len(entries) == 1 and os.path.isdir(os.path.join(source, entries[0], "test")):
        test = os.path.join(source, entries[0], "test")
    else:
        return None
    count = 0
    for dirpath, dirnames, filenames in os.walk(test):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        count += sum(1 for f in filenames if not f.startswith(".")) if dirpath != test else 0
    return count or None  # an empty split is reported by the prepare job, with its fix


def machine_memory_bytes() -> int:
    """Physical memory of this machine (``os.sysconf``: page size x physical pages)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def check_memory(config: dict[str, Any], memory_bytes: int | None = None) -> None:
    """Raise ValueError naming the key of the first size whose tensors cannot fit in memory.

    Estimates (lower bounds; the jobs need more): a data set costs 5 bytes per pixel value of all
    its images, its uint8 cache plus one float32 copy (synthetic: n_train + n_test images of
    channels x image_size^2; CIFAR: 60,000 images of 3 x image_size^2); a forward chunk
    (defenses.chunk_size), an attack batch (attacks.batch_size) and the MI pool (pool_per_class x
    classes) cost 4 bytes per value of their float32 images. `memory_bytes` defaults to this
    machine's physical memory (`machine_memory_bytes`): the check runs where Snakemake starts, so a
    cluster's compute nodes may hold more or less. Image folders are sized by their prepare job.
    """
    limit = machine_memory_bytes() if memory_bytes is None else memory_bytes

    def fits(key: str, what: str, n_bytes: float, fix: str = "lower it") -> None:
        if n_bytes > limit:
            raise ValueError(f"config key {key}: {what} needs about {_gib(n_bytes)}, more than this machine's "
                             f"{_gib(limit)} of memory; {fix} (or run on a machine with more memory)")

    sizes = []
    for name, ds in config["datasets"].items():
        if ds["source"] == "synthetic":
            opts = {**SYNTHETIC_DEFAULTS, **{"image_size": ds.get("image_size", 32)}, **ds.get("synthetic", {})}
            images, channels, size = opts["n_train"] + opts["n_test"], opts["channels"], opts["image_size"]
            key, fix = f"datasets.{name}.synthetic", "lower n_train, n_test, image_size or channels"
            classes = opts["num_classes"]
        elif ds["source"] in KNOWN_TRAIN_SIZES:
            images = KNOWN_TRAIN_SIZES[ds["source"]] + KNOWN_TEST_SIZES[ds["source"]]
            channels, size, key = 3, ds.get("image_size", 32), f"datasets.{name}.image_size"
            fix = "lower it"
            classes = 100 if ds["source"] == "cifar100" else 10
        else:
            continue
        per_image = channels * size * size
        fits(key, f"{images:,} images of {channels}x{size}x{size} (uint8 cache + one float32 copy)",
             5.0 * images * per_image, fix)
        fits(f"datasets.{name}.pool_per_class", f"an MI pool of {ds['pool_per_class'] * classes:,} float32 images "
             f"of {channels}x{size}x{size}", 4.0 * ds["pool_per_class"] * classes * per_image)
        sizes.append(per_image)
    largest = max(sizes, default=0)
    for key, count in (("defenses.chunk_size", config["defenses"]["chunk_size"]),
                       ("attacks.batch_size", config["attacks"]["batch_size"]),
                       ("training.batch_size", config["training"]["batch_size"])):
        if isinstance(count, int) and not isinstance(count, bool):  # or "auto": sized by the job
            fits(key, f"{count:,} float32 images of {largest:,} values per pass", 4.0 * count * largest)


def _check_eps_step(eps: float, step: float, key: str) -> None:
    if eps < 0 or step <= 0:
        raise ValueError(f"{key}: eps must be >= 0 and step_size > 0 (got eps={eps}, step_size={step})")
    if eps > 0 and step > 2 * eps:
        raise ValueError(f"{key}: step_size={step} is larger than 2 x eps={2 * eps}; use a step size <= 2 x eps "
                         "(paper: 2/255 for 8/255; FGSM with a random start: 1.25 x eps)")


def check_models(config: dict[str, Any]) -> None:
    """Raise ValueError naming the first bad key of the ``models:`` section (models from files), or a
    regime referenced in grids/components/detection/adaptive that is neither trained nor from a file."""
    models = config.get("models") or {}
    for dataset, entries in models.items():
        if dataset not in config["datasets"]:
            raise ValueError(f"models.{dataset}: dataset {dataset!r} is not defined under datasets "
                             f"(defined: {', '.join(config['datasets'])}); fix the name or define it")
        for name, spec in entries.items():
            key = f"models.{dataset}.{name}"
            if spec.get("format") == "state_dict" and "arch" not in spec:
                raise ValueError(f"{key}: format state_dict needs arch (one of {', '.join(MODEL_NAMES)}); add it")
            if not is_url(spec["file"]) and not os.path.isfile(spec["file"]):
                raise ValueError(f"{key}.file: model file {spec['file']!r} does not exist; fix the path, or give "
                                 "a URL to download it from")
    for section in ("grids", "components", "detection"):
        for i, regime in enumerate(config[section]["regimes"]):
            _need_model(config, f"{section}.regimes[{i}]", config[section]["dataset"], regime)
    _need_model(config, "adaptive.regime", config["adaptive"]["dataset"], config["adaptive"]["regime"])


def _need_model(config: dict[str, Any], key: str, dataset: str, regime: str) -> None:
    models = (config.get("models") or {}).get(dataset, {})
    if regime not in REGIMES and regime not in models:
        defined = f" ({', '.join(models)})" if models else ""
        raise ValueError(f"config key {key}: unknown regime {regime!r}; expected one of {', '.join(REGIMES)}, "
                         f"or a model defined under models.{dataset}{defined}")


def check_label_smoothing(training: dict[str, Any]) -> None:
    """Raise ValueError if a regime other than erm would train with label smoothing (mixup's targets
    are already soft; AT and interpolated AT keep the paper's one-hot targets)."""
    for regime, overrides in training["regimes"].items():
        smoothing = {**training, **(overrides or {})}.get("label_smoothing", 0)
        if smoothing and regime != "erm":
            where = "regimes." + regime + "." if "label_smoothing" in (overrides or {}) else ""
            raise ValueError(f"config key training.{where}label_smoothing: {smoothing} would apply to regime {regime}; "
                             "label smoothing is for erm only (mixup's targets are already soft, AT and interpolated "
                             "AT keep the paper's targets): set it under training.regimes.erm")


def check_study(config: dict[str, Any], need_dataset, need_attack) -> None:
    """study: its data set exists, each model is a training regime with a known recipe, and each model's training
    config is valid (TrainConfig's own checks, named by the model); its attacks are crafted, its table configured,
    its settings valid, and each robustness group names study models and needs the robustness: section."""
    spec = config.get("study")
    if not spec:
        return
    size = _image_size(need_dataset("study.dataset", spec["dataset"]))
    for attack in spec["attacks"]:
        need_attack("study.attacks", attack)
    if spec["table"] not in config["tables"]:
        raise ValueError(f"study.table: {spec['table']!r} is not under tables (configured: "
                         f"{', '.join(config['tables'])}); name one of them")
    for defense, settings in (spec.get("settings") or {}).items():
        for i, setting in enumerate(settings):
            check_setting(defense, setting, image_size=size, key=f"study.settings.{defense}[{i}]")
    groups = {(m.regime, m.recipe, m.epochs) for m in study_models(config)}
    for i, (regime, recipe, epochs, defense, setting) in enumerate(spec.get("robustness") or []):
        key = f"study.robustness[{i}]"
        if (regime, recipe, int(epochs)) not in groups:
            raise ValueError(f"{key}: no study model is {StudyModel(regime, recipe, int(epochs), 0).name[:-3]}; "
                             "list it under study.models or fix the group")
        if not config.get("robustness"):
            raise ValueError(f"{key}: the robustness evaluation needs the robustness: section (its attacks and "
                             "budgets); add it or remove study.robustness")
        check_setting(defense, setting, image_size=size, key=key)
    files = config.get("models") or {}
    for model in study_models(config):
        key = f"study.models ({model.name})"
        if model.regime not in REGIMES:
            raise ValueError(f"{key}: {model.regime!r} is not a training regime ({', '.join(REGIMES)}); the study "
                             "trains models, it does not import them")
        try:
            TrainConfig(**study_training(config, model))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{key}: {error}; fix study.recipes.{model.recipe}") from None
        # the run's own model keeps its regime's name: an imported model of that name (the published overlay)
        # is that model, not a clash; a study model of its own name must not be shadowed by an import
        if not is_run_model(config, model) and model.name in files.get(spec["dataset"], {}):
            raise ValueError(f"{key}: models.{spec['dataset']} has a model of the same name; rename one of them")


def check_config(config: dict[str, Any]) -> None:
    """Raise ValueError naming the first inconsistent key of a (schema-valid) workflow config,
    including sizes whose tensors cannot fit in this machine's memory (`check_memory`)."""
    datasets = config["datasets"]
    crafted = set(config["attacks"]["names"])
    _check_eps_step(config["attacks"]["eps"], config["attacks"]["step_size"], "attacks")
    at = config["training"]["at"]
    _check_eps_step(at["eps"], at["step_size"], "training.at")
    check_label_smoothing(config["training"])

    for name, ds in datasets.items():
        source = ds["source"]
        if source == "synthetic":
            test_size = ds.get("synthetic", {}).get("n_test", SYNTHETIC_DEFAULTS["n_test"])
        elif source in KNOWN_TEST_SIZES:
            test_size = KNOWN_TEST_SIZES[source]
        else:
            if not os.path.exists(source):
                raise ValueError(f"datasets.{name}.source: {source!r} is neither a known data set "
                                 f"(cifar10, cifar100, synthetic) nor an existing folder or archive; fix the path")
            test_size = _folder_test_size(source)  # None for an archive: the attack job checks it
        if test_size is not None and ds["n_test"] > test_size:
            raise ValueError(f"datasets.{name}.n_test={ds['n_test']} exceeds the {test_size} images of its test split; "
                             f"use at most {test_size}")

    def need_dataset(key: str, name: str) -> dict:
        if name not in datasets:
            raise ValueError(f"{key}: dataset {name!r} is not defined under datasets (defined: {', '.join(datasets)})")
        return datasets[name]

    def need_attack(key: str, attack: str) -> None:
        parse_attack(attack)
        if attack != "clean" and attack not in crafted:
            raise ValueError(f"{key}: attack {attack!r} is not in attacks.names; add it there or remove it here")

    for table, spec in config["tables"].items():
        need_dataset(f"tables.{table}.dataset", spec["dataset"])
        for attack in spec["attacks"]:
            need_attack(f"tables.{table}.attacks", attack)

    grids = config["grids"]
    size = _image_size(need_dataset("grids.dataset", grids["dataset"]))
    need_attack("grids.attack", grids["attack"])
    for defense, settings in grids["settings"].items():
        for i, setting in enumerate(settings):
            check_setting(defense, setting, image_size=size, key=f"grids.settings.{defense}[{i}]")

    comp = config["components"]
    need_dataset("components.dataset", comp["dataset"])
    need_attack("components.attack", comp["attack"])

    det = config["detection"]
    size = _image_size(need_dataset("detection.dataset", det["dataset"]))
    for attack in det["attacks"]:
        need_attack("detection.attacks", attack)
    check_setting("mi_pl", det["setting"], image_size=size, key="detection.setting")

    ada = config["adaptive"]
    ds = need_dataset("adaptive.dataset", ada["dataset"])
    for attack in ada["attacks"]:
        parse_attack(attack)
    check_setting(ada["defense"], ada["setting"], image_size=_image_size(ds), key="adaptive.setting")
    if ada["n_test"] > ds["n_test"]:
        raise ValueError(f"adaptive.n_test={ada['n_test']} exceeds datasets.{ada['dataset']}.n_test={ds['n_test']}; "
                         "adaptive attacks use a prefix of the run's test subset")
    check_models(config)
    check_study(config, need_dataset, need_attack)
    check_memory(config)
    rob = config.get("robustness")
    if rob is not None:
        need_dataset("robustness.dataset", rob["dataset"])
        for i, item in enumerate(rob["targets"]):
            key = f"robustness.targets[{i}]"
            try:
                targets = robust_target_item(config, item)
            except ValueError as error:  # a table that is not under tables:
                raise ValueError(f"{key}: {error}") from None
            if not targets:  # a filter that leaves nothing is a mistake, not an empty evaluation
                raise ValueError(f"{key}: {item!r} selects no row with a randomized defense of the table as "
                                 "configured under tables:; widen its regimes/defenses or remove it")
            for name, _regime, defense, setting in targets:
                ds = need_dataset(key, name)
                check_setting(defense, setting, image_size=_image_size(ds), key=key)
                if rob["n_test"] > ds["n_test"]:
                    raise ValueError(f"robustness.n_test={rob['n_test']} exceeds datasets.{name}.n_test="
                                     f"{ds['n_test']}; the robust runs use a prefix of the run's test subset")
                if not any(robust_kind(kind).applies_to(defense) for kind in rob["kinds"]):
                    raise ValueError(f"{key}: robustness.kinds={rob['kinds']} has no kind that attacks a randomized "
                                     "defense (only kinds for the bare model); add autoattack_rand, eot_pgd or tramer")
        for name in rob["kinds"]:  # what each kind needs of the section and the config (its spec's check)
            robust_kind(name).check(rob, config)
