"""The robustness evaluation's attack kinds (core.attacks.kinds): a kind registered at run time -- a few
lines of random search, defined in this file only -- is accepted by the config, planned, run by the robust
job on the smoke preset's `robustness:` section, plotted in Fig. 5 with its own label and named in the
provenance; an unknown kind is a one-line config error, never a fallback."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from reliability_helpers import SCHEMA, config_problem, smoke_config

from mixup_inference.core.attacks.kinds import (ROBUST_KINDS, AttackInputs, RobustKind, RobustRun, register_kind,
                                               robust_kind)
from mixup_inference.core.attacks.specs import ADAPTIVE_KINDS, ATTACKS, AttackSpec, register_attack
from mixup_inference.core.data.datasets import load_dataset, to_float
from mixup_inference.core.defenses.specs import apply_defense
from mixup_inference.core.models.files import save_model
from mixup_inference.core.models.networks import build_model
from mixup_inference.design import plan
from mixup_inference.jobs.artifacts import expand_paths
from mixup_inference.design.configcheck import check_config, validate_config
from mixup_inference.jobs.context import JobContext
from mixup_inference.jobs.robust import run_robust
from mixup_inference.jobs.stages import run_prepare
from mixup_inference.report.aggregate import aggregate
from mixup_inference.report.plots import plot_convergence
from mixup_inference.report.provenance import protocol

pytestmark = pytest.mark.usefixtures("single_thread")

LABEL = "random search in the eps-ball"
SOURCE = "uniform noise, the first draw that fools one run of the defense"


# ---------------------------------------------------------------- a researcher's own kind, in this file only
class RandomSearch(RobustKind):
    """Random search: `draws` uniform draws in the eps-ball per point; each point keeps the first draw that
    fools one run of the defense (else its last). Config: robustness.random_search: {draws}; one ladder
    doubling the draws per level."""

    name = "random_search"
    label = LABEL
    config_key = "random_search"
    schema = {"type": "object", "additionalProperties": False, "required": ["draws"],
              "properties": {"draws": {"$ref": "#/$defs/positive_int"}}}
    attack_kind = "random_search"  # its runs are named rs<draws>

    def runs(self, robustness, *, levels, n_samples):
        draws = int(robustness[self.config_key]["draws"])
        return self.ladder(self.name, targeted=False, steps=draws, eot=1, n_samples=n_samples, levels=levels)

    def craft(self, run: RobustRun, inputs: AttackInputs) -> torch.Tensor:
        x, eps = inputs.points, inputs.threat["eps"]
        best, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(run.steps):
            draw = (x + eps * (torch.rand(x.shape, generator=inputs.generator, device=x.device) * 2 - 1)).clamp(0, 1)
            probs = apply_defense(inputs.model, draw, inputs.defense, inputs.setting, pool=inputs.pool,
                                  n_samples=inputs.n_samples, generator=inputs.generator, chunk_size=inputs.chunk_size)
            best[~fooled] = draw[~fooled]
            fooled |= probs.argmax(1) != inputs.labels
        return best

    def provenance(self, run, attacks):
        return {"source": SOURCE}


@pytest.fixture
def random_search():
    register_attack(AttackSpec("random_search", "rs", "RandomSearch"))
    kind = register_kind(RandomSearch())
    yield kind
    for registry in (ROBUST_KINDS, ADAPTIVE_KINDS, ATTACKS):
        del registry["random_search"]


def _smoke_with(kinds: list[str]) -> dict:
    config = smoke_config()
    config["robustness"] |= {"kinds": kinds, "random_search": {"draws": 3}}
    return config


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory):
    """The smoke preset's data set and a tiny_cnn trained on it for two epochs (some points robust, some not)."""
    config, root = smoke_config(), tmp_path_factory.mktemp("kinds")
    spec = config["datasets"]["synth"]
    run_prepare("synthetic", root / "data.pt", synthetic=spec["synthetic"], seed=config["seed"])
    data = load_dataset(root / "data.pt")
    torch.manual_seed(0)
    model = build_model(config["model"], data.num_classes, data.in_channels)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = to_float(data.train_x), data.train_y
    for _ in range(2):
        for i in range(0, len(y), 64):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    model.eval()
    save_model(model, root / "model.pt", model_name=config["model"], num_classes=data.num_classes,
               in_channels=data.in_channels)
    return root


