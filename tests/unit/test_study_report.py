"""The training study's report (report.study) on artifacts whose answers are known by construction."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from mixup_inference.design.study import StudyModel
from mixup_inference.report.study import (StudyEntry, length_trend, paper_gains, recipe_comparison,
                                          seed_point_bootstrap, seed_spread, study_rows, write_study)
from mixup_inference.core.utils import make_generator

N, C = 200, 4
Y = torch.arange(N) % C


def _probs(correct: torch.Tensor) -> torch.Tensor:
    """One-hot probabilities on the true class where correct, on the next class elsewhere."""
    return torch.nn.functional.one_hot(torch.where(correct, Y, (Y + 1) % C), C).float()


def _mask(k: int, offset: int = 0) -> torch.Tensor:
    return (torch.arange(N) + offset) % N < k


def _artifact(name, attack, defense, setting, defended, plain, adaptive="none"):
    return {"probs": _probs(defended), "plain_probs": _probs(plain), "y": Y.clone(),
            "meta": {"dataset": "d", "regime": name, "attack": attack, "defense": defense, "setting": setting,
                     "adaptive": adaptive, "n_adaptive": 0}}


def _entry(regime, recipe, epochs, seed, *, name=None, seconds=10.0, acc=0.8):
    model = StudyModel(regime, recipe, epochs, seed)
    return StudyEntry(model, name or model.name, {"test": {"accuracy": acc}, "train": {"seconds_per_epoch": seconds}})


def _pair(name, attack, setting, defended_k, plain_k):
    plain = _mask(plain_k)
    return [_artifact(name, attack, "mi_ol", setting, _mask(defended_k), plain),
            _artifact(name, attack, "none", "plain", plain, plain)]


def test_seed_point_bootstrap_brackets_a_constant_difference_and_widens_with_seed_spread():
    same = torch.ones(3, 100).long() * torch.tensor([1] * 20 + [0] * 80)
    boot = seed_point_bootstrap(same, generator=make_generator(0))
    assert boot["mean"] == pytest.approx(0.2) and boot["low"] < 0.2 < boot["high"] and boot["p"] < 0.01
    spread = torch.stack([torch.tensor([1] * k + [0] * (100 - k)) for k in (0, 20, 40)]).long()
    wide = seed_point_bootstrap(spread, generator=make_generator(0))
    assert wide["mean"] == pytest.approx(0.2) and wide["high"] - wide["low"] > boot["high"] - boot["low"]
    nothing = seed_point_bootstrap(torch.zeros(3, 100).long(), generator=make_generator(0))
    assert nothing["p"] == 1.0


def test_seed_spread_says_which_differences_survive():
    entries = [_entry("mixup", "preset", 40, s, name="mixup" if s == 0 else None) for s in (0, 1, 2)]
    artifacts = []
    for e in entries:
        artifacts += _pair(e.name, "pgd10", "lam=0.5", 60, 20)  # +20 points every seed
        plain = _mask(20)
        artifacts.append(_artifact(e.name, "pgd10", "mi_combined", "pl=0.5_ol=0.4_th=0.2", plain, plain))  # 0
    frame = seed_spread(entries, artifacts)
    rows = {r["defense"]: r for r in frame.to_dict("records")}
    assert rows["mi_ol"]["per_seed"] == "+20.00 +20.00 +20.00" and rows["mi_ol"]["sd"] == 0
    assert bool(rows["mi_ol"]["survives"]) and not bool(rows["mi_combined"]["survives"])
    assert rows["mi_ol"]["seeds"] == "0 1 2" and rows["mi_ol"]["n"] == N


def test_length_trend_slope_and_the_epochs_the_paper_gain_needs():
    entries = [_entry("mixup", "preset", e, 0) for e in (10, 20, 40, 80)]
    artifacts = []
    for e, gain in zip(entries, (4, 8, 12, 16)):  # +4 points per doubling, from +4 at 10 epochs
        artifacts += _pair(e.name, "pgd10", "lam=0.5", 20 + 2 * gain, 20)
        artifacts.append(_artifact(e.name, "clean", "mi_ol", "lam=0.5", _mask(100), _mask(100)))
    rows, trends = length_trend(entries, artifacts, {"mixup": 22.5})
    assert list(rows["gain"]) == [4.0, 8.0, 12.0, 16.0] and list(rows["f_y_0.5"]) == [0.5] * 4
    assert math.isnan(rows["f_y_1"].iloc[0])
    t = trends.iloc[0]
    assert t["slope_per_doubling"] == pytest.approx(4.0) and t["slope_low"] <= 4.0 <= t["slope_high"]
    # 4 + 4 log2(e / 10) = 22.5  ->  e = 10 x 2^4.625 = 247
    assert t["epochs_for_paper_gain"] == pytest.approx(10 * 2 ** 4.625, abs=1)
    falling = [_entry("mixup", "preset", e, 0) for e in (10, 20, 40)]
    artifacts = sum((_pair(e.name, "pgd10", "lam=0.5", 20 + 2 * g, 20) for e, g in zip(falling, (12, 8, 4))), [])
    _, trends = length_trend(falling, artifacts, {"mixup": 22.5})
    assert trends.iloc[0]["slope_per_doubling"] < 0 and math.isnan(trends.iloc[0]["epochs_for_paper_gain"])


def test_recipe_decision_needs_higher_pgd_accuracy_at_no_more_cost_in_every_regime():
    entries = [_entry("at", "preset", 10, 0, name="at", seconds=100), _entry("at", "fgsm_rs", 10, 0, seconds=70),
               _entry("interpolated_at", "preset", 10, 0, name="interpolated_at", seconds=100),
               _entry("interpolated_at", "fgsm_rs", 10, 0, seconds=70)]
    accuracy = {"at": 40, "at-fgsm_rs-e10-s0": 50, "interpolated_at": 40, "interpolated_at-fgsm_rs-e10-s0": 30}
    artifacts = [_artifact(n, "pgd10", "none", "plain", _mask(k), _mask(k)) for n, k in accuracy.items()]
    frame, decision = recipe_comparison(entries, artifacts)
    assert list(frame["regime"]) == ["at", "interpolated_at"] and not decision["switch"]
    assert list(frame["difference"]) == [5.0, -5.0]
    frame, decision = recipe_comparison(entries[:2], artifacts)
    assert decision["switch"] and "at: pgd10 25.0% vs 20.0%" in decision["reason"]
    collapsed = [_artifact("at-fgsm_rs-e10-s0", "pgd10", "none", "plain", _mask(2), _mask(2)), artifacts[0]]
    frame, decision = recipe_comparison(entries[:2], collapsed)
    assert bool(frame["collapsed"].iloc[0]) and not decision["switch"]


def test_rows_and_page_hold_every_model_and_the_worst_case(tmp_path):
    entries = [_entry("interpolated_at", "preset", 10, s, name="interpolated_at" if s == 0 else None) for s in (0, 1)]
    artifacts = []
    for e in entries:
        artifacts += _pair(e.name, "pgd10", "lam=0.6", 80, 50)
        artifacts.append(_artifact(e.name, "pgd10", "mi_ol", "lam=0.6", _mask(40), _mask(50), adaptive="eot_pgd"))
    rows = study_rows(entries, artifacts)
    worst = rows[rows["attack"] == "worst_case"]
    assert list(worst["accuracy"]) == [20.0, 20.0] and list(worst["bare"]) == [25.0, 25.0]  # 40 of 200 vs 50
    assert set(rows["model"]) == {"interpolated_at", "interpolated_at-preset-e10-s1"}
    paths = write_study(entries, artifacts, tmp_path, paper_gains=paper_gains("table2"))
    text = paths["md"].read_text()
    assert "## 1. Seeds" in text and "worst_case" in text and "interpolated_at +17.8" in text
    assert len(pd.read_csv(paths["csv"])) == len(rows)


def test_paper_gains_of_a_column_the_paper_lacks_are_none():
    assert paper_gains("table2", "pgd5") == {}
    assert paper_gains("table2", "pgd10") == {"mixup": 22.5, "interpolated_at": 17.8}
