"""Issue 25: the robust job's cascade, convergence schedule, R verdict runs and Tramer et al.'s run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixup_inference.core.data.datasets import load_dataset, prepare_dataset, to_float
from mixup_inference.core.attacks.defended import TRAMER_2020, repeated_verdicts
from mixup_inference.core.models.files import save_model
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.utils import make_generator
from mixup_inference.jobs import artifacts
from mixup_inference.jobs.artifacts import correct_points, expand_paths, repeat_accuracy
from mixup_inference.jobs.cascade import run_schedule
from mixup_inference.design.plan import robust_runs
from mixup_inference.jobs.context import JobContext
from mixup_inference.jobs.robust import run_robust
from mixup_inference.report.aggregate import aggregate, worst_case_rows

pytestmark = pytest.mark.usefixtures("single_thread")

EPS, STEP = 8 / 255, 2 / 255


def _robustness(**overrides) -> dict:
    base = {"dataset": "synth", "targets": [["mixup", "gaussian", "sigma=0"]], "kinds": ["eot_pgd"], "n_test": 24,
            "n_samples": 1, "autoattack": {"n_iter": 2, "eot_iter": 1, "n_restarts": 1},
            "eot_pgd": {"steps": [1], "eot": [1], "targeted": [False, True]},
            "convergence": {"levels": 3, "tolerance": 0.0}, "repeats": 2}
    return base | overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained for a few epochs on synthetic data (so some points are robust, some not)."""
    root = tmp_path_factory.mktemp("cascade")
    data_path, model_path = root / "data.pt", root / "model.pt"
    prepare_dataset("synthetic", data_path, synthetic={"n_train": 400, "n_test": 60, "num_classes": 4,
                                                       "image_size": 16, "channels": 3}, seed=0)
    data = load_dataset(data_path)
    torch.manual_seed(0)
    model = build_model("tiny_cnn", data.num_classes, data.in_channels)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = to_float(data.train_x), data.train_y
    for _ in range(8):
        for i in range(0, len(y), 64):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    model.eval()
    save_model(model, model_path, model_name="tiny_cnn", num_classes=data.num_classes, in_channels=data.in_channels)
    return root, data_path, model_path


def _run(trained, out, robustness, **kwargs):
    _root, data_path, model_path = trained
    return run_robust(str(data_path), str(model_path), out, target=("synth", "mixup", *robustness["targets"][0][1:]),
                      robustness=robustness, attack={"eps": EPS, "step_size": STEP, "labels": "true"},
                      job=JobContext(n_subset=40, n_samples=2, chunk_size=None, pool_per_class=10, batch_size=7,
                                     seed=0, device="cpu"), **kwargs)


def _worst(out) -> torch.Tensor:
    arts = [artifacts.load(p) for p in expand_paths([out / "schedule.json"])]
    survives = torch.stack([correct_points(a) for a in arts]).all(0)
    rows = worst_case_rows(arts)
    assert rows and rows[0]["correct"] == int(survives.sum())
    return survives


def test_cascade_and_every_run_on_every_point_give_identical_per_point_worst_cases(trained, tmp_path):
    # Gaussian noise with sigma 0 is a randomized defense whose draws do not change its output: the
    # attacks and verdicts are then functions of each point alone, so the two modes must agree exactly
    # (batch size 7 splits the points differently in the two modes).
    rob = _robustness()
    cascaded = _run(trained, tmp_path / "cascade", rob)
    full = _run(trained, tmp_path / "full", {**rob, "cascade": False})
    assert torch.equal(_worst(tmp_path / "cascade"), _worst(tmp_path / "full"))
    assert [r.ran for r in cascaded] == [r.ran for r in full]
    assert [r.survivors for r in cascaded] == [r.survivors for r in full]
    assert sum(r.attacked for r in cascaded) < sum(r.attacked for r in full)


def test_a_runs_artifact_lists_exactly_the_points_it_attacked(trained, tmp_path):
    rob = _robustness(convergence={"levels": 2, "tolerance": 0.0})
    results = _run(trained, tmp_path, rob)
    alive = torch.ones(24, dtype=torch.bool)
    for record in results:
        if not record.ran:
            continue
        art = artifacts.load(tmp_path / record.run.file)
        assert torch.equal(art["attacked"], alive)  # exactly the survivors of every earlier run
        assert torch.isnan(art["probs"][~alive]).all() and not torch.isnan(art["probs"][alive]).any()
        assert art["repeat_correct"].shape == (2, 24)
        alive = alive & correct_points(art)
    schedule = json.loads((tmp_path / "schedule.json").read_text())
    assert schedule["runs"][-1]["survivors"] == int(alive.sum())


