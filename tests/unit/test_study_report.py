"""The training study's report (report.study) on artifacts whose answers are known by construction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mixup_inference.design.study import StudyModel
from mixup_inference.report.study import (StudyEntry, headline_settings, length_trend, paper_gains, recipe_comparison,
                                          seed_point_bootstrap, seed_spread, study_rows, training_curves, write_study)
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


def test_seed_spread_keeps_only_the_tables_mi_rows_when_told():
    """Fig. 2's F_y settings (MI-OL at lambda 1 equals the bare model) are no claim: with Table 2's MI rows as the
    headline, only the table's settings enter the section (and its Holm family)."""
    entries = [_entry("mixup", "preset", 40, s, name="mixup" if s == 0 else None) for s in (0, 1, 2)]
    artifacts = []
    for e in entries:
        artifacts += _pair(e.name, "pgd10", "lam=0.5", 60, 20)
        plain = _mask(20)
        artifacts.append(_artifact(e.name, "pgd10", "mi_ol", "lam=1", plain, plain))
    headline = headline_settings("table2")
    assert ("mixup", "mi_ol", "lam=0.5") in headline and ("mixup", "mi_ol", "lam=1") not in headline
    every = seed_spread(entries, artifacts)
    table = seed_spread(entries, artifacts, headline=headline)
    assert set(every["setting"]) == {"lam=0.5", "lam=1"} and list(table["setting"]) == ["lam=0.5"]
    assert headline_settings("no_such_table") is None


def test_seed_spread_keeps_only_the_studys_attacks_when_told():
    """The robustness evaluation's cascade evaluates its targets under every attack of the run: those extra columns
    must not enter the seed section (they would grow the Holm family of every other claim)."""
    entries = [_entry("mixup", "preset", 40, s, name="mixup" if s == 0 else None) for s in (0, 1, 2)]
    artifacts = []
    for e in entries:
        artifacts += _pair(e.name, "pgd10", "lam=0.5", 60, 20) + _pair(e.name, "pgd200", "lam=0.5", 60, 20)
    assert set(seed_spread(entries, artifacts)["attack"]) == {"pgd10", "pgd200"}
    assert list(seed_spread(entries, artifacts, attacks=["clean", "pgd10"])["attack"]) == ["pgd10"]


def test_seed_spread_sets_each_defenses_worst_case_against_its_bare_model_and_never_the_bare_model_itself():
    """With the bare model under the robustness evaluation too (the run's bare targets), the bare model's own worst
    case is 0 against itself by construction: not a claim, so not in the section's Holm family."""
    entries = [_entry("interpolated_at", "preset", 10, s, name="interpolated_at" if s == 0 else None) for s in (0, 1)]
    artifacts = []
    for e in entries:
        artifacts += _pair(e.name, "pgd10", "lam=0.6", 80, 50)
        artifacts.append(_artifact(e.name, "pgd10", "mi_ol", "lam=0.6", _mask(40), _mask(50), adaptive="eot_pgd"))
        artifacts.append(_artifact(e.name, "pgd10", "none", "plain", _mask(30), _mask(30), adaptive="autoattack_standard"))
    worst = seed_spread(entries, artifacts, headline=headline_settings("table2"))
    worst = worst[worst["attack"] == "worst_case"]
    assert list(worst["defense"]) == ["mi_ol"] and list(worst["per_seed"]) == ["+5.00 +5.00"]  # 40 vs 30 of 200


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


# ------------------------------------------------------------------ the training-length section's figures
def _lengths(regime: str, epochs: tuple[int, ...], gains: tuple[int, ...], *, f_y_1: bool = True) -> list[dict]:
    """Artifacts of `regime`'s preset models at `epochs` with MI-OL gaining `gains` points under PGD-10, F_y at
    lambda 0.5 (and 1 if `f_y_1`) rising with the gain."""
    artifacts = []
    for e, gain in zip(epochs, gains):
        name = StudyModel(regime, "preset", e, 0).name
        artifacts += _pair(name, "pgd10", "lam=0.5", 20 + 2 * gain, 20)
        artifacts.append(_artifact(name, "clean", "mi_ol", "lam=0.5", _mask(100 + gain), _mask(100)))
        if f_y_1:
            artifacts.append(_artifact(name, "clean", "mi_ol", "lam=1", _mask(150 + gain), _mask(100)))
    return artifacts


