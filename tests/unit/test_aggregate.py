"""Aggregation of evaluation artifacts: accuracy rows, detection AUCs, Fig. 2 components."""

import math

import numpy as np
import pytest
import torch

from mixup_inference.report.aggregate import (
    COMPONENT_COLUMNS,
    DETECTION_COLUMNS,
    RESULT_COLUMNS,
    aggregate,
    component_rows,
    detection_rows,
    ideal_linearity,
    result_row,
)


def artifact(probs, y, *, plain=None, attack="clean", defense="mi_ol", setting="lam=0.5", regime="mixup",
             dataset="synth", adaptive="none", n_adaptive=0):
    probs = torch.tensor(probs, dtype=torch.float32)
    plain = probs.clone() if plain is None else torch.tensor(plain, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.int64)
    return {
        "probs": probs,
        "plain_probs": plain,
        "y": y,
        "target": torch.full_like(y, -1),
        "meta": {"dataset": dataset, "regime": regime, "attack": attack, "defense": defense, "setting": setting,
                 "adaptive": adaptive, "n_adaptive": n_adaptive, "n_samples": 30},
    }


def wilson(k, n, z=1.959964):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_result_row_scores_defended_probs_with_wilson_ci():
    # defended output right on points 0, 1, 3; the undefended output is wrong everywhere
    probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]]
    plain = [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]
    row = result_row(artifact(probs, [0, 1, 2, 2, 1], plain=plain, attack="tpgd50", defense="xie",
                              setting="size=16-24", regime="interpolated_at"))
    assert list(row) == RESULT_COLUMNS
    assert (row["correct"], row["n"]) == (3, 5)
    assert row["accuracy"] == pytest.approx(0.6)
    low, high = wilson(3, 5)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    assert row["ci_low"] < 0.6 < row["ci_high"]
    assert (row["targeted"], row["steps"], row["attack"]) == (True, 50, "tpgd50")
    assert (row["defense"], row["setting"], row["param"], row["regime"]) == ("xie", "size=16-24", 16.0, "interpolated_at")
    assert (row["adaptive"], row["n_adaptive"]) == ("none", 0)


def test_result_row_plain_and_adaptive():
    plain = result_row(artifact([[0.9, 0.1]], [0], defense="none", setting="plain"))
    assert math.isnan(plain["param"]) and plain["accuracy"] == 1.0 and plain["steps"] == 0
    adaptive = result_row(artifact([[0.9, 0.1]], [1], attack="pgd10", setting="lam=0.6", adaptive="eot", n_adaptive=5))
    assert (adaptive["adaptive"], adaptive["n_adaptive"], adaptive["accuracy"], adaptive["param"]) == ("eot", 5, 0.0, 0.6)


def test_result_row_rejects_broken_artifacts():
    good = artifact([[0.9, 0.1]], [0])
    with pytest.raises(ValueError, match="lacks"):
        result_row({k: v for k, v in good.items() if k != "plain_probs"})
    bad_shape = dict(good, y=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="must be"):
        result_row(bad_shape)
    with pytest.raises(ValueError, match="attack"):
        result_row(artifact([[0.9, 0.1]], [0], attack="fgsm"))
    with pytest.raises(ValueError, match="setting"):
        result_row(artifact([[0.9, 0.1]], [0], setting="lam=0.50"))


def detection_artifacts(regime="mixup"):
    """Five points, scored clean and attacked. Clean inputs: moderately confident, MI-PL barely changes the
    predicted class probability, except point 4, which the model gets WRONG (predicts 0, label 1) and whose
    probability MI-PL drops a lot. Adversarial inputs: *more* confident (the plain confidence detector is
    fooled), MI-PL drops them a lot."""
    y = [0, 1, 2, 0, 1]
    clean_plain = [[0.7, 0.2, 0.1], [0.1, 0.75, 0.15], [0.2, 0.1, 0.7], [0.65, 0.3, 0.05], [0.8, 0.1, 0.1]]
    clean_mi = [[0.65, 0.25, 0.1], [0.15, 0.7, 0.15], [0.2, 0.15, 0.65], [0.6, 0.3, 0.1], [0.1, 0.5, 0.4]]
    adv_plain = [[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.95, 0.03, 0.02], [0.02, 0.03, 0.95], [0.1, 0.85, 0.05]]
    adv_mi = [[0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.35, 0.3, 0.35], [0.5, 0.1, 0.4], [0.5, 0.3, 0.2]]  # drops >= 0.5
    return [
        artifact(clean_mi, y, plain=clean_plain, attack="clean", defense="mi_pl", regime=regime),
        artifact(adv_mi, y, plain=adv_plain, attack="pgd10", defense="mi_pl", regime=regime),
    ]