def _fake_runs(levels: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(family="f", level=k, ladder=True, file=f"f{k}") for k in range(levels)]


def _breaks(per_level):
    """A fake attack whose level k breaks exactly the points per_level[k]."""
    def attack(run, idx):
        return ~torch.isin(idx, torch.tensor(per_level[run.level], dtype=torch.long))
    return attack


def test_converged_needs_two_consecutive_doublings_within_the_tolerance():
    """Issue 33: one flat doubling is not convergence. A fake attack that breaks a point only at the third level
    keeps the result an upper bound after two levels (and the third level runs and finds the point)."""
    alive = torch.ones(10, dtype=torch.bool)
    late = _breaks([[0], [0], [1]])  # level 1 changes nothing, level 2 breaks point 1
    out = run_schedule(_fake_runs(2), alive, late, cascade=True, tolerance=0.0)
    assert [r.ran for r in out] == [True, True] and out[-1].converged is False  # one flat doubling: an upper bound
    out = run_schedule(_fake_runs(3), alive, late, cascade=True, tolerance=0.0)
    assert [r.ran for r in out] == [True, True, True] and [r.new_broken for r in out] == [1, 0, 1]
    assert [r.converged for r in out] == [False, False, False] and out[-1].survivors == 8
    # levels 1 and 2 both flat: converged at level 2, level 3 skipped
    out = run_schedule(_fake_runs(4), alive, _breaks([[0], [0], [0], [5]]), cascade=True, tolerance=0.0)
    assert [r.ran for r in out] == [True, True, True, False] and [r.converged for r in out] == [False, False, True, True]
    # a flat doubling, a moving one, then a flat one: the two flat ones are not consecutive, not converged
    out = run_schedule(_fake_runs(4), alive, _breaks([[0], [0], [1], [1]]), cascade=True, tolerance=0.0)
    assert all(r.ran for r in out) and [r.converged for r in out] == [False, False, False, False]


def test_convergence_stops_when_two_doublings_change_nothing_and_goes_on_when_one_does():
    alive = torch.ones(10, dtype=torch.bool)
    # level 1 breaks more: go on; levels 2 and 3 break nothing new -> converged at level 3, level 4 skipped
    out = run_schedule(_fake_runs(5), alive, _breaks([[0], [1], [1], [1], [3]]), cascade=True, tolerance=0.0)
    assert [r.ran for r in out] == [True, True, True, True, False]
    assert [r.converged for r in out[:4]] == [False, False, False, True] and out[3].survivors == 8
    # a cap reached while still falling: not converged (an upper bound)
    out = run_schedule(_fake_runs(3), alive, _breaks([[0], [1], [2]]), cascade=False, tolerance=0.0)
    assert out[-1].ran and out[-1].converged is False
    # the tolerance: one point's worth on 10 points; two doublings of one point each converge
    out = run_schedule(_fake_runs(4), alive, _breaks([[0], [1], [2], [3]]), cascade=True, tolerance=0.1)
    assert [r.ran for r in out] == [True, True, True, False] and out[2].converged is True


class _Margin(nn.Module):
    """A model where a longer attack is known to do better: logit(class 0) - logit(class 1) = s * (mean(x) - 0.5),
    so each signed PGD step (step size h, away from class 0) lowers the margin by s * h; a point with
    mean(x) - 0.5 between h and 2h is broken by 2 steps and not by 1."""

    def forward(self, x):
        z = 100.0 * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([z, -z], 1)