def _panels(fig) -> dict[str, object]:
    return {ax.get_title().split(",")[0]: ax for ax in fig.axes if ax.get_visible()}


def test_study_figures_draw_the_frames_intervals_trend_and_paper_gain():
    from matplotlib.container import ErrorbarContainer

    from mixup_inference.report.plots.study import gain_vs_epochs_figure, gain_vs_fy_figure

    epochs = {"mixup": (10, 20, 40, 80), "interpolated_at": (5,)}
    entries = [_entry(r, "preset", e, 0) for r, es in epochs.items() for e in es]
    artifacts = _lengths("mixup", (10, 20, 40, 80), (4, 8, 12, 16)) + _lengths("interpolated_at", (5,), (6,),
                                                                                f_y_1=False)
    gains = {"mixup": 22.5, "interpolated_at": 17.8}
    lengths, trends = length_trend(entries, artifacts, gains)
    panels = _panels(gain_vs_epochs_figure(lengths, trends, gains))
    assert set(panels) == {"Mixup", "Interpolated AT"}
    for regime, label in (("mixup", "Mixup"), ("interpolated_at", "Interpolated AT")):
        ax, rows = panels[label], lengths[lengths["regime"] == regime].sort_values("epochs")
        (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        data, _, (vertical,) = bars.lines
        assert data.get_xydata().tolist() == [[e, g] for e, g in zip(rows["epochs"], rows["gain"])]
        # each error bar spans the frame's paired interval
        spans = [[s[0][1], s[1][1]] for s in vertical.get_segments()]
        assert np.allclose(spans, rows[["gain_low", "gain_high"]].values, rtol=0, atol=1e-9)
        (paper,) = [line for line in ax.lines if line.get_gid() == "paper_gain"]
        (star,) = [line for line in ax.lines if line.get_gid() == "paper_point"]
        assert set(paper.get_ydata()) == {gains[regime]} and star.get_xydata().tolist() == [[200, gains[regime]]]
    # the trend is the least-squares line of the gains on log2(epochs); one length has none
    mixup = lengths[lengths["regime"] == "mixup"]
    fit = np.polyfit(np.log2(mixup["epochs"]), mixup["gain"], 1)
    for gid in ("trend", "extrapolation"):
        (line,) = [line for line in panels["Mixup"].lines if line.get_gid() == gid]
        assert np.allclose(line.get_ydata(), np.polyval(fit, np.log2(line.get_xdata())))
    assert "reaches +22.5 at ~247 epochs" in panels["Mixup"].get_title()
    assert not [line for line in panels["Interpolated AT"].lines if line.get_gid() in ("trend", "extrapolation")]
    assert "no trend" in panels["Interpolated AT"].get_title()
    # against F_y: one series per lambda measured (IAT's F_y at lambda 1 is NaN: not drawn), ideal linearity marked
    panels = _panels(gain_vs_fy_figure(lengths, gains))
    for label, regime, series in (("Mixup", "mixup", ["f_y_0.5", "f_y_1"]), ("Interpolated AT", "interpolated_at",
                                                                            ["f_y_0.5"])):
        ax, rows = panels[label], lengths[lengths["regime"] == regime].sort_values("epochs")
        drawn = [c.lines[0].get_xdata().tolist() for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert drawn == [rows[column].tolist() for column in series]
        assert {line.get_gid(): line.get_xdata()[0] for line in ax.lines if str(line.get_gid()).startswith("ideal")} \
            == {"ideal_0.5": 0.5, "ideal_1": 1.0}


@pytest.mark.parametrize("lengths", [(), (40,), (10, 20, 40)])
def test_write_study_writes_the_figures_while_the_study_fills_in(tmp_path, lengths):
    """No model yet, one length (no trend), three (a trend): both figures are written, study.md links them, and
    they redraw from study_lengths.csv read back (NaN F_y as empty cells)."""
    from mixup_inference.report.plots.study import gain_vs_epochs_figure, plot_gain_vs_fy

    entries = [_entry("mixup", "preset", e, 0) for e in lengths]
    artifacts = _lengths("mixup", lengths, (4, 8, 12)[:len(lengths)], f_y_1=False)
    paths = write_study(entries, artifacts, tmp_path, paper_gains=paper_gains("table2"))
    for key in ("gain_vs_epochs", "gain_vs_fy"):
        data = paths[key].read_bytes()
        assert paths[key].suffix == ".png" and data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
        assert paths[f"{key}_svg"].read_text().lstrip().startswith("<?xml")
        assert f"]({paths[key].name})" in paths["md"].read_text()
    back = pd.read_csv(paths["lengths"]) if lengths else pd.DataFrame()
    plot_gain_vs_fy(back, paper_gains("table2"), tmp_path / "again")
    if not lengths:
        texts = [t.get_text() for ax in gain_vs_epochs_figure(back, pd.DataFrame(), {}).axes for t in ax.texts]
        assert texts == ["no model evaluated yet"]


def test_paper_epochs_are_the_paper_configs():
    import yaml

    from mixup_inference.design.paper_tables import PAPER_EPOCHS

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "paper.yaml").read_text())
    assert config["training"]["epochs"] == PAPER_EPOCHS


