"""Evaluation metrics: accuracy with a Wilson score interval, and the detection scores/AUC of
the paper's Fig. 3a (MI-PL drop of the predicted-class probability vs plain confidence), with
DeLong intervals (independent clean and adversarial groups) and paired bootstrap intervals (each
point scored clean and adversarial, the paper's design)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np
import torch
from torch import Tensor

# scipy.stats and sklearn.metrics (1.5 s + 0.5 s to import) are imported inside the AUC functions:
# only the aggregate jobs compute AUCs, and every other job imports this module for accuracies.

__all__ = ["accuracy_with_ci", "auc_difference_ci", "auc_with_ci", "confidence_score", "detection_auc", "holm",
           "mcnemar_p", "mi_pl_detection_score", "paired_auc_ci", "paired_auc_difference_ci", "paired_counts_ci",
           "paired_difference_ci", "wilson_interval", "worst_case", "z_for"]

Z_95 = 1.959964  # two-sided 95% normal quantile


def z_for(level: float) -> float:
    """The two-sided normal quantile of a `level` interval: z_for(0.95) = 1.95996; z_for(1 - 0.05 / m) widens an
    interval for a family of m claims (Bonferroni)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (got {level}); use 0.95")
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927).

    centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half   = z * sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n),  p = successes / n.
    Default z gives a 95% interval; e.g. 50/100 -> (0.4038, 0.5962).
    n = 0 returns (0.0, 1.0): no trials carry no information about the proportion.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be an integer >= 0 (got {n}); pass the number of trials")
    if int(successes) != successes or not 0 <= successes <= n:
        raise ValueError(f"successes must be an integer in [0, n={n}] (got {successes}); count correct trials only")
    if not z > 0:
        raise ValueError(f"z must be > 0 (got {z}); use 1.959964 for 95%")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_with_ci(probs_or_pred: Tensor, y: Tensor) -> dict:
    """Accuracy of probabilities/logits [B, C] (argmax taken) or integer predictions [B] against
    labels y [B], with its 95% Wilson interval.

    Returns {"accuracy", "ci_low", "ci_high", "n", "correct"} as Python floats/ints
    (accuracy is NaN and the interval (0, 1) when B = 0).
    """
    if probs_or_pred.dim() == 2:
        pred = probs_or_pred.argmax(1)
    elif probs_or_pred.dim() == 1 and not probs_or_pred.is_floating_point():
        pred = probs_or_pred
    else:
        raise ValueError(f"pass probabilities [B, C] or integer predictions [B] (got {probs_or_pred.dtype} "
                         f"{tuple(probs_or_pred.shape)}); use .argmax(1) or .long()")
    if y.dim() != 1 or y.shape[0] != pred.shape[0]:
        raise ValueError(f"y must have shape [{pred.shape[0]}] (got {tuple(y.shape)}); pass one label per prediction")
    n = int(pred.shape[0])
    correct = int((pred.to(y.device) == y).sum().item())
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n if n else float("nan"), "ci_low": low, "ci_high": high, "n": n, "correct": correct}


def worst_case(correct_per_attack: Mapping[str, Tensor] | Sequence[Tensor]) -> dict:
    """Worst case per point: a point counts as robust only if it survives EVERY attack run against the
    defense (the per-point AND of the attacks' correctness, all on the same points in the same order),
    with its 95% Wilson interval. This is the robust accuracy against an attacker who may pick, per
    point, the best of the attacks (oblivious and adaptive); it is <= every single attack's accuracy.

    Args:
        correct_per_attack: bool [n] tensors (or a {name: tensor} mapping), one per attack run.

    Returns:
        {"accuracy", "ci_low", "ci_high", "n", "correct", "survives" (bool [n]), "attacks" (how many)}.
    """
    runs = list(correct_per_attack.values()) if isinstance(correct_per_attack, Mapping) else list(correct_per_attack)
    if not runs:
        raise ValueError("worst_case needs at least one attack's per-point correctness")
    shapes = {tuple(run.shape) for run in runs}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"every attack must give one bool per point, the same points (got shapes {sorted(shapes)})")
    survives = torch.stack([run.to(torch.bool).cpu() for run in runs]).all(0)
    n, correct = int(survives.numel()), int(survives.sum())
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n if n else float("nan"), "ci_low": low, "ci_high": high, "n": n,
            "correct": correct, "survives": survives, "attacks": len(runs)}


