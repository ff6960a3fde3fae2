"""Paired intervals (metrics) and the findings tables built from evaluation artifacts."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mixup_inference.report.findings import (FINDINGS, adaptive_levels, defense_gains, detection_differences,
                                      index_artifacts, matched_baselines, write_findings)
from mixup_inference.core.metrics import auc_difference_ci, auc_with_ci, paired_difference_ci
from mixup_inference.design.paper_tables import RowSpec


def pairs(both, only_a, only_b, neither):
    a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
    b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
    return torch.tensor(a, dtype=torch.bool), torch.tensor(b, dtype=torch.bool)


# Newcombe (1998), "Improved confidence intervals for the difference between binomial proportions based
# on paired data", Stat. Med. 17:2635-2650, Table II, method 10, examples (a) and (b).
@pytest.mark.parametrize("table, low, high", [((36, 12, 2, 0), 0.0569, 0.3404), ((263, 15, 21, 0), -0.0611, 0.0202)])
def test_paired_difference_ci_matches_newcombes_published_examples(table, low, high):
    out = paired_difference_ci(*pairs(*table))
    assert out["difference"] == pytest.approx((table[1] - table[2]) / sum(table))
    assert (out["low"], out["high"]) == pytest.approx((low, high), abs=1.5e-4)
    assert (out["n"], out["only_a"], out["only_b"]) == (sum(table), table[1], table[2])


def test_paired_difference_ci_is_antisymmetric_and_bounded():
    a, b = pairs(30, 9, 1, 10)
    ab, ba = paired_difference_ci(a, b), paired_difference_ci(b, a)
    assert (ab["difference"], ab["low"], ab["high"]) == pytest.approx((-ba["difference"], -ba["high"], -ba["low"]))
    same = paired_difference_ci(a, a)
    assert same["difference"] == 0 and same["low"] < 0 < same["high"]
    extreme = paired_difference_ci(*pairs(0, 20, 0, 0))  # a always right, b always wrong
    assert extreme["difference"] == 1.0 and 0.5 < extreme["low"] < 1.0 and extreme["high"] == 1.0
    with pytest.raises(ValueError, match="same length"):
        paired_difference_ci(a, b[:-1])


def test_paired_difference_ci_covers_the_true_difference_about_95_percent_of_the_time():
    # Correlated pairs, as for two defenses on the same points: P(a) = 0.5, P(b) = 0.4, P(both) = 0.35.
    g = np.random.default_rng(0)
    cells = np.array([0.35, 0.15, 0.05, 0.45])  # both, only a, only b, neither
    hits = 0
    for _ in range(400):
        counts = g.multinomial(200, cells)
        out = paired_difference_ci(*pairs(*counts))
        hits += out["low"] <= 0.1 <= out["high"]
    assert 0.92 <= hits / 400 <= 0.985


def test_auc_difference_against_a_constant_detector_is_the_single_auc_interval_minus_one_half():
    g = np.random.default_rng(2)
    clean, adv = torch.from_numpy(g.normal(0, 1, 60)), torch.from_numpy(g.normal(0.8, 1, 50))
    single = auc_with_ci(clean, adv)
    diff = auc_difference_ci(clean, adv, torch.zeros(60), torch.zeros(50))  # all ties: AUC 0.5, no variance
    assert (diff["auc_a"], diff["auc_b"]) == (pytest.approx(single["auc"], abs=1e-12), 0.5)
    assert diff["difference"] == pytest.approx(single["auc"] - 0.5, abs=1e-12)
    assert (diff["low"], diff["high"]) == pytest.approx((single["auc_low"] - 0.5, single["auc_high"] - 0.5), abs=1e-12)
    same = auc_difference_ci(clean, adv, clean, adv)
    assert {k: same[k] for k in ("difference", "low", "high")} == {"difference": 0.0, "low": 0.0, "high": 0.0}
    with pytest.raises(ValueError, match="same inputs"):
        auc_difference_ci(clean, adv, clean[:-1], adv)


def one_hot(pred, classes=3):
    return torch.nn.functional.one_hot(torch.tensor(pred), classes).float()


def art(pred, y, plain=None, *, regime="mixup", attack="pgd10", defense="mi_ol", setting="lam=0.5",
        adaptive="none", n_adaptive=0):
    return {"probs": one_hot(pred), "plain_probs": one_hot(pred if plain is None else plain),
            "y": torch.tensor(y), "meta": {"dataset": "d", "regime": regime, "attack": attack, "defense": defense,
                                           "setting": setting, "adaptive": adaptive, "n_adaptive": n_adaptive}}


Y = [0, 1, 2, 0, 1, 2, 0, 1]


def test_defense_gains_pair_the_defense_with_its_bare_model():
    # MI-OL right on 6 of 8, the bare model on 2 of them: +50 points; the plain row is skipped.
    wrong = [(v + 1) % 3 for v in Y]
    defended = Y[:6] + wrong[6:]
    plain = Y[:2] + wrong[2:]
    index = index_artifacts([art(defended, Y, plain), art(Y, Y, defense="none", setting="plain")])
    rows = [RowSpec("Mixup", "mixup", "none", "plain"), RowSpec("Mixup + MI-OL", "mixup", "mi_ol", "lam=0.5")]
    gains = defense_gains(index, rows, "d", ["pgd10"])
    assert list(gains.method) == ["Mixup + MI-OL"]
    row = gains.iloc[0]
    assert (row.plain, row.defended, row.difference, row.n) == (25.0, 75.0, 50.0, 8)
    assert 0 < row.low < 50 < row.high <= 100
    with pytest.raises(KeyError, match="no evaluation artifact"):
        defense_gains(index, rows, "d", ["pgd50"])
    with pytest.raises(ValueError, match="two artifacts"):
        index_artifacts([art(Y, Y), art(Y, Y)])


def test_matched_baselines_compare_with_the_mi_setting_of_nearest_clean_accuracy():
    wrong = [(v + 1) % 3 for v in Y]
    arts = [
        art(Y, Y, attack="clean", setting="lam=0.4"),                    # MI clean 100%
        art(Y[:4] + wrong[4:], Y, attack="clean", setting="lam=0.8"),    # MI clean 50%
        art(Y[:5] + wrong[5:], Y, attack="clean", defense="guo", setting="size=20-28"),  # baseline clean 62.5%
        art(Y[:3] + wrong[3:], Y, setting="lam=0.8"),                    # MI under attack 37.5%
        art(Y, Y, setting="lam=0.4"),
        art(Y[:1] + wrong[1:], Y, defense="guo", setting="size=20-28"),  # baseline under attack 12.5%
    ]
    settings = {"mi_ol": ["lam=0.4", "lam=0.8"], "guo": ["size=20-28"], "xie": []}
    out = matched_baselines(index_artifacts(arts), "d", ["mixup"], "pgd10", settings)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row.mi_setting, row.clean_mi, row.clean_baseline) == ("lam=0.8", 50.0, 62.5)
    assert (row.adv_mi, row.adv_baseline, row.difference) == (37.5, 12.5, 25.0)


def test_detection_differences_use_the_mi_pl_score_and_plain_confidence_on_clean_correct_points():
    # Clean: MI-PL keeps the predicted class (score 0), except on point 3, which the bare model gets wrong
    # and where MI-PL moves (score 1); adversarial: MI-PL drops the prediction (score 1), while plain
    # confidence is 1 everywhere (one-hot), so it cannot separate: AUC 1 vs 0.5 on the 3 clean-correct points.
    y = [0, 1, 2, 0]
    clean = art([0, 1, 2, 2], y, plain=[0, 1, 2, 1], attack="clean", defense="mi_pl")
    adv = art([1, 2, 0, 1], y, plain=y, defense="mi_pl")
    out = detection_differences(index_artifacts([clean, adv]), "d", ["mixup"], ["pgd10"], "lam=0.5")
    row = out.iloc[0]
    assert (row.auc_mi_pl, row.auc_confidence, row.difference, row.n) == (1.0, 0.5, 0.5, 3)
    assert row.low <= 0.5 <= row.high
    # on all 4 points the wrong one's clean score ties every adversarial score: (12 + 4 / 2) / 16
    assert (row.auc_mi_pl_all, row.auc_confidence_all, row.n_all) == (0.875, 0.5, 4)


def test_adaptive_levels_pair_the_adaptive_run_with_the_oblivious_prefix():
    wrong = [(v + 1) % 3 for v in Y]
    arts = [
        art(Y[:1] + wrong[1:], Y, regime="interpolated_at", defense="none", setting="plain"),  # no-MI: 1/4 on prefix
        art(Y[:3] + wrong[3:], Y, regime="interpolated_at", setting="lam=0.6"),                # oblivious MI: 3/4
        art(Y[:2] + wrong[2:4], Y[:4], regime="interpolated_at", setting="lam=0.6", adaptive="paper", n_adaptive=5),
    ]
    out = adaptive_levels(index_artifacts(arts), "d", "interpolated_at", "mi_ol", "lam=0.6", ["paper"], ["pgd10"], [5])
    row = out.iloc[0]
    assert (row.adaptive_mi, row.no_mi, row.oblivious_mi, row.difference, row.n) == (50.0, 25.0, 75.0, 25.0, 4)
    assert row.gain_left == 0.5  # half of MI's oblivious gain is left under the adaptive attack
    arts[2]["y"] = torch.tensor([1, 1, 2, 0])
    with pytest.raises(ValueError, match="not the first 4"):
        adaptive_levels(index_artifacts(arts), "d", "interpolated_at", "mi_ol", "lam=0.6", ["paper"], ["pgd10"], [5])


def test_write_findings_writes_one_page_and_a_csv_per_table(tmp_path):
    frames = {name: pd.DataFrame({"x": [1.5], "name": [name]}) for name in FINDINGS}
    frames["adaptive"] = frames["robustness"] = pd.DataFrame()
    paths = write_findings(frames, tmp_path / "findings")
    assert {p.name for p in paths} == {"findings.md", "findings.html"} | {f"findings_{n}.csv" for n in FINDINGS}
    md = (tmp_path / "findings.md").read_text()
    assert md.count("\n## ") == len(FINDINGS) and "No defense was attacked by the robustness evaluation" in md and "(no rows)" in md and "| 1.5 |" in md
    assert pd.read_csv(tmp_path / "findings_gains.csv").name[0] == "gains"
    assert math.isfinite(pd.read_csv(tmp_path / "findings_detection.csv").x[0])


def robust_art(correct, y, attacked=None, *, regime="mixup", defense="mi_ol", setting="lam=0.5", kind="eot_pgd",
               attack="pgd5", eot=1, family="eot_pgd-pgd5-e1", level=0, converged=None, repeats=2, shares=None):
    """A robust run's artifact (issue 25): `correct` [n] bool, all R verdicts right there; `attacked` defaults
    to every point; `shares`: per point, how many of the R verdicts are right (default R where correct, 0 else)."""
    correct = torch.tensor(correct)
    attacked = torch.ones_like(correct) if attacked is None else torch.tensor(attacked)
    pred = [v if ok else (v + 1) % 3 for v, ok in zip(y, correct.tolist())]
    meta = {"dataset": "d", "regime": regime, "attack": attack, "defense": defense, "setting": setting,
            "adaptive": kind, "n_adaptive": 0, "eot": eot, "n_samples_attack": 1, "cascade": True,
            "repeats": repeats, "family": family, "level": level, "converged": converged}
    rights = [repeats if ok else 0 for ok in correct.tolist()] if shares is None else shares
    repeat_correct = torch.tensor([[r < k for k in rights] for r in range(repeats)]) & attacked
    return {**art(pred, y), "meta": meta, "attacked": attacked, "repeat_correct": repeat_correct}


def _keep(k):
    return [True] * k + [False] * (len(Y) - k)


def _setting_arts(defense, setting, per_level, *, converged, regime="mixup", shares=None):
    """A defense setting's artifacts: clean, an oblivious attack leaving 6 of the 8 points, and one EOT PGD ladder
    whose level k leaves the first per_level[k] points (a cascade: each attacks what the one before left); `shares`:
    level 0's right verdicts per point."""
    obl = [v if i < 6 else (v + 1) % 3 for i, v in enumerate(Y)]
    arts = [art(Y, Y, attack="clean", regime=regime, defense=defense, setting=setting),
            art(obl, Y, regime=regime, defense=defense, setting=setting)]
    alive = 6
    for k, left in enumerate(per_level):
        last = k == len(per_level) - 1
        arts.append(robust_art(_keep(left), Y, _keep(alive), regime=regime, defense=defense, setting=setting,
                               attack=f"pgd{5 * 2 ** k}", eot=2 ** k, level=k,
                               converged=converged if last else False, shares=shares if k == 0 else None))
        alive = left
    return arts