def test_core_seconds_read_the_median_epoch_so_one_stretched_epoch_does_not_decide_the_cost():
    model = StudyModel("interpolated_at", "preset", 4, 0)
    history = [{"epoch": e, "seconds": s} for e, s in enumerate((100.0, 1000.0, 110.0, 90.0), 1)]  # a paused epoch
    entry = StudyEntry(model, model.name, {"test": {"accuracy": 0.8}, "train": {"seconds_per_epoch": 325.0,
                                                                                "history": history, "threads": 2}})
    assert entry.core_seconds == 105.0 * 4 * 2
    no_history = StudyEntry(model, model.name, {"test": {"accuracy": 0.8}, "train": {"seconds_per_epoch": 325.0}})
    assert no_history.core_seconds == 325.0 * 4


def test_training_curves_list_each_robust_recipe_models_accuracy_per_epoch():
    def entry(regime, recipe, accuracies):
        model = StudyModel(regime, recipe, len(accuracies), 0)
        history = [{"epoch": e, "accuracy": a, "seconds": 1.0} for e, a in enumerate(accuracies, 1)]
        return StudyEntry(model, model.name, {"test": {"accuracy": 0.8}, "train": {"history": history}})

    entries = [entry("at", "fgsm_rs", [0.30, 0.35, 0.80]), entry("at", "preset", [0.30, 0.33, 0.36]),
               entry("mixup", "preset", [0.5, 0.6, 0.7])]
    curves = training_curves(entries)
    assert list(curves["model"]) == ["at-fgsm_rs-e3-s0", "at-preset-e3-s0"]  # mixup is not a robust regime
    assert list(curves.iloc[0][["e1", "e2", "e3"]]) == [30.0, 35.0, 80.0]


def test_extrapolated_epochs_read_as_powers_of_ten_and_a_flat_trend_has_no_upper_bound():
    from mixup_inference.report.study import _trend_sentence
    from mixup_inference.report.tables import epochs_text

    assert [epochs_text(v) for v in (247.4, 91139, 113344866472.0, float("inf"), float("nan"))] == \
        ["247", "91,139", "1.1e+11", "never", "n/a"]
    trend = {"regime": "mixup", "lengths": "10 20 40", "slope_per_doubling": 0.62, "slope_low": -0.25,
             "slope_high": 1.62, "share_of_resamples_not_rising": 0.1, "paper_gain": 22.5,
             "epochs_for_paper_gain": 113344866472.0, "epochs_low": 91139, "epochs_high": 1.87e51}
    sentence = _trend_sentence(trend)
    assert "about 1.1e+11 epochs [91,139, no bound]" in sentence and "includes no rise" in sentence
    assert "1.9e+51" not in sentence
    rising = dict(trend, slope_low=0.5, epochs_for_paper_gain=900.0, epochs_low=400, epochs_high=2e6)
    assert "about 900 epochs [400, 2.0e+06]" in _trend_sentence(rising)