def test_convergence_on_a_model_where_longer_attacks_do_better(tmp_path):
    from mixup_inference.core.attacks.defended import eot_pgd_through_defense

    h = 0.01
    offsets = torch.tensor([0.5 * h, 1.5 * h, 1.5 * h, 3.5 * h, 20.0 * h])  # broken at 1, 2, 2, 4 steps; not in 16
    x = (0.5 + offsets).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    y = torch.zeros(5, dtype=torch.long)
    model = _Margin()

    def attack(run, idx):
        if not len(idx):
            return torch.zeros(0, dtype=torch.bool)
        x_adv = eot_pgd_through_defense(model, x[idx], y[idx], "gaussian", "sigma=0", n_samples=1, eot=1,
                                        eps=1.0, step_size=h, steps=run.steps, random_start=False,
                                        generator=make_generator(0))
        return model(x_adv).argmax(1) == y[idx]

    runs = [SimpleNamespace(family="pgd", level=k, ladder=True, steps=2 ** k, file=str(k)) for k in range(6)]
    out = run_schedule(runs, torch.ones(5, dtype=torch.bool), attack, cascade=True, tolerance=0.0)
    # 1 step breaks 1, 2 steps 2 more, 4 steps 1 more, 8 and 16 steps nothing new: converged at 16 steps
    # (two flat doublings), 32 skipped
    assert [r.new_broken for r in out[:5]] == [1, 2, 1, 0, 0]
    assert [r.ran for r in out] == [True] * 5 + [False] and [r.converged for r in out[3:5]] == [False, True]


def test_repeated_verdicts_differ_and_one_wrong_draw_makes_a_point_not_robust(trained):
    _root, data_path, _ = trained
    data = load_dataset(data_path)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    x = to_float(data.test_x[:8])
    probs = repeated_verdicts(model, x, "gaussian", "sigma=0.5", repeats=3, n_samples=2,
                              generator=make_generator(0))
    assert probs.shape == (3, 8, 4)
    assert not torch.allclose(probs[0], probs[1]) and not torch.allclose(probs[1], probs[2])
    # a point right in two verdict runs and wrong in one is not robust; the mean counts 2/3 of it
    attacked = torch.tensor([True, True, False])
    repeat_correct = torch.tensor([[True, True, False], [True, False, False], [True, True, False]])
    art = {"probs": torch.full((3, 2), 0.5), "plain_probs": torch.full((3, 2), 0.5), "y": torch.zeros(3, dtype=torch.long),
           "attacked": attacked, "repeat_correct": repeat_correct}
    assert correct_points(art).tolist() == [True, False, False]
    assert repeat_accuracy(art) == pytest.approx(5 / 9)


def test_tramer_run_has_the_papers_parameters():
    (run,) = [r for r in robust_runs(_robustness(kinds=["tramer"])) if r.kind == "tramer"]
    assert (run.extra("defense"), run.extra("setting"), run.n_samples_attack) == ("mi_ol", "lam=0.6", 15)
    assert (run.attack, run.steps, run.eot, run.targeted, run.extra("labels")) == ("pgd50", 50, 1, False, "true")
    assert run.extra("step_size") == pytest.approx(0.5 / 255) and run.extra("eps") == pytest.approx(8 / 255)
    assert not run.ladder and TRAMER_2020["n_samples"] == 15


def test_runs_go_level_by_level_cheapest_first_and_ladders_double_steps_and_draws():
    """Issue 33: a level-k run never comes after a level-(k+1) one, so the worst case after level k is every run
    of levels <= k whatever their costs (Tramer et al.'s fixed run, cost 750, is level 0)."""
    runs = robust_runs(_robustness(kinds=["autoattack_rand", "eot_pgd", "tramer"]))
    assert [(r.level, r.cost) for r in runs] == sorted((r.level, r.cost) for r in runs)
    assert [r.level for r in runs] == sorted(r.level for r in runs)
    tramer = next(i for i, r in enumerate(runs) if r.kind == "tramer")
    assert runs[tramer].level == 0 and any(r.cost < runs[tramer].cost for r in runs[tramer + 1:])
    ladder = [r for r in runs if r.family == "autoattack_rand"]
    assert [(r.steps, r.eot, r.n_samples_attack) for r in ladder] == [(2, 1, 1), (4, 2, 1), (8, 4, 1)]
    assert len({r.file for r in runs}) == len(runs)


def test_aggregate_reads_the_schedule_and_reports_the_new_columns(trained, tmp_path):
    _run(trained, tmp_path, _robustness(convergence={"levels": 2, "tolerance": 0.0}))
    results, _, _ = aggregate(expand_paths([tmp_path / "schedule.json"]))
    assert {"attacked", "repeats", "mean_accuracy", "level", "converged", "eot", "evaluations"} <= set(results.columns)
    worst = results[results.attack == "worst_case"].iloc[0]
    runs = results[results.attack != "worst_case"]
    assert worst["correct"] == runs["correct"].min()  # cascade rows count skipped points as broken
    assert (runs["repeats"] == 2).all()