def test_robustness_levels_compare_with_the_bare_models_worst_case_and_say_converged_or_upper_bound(tmp_path):
    from mixup_inference.report.findings import BARE_ROBUST, robustness_levels, robustness_statement

    # 8 points. The bare model keeps 3 under its oblivious attack, and its own robustness runs (AutoAttack standard)
    # break one more: its worst case is 2/8, and every "minus bare" difference uses it. MI-OL: the oblivious attack
    # leaves 6; levels 0, 1, 2 leave 4, 4, 4 (two flat doublings: converged, as the job decided). Gaussian: the
    # third level still breaks 2 more: an upper bound, the last doubling moved it 25 points.
    bare_obl = Y[:3] + [(v + 1) % 3 for v in Y[3:]]
    arts = [art(Y, Y, attack="clean", defense="none", setting="plain"),
            art(bare_obl, Y, defense="none", setting="plain"),
            robust_art(_keep(2), Y, _keep(3), defense="none", setting="plain", kind="autoattack_standard",
                       attack="aa25", family="autoattack_standard", level=0, repeats=1)]
    # MI-OL's level 0: the 4 points it leaves are right in both verdicts, the 2 it breaks in 1 of 2 (mean over R)
    arts += _setting_arts("mi_ol", "lam=0.5", [4, 4, 4], converged=True, shares=[2, 2, 2, 2, 1, 1, 0, 0])
    arts += _setting_arts("gaussian", "sigma=0.04", [4, 4, 2], converged=False)
    frame = robustness_levels(index_artifacts(arts)).set_index("defense")
    assert "none" not in frame.index  # the bare model is every row's reference, not a row
    mi, noise = frame.loc["mi_ol"], frame.loc["gaussian"]
    assert (mi.oblivious, mi.worst_case, bool(mi.converged)) == (75.0, 50.0, True)
    assert (noise.oblivious, noise.worst_case, bool(noise.converged)) == (75.0, 25.0, False)
    assert (mi.bare_worst_case, mi.difference, noise.difference) == (25.0, 25.0, 0.0)
    assert mi.bare_basis == BARE_ROBUST and "autoattack_standard aa25 (L0)" in mi.bare_faced
    assert "eot_pgd pgd20 EOT 4 (L2)" in mi.defense_faced and "autoattack" not in mi.defense_faced
    assert mi.worst_case_mean == 62.5 and noise.worst_case_mean == 25.0  # (4 + 2 x 1/2) / 8; all-R 4 / 8
    assert (mi.last_doubling, noise.last_doubling) == (0.0, 25.0)
    for r in (mi, noise):  # each number with its interval, the budget each family stopped at, R
        assert r.oblivious_low < r.oblivious < r.oblivious_high and r.worst_case_low < r.worst_case < r.worst_case_high
        assert r.budget == "eot_pgd pgd20 EOT 4 x1 (L2)" and r.repeats == 2 and r.n == 8
        assert r.levels.startswith("L0 50.0 [") and " | L2 " in r.levels
    assert noise.levels.split(" | ")[2].startswith("L2 25.0 [")
    statement = robustness_statement(frame.reset_index()).splitlines()
    (mi_line,) = [line for line in statement if "mi_ol" in line]
    (noise_line,) = [line for line in statement if "gaussian" in line]
    assert "is converged" in mi_line and "upper bound" not in mi_line and "at eot_pgd pgd20 EOT 4 x1 (L2)" in mi_line
    assert "upper bound" in noise_line and "moved it by 25.0 points" in noise_line and "is converged" not in noise_line
    for line in (mi_line, noise_line):
        assert "oblivious 75.0% [" in line and "R = 2" in line and "the bare model's worst case 25.0%" in line
    # the page the report shows carries the columns and the statement
    frames = {name: pd.DataFrame() for name in FINDINGS} | {"robustness": frame.reset_index()}
    write_findings(frames, tmp_path / "findings")
    for ext in ("md", "html"):
        page = (tmp_path / f"findings.{ext}").read_text()
        for column in ("oblivious_low", "oblivious_high", "worst_case_low", "worst_case_high", "worst_case_mean",
                       "converged", "levels", "last_doubling", "budget", "repeats", "bare_worst_case", "bare_basis",
                       "defense_faced", "bare_faced", "low_adj", "high_adj", "family_size"):
            assert column in page, (ext, column)
        assert "is converged" in page and "upper bound" in page
    md = (tmp_path / "findings.md").read_text()  # two claims in the section: each interval widened to 1 - 0.05/2
    assert md.count("(adjusted for the section's 2 claims: [") == 2