def test_a_kind_registered_at_run_time_is_planned_run_plotted_and_named_in_provenance(random_search, smoke_model,
                                                                                   tmp_path):
    config = _smoke_with(["eot_pgd", "random_search"])
    validate_config(config, SCHEMA)  # the schema's enum and the kind's section come from the registry
    check_config(config)
    rob = config["robustness"]

    # planned: its ladder (draws doubled per level) among the built-in kind's runs, level by level, cheapest first
    runs = plan.robust_runs(rob)
    ours = [run for run in runs if run.kind == "random_search"]
    assert [(run.attack, run.steps, run.n_samples_attack, run.level) for run in ours] == \
        [("rs3", 3, rob["n_samples"], 0), ("rs6", 6, rob["n_samples"], 1), ("rs12", 12, rob["n_samples"], 2)]
    assert {run.kind for run in runs} == {"eot_pgd", "random_search"}
    assert [(run.level, run.cost) for run in runs] == sorted((run.level, run.cost) for run in runs)

    # run by the robust job on the smoke preset's section and job settings, as the workflow's robust rule runs it
    dataset, regime, defense, setting = next(t for t in plan.robust_targets(config) if t[2] == "mi_ol")
    spec, attacks = config["datasets"][dataset], config["attacks"]
    job = JobContext(seed=config["seed"], device=config["device"], batch_size=attacks["batch_size"],
                     chunk_size=config["defenses"]["chunk_size"], n_samples=config["defenses"]["n_samples"],
                     pool_per_class=spec["pool_per_class"], n_subset=spec["n_test"])
    out = tmp_path / "robust"
    outcomes = run_robust(str(smoke_model / "data.pt"), str(smoke_model / "model.pt"), out,
                          target=(dataset, regime, defense, setting), robustness=rob, job=job,
                          attack={"eps": attacks["eps"], "step_size": attacks["step_size"], "labels": attacks["labels"]})
    schedule = json.loads((out / "schedule.json").read_text())
    assert [r["kind"] for r in schedule["runs"]] == [o.run.kind for o in outcomes]
    ran = [o for o in outcomes if o.run.kind == "random_search" and o.ran]
    assert ran and all((out / o.run.file).exists() for o in ran)

    # aggregated into results.csv rows of its own, plotted in Fig. 5 with its label
    results, _, _ = aggregate(expand_paths([out / "schedule.json"]))
    rows = results[results.adaptive == "random_search"]
    assert sorted(rows.attack) == sorted(o.run.attack for o in ran)
    assert (rows.n == rob["n_test"]).all()
    paths = plot_convergence(results, tmp_path / "fig5")
    svg = next(path for path in paths if path.suffix == ".svg").read_text()
    assert LABEL in svg and "EOT PGD-2" in svg  # its family's legend entry beside the built-in kind's

    # named in the provenance, with what its kind adds
    budget = protocol(config)["attack_budgets"]["robustness"]["runs"]
    named = [run for run in budget if run["kind"] == "random_search"]
    assert [run["attack"] for run in named] == ["rs3", "rs6", "rs12"] and all(run["source"] == SOURCE for run in named)


def test_the_registered_kinds_random_search_stays_in_the_eps_ball(random_search, smoke_model):
    data = load_dataset(smoke_model / "data.pt")
    model = build_model("tiny_cnn", data.num_classes, data.in_channels).eval()
    x = to_float(data.test_x[:6])
    (run,) = plan.robust_runs({"kinds": ["random_search"], "n_samples": 1, "random_search": {"draws": 4}})
    inputs = AttackInputs(model=model, x=x, idx=torch.arange(1, 6), labels=data.test_y[1:6], threat={"eps": 0.05},
                          defense="gaussian", setting="sigma=0.1", pool=(x, data.test_y[:6]), n_samples=1,
                          batch_size=6, chunk_size=None, generator=torch.Generator().manual_seed(0), seed=0,
                          name=("random_search", run.attack, 1, "gaussian", "sigma=0.1"))
    x_adv = random_search.craft(run, inputs)
    assert x_adv.shape == (5, *x.shape[1:])
    assert (x_adv - x[1:6]).abs().max() <= 0.05 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x[1:6])


def test_an_unknown_kind_is_a_one_line_config_error_and_no_fallback():
    config = smoke_config()
    config["robustness"]["kinds"] = ["eot_pgd", "random_serach"]
    message = config_problem(config)
    assert message == ("config key robustness.kinds[1]: unknown attack kind 'random_serach'; expected one "
                       f"of {', '.join(ROBUST_KINDS)}")
    with pytest.raises(ValueError, match=r"robustness kind 'random_serach' is unknown; use one of .*register_kind"):
        plan.robust_runs({**smoke_config()["robustness"], "kinds": ["random_serach"]})
    with pytest.raises(ValueError, match="is unknown"):
        robust_kind("random_serach")


