"""Metrics: Wilson interval against known values, accuracy, detection scores and AUC."""

import math

import numpy as np
import pytest
import torch

from mixup_inference.core.metrics import (accuracy_with_ci, auc_with_ci, confidence_score, detection_auc,
                                     mi_pl_detection_score, wilson_interval)


@pytest.mark.parametrize("successes, n, low, high", [
    (50, 100, 0.4038, 0.5962),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (1, 1000, 0.000177, 0.005644),
])
def test_wilson_interval_known_values(successes, n, low, high):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_contains_proportion_and_narrows_with_n():
    widths = []
    for n in (10, 100, 1000):
        lo, hi = wilson_interval(3 * n // 10, n)
        assert lo < 0.3 < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # a larger z gives a wider interval
    assert wilson_interval(30, 100, z=2.576)[0] < wilson_interval(30, 100)[0]


def test_wilson_interval_empty_and_invalid():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n must"):
        wilson_interval(0, -1)


def test_accuracy_with_ci_probs_and_predictions_agree():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = torch.tensor([0, 1, 1, 1])
    from_probs = accuracy_with_ci(probs, y)
    from_pred = accuracy_with_ci(probs.argmax(1), y)
    assert from_probs == from_pred
    assert from_probs["correct"] == 3 and from_probs["n"] == 4
    assert from_probs["accuracy"] == 0.75
    assert (from_probs["ci_low"], from_probs["ci_high"]) == wilson_interval(3, 4)


def test_accuracy_with_ci_rejects_bad_shapes():
    with pytest.raises(ValueError, match="y must"):
        accuracy_with_ci(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="probabilities"):
        accuracy_with_ci(torch.tensor([0.3, 0.7]), torch.tensor([0, 1]))


def test_accuracy_with_ci_empty():
    result = accuracy_with_ci(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert result["n"] == 0 and math.isnan(result["accuracy"])
    assert (result["ci_low"], result["ci_high"]) == (0.0, 1.0)


def test_mi_pl_detection_score_formula():
    plain = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    mi_pl = torch.tensor([[0.5, 0.3, 0.2], [0.3, 0.1, 0.6]])
    # yhat = 0 for the first row, 2 for the second: 0.7 - 0.5, 0.6 - 0.6
    assert torch.allclose(mi_pl_detection_score(plain, mi_pl), torch.tensor([0.2, 0.0]))
    # yhat comes from the plain prediction, not from the MI-PL output
    assert mi_pl_detection_score(plain[:1], torch.tensor([[0.1, 0.8, 0.1]])).item() == pytest.approx(0.6)


def test_confidence_score_is_minus_max():
    plain = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert torch.equal(confidence_score(plain), torch.tensor([-0.7, -0.6]))


def test_detection_auc_separated_identical_and_reversed():
    clean, adv = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.6, 0.9, 0.7])
    assert detection_auc(clean, adv) == 1.0
    assert detection_auc(adv, clean) == 0.0
    assert detection_auc(torch.ones(5), torch.ones(7)) == 0.5
    # one clean score above one of two adversarial scores: 1 of 2 pairs mis-ordered
    assert detection_auc(torch.tensor([0.5]), torch.tensor([0.4, 0.6])) == 0.5
    with pytest.raises(ValueError, match="non-empty"):
        detection_auc(torch.tensor([]), adv)


def _delong_brute_force(clean: np.ndarray, adv: np.ndarray) -> tuple[float, float]:
    """AUC and DeLong variance from the full m x n comparison matrix (the definition)."""
    psi = (adv[:, None] > clean[None, :]) + 0.5 * (adv[:, None] == clean[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    return psi.mean(), v10.var(ddof=1) / len(adv) + v01.var(ddof=1) / len(clean)


def test_auc_interval_matches_the_definition_with_ties():
    g = np.random.default_rng(0)
    clean = g.integers(0, 6, 40).astype(float)  # few distinct values: many ties
    adv = g.integers(2, 8, 30).astype(float)
    out = auc_with_ci(torch.from_numpy(clean), torch.from_numpy(adv))
    auc, var = _delong_brute_force(clean, adv)
    assert out["auc"] == pytest.approx(auc, abs=1e-12)
    assert out["auc"] == pytest.approx(detection_auc(torch.from_numpy(clean), torch.from_numpy(adv)), abs=1e-12)
    half = 1.959964 * math.sqrt(var)
    assert (out["auc_low"], out["auc_high"]) == pytest.approx((auc - half, auc + half), abs=1e-12)


def test_auc_interval_is_zero_width_when_separated_and_undefined_for_one_score():
    out = auc_with_ci(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.9]))
    assert out == {"auc": 1.0, "auc_low": 1.0, "auc_high": 1.0}
    one = auc_with_ci(torch.tensor([0.1, 0.6]), torch.tensor([0.5]))
    assert one["auc"] == 0.5 and math.isnan(one["auc_low"]) and math.isnan(one["auc_high"])
    with pytest.raises(ValueError, match="non-empty"):
        auc_with_ci(torch.tensor([]), torch.tensor([0.5, 0.9]))


def test_auc_interval_covers_the_true_auc_about_95_percent_of_the_time():
    # Clean ~ N(0, 1), adversarial ~ N(1, 1): true AUC = Phi(1 / sqrt 2) = 0.7602.
    true_auc = 0.5 * (1 + math.erf(0.5))
    g = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        out = auc_with_ci(torch.from_numpy(g.normal(0, 1, 200)), torch.from_numpy(g.normal(1, 1, 200)))
        hits += out["auc_low"] <= true_auc <= out["auc_high"]
    assert 0.91 <= hits / 400 <= 0.98


def test_worst_case_is_the_per_point_and_and_below_every_attack():
    from mixup_inference.core.metrics import worst_case

    g = torch.Generator().manual_seed(0)
    runs = {name: torch.rand(200, generator=g) < p for name, p in (("pgd", 0.7), ("eot", 0.5), ("aa", 0.6))}
    result = worst_case(runs)
    expected = runs["pgd"] & runs["eot"] & runs["aa"]
    assert torch.equal(result["survives"], expected) and result["correct"] == int(expected.sum())
    assert result["attacks"] == 3 and result["n"] == 200
    assert all(result["accuracy"] <= run.float().mean().item() for run in runs.values())
    assert result["accuracy"] < min(run.float().mean().item() for run in runs.values())  # independent runs: strictly
    assert result["ci_low"] <= result["accuracy"] <= result["ci_high"]
    assert worst_case([runs["eot"]])["correct"] == int(runs["eot"].sum())  # one attack: itself
    with pytest.raises(ValueError, match="same points"):
        worst_case([runs["pgd"], runs["eot"][:10]])
    with pytest.raises(ValueError, match="at least one"):
        worst_case({})


def test_mcnemar_p_exact_binomial_tail():
    from mixup_inference.core.metrics import mcnemar_p, paired_difference_ci

    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(1, 1) == 1.0
    assert abs(mcnemar_p(3, 0) - 0.25) < 1e-12 and mcnemar_p(3, 0) == mcnemar_p(0, 3)
    assert abs(mcnemar_p(10, 2) - 2 * sum(math.comb(12, i) for i in range(3)) / 2 ** 12) < 1e-12
    # paired_difference_ci carries it
    a = torch.tensor([True] * 12 + [False] * 8)
    b = torch.tensor([False] * 10 + [True] * 2 + [False] * 8)
    assert abs(paired_difference_ci(a, b)["p"] - mcnemar_p(10, 0)) < 1e-12


def test_holm_step_down_in_input_order():
    from mixup_inference.core.metrics import holm

    adjusted = holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adjusted[4])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []
