"""Figures: each writes a PNG and an SVG, for synthetic tables (also after a CSV round trip) and for
empty ones; the SVG keeps its text, so the labels can be checked."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mixup_inference.report.aggregate import COMPONENT_COLUMNS, DETECTION_COLUMNS, RESULT_COLUMNS, ideal_linearity
from mixup_inference.core.metrics import wilson_interval
from mixup_inference.report.plots import (plot_adaptive, plot_components, plot_convergence, plot_detection_auc,
                                          plot_tradeoff)
from mixup_inference.core.attacks.specs import parse_attack
from mixup_inference.core.defenses.specs import format_setting, setting_param


def components_df():
    rows = []
    for regime in ("mixup", "interpolated_at"):
        for mode in ("pl", "ol"):
            for lam in (0.2, 0.5, 0.8, 1.0):
                for inp, attack in (("clean", "clean"), ("adversarial", "pgd10")):
                    for component in ("y", "yhat"):
                        value = 0.9 * ideal_linearity(mode, inp, component, lam, 10) + 0.05
                        rows.append({"dataset": "cifar10", "regime": regime, "mode": mode, "lam": lam,
                                     "attack": attack, "input": inp, "component": component, "value": value,
                                     "std": 0.1, "n": 100, "num_classes": 10})
    # a second adversarial attack with fewer lambdas: not drawn
    rows.append({**rows[-1], "attack": "pgd50", "value": 0.123})
    return pd.DataFrame(rows, columns=COMPONENT_COLUMNS)


def detection_df():
    rows = []
    for regime, auc in (("erm", 0.6), ("mixup", 0.8), ("at", 0.7), ("interpolated_at", 0.75)):
        for detector, value in (("mi_pl", auc), ("confidence", 0.4)):
            for points, shift in (("clean_correct", 0.0), ("all", -0.05)):
                rows.append({"dataset": "cifar10", "regime": regime, "attack": "pgd10", "detector": detector,
                             "setting": "lam=0.5", "points": points, "auc": value + shift,
                             "auc_low": value + shift - 0.03, "auc_high": value + shift + 0.03,
                             "n_clean": 900, "n_adv": 900})
    return pd.DataFrame(rows, columns=DETECTION_COLUMNS)


def row(regime, defense, setting, attack, accuracy, *, n=1000, adaptive="none", n_adaptive=0, dataset="cifar10"):
    parsed = parse_attack(attack)
    targeted, steps = parsed.targeted, parsed.steps
    correct = round(accuracy * n)
    low, high = wilson_interval(correct, n)
    return {"dataset": dataset, "regime": regime, "defense": defense, "setting": setting,
            "param": setting_param(defense, setting), "attack": attack, "targeted": targeted, "steps": steps,
            "adaptive": adaptive, "n_adaptive": n_adaptive, "accuracy": correct / n, "ci_low": low,
            "ci_high": high, "n": n, "correct": correct}


def results_df():
    rows = []
    for regime, base in (("mixup", 0.94), ("interpolated_at", 0.9)):
        rows += [row(regime, "none", "plain", "clean", base), row(regime, "none", "plain", "pgd10", 0.2)]
        for lam in (0.3, 0.5, 0.7):
            setting = format_setting("mi_ol", {"lam": lam})
            rows += [row(regime, "mi_ol", setting, "clean", base - 0.3 * (1 - lam)),
                     row(regime, "mi_ol", setting, "pgd10", 0.2 + 0.4 * (1 - lam))]
        for sigma in (0.02, 0.04):
            setting = format_setting("gaussian", {"sigma": sigma})
            rows += [row(regime, "gaussian", setting, "clean", base - sigma), row(regime, "gaussian", setting, "pgd10", 0.3)]
    rows.append(row("mixup", "xie", "size=16-24", "clean", 0.8))  # no pgd10 counterpart: not drawn
    for steps, no_mi in ((10, 0.45), (50, 0.43), (200, 0.42)):
        if steps != 10:  # the PGD-10 level is the row above
            rows.append(row("interpolated_at", "none", "plain", f"pgd{steps}", no_mi))
        for kind in ("paper", "eot"):
            for n_a in (1, 2, 5, 10):
                drop = 0.01 if kind == "paper" else 0.02
                rows.append(row("interpolated_at", "mi_ol", "lam=0.6", f"pgd{steps}", 0.6 - drop * n_a, n=200,
                                adaptive=kind, n_adaptive=n_a))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def robust_row(regime, defense, setting, attack, kind, eot, level, accuracy, converged, *, n=100):
    """A robust run's row (issue 25's columns): kind autoattack_rand / eot_pgd / tramer / autoattack_standard /
    pgd_bare, or worst_case (then `eot` is the number of evaluations combined)."""
    worst = kind == "worst_case"
    return {**row(regime, defense, setting, attack if not worst else "clean", accuracy, n=n, adaptive=kind),
            **({"attack": "worst_case", "steps": 0} if worst else {}),
            "eot": 0 if worst else eot, "evaluations": eot if worst else 1,
            "labels": "true", "attacked": n, "repeats": 10, "mean_accuracy": accuracy, "level": level,
            "converged": converged}


def convergence_df():
    """Two attacked settings: MI-OL converged (every family's doubling left the worst case), Gaussian noise
    an upper bound (EOT PGD-5's doubling broke more points), both beside the oblivious rows of results_df."""
    rows = [robust_row("interpolated_at", "mi_ol", "lam=0.6", "aa20", "autoattack_rand", 2, 0, 0.31, False),
            robust_row("interpolated_at", "mi_ol", "lam=0.6", "aa40", "autoattack_rand", 4, 1, 0.30, True),
            robust_row("interpolated_at", "mi_ol", "lam=0.6", "pgd5", "eot_pgd", 1, 0, 0.33, False),
            robust_row("interpolated_at", "mi_ol", "lam=0.6", "pgd10", "eot_pgd", 2, 1, 0.30, True),
            robust_row("interpolated_at", "mi_ol", "lam=0.6", "pgd50", "tramer", 1, 0, 0.30, None),
            robust_row("interpolated_at", "mi_ol", "lam=0.6", "worst_case", "worst_case", 5, 1, 0.30, True),
            robust_row("mixup", "gaussian", "sigma=0.04", "pgd5", "eot_pgd", 1, 0, 0.20, False),
            robust_row("mixup", "gaussian", "sigma=0.04", "pgd10", "eot_pgd", 2, 1, 0.12, False),
            robust_row("mixup", "gaussian", "sigma=0.04", "tpgd5", "eot_pgd", 1, 0, 0.12, False),
            robust_row("mixup", "gaussian", "sigma=0.04", "tpgd10", "eot_pgd", 2, 1, 0.12, True),
            robust_row("mixup", "gaussian", "sigma=0.04", "worst_case", "worst_case", 4, 1, 0.12, False),
            # the bare IAT model under the kinds for a deterministic model (issue 33), three levels
            *[robust_row("interpolated_at", "none", "plain", f"aa{25 * 2 ** k}", "autoattack_standard", 1, k, acc,
                         k == 2) for k, acc in enumerate((0.22, 0.21, 0.21))],
            *[robust_row("interpolated_at", "none", "plain", f"pgd{13 * 2 ** k}", "pgd_bare", 1, k, acc, k == 2)
              for k, acc in enumerate((0.23, 0.21, 0.21))],
            robust_row("interpolated_at", "none", "plain", "worst_case", "worst_case", 10, 2, 0.21, True)]
    oblivious = results_df().assign(eot=0, evaluations=1, labels="true", attacked=1000, repeats=1,
                                    mean_accuracy=np.nan, level=0, converged=None)
    return pd.concat([oblivious, pd.DataFrame(rows)], ignore_index=True)[RESULT_COLUMNS]


def via_csv(df, tmp_path):
    path = tmp_path / "frame.csv"
    df.to_csv(path, index=False)
    return pd.read_csv(path)


def check_outputs(paths, stem):
    assert [p.name for p in paths] == [f"{stem.name}.png", f"{stem.name}.svg"]
    with Image.open(paths[0]) as image:
        assert image.format == "PNG" and min(image.size) > 200
    assert 0 < paths[0].stat().st_size < 1_000_000
    svg = paths[1].read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    return svg


def test_plot_components(tmp_path):
    stem = tmp_path / "figs" / "fig2"
    svg = check_outputs(plot_components(via_csv(components_df(), tmp_path), stem), stem)
    for title in ("Mixup + MI-PL", "Mixup + MI-OL", "Interpolated AT + MI-PL", "Interpolated AT + MI-OL"):
        assert title in svg
    assert "ideal linearity (Table 1)" in svg and "PGD10" in svg and "no data" not in svg


def test_plot_components_picks_pgd10_on_ties(tmp_path):
    df = components_df()
    df = pd.concat([df, df[df["attack"] == "pgd10"].assign(attack="pgd5")])
    svg = check_outputs(plot_components(df, tmp_path / "fig2"), tmp_path / "fig2")
    assert "PGD10 inputs" in svg and "PGD5" not in svg


def test_plot_detection_auc(tmp_path):
    stem = tmp_path / "fig3a"
    svg = check_outputs(plot_detection_auc(via_csv(detection_df(), tmp_path), stem), stem)
    for text in ("ERM", "Interpolated AT", "chance (0.5)", "plain confidence", "0.80", "0.40", "all points",
                 "clean-correct"):
        assert text in svg
    assert "0.75" in svg and "0.35" not in svg  # bars: the clean-correct AUCs; all-points AUCs are unlabelled ticks


def test_plot_tradeoff(tmp_path):
    stem = tmp_path / "fig3b"
    svg = check_outputs(plot_tradeoff(via_csv(results_df(), tmp_path), stem, attack="pgd10"), stem)
    for text in ("Mixup", "Interpolated AT", "MI-OL", "Gaussian noise", "no defense", "0.04", "0.7"):
        assert text in svg
    assert "Xie et al." not in svg  # evaluated on clean inputs only
    # an attack with no evaluations is "no data", not a crash
    svg = check_outputs(plot_tradeoff(results_df(), tmp_path / "none", attack="tpgd10"), tmp_path / "none")
    assert "no setting evaluated" in svg


def test_plot_adaptive(tmp_path):
    stem = tmp_path / "fig4"
    svg = check_outputs(plot_adaptive(via_csv(results_df(), tmp_path), stem), stem)
    for text in ("adaptive PGD10", "adaptive PGD50", "adaptive PGD200", "EOT PGD", "adaptive PGD (paper, Eq. 24)",
                 "no MI, oblivious PGD200"):
        assert text in svg
    # the lines are on different prefixes of the points: each legend entry says how many
    assert "no MI, oblivious PGD200, 1000 points" in svg and "EOT PGD, 200 points" in svg
    oblivious_only = results_df().query("adaptive == 'none'")
    svg = check_outputs(plot_adaptive(oblivious_only, tmp_path / "obl"), tmp_path / "obl")
    assert "no adaptive attacks evaluated" in svg


def test_plot_convergence(tmp_path):
    # one panel per attacked setting, its verdict in the title; a line per family, Tramer's run a level
    for frame in (convergence_df(), via_csv(convergence_df(), tmp_path)):
        stem = tmp_path / "fig5"
        svg = check_outputs(plot_convergence(frame, stem), stem)
        for text in ("Fig. 5", "Interpolated AT + MI-OL", "(lam=0.6): converged, 100 points", "Mixup + Gaussian noise",
                     "(sigma=0.04): upper bound, 100 points", "AutoAttack rand", "EOT PGD-5, 1 draw (start)",
                     "EOT tPGD-5, 1 draw (start)", "Tramer et al. 2020", "worst case per point",
                     "L0 ×1", "L1 ×2", "L2 ×4", "last level not converged (upper bound)",
                     "Interpolated AT + no defense", "(plain): converged", "AutoAttack standard (bare model)",
                     "PGD, step 0.5/255 (bare model)"):
            assert text in svg, text
        assert "PGD-10, 2 draws" not in svg  # level 1 of the PGD-5 ladder, not a family of its own
        assert "Xie" not in svg and "Mixup + MI-OL" not in svg  # only the settings the robustness evaluation attacked
    # a results.csv without the robustness: section (or from before issue 25) says so
    svg = check_outputs(plot_convergence(results_df(), tmp_path / "none"), tmp_path / "none")
    assert "no robustness evaluation" in svg
    old = convergence_df()  # before issue 25: one level, no verdict; a robust run's EOT draws in n_adaptive
    old = old[old.defense != "none"].assign(n_adaptive=old.n_adaptive.where(old.eot == 0, old.eot))
    old = old.drop(columns=["level", "converged", "eot", "evaluations"])
    svg = check_outputs(plot_convergence(old, tmp_path / "old"), tmp_path / "old")
    assert "L0 ×1" in svg and "L1 ×2" not in svg and "converged," not in svg
    with pytest.raises(ValueError, match="several rows"):
        plot_convergence(pd.concat([convergence_df(), convergence_df().tail(2).head(1)]), tmp_path / "x")


@pytest.mark.parametrize(
    "plot,columns",
    [(plot_components, COMPONENT_COLUMNS), (plot_detection_auc, DETECTION_COLUMNS), (plot_tradeoff, RESULT_COLUMNS),
     (plot_adaptive, RESULT_COLUMNS), (plot_convergence, RESULT_COLUMNS)],
)
def test_empty_frames_give_no_data_figures(plot, columns, tmp_path):
    empty = via_csv(pd.DataFrame(columns=columns), tmp_path)
    stem = tmp_path / "empty"
    svg = check_outputs(plot(empty, stem), stem)
    assert "no data" in svg


def test_missing_columns_and_duplicates_rejected(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        plot_components(components_df().drop(columns=["num_classes"]), tmp_path / "x")
    doubled = pd.concat([results_df(), results_df().iloc[:1]])
    with pytest.raises(ValueError, match="several rows"):
        plot_tradeoff(doubled, tmp_path / "x")
    with pytest.raises(ValueError, match="several rows"):
        plot_adaptive(pd.concat([results_df(), results_df().tail(1)]), tmp_path / "x")


def test_output_is_deterministic(tmp_path):
    a = plot_detection_auc(detection_df(), tmp_path / "a")
    b = plot_detection_auc(detection_df(), tmp_path / "b")
    assert a[0].read_bytes() == b[0].read_bytes()
    assert a[1].read_text().replace("a.svg", "") == b[1].read_text().replace("b.svg", "")
    assert np.all(np.asarray(Image.open(a[0])) == np.asarray(Image.open(b[0])))


@pytest.mark.parametrize("plot", [plot_components, plot_detection_auc, plot_tradeoff, plot_adaptive, plot_convergence])
def test_every_figure_is_drawn_under_the_modules_style(plot):
    # plots.common.styled wraps each figure function in the figures' rcParams (fixed fonts, stable SVG ids)
    assert getattr(plot, "__wrapped__", None) is not None, f"{plot.__name__} is not decorated with @styled"