def test_detection_auc_counts_only_clean_correct_points_and_keeps_all_points_beside_it():
    rows = detection_rows(detection_artifacts())
    assert [list(r) for r in rows] == [DETECTION_COLUMNS] * 4
    by = {(r["points"], r["detector"]): r for r in rows}
    # the paper's number: the 4 clean-correct points, each clean (negative) and attacked (positive)
    assert by["clean_correct", "mi_pl"]["auc"] == 1.0
    assert (by["clean_correct", "mi_pl"]["n_clean"], by["clean_correct", "mi_pl"]["n_adv"]) == (4, 4)
    # all points: the misclassified point's clean drop (0.7) beats all 5 adversarial drops (0.5-0.6)
    assert by["all", "mi_pl"]["auc"] == pytest.approx(1 - 5 / 25)
    assert (by["all", "mi_pl"]["n_clean"], by["all", "mi_pl"]["n_adv"]) == (5, 5)
    for points in ("clean_correct", "all"):
        assert by[points, "confidence"]["auc"] == 0.0  # every adversarial input is more confident
    # perfect separation: every bootstrap resample separates too, a zero-width interval
    assert (by["clean_correct", "mi_pl"]["auc_low"], by["clean_correct", "mi_pl"]["auc_high"]) == (1.0, 1.0)
    assert (by["all", "confidence"]["auc_low"], by["all", "confidence"]["auc_high"]) == (0.0, 0.0)
    low, high = by["all", "mi_pl"]["auc_low"], by["all", "mi_pl"]["auc_high"]
    assert low < by["all", "mi_pl"]["auc"] <= high
    for r in rows:
        assert (r["dataset"], r["regime"], r["attack"], r["setting"]) == ("synth", "mixup", "pgd10", "lam=0.5")
    assert detection_rows(detection_artifacts(), seed=0) == rows  # seeded


def test_detection_groups_and_filters():
    artifacts = detection_artifacts("mixup") + detection_artifacts("erm")
    # ignored: another defense, an adaptive run, a mi_pl setting without clean artifact
    artifacts.append(artifact([[0.9, 0.1]], [0], attack="pgd10", defense="mi_ol"))
    artifacts.append(artifact([[0.9, 0.1]], [0], attack="pgd10", defense="mi_pl", adaptive="paper", n_adaptive=3))
    artifacts.append(artifact([[0.9, 0.1]], [0], attack="pgd10", defense="mi_pl", setting="lam=0.7"))
    # a second attack on the mixup model, on the same five points
    artifacts.append(artifact([[0.1, 0.5, 0.4]] * 5, [0, 1, 2, 0, 1], plain=[[0.0, 1.0, 0.0]] * 5, attack="tpgd10",
                              defense="mi_pl"))
    rows = detection_rows(artifacts)
    keys = [(r["regime"], r["attack"], r["points"], r["detector"]) for r in rows]
    assert keys == [
        (regime, attack, points, detector)
        for regime, attack in (("erm", "pgd10"), ("mixup", "pgd10"), ("mixup", "tpgd10"))
        for points in ("clean_correct", "all") for detector in ("mi_pl", "confidence")
    ]
    tpgd = [r for r in rows if r["attack"] == "tpgd10" and r["points"] == "clean_correct"]
    assert [r["n_adv"] for r in tpgd] == [4, 4]
    assert tpgd[0]["auc"] == 1.0  # drop 0.5 beats every clean-correct drop of 0.05
    with pytest.raises(ValueError, match="two mi_pl artifacts"):
        detection_rows(detection_artifacts() + detection_artifacts()[:1])
    with pytest.raises(ValueError, match="different points"):
        detection_rows([detection_artifacts()[0], artifact([[0.9, 0.1, 0.0]], [0], attack="pgd10", defense="mi_pl")])