def test_without_its_own_robustness_runs_the_bare_model_falls_back_to_its_oblivious_worst_case():
    from mixup_inference.report.findings import BARE_OBLIVIOUS, robustness_levels

    bare_obl = Y[:3] + [(v + 1) % 3 for v in Y[3:]]
    arts = [art(bare_obl, Y, defense="none", setting="plain"),
            *_setting_arts("mi_ol", "lam=0.5", [4, 4, 4], converged=True)]
    (row,) = robustness_levels(index_artifacts(arts)).to_dict("records")
    assert (row["bare_worst_case"], row["difference"], row["bare_basis"]) == (37.5, 12.5, BARE_OBLIVIOUS)
    assert row["bare_converged"] is None and row["bare_faced"] == "oblivious pgd10"


def test_adjust_applies_holm_within_each_family_and_words_follow_it():
    """Three MI gains with raw p 0.01, 0.02 and 0.04 (all 'significant' alone): Holm within the family keeps only the
    first (0.03); the baseline row is its own family, so its raw 0.04 stays 0.04 and it holds; a significant negative
    difference is 'reversed'; the detection family is adjusted apart."""
    import pandas as pd

    from mixup_inference.report.findings import HOLDS, NO_EVIDENCE, REVERSED, adjust

    gains = pd.DataFrame([
        {"regime": "mixup", "defense": "mi_ol", "difference": 5.0, "p": 0.01},
        {"regime": "mixup", "defense": "mi_pl", "difference": 4.0, "p": 0.02},
        {"regime": "interpolated_at", "defense": "mi_ol", "difference": 3.0, "p": 0.04},
        {"regime": "mixup", "defense": "gaussian", "difference": 2.0, "p": 0.04},
        {"regime": "erm", "defense": "mi_ol", "difference": -9.0, "p": 0.001},
    ])
    detection = pd.DataFrame([{"difference": 0.1, "p": 0.02}, {"difference": -0.2, "p": 0.5}])
    out = adjust({"gains": gains, "detection": detection})
    g = out["gains"]
    assert list(g["family"]) == ["mi_gains", "mi_gains", "mi_gains", "baselines", "ablations"]
    assert list(g["p_holm"]) == pytest.approx([0.03, 0.04, 0.04, 0.04, 0.001])
    assert list(g["verdict"]) == [HOLDS, HOLDS, HOLDS, HOLDS, REVERSED]
    gains.loc[2, "p"] = 0.03  # 3 x 0.01 = 0.03, 2 x 0.02 = 0.04, 1 x 0.03 -> 0.04: all hold; one more test breaks it
    gains.loc[5] = {"regime": "mixup", "defense": "mi_combined", "difference": 1.0, "p": 0.3}
    g = adjust({"gains": gains})["gains"]
    assert list(g["p_holm"][:3]) == pytest.approx([0.04, 0.06, 0.06])
    assert list(g["verdict"][:3]) == [HOLDS, NO_EVIDENCE, NO_EVIDENCE]
    assert list(out["detection"]["p_holm"]) == pytest.approx([0.04, 0.5])
    assert list(out["detection"]["verdict"]) == [HOLDS, NO_EVIDENCE]
    assert "p_holm" not in gains  # the input is not changed


