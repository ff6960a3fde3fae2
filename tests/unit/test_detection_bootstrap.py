"""Paired bootstrap intervals for the detection AUC (Fig. 3a): exact point estimate, resamples that keep
each point's clean and adversarial score together, and ~95% coverage in a simulation of paired scores."""

import math

import pytest
import torch
from scipy.stats import norm

from mixup_inference.core.metrics import detection_auc, paired_auc_ci, paired_auc_difference_ci
from mixup_inference.core.utils import make_generator


def paired_scores(n: int, shift: float, generator: torch.Generator, rho: float = 0.8):
    """Clean and adversarial scores of n points sharing a per-point level (correlation rho within a
    pair). Each marginal is N(., 1); the population AUC is Phi(shift / sqrt(2))."""
    level = torch.randn(n, generator=generator, dtype=torch.float64)
    noise = torch.randn(2, n, generator=generator, dtype=torch.float64)
    clean = math.sqrt(rho) * level + math.sqrt(1 - rho) * noise[0]
    adv = shift + math.sqrt(rho) * level + math.sqrt(1 - rho) * noise[1]
    return clean, adv


def test_point_estimate_is_the_auc_and_the_interval_is_seeded():
    clean, adv = paired_scores(80, 0.7, make_generator(0))
    adv[:5] = clean[:5]  # ties count one half
    result = paired_auc_ci(clean, adv, n_resamples=500, generator=make_generator(1))
    assert result["auc"] == pytest.approx(detection_auc(clean, adv), abs=1e-12)
    assert result["auc_low"] < result["auc"] < result["auc_high"] and result["n"] == 80
    assert paired_auc_ci(clean, adv, n_resamples=500, generator=make_generator(1)) == result
    assert paired_auc_ci(clean, adv, n_resamples=500, generator=make_generator(2)) != result


def test_resampled_aucs_equal_the_auc_of_the_resampled_points():
    # the count-weighted kernel form w^T K w / n^2 is the AUC of the resampled data set
    from mixup_inference.core.metrics import _bootstrap_aucs

    clean, adv = paired_scores(30, 0.5, make_generator(3))
    _, resampled = _bootstrap_aucs([(clean, adv)], 100, make_generator(4))
    index = torch.randint(30, (100, 30), generator=make_generator(4))
    direct = torch.tensor([detection_auc(clean[row], adv[row]) for row in index], dtype=torch.float64)
    assert torch.allclose(resampled[:, 0], direct, atol=1e-12)


@pytest.mark.parametrize("shift", [0.5, 1.2])
def test_paired_interval_covers_about_95_percent(shift):
    truth = norm.cdf(shift / math.sqrt(2))
    g = make_generator(10)
    trials, covered = 300, 0
    for _ in range(trials):
        clean, adv = paired_scores(150, shift, g)
        result = paired_auc_ci(clean, adv, n_resamples=400, generator=g)
        covered += result["auc_low"] <= truth <= result["auc_high"]
    # 300 trials: binomial sd 1.3 points around 95%
    assert 0.90 <= covered / trials <= 0.99


def test_difference_interval_covers_zero_for_identical_detectors_and_not_for_a_better_one():
    clean, adv = paired_scores(200, 0.8, make_generator(5))
    same = paired_auc_difference_ci(clean, adv, clean, adv, n_resamples=300, generator=make_generator(6))
    assert same["difference"] == 0 and same["low"] == 0 and same["high"] == 0
    noisy_clean = clean + 3 * torch.randn(200, generator=make_generator(7), dtype=torch.float64)
    noisy_adv = adv + 3 * torch.randn(200, generator=make_generator(8), dtype=torch.float64)
    better = paired_auc_difference_ci(clean, adv, noisy_clean, noisy_adv, n_resamples=500, generator=make_generator(9))
    assert better["auc_a"] > better["auc_b"] and better["low"] > 0
    assert better["auc_a"] == pytest.approx(detection_auc(clean, adv))


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="one clean and one adversarial score per point"):
        paired_auc_ci(torch.zeros(5), torch.zeros(6))
    with pytest.raises(ValueError, match="n_resamples"):
        paired_auc_ci(torch.zeros(5), torch.zeros(5), n_resamples=10)


def test_adjusted_level_widens_the_difference_interval_from_the_same_resamples():
    clean_a, adv_a = paired_scores(120, 1.0, make_generator(5))
    clean_b, adv_b = paired_scores(120, 0.3, make_generator(6))
    raw = paired_auc_difference_ci(clean_a, adv_a, clean_b, adv_b, n_resamples=1000, generator=make_generator(7))
    both = paired_auc_difference_ci(clean_a, adv_a, clean_b, adv_b, n_resamples=1000, adjusted_level=1 - 0.05 / 8,
                                    generator=make_generator(7))
    assert {k: both[k] for k in raw} == raw  # the raw columns do not move
    assert both["low_adj"] < raw["low"] < raw["high"] < both["high_adj"]
    with pytest.raises(ValueError, match="level must be in"):
        paired_auc_difference_ci(clean_a, adv_a, clean_b, adv_b, adjusted_level=1.0)