def test_component_rows_hand_computed_means():
    # 3 classes; adversarial inputs: plain prediction differs from y
    y = [0, 1]
    clean_plain = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]]  # yhat = y
    clean_mi = [[0.5, 0.3, 0.2], [0.3, 0.6, 0.1]]
    adv_plain = [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]  # yhat = 1, 2
    adv_mi = [[0.4, 0.5, 0.1], [0.2, 0.5, 0.3]]
    artifacts = [
        artifact(clean_mi, y, plain=clean_plain, attack="clean", defense="mi_ol", setting="lam=0.6"),
        artifact(adv_mi, y, plain=adv_plain, attack="pgd10", defense="mi_ol", setting="lam=0.6"),
        artifact(adv_mi, y, plain=adv_plain, attack="pgd10", defense="mi_pl", setting="lam=0.3"),
        artifact(adv_mi, y, plain=adv_plain, attack="tpgd10", defense="mi_pl", setting="lam=0.3"),  # targeted: never
        artifact(adv_mi, y, plain=adv_plain, attack="pgd50", defense="mi_pl", setting="lam=0.3"),  # other attack
        artifact(adv_mi, y, plain=adv_plain, attack="pgd10", defense="gaussian", setting="sigma=0.1"),  # not MI
    ]
    rows = component_rows(artifacts, attack="pgd10")
    assert all(list(r) == COMPONENT_COLUMNS for r in rows)
    got = {(r["mode"], r["lam"], r["input"], r["component"]): (r["value"], r["std"], r["n"]) for r in rows}
    assert set(got) == {
        ("ol", 0.6, "clean", "y"), ("ol", 0.6, "clean", "yhat"),
        ("ol", 0.6, "adversarial", "y"), ("ol", 0.6, "adversarial", "yhat"),
        ("pl", 0.3, "adversarial", "y"), ("pl", 0.3, "adversarial", "yhat"),
    }
    assert got[("ol", 0.6, "clean", "y")][0] == pytest.approx((0.5 + 0.6) / 2)
    assert got[("ol", 0.6, "clean", "yhat")][0] == pytest.approx((0.5 + 0.6) / 2)  # yhat == y on clean
    assert got[("ol", 0.6, "adversarial", "y")][0] == pytest.approx((0.4 + 0.5) / 2)  # F_y: probs[0,0], probs[1,1]
    assert got[("ol", 0.6, "adversarial", "yhat")][0] == pytest.approx((0.5 + 0.3) / 2)  # F_yhat: probs[0,1], probs[1,2]
    assert got[("ol", 0.6, "adversarial", "yhat")][1] == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert got[("ol", 0.6, "adversarial", "y")][2] == 2
    assert {r["num_classes"] for r in rows} == {3}
    # attack=None keeps every untargeted attack, still never the targeted one
    all_rows = component_rows(artifacts)
    assert {r["attack"] for r in all_rows} == {"clean", "pgd10", "pgd50"}
    with pytest.raises(ValueError, match="untargeted"):
        component_rows(artifacts, attack="tpgd10")


@pytest.mark.parametrize(
    "mode,input,component,expected",
    [
        ("pl", "clean", "y", 1.0),
        ("pl", "clean", "yhat", 1.0),
        ("pl", "adversarial", "y", 0.3),
        ("pl", "adversarial", "yhat", 0.7),
        ("ol", "clean", "y", 0.3),
        ("ol", "clean", "yhat", 0.3),
        ("ol", "adversarial", "y", 0.3 + 0.7 / 9),
        ("ol", "adversarial", "yhat", 0.0),
    ],
)
def test_ideal_linearity_table1(mode, input, component, expected):
    assert ideal_linearity(mode, input, component, 0.3, 10) == pytest.approx(expected)