def test_adjusted_intervals_are_bonferroni_over_each_family_from_the_counts():
    """Each accuracy row's adjusted interval is Newcombe's at 1 - 0.05/m for its family of m rows, computed from
    the counts it carries; it contains the raw interval, equals it for a family of one, and covers the family's m
    true differences together about 95% of the time (simulated: 3 correlated claims of 200 points each)."""
    from mixup_inference.core.metrics import paired_counts_ci, z_for
    from mixup_inference.report.findings import adjust

    assert z_for(0.95) == pytest.approx(1.959964, abs=1e-6) and z_for(1 - 0.05 / 3) == pytest.approx(2.39398, abs=1e-5)
    both, only_a, only_b, neither = 120, 30, 10, 40
    raw = paired_difference_ci(*pairs(both, only_a, only_b, neither))
    assert paired_counts_ci(both, only_a, only_b, neither) == pytest.approx((raw["low"], raw["high"]))

    def row(regime, defense, counts):
        out = paired_difference_ci(*pairs(*counts))
        return {"regime": regime, "defense": defense, "difference": 100 * out["difference"], "low": 100 * out["low"],
                "high": 100 * out["high"], "p": out["p"], "both": counts[0], "only_first": counts[1],
                "only_second": counts[2], "n": sum(counts)}
    gains = pd.DataFrame([row("mixup", "mi_ol", (120, 30, 10, 40)), row("mixup", "mi_combined", (100, 25, 20, 55)),
                          row("interpolated_at", "mi_ol", (90, 40, 5, 65)), row("mixup", "gaussian", (120, 30, 10, 40))])
    g = adjust({"gains": gains})["gains"]
    assert list(g.columns[:7]) == ["regime", "defense", "difference", "low", "high", "low_adj", "high_adj"]
    assert list(g["family_size"]) == [3, 3, 3, 1]
    wide = paired_counts_ci(120, 30, 10, 40, z_for(1 - 0.05 / 3))
    assert (g.low_adj[0], g.high_adj[0]) == pytest.approx((round(100 * wide[0], 2), round(100 * wide[1], 2)))
    assert ((g.low_adj[:3] < g.low[:3]) & (g.high_adj[:3] > g.high[:3])).all()  # wider within the family of 3
    assert (g.low_adj[3], g.high_adj[3]) == pytest.approx((round(g.low[3], 2), round(g.high[3], 2)), abs=0.006)

    rng = np.random.default_rng(3)  # simultaneous coverage: all three adjusted intervals cover at once
    cells, truth, together = np.array([0.35, 0.15, 0.05, 0.45]), 0.10, 0
    for _ in range(300):
        covered = []
        for _ in range(3):
            c = rng.multinomial(200, cells)
            low, high = paired_counts_ci(*map(int, c), z_for(1 - 0.05 / 3))
            covered.append(low <= truth <= high)
        together += all(covered)
    assert 0.92 <= together / 300 <= 1.0


def test_detection_rows_bring_their_adjusted_interval_and_a_family_mismatch_is_refused():
    from mixup_inference.report.findings import adjust

    detection = pd.DataFrame([{"difference": 0.3, "low": 0.2, "high": 0.4, "low_adj": 0.15, "high_adj": 0.45,
                               "family_size": 2, "p": 0.001},
                              {"difference": 0.1, "low": -0.1, "high": 0.3, "low_adj": -0.2, "high_adj": 0.4,
                               "family_size": 2, "p": 0.4}])
    d = adjust({"detection": detection})["detection"]
    assert list(d["low_adj"]) == [0.15, -0.2] and list(d["family_size"]) == [2, 2]
    with pytest.raises(ValueError, match="family of 3 claims.*has 2"):
        adjust({"detection": detection.assign(family_size=3)})