def test_a_kind_needs_its_own_section_only_when_named():
    config = smoke_config()
    rob = config["robustness"]
    del rob["autoattack"], rob["eot_pgd"]
    rob["kinds"] = ["tramer"]  # a kind without config keys: neither section is needed
    validate_config(config, SCHEMA)
    rob["kinds"] = ["tramer", "eot_pgd"]
    assert config_problem(config) == ("config key robustness.eot_pgd is missing; add it (config/config.yaml shows "
                                      "every key)")


def test_every_built_in_kind_plans_and_prices_its_runs():
    rob = smoke_config()["robustness"]
    for name, kind in ROBUST_KINDS.items():
        runs = kind.runs(rob, levels=2, n_samples=3)
        assert runs and all(run.kind == name and run.cost == kind.cost(run) > 0 for run in runs)
        assert kind.fixed == (len(runs) == 1 and not runs[0].ladder)
        assert all(kind.family_label(kind.family({"level": run.level, "targeted": run.targeted, "steps": run.steps,
                                                  "eot": run.eot})) for run in runs)
        assert all(kind.applies_to("none") == kind.deterministic != kind.applies_to("mi_ol") for run in runs)


def _job(config: dict) -> JobContext:
    spec, attacks = config["datasets"]["synth"], config["attacks"]
    return JobContext(seed=config["seed"], device=config["device"], batch_size=attacks["batch_size"],
                      chunk_size=config["defenses"]["chunk_size"], n_samples=config["defenses"]["n_samples"],
                      pool_per_class=spec["pool_per_class"], n_subset=spec["n_test"])


def test_the_bare_model_faces_the_deterministic_kinds_with_one_verdict(smoke_model, tmp_path):
    """Issue 33: the bare model's robust job runs AutoAttack standard and PGD (the randomized-defense kinds are
    skipped), level by level, judged by one verdict (a deterministic model's R runs would agree); its worst case
    is a results.csv row, whose mean-over-R accuracy then equals the all-R one."""
    config = smoke_config()
    rob, attacks = config["robustness"], config["attacks"]
    target = next(t for t in plan.robust_targets(config) if t[2] == "none")
    out = tmp_path / "bare"
    outcomes = run_robust(str(smoke_model / "data.pt"), str(smoke_model / "model.pt"), out, target=target,
                          robustness=rob, job=_job(config),
                          attack={"eps": attacks["eps"], "step_size": attacks["step_size"], "labels": attacks["labels"]})
    assert {o.run.kind for o in outcomes} == {"autoattack_standard", "pgd_bare"}
    assert [o.run.level for o in outcomes] == sorted(o.run.level for o in outcomes)
    assert json.loads((out / "schedule.json").read_text())["repeats"] == 1
    results, _, _ = aggregate(expand_paths([out / "schedule.json"]))
    runs = results[results.adaptive.isin(["autoattack_standard", "pgd_bare"])]
    assert len(runs) == sum(o.ran for o in outcomes) and (runs.repeats == 1).all() and (runs.eot == 1).all()
    (worst,) = results[results.adaptive == "worst_case"].to_dict("records")
    assert (worst["defense"], worst["repeats"], worst["n"]) == ("none", 1, rob["n_test"])
    assert worst["mean_accuracy"] == pytest.approx(worst["accuracy"]) and worst["evaluations"] == len(runs)


def test_autoattack_standard_stays_in_the_eps_ball_and_breaks_a_weak_model(smoke_model):
    from mixup_inference.core.attacks.kinds.autoattack_standard import autoattack_standard

    from mixup_inference.core.models.files import load_model

    data = load_dataset(smoke_model / "data.pt")
    model = load_model(smoke_model / "model.pt", torch.device("cpu"), num_classes=data.num_classes).eval()
    x, y = to_float(data.test_x[:16]), data.test_y[:16]
    before = torch.get_rng_state()
    x_adv = autoattack_standard(model, x, y, eps=8 / 255, seed=0, n_iter=3, n_queries=10, batch_size=16)
    assert torch.equal(torch.get_rng_state(), before)  # its seeding happens in a fork of the global generator
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == y).sum() < (model(x).argmax(1) == y).sum()
    # 3 classes: APGD-T's loss needs 4 logits, so it is left out and the other three attacks run
    three = build_model("tiny_cnn", 3, data.in_channels).eval()
    x_adv = autoattack_standard(three, x, y % 3, eps=8 / 255, seed=0, n_iter=1, n_queries=2)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