def test_ideal_linearity_arrays_and_limits():
    lam = np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(ideal_linearity("ol", "adversarial", "y", lam, 3), [0.5, 0.75, 1.0])
    np.testing.assert_allclose(ideal_linearity("pl", "clean", "y", lam, 3), [1.0, 1.0, 1.0])
    # lam = 1 is no mixing: MI-OL leaves a clean input's prediction at 1
    assert ideal_linearity("ol", "clean", "y", 1.0, 100) == 1.0
    # two classes: the only other label is y itself, so MI-OL on adversarial input mixes towards y fully
    assert ideal_linearity("ol", "adversarial", "y", 0.2, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mode"):
        ideal_linearity("combined", "clean", "y", 0.5, 10)
    with pytest.raises(ValueError, match="input"):
        ideal_linearity("pl", "adv", "y", 0.5, 10)
    with pytest.raises(ValueError, match="component"):
        ideal_linearity("pl", "clean", "ytrue", 0.5, 10)
    with pytest.raises(ValueError, match="num_classes"):
        ideal_linearity("ol", "clean", "y", 0.5, 1)


def test_aggregate_from_files(tmp_path):
    artifacts = detection_artifacts() + [
        artifact([[0.9, 0.1, 0.0]], [0], attack="clean", defense="none", setting="plain"),
        artifact([[0.9, 0.1, 0.0]], [1], attack="pgd10", defense="mi_ol", setting="lam=0.6", adaptive="paper",
                 n_adaptive=2),
    ]
    paths = []
    for i, a in enumerate(artifacts):
        paths.append(tmp_path / f"a{i}.pt")
        torch.save(a, paths[-1])
    results, detection, components = aggregate(paths, component_attack="pgd10")
    assert list(results.columns) == RESULT_COLUMNS and len(results) == 4
    assert results["targeted"].dtype == bool and results["n"].dtype.kind == "i"
    assert list(detection.columns) == DETECTION_COLUMNS and len(detection) == 4  # 2 detectors x 2 point subsets
    assert list(components.columns) == COMPONENT_COLUMNS
    assert set(components["mode"]) == {"pl"} and len(components) == 4  # 2 mi_pl artifacts x (y, yhat)
    # the same evaluation twice is an error
    with pytest.raises(ValueError, match="duplicate"):
        aggregate(paths + paths[:1])


def test_aggregate_empty():
    results, detection, components = aggregate([])
    assert (list(results.columns), list(detection.columns), list(components.columns)) == (
        RESULT_COLUMNS, DETECTION_COLUMNS, COMPONENT_COLUMNS)
    assert len(results) == len(detection) == len(components) == 0


def robust_artifact(y, attacked, rights, *, repeats=2, eot=4, attack="aa50", level=1, old=False):
    """A robust run's artifact (AutoAttack rand through MI-OL): `rights[i]` of its R verdicts right at point i."""
    n = len(y)
    artifact_ = artifact([[0.5, 0.5]] * n, y, attack=attack, setting="lam=0.6", adaptive="autoattack_rand")
    attacked = torch.tensor(attacked)
    repeat_correct = torch.tensor([[r < k for k in rights] for r in range(repeats)]) & attacked
    robust = {"n_samples_attack": 1, "eps": 8 / 255, "step_size": None, "n_restarts": 1, "family": "autoattack_rand",
              "level": level, "converged": False, "cascade": True, "repeats": repeats}
    # before issue 33 the EOT draws were stored as n_adaptive
    meta = artifact_["meta"] | robust | ({"n_adaptive": eot} if old else {"eot": eot})
    return {**artifact_, "meta": meta, "attacked": attacked, "repeat_correct": repeat_correct}


def test_robust_rows_name_eot_draws_and_evaluations_and_show_the_mean_over_r_worst_case(tmp_path):
    """Issue 33: a robust run's EOT draws are its `eot` (old artifacts with them in n_adaptive still load), the
    worst-case row counts its evaluations in `evaluations`, and its `mean_accuracy` is the mean-over-R worst case:
    per point the smallest share of right verdicts over the evaluations that judged it."""
    y = [0, 1, 0, 1]
    oblivious = artifact([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.9, 0.1]], y, attack="pgd10", setting="lam=0.6")
    # the oblivious attack broke point 3; the run attacks points 0-2: point 0 right in 2 of 2 verdicts, 1 in 1 of 2,
    # 2 in 0 of 2
    run = robust_artifact(y, [True, True, True, False], [2, 1, 0, 0], old=True)
    paths = [tmp_path / "obl.pt", tmp_path / "run.pt"]
    torch.save(oblivious, paths[0])
    torch.save(run, paths[1])
    results, _, _ = aggregate(paths)
    row = results[results.adaptive == "autoattack_rand"].iloc[0]
    assert (row["eot"], row["n_adaptive"], row["repeats"], row["evaluations"]) == (4, 0, 2, 1)
    worst = results[results.adaptive == "worst_case"].iloc[0]
    assert (worst["correct"], worst["evaluations"], worst["eot"], worst["n_adaptive"]) == (1, 2, 0, 0)
    assert worst["accuracy"] == pytest.approx(1 / 4)  # all R right: point 0 only
    assert worst["mean_accuracy"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)  # >= the all-R worst case
    # the same run with two EOT settings is two evaluations, not a duplicate
    torch.save(robust_artifact(y, [True, True, True, False], [2, 1, 0, 0], eot=8), tmp_path / "run8.pt")
    results, _, _ = aggregate([*paths, tmp_path / "run8.pt"])
    assert sorted(results[results.adaptive == "autoattack_rand"]["eot"]) == [4, 8]