def paired_difference_ci(correct_a: Tensor, correct_b: Tensor, z: float = Z_95) -> dict:
    """Difference of two accuracies measured on the *same* points, acc(a) - acc(b), with its 95%
    interval by Newcombe's hybrid score method for paired proportions (Newcombe 1998, method 10).

    Pairing matters here: two defenses (or a defense and the bare model) scored on the same attacked
    points are strongly correlated, and an interval that ignores it is several times too wide.
    With a = both right, b = only a right, c = only b right, d = both wrong (n = a + b + c + d),
    p_a = (a + b) / n, p_b = (a + c) / n and Wilson intervals (l_a, u_a), (l_b, u_b):
        low  = (p_a - p_b) - sqrt((p_a - l_a)^2 - 2 phi (p_a - l_a)(u_b - p_b) + (u_b - p_b)^2),
        high = (p_a - p_b) + sqrt((u_a - p_a)^2 - 2 phi (u_a - p_a)(p_b - l_b) + (p_b - l_b)^2),
    phi = (ad - bc) / sqrt((a+b)(c+d)(a+c)(b+d)) (0 when a margin is empty). Unlike the Wald interval
    it stays inside [-1, 1] and keeps its coverage when b and c are small.

    correct_a, correct_b: bool [n], whether each point is classified correctly under a and under b.
    Returns {"difference", "low", "high", "n", "both", "only_a", "only_b", "p"}: floats, the counts as ints, and `p` the
    exact two-sided McNemar p-value of "no difference" (:func:`mcnemar_p`), for multiplicity adjustments.
    """
    a_ok = torch.as_tensor(correct_a).detach().cpu().bool().flatten()
    b_ok = torch.as_tensor(correct_b).detach().cpu().bool().flatten()
    if a_ok.shape != b_ok.shape or a_ok.numel() == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty and of the same length (got {a_ok.numel()} and "
                         f"{b_ok.numel()}); score both on the same points")
    n = a_ok.numel()
    both, only_a = int((a_ok & b_ok).sum()), int((a_ok & ~b_ok).sum())
    only_b = int((~a_ok & b_ok).sum())
    neither = n - both - only_a - only_b
    low, high = paired_counts_ci(both, only_a, only_b, neither, z)
    diff = (both + only_a) / n - (both + only_b) / n  # as paired_counts_ci computes it (the same last bit)
    return {"difference": diff, "low": low, "high": high, "n": n, "both": both,
            "only_a": only_a, "only_b": only_b, "p": mcnemar_p(only_a, only_b)}


def paired_counts_ci(both: int, only_a: int, only_b: int, neither: int, z: float = Z_95) -> tuple[float, float]:
    """Newcombe's interval of :func:`paired_difference_ci` from the paired 2x2 counts (a = both right, b = only a
    right, c = only b right, d = both wrong), so an interval can be widened later (a family's adjusted level)
    from the counts alone."""
    n = both + only_a + only_b + neither
    if min(both, only_a, only_b, neither) < 0 or n == 0:
        raise ValueError(f"paired counts must be >= 0 and not all 0 (got {both}, {only_a}, {only_b}, {neither})")
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    l_a, u_a = wilson_interval(both + only_a, n, z)
    l_b, u_b = wilson_interval(both + only_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins > 0 else 0.0
    diff = p_a - p_b
    delta = math.sqrt(max(0.0, (p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2))
    eps = math.sqrt(max(0.0, (u_a - p_a) ** 2 - 2 * phi * (u_a - p_a) * (p_b - l_b) + (p_b - l_b) ** 2))
    return max(-1.0, diff - delta), min(1.0, diff + eps)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: under "a and b are equally accurate" each discordant point (right under
    one, wrong under the other) is right under a with probability 1/2, so only_a ~ Binomial(only_a + only_b, 1/2);
    p = min(1, 2 P(X <= min(only_a, only_b))). 1.0 when there is no discordant point."""
    m, k = only_a + only_b, min(only_a, only_b)
    if m == 0:
        return 1.0
    # the binomial tail in log space (exact for any m this project meets; no scipy import for accuracies)
    logs = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2) for i in range(k + 1)]
    top = max(logs)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(v - top) for v in logs))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the input's order: sort ascending, multiply the i-th smallest
    (from 0) by (m - i), keep them non-decreasing, cap at 1. Rejecting where the adjusted p < alpha controls the
    family-wise error rate at alpha for any dependence between the tests (NaN p-values are left out and stay NaN)."""
    values = [float(p) for p in p_values]
    finite = sorted((p, i) for i, p in enumerate(values) if not math.isnan(p))
    m = len(finite)
    adjusted = [float("nan")] * len(values)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _check_probs(probs: Tensor, name: str) -> None:
    if probs.dim() != 2:
        raise ValueError(f"{name} must be [B, C] probabilities (got {tuple(probs.shape)}); pass softmax outputs")


def mi_pl_detection_score(plain_probs: Tensor, mi_pl_probs: Tensor) -> Tensor:
    """Paper Fig. 3a detection score: Delta F_yhat = F_yhat(x) - F_MI-PL,yhat(x), yhat = argmax of
    the plain probabilities; [B], higher = more suspicious (adversarial inputs lose more)."""
    _check_probs(plain_probs, "plain_probs")
    _check_probs(mi_pl_probs, "mi_pl_probs")
    if plain_probs.shape != mi_pl_probs.shape:
        raise ValueError(f"plain_probs {tuple(plain_probs.shape)} and mi_pl_probs {tuple(mi_pl_probs.shape)} "
                         f"must have the same shape; pass outputs for the same inputs")
    yhat = plain_probs.argmax(1, keepdim=True)
    return (plain_probs.gather(1, yhat) - mi_pl_probs.gather(1, yhat)).squeeze(1)


def confidence_score(plain_probs: Tensor) -> Tensor:
    """Baseline detection score: minus the max softmax probability, [B] (higher = more suspicious)."""
    _check_probs(plain_probs, "plain_probs")
    return -plain_probs.max(1).values


def _score_arrays(scores_clean: Tensor, scores_adv: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets as flat float64 arrays (clean, adversarial); neither may be empty."""
    clean = torch.as_tensor(scores_clean).detach().cpu().double().flatten().numpy()
    adv = torch.as_tensor(scores_adv).detach().cpu().double().flatten().numpy()
    if clean.size == 0 or adv.size == 0:
        raise ValueError("scores_clean and scores_adv must both be non-empty; score clean and adversarial inputs")
    return clean, adv


def detection_auc(scores_clean: Tensor, scores_adv: Tensor) -> float:
    """ROC AUC (sklearn.metrics.roc_auc_score) of separating adversarial (positive) from clean
    (negative) inputs by score (higher = more adversarial). 1 = perfect, 0.5 = chance."""
    from sklearn.metrics import roc_auc_score

    clean, adv = _score_arrays(scores_clean, scores_adv)
    labels = np.concatenate([np.zeros(clean.size), np.ones(adv.size)])
    return float(roc_auc_score(labels, np.concatenate([clean, adv])))


def _delong_components(clean: np.ndarray, adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components from midranks (Sun and Xu 2014): V10_i = P(Y < X_i) + P(Y = X_i) / 2
    over adversarial scores X_i, V01_j = P(X > Y_j) + P(X = Y_j) / 2 over clean scores Y_j; AUC = mean(V10)."""
    from scipy.stats import rankdata

    m, n = adv.size, clean.size
    ranks = rankdata(np.concatenate([adv, clean]))  # midranks: ties share the mean rank
    v10 = (ranks[:m] - rankdata(adv)) / n  # for each adversarial score: share of clean scores below it
    v01 = 1.0 - (ranks[m:] - rankdata(clean)) / m  # for each clean score: share of adversarial scores above it
    return v10, v01


def auc_with_ci(scores_clean: Tensor, scores_adv: Tensor, z: float = Z_95) -> dict:
    """`detection_auc` with its 95% confidence interval from DeLong's variance (DeLong, DeLong and
    Clarke-Pearson 1988), computed from midranks (Sun and Xu 2014), so ties count one half.

    With adversarial scores X (m of them) and clean scores Y (n), the structural components are
    V10_i = P(Y < X_i) + P(Y = X_i) / 2 and V01_j = P(X > Y_j) + P(X = Y_j) / 2; AUC = mean(V10) and
    Var(AUC) = var(V10) / m + var(V01) / n (sample variances). The interval AUC +- z sd is clipped
    to [0, 1]; it has zero width when the two groups are perfectly separated (every V10_i = 1).

    Returns {"auc", "auc_low", "auc_high"} as floats; the bounds are NaN when a group has a single
    score (no variance to estimate).
    """
    clean, adv = _score_arrays(scores_clean, scores_adv)
    m, n = adv.size, clean.size
    v10, v01 = _delong_components(clean, adv)
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return {"auc": auc, "auc_low": float("nan"), "auc_high": float("nan")}
    sd = math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    return {"auc": auc, "auc_low": max(0.0, auc - z * sd), "auc_high": min(1.0, auc + z * sd)}


def auc_difference_ci(
    clean_a: Tensor, adv_a: Tensor, clean_b: Tensor, adv_b: Tensor, z: float = Z_95
) -> dict:
    """AUC(a) - AUC(b) for two detectors that scored the *same* clean and adversarial inputs (in the
    same order), with its 95% interval from DeLong's paired variance: the components of both
    detectors are differenced point by point, Var = var(V10_a - V10_b) / m + var(V01_a - V01_b) / n,
    which counts the correlation between the two detectors (DeLong et al. 1988).

    Returns {"auc_a", "auc_b", "difference", "low", "high"} as floats (bounds NaN when a group has a
    single score).
    """
    ca, aa = _score_arrays(clean_a, adv_a)
    cb, ab = _score_arrays(clean_b, adv_b)
    if ca.shape != cb.shape or aa.shape != ab.shape:
        raise ValueError(f"both detectors must score the same inputs: clean {ca.size} vs {cb.size}, adversarial "
                         f"{aa.size} vs {ab.size}")
    v10_a, v01_a = _delong_components(ca, aa)
    v10_b, v01_b = _delong_components(cb, ab)
    auc_a, auc_b = float(v10_a.mean()), float(v10_b.mean())
    diff = auc_a - auc_b
    m, n = aa.size, ca.size
    if m < 2 or n < 2:
        return {"auc_a": auc_a, "auc_b": auc_b, "difference": diff, "low": float("nan"), "high": float("nan")}
    sd = math.sqrt(np.var(v10_a - v10_b, ddof=1) / m + np.var(v01_a - v01_b, ddof=1) / n)
    return {"auc_a": auc_a, "auc_b": auc_b, "difference": diff, "low": max(-1.0, diff - z * sd),
            "high": min(1.0, diff + z * sd)}


# ---------------------------------------------------------------- paired bootstrap for detection AUCs
def _pair_kernel(clean: Tensor, adv: Tensor) -> Tensor:
    """K[i, j] = 1[adv_i > clean_j] + 1[adv_i == clean_j] / 2 (float64 [n, n]): AUC = mean of K."""
    return (adv[:, None] > clean[None]).double() + 0.5 * (adv[:, None] == clean[None]).double()


def _paired_scores(scores_clean: Tensor, scores_adv: Tensor) -> tuple[Tensor, Tensor]:
    clean = torch.as_tensor(scores_clean).detach().cpu().double().flatten()
    adv = torch.as_tensor(scores_adv).detach().cpu().double().flatten()
    if clean.numel() == 0 or clean.shape != adv.shape:
        raise ValueError(f"paired scores need one clean and one adversarial score per point (got {clean.numel()} and "
                         f"{adv.numel()}); score each point's clean input and its adversarial counterpart")
    return clean, adv


def _bootstrap_aucs(pairs: list[tuple[Tensor, Tensor]], n_resamples: int,
                    generator: torch.Generator | None) -> tuple[list[float], Tensor]:
    """AUC of each (clean, adv) score pair set on all points, and on `n_resamples` bootstrap resamples
    of the points ([R, D]); every detector d sees the same resampled points. A resample with counts
    w (w_i = times point i is drawn) has AUC = w^T K w / n^2, so all resamples are one matrix
    product per chunk of resamples (memory O(n^2 + 256 n))."""
    n = pairs[0][0].numel()
    kernels = [_pair_kernel(clean, adv) for clean, adv in pairs]
    index = torch.randint(n, (int(n_resamples), n), generator=generator)
    out = torch.empty(int(n_resamples), len(pairs), dtype=torch.float64)
    for start in range(0, int(n_resamples), 256):
        rows = index[start:start + 256]
        counts = torch.zeros(rows.shape[0], n, dtype=torch.float64).scatter_add_(
            1, rows, torch.ones(rows.shape, dtype=torch.float64))
        for d, kernel in enumerate(kernels):
            out[start:start + rows.shape[0], d] = ((counts @ kernel) * counts).sum(1) / (n * n)
    return [float(kernel.mean()) for kernel in kernels], out


def _percentiles(values: Tensor, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    low, high = torch.quantile(values, torch.tensor([alpha, 1.0 - alpha], dtype=values.dtype))
    return float(low), float(high)


def _check_bootstrap(n_resamples: int, level: float) -> None:
    if int(n_resamples) != n_resamples or n_resamples < 100:
        raise ValueError(f"n_resamples must be an integer >= 100 (got {n_resamples}); use e.g. 2000")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (got {level}); use 0.95")


def paired_auc_ci(scores_clean: Tensor, scores_adv: Tensor, *, n_resamples: int = 2000, level: float = 0.95,
                  generator: torch.Generator | None = None) -> dict:
    """Detection AUC of adversarial (positive) vs clean (negative) scores of the SAME points, with a
    percentile bootstrap interval over points (Efron and Tibshirani 1993): each point contributes its
    clean and its adversarial score, so resampling points keeps every pair together. DeLong's variance
    assumes the two groups independent, which a paired design is not (the authors' Fig. 3a pairs every
    clean point with its adversarial counterpart).

    scores_clean[i], scores_adv[i]: the clean and adversarial score of point i (higher = more
    adversarial), [n] each. AUC = mean over all (i, j) of 1[adv_i > clean_j] + 1[adv_i = clean_j] / 2
    (= `detection_auc`). The interval holds the (1 - level)/2 and (1 + level)/2 quantiles of the AUC
    over `n_resamples` resamples of the n points with replacement, drawn from `generator` (seed it
    for a reproducible interval). Memory O(n^2).

    Returns {"auc", "auc_low", "auc_high", "n"}.
    """
    _check_bootstrap(n_resamples, level)
    clean, adv = _paired_scores(scores_clean, scores_adv)
    (auc,), resampled = _bootstrap_aucs([(clean, adv)], n_resamples, generator)
    low, high = _percentiles(resampled[:, 0], level)
    return {"auc": auc, "auc_low": low, "auc_high": high, "n": int(clean.numel())}


def paired_auc_difference_ci(clean_a: Tensor, adv_a: Tensor, clean_b: Tensor, adv_b: Tensor, *,
                             n_resamples: int = 2000, level: float = 0.95, adjusted_level: float | None = None,
                             generator: torch.Generator | None = None) -> dict:
    """AUC(a) - AUC(b) of two detectors that scored the same points (clean and adversarial version of
    each, as in `paired_auc_ci`), with a percentile bootstrap interval over points: both detectors
    are scored on the same resampled points, so the interval counts both pairings (clean with
    adversarial, detector a with detector b).

    Returns {"auc_a", "auc_b", "difference", "low", "high", "n", "p"}; `p` is the bootstrap's two-sided p-value of
    "no difference", 2 x the smaller share of resampled differences on either side of 0 ((count + 1) / (B + 1),
    so never 0), for multiplicity adjustments. With `adjusted_level` (a family's 1 - 0.05 / m) also "low_adj" and
    "high_adj", the same resamples' quantiles at that level.
    """
    _check_bootstrap(n_resamples, level)
    if adjusted_level is not None:
        _check_bootstrap(n_resamples, adjusted_level)
    pairs = [_paired_scores(clean_a, adv_a), _paired_scores(clean_b, adv_b)]
    if pairs[0][0].shape != pairs[1][0].shape:
        raise ValueError(f"both detectors must score the same points ({pairs[0][0].numel()} vs {pairs[1][0].numel()})")
    (auc_a, auc_b), resampled = _bootstrap_aucs(pairs, n_resamples, generator)
    differences = resampled[:, 0] - resampled[:, 1]
    low, high = _percentiles(differences, level)
    below, above = int((differences <= 0).sum()), int((differences >= 0).sum())
    p = min(1.0, 2 * (min(below, above) + 1) / (differences.numel() + 1))
    out = {"auc_a": auc_a, "auc_b": auc_b, "difference": auc_a - auc_b, "low": low, "high": high,
           "n": int(pairs[0][0].numel()), "p": p}
    if adjusted_level is not None:
        out["low_adj"], out["high_adj"] = _percentiles(differences, adjusted_level)
    return out
