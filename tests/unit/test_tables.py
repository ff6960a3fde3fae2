"""The paper's tables: row specs and numbers, our numbers laid out beside them, the writers."""

import math

import pandas as pd
import pytest

from mixup_inference.report.aggregate import RESULT_COLUMNS
from mixup_inference.core.attack_specs import parse_attack
from mixup_inference.core.defense_specs import parse_setting, setting_param
from mixup_inference.jobs.paper_tables import (AT_MOST_1, PAPER_TABLE2, PAPER_TABLE3, TABLE2_ROWS, TABLE3_ROWS, TABLE_SPECS,
                                          RowSpec, required_evaluations)
from mixup_inference.report.tables import LONG_COLUMNS, MISSING, build_table, write_table

DISPLAY = ["Clean", "PGD10", "PGD50", "PGD200", "tPGD10", "tPGD50", "tPGD200"]


def result(regime, defense, setting, attack, correct, n=1000, dataset="cifar10", adaptive="none", n_adaptive=0):
    """A results.csv row; the CI is a fixed +-2 points so the cells are easy to predict."""
    parsed = parse_attack(attack)
    targeted, steps = parsed.targeted, parsed.steps
    acc = correct / n
    return {"dataset": dataset, "regime": regime, "defense": defense, "setting": setting,
            "param": setting_param(defense, setting), "attack": attack, "targeted": targeted, "steps": steps,
            "adaptive": adaptive, "n_adaptive": n_adaptive, "accuracy": acc, "ci_low": acc - 0.02,
            "ci_high": acc + 0.02, "n": n, "correct": correct}


@pytest.fixture
def results_df():
    rows = [
        result("mixup", "none", "plain", "clean", 938),
        result("mixup", "none", "plain", "tpgd10", 4),
        result("interpolated_at", "mi_ol", "lam=0.6", "clean", 842),
        result("interpolated_at", "mi_ol", "lam=0.6", "pgd10", 645),
        result("mixup", "mi_combined", "pl=0.5_ol=0.4_th=0.2", "pgd50", 310),
        # must all be ignored:
        result("mixup", "none", "plain", "pgd10", 999, dataset="cifar100"),
        result("interpolated_at", "mi_ol", "lam=0.6", "pgd50", 999, adaptive="paper", n_adaptive=5),
        result("interpolated_at", "mi_ol", "lam=0.7", "pgd50", 999),  # not the paper's setting
    ]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def test_row_specs_follow_the_paper():
    assert [row.label for row in TABLE2_ROWS] == list(PAPER_TABLE2)
    assert [row.label for row in TABLE3_ROWS] == list(PAPER_TABLE3)
    assert (len(TABLE2_ROWS), len(TABLE3_ROWS)) == (15, 13)
    assert all(len(v) == 7 for v in [*PAPER_TABLE2.values(), *PAPER_TABLE3.values()])
    specs2 = {row.label: (row.regime, row.defense, row.setting) for row in TABLE2_ROWS}
    specs3 = {row.label: (row.regime, row.defense, row.setting) for row in TABLE3_ROWS}
    # Table 4
    assert specs2["Mixup + Gaussian noise"] == ("mixup", "gaussian", "sigma=0.04")
    assert specs2["ERM + MI-OL (ablation)"] == ("erm", "mi_ol", "lam=0.6")
    assert specs2["Mixup + MI-Combined"] == ("mixup", "mi_combined", "pl=0.5_ol=0.4_th=0.2")
    assert specs2["IAT + Random rotation"] == ("interpolated_at", "rotation", "deg=30")
    assert specs2["IAT + Xie et al."] == ("interpolated_at", "xie", "size=20-28")
    assert specs2["IAT + Guo et al."] == ("interpolated_at", "guo", "size=20-28")
    assert specs2["AT + MI-OL (ablation)"] == ("at", "mi_ol", "lam=0.8")
    assert specs2["IAT + MI-OL"] == ("interpolated_at", "mi_ol", "lam=0.6")
    # Table 5
    assert specs3["Mixup + Gaussian noise"] == ("mixup", "gaussian", "sigma=0.025")
    assert specs3["Mixup + Xie et al."] == ("mixup", "xie", "size=18-26")
    assert specs3["IAT + Gaussian noise"] == ("interpolated_at", "gaussian", "sigma=0.06")
    assert specs3["IAT + Xie et al."] == ("interpolated_at", "xie", "size=22-30")
    assert specs3["IAT + Guo et al."] == ("interpolated_at", "guo", "size=24-32")
    assert "ERM + MI-OL (ablation)" not in specs3
    # every setting parses; the paper's "<=1" only in the targeted columns of the bare Mixup rows
    for row in TABLE2_ROWS + TABLE3_ROWS:
        parse_setting(row.defense, row.setting)
    assert PAPER_TABLE2["Mixup"][4:] == (AT_MOST_1,) * 3 and PAPER_TABLE3["Mixup"][:4] == (74.2, 5.5, 5.3, 5.2)
    assert PAPER_TABLE2["IAT + MI-OL"] == (84.2, 64.5, 63.8, 63.3, 75.3, 74.7, 74.5)


def test_rowspec_rejects_bad_setting():
    with pytest.raises(ValueError, match="setting"):
        RowSpec("Mixup + MI-OL", "mixup", "mi_ol", "lambda=0.5")


def test_required_evaluations():
    needed = required_evaluations("table2")
    assert len(needed) == 15 == len(set(needed))
    assert needed[0] == ("mixup", "none", "plain") and needed[-1] == ("interpolated_at", "mi_ol", "lam=0.6")
    assert set(TABLE_SPECS) == {"table2", "table3"}
    assert len(required_evaluations("table3")) == 13
    with pytest.raises(ValueError, match="table2"):
        required_evaluations("table4")


def test_build_table_layout_and_cells(results_df):
    table = build_table(results_df, TABLE2_ROWS, PAPER_TABLE2, "cifar10")
    assert list(table.index) == list(PAPER_TABLE2)
    assert list(table.columns) == DISPLAY
    assert table.loc["Mixup", "Clean"] == "93.8 [91.8, 95.8] / 93.8"
    assert table.loc["Mixup", "tPGD10"] == f"0.4 [-1.6, 2.4] / {AT_MOST_1}"
    assert table.loc["Mixup", "tPGD50"] == f"{MISSING} / {AT_MOST_1}"
    assert table.loc["Mixup", "PGD10"] == f"{MISSING} / 3.6"  # the cifar100 row is not used
    assert table.loc["IAT + MI-OL", "PGD10"] == "64.5 [62.5, 66.5] / 64.5"
    assert table.loc["IAT + MI-OL", "PGD50"] == f"{MISSING} / 63.8"  # adaptive and lam=0.7 rows not used
    assert table.loc["Mixup + MI-Combined", "PGD50"] == "31.0 [29.0, 33.0] / 31.0"
    evaluated = table.map(lambda cell: not cell.startswith(MISSING)).to_numpy().sum()
    assert evaluated == 5
    long = table.attrs["long"]
    assert list(long.columns) == LONG_COLUMNS and len(long) == 15 * 7
    mixup_t = long[(long["method"] == "Mixup") & (long["attack"] == "tpgd10")].iloc[0]
    assert mixup_t["ours"] == pytest.approx(0.4) and mixup_t["paper"] == 1.0 and mixup_t["paper_upper_bound"]


def test_build_table_other_attacks_and_empty(results_df):
    extra = pd.DataFrame([result("mixup", "none", "plain", "pgd5", 500, dataset="synth")], columns=RESULT_COLUMNS)
    table = build_table(pd.concat([results_df, extra]), TABLE2_ROWS, PAPER_TABLE2, "synth", attacks=["clean", "pgd5"])
    assert list(table.columns) == ["Clean", "PGD5"]
    assert table.loc["Mixup", "PGD5"] == f"50.0 [48.0, 52.0] / {MISSING}"  # the paper has no PGD-5 column
    assert table.loc["Mixup", "Clean"] == f"{MISSING} / 93.8"
    empty = build_table(pd.DataFrame(columns=RESULT_COLUMNS), TABLE3_ROWS, PAPER_TABLE3, "cifar100")
    assert empty.shape == (13, 7) and list(empty.columns) == DISPLAY
    assert empty.map(lambda cell: cell.split(" / ")[0] == MISSING).to_numpy().all()


def test_build_table_errors(results_df):
    with pytest.raises(ValueError, match="two oblivious rows"):
        build_table(pd.concat([results_df, results_df]), TABLE2_ROWS, PAPER_TABLE2, "cifar10")
    with pytest.raises(ValueError, match="paper's labels"):
        build_table(results_df, [RowSpec("Mixup+MI-OL", "mixup", "mi_ol", "lam=0.5")], PAPER_TABLE2, "cifar10")
    with pytest.raises(ValueError, match="lacks columns"):
        build_table(results_df.drop(columns=["adaptive"]), TABLE2_ROWS, PAPER_TABLE2, "cifar10")
    with pytest.raises(ValueError, match="attack"):
        build_table(results_df, TABLE2_ROWS, PAPER_TABLE2, "cifar10", attacks=["clean", "PGD10"])


def test_write_table_files_parse(results_df, tmp_path):
    table = build_table(results_df, TABLE2_ROWS, PAPER_TABLE2, "cifar10")
    paths = write_table(table, tmp_path / "sub" / "table2")
    assert [p.name for p in paths] == ["table2.md", "table2.csv", "table2.tex", "table2.html"]

    md = paths[0].read_text(encoding="utf-8").splitlines()
    rows = [line for line in md if line.startswith("|")]
    assert len(rows) == 2 + 15  # header, separator, one line per method
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header == ["Method", *DISPLAY]
    assert all(len(line.strip("|").split("|")) == 8 for line in rows)
    assert rows[2].split("|")[1].strip() == "Mixup"

    csv = pd.read_csv(paths[1])
    assert list(csv.columns) == LONG_COLUMNS and len(csv) == 15 * 7
    clean = csv[(csv["method"] == "Mixup") & (csv["attack"] == "clean")].iloc[0]
    assert (clean["ours"], clean["ci_low"], clean["ci_high"], clean["paper"]) == pytest.approx((93.8, 91.8, 95.8, 93.8))
    assert csv["ours"].isna().sum() == 15 * 7 - 5
    assert csv["paper"].notna().all()
    assert csv.loc[csv["paper_upper_bound"], "attack"].tolist() == ["tpgd10", "tpgd50", "tpgd200"]

    tex = paths[2].read_text(encoding="utf-8")
    body = tex[tex.index(r"\midrule") : tex.index(r"\bottomrule")].strip().splitlines()[1:]
    assert len(body) == 15
    assert all(line.count("&") == 14 and line.endswith(r"\\") for line in body)
    assert tex.count("{") == tex.count("}")
    assert r"\begin{tabular}{l" + "rr" * 7 + "}" in tex and r"\toprule" in tex
    assert r"$\leq$1" in tex and r"93.8\,{\scriptsize[91.8, 95.8]}" in tex
    assert "%" not in tex.replace(r"\%", "").split("\n", 1)[1]  # only the comment line has a bare %
    assert tex.isascii()  # pdflatex-safe: no "–" or "≤"

    html = paths[3].read_text(encoding="utf-8")
    assert html.count("<tr") == 1 + 1 + 15 and "IAT + MI-OL" in html


def test_write_table_needs_build_table_output(tmp_path):
    with pytest.raises(ValueError, match="build_table"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t")


def test_paper_numbers_are_finite_percentages():
    for paper in (PAPER_TABLE2, PAPER_TABLE3):
        for values in paper.values():
            for v in values:
                assert v == AT_MOST_1 or (isinstance(v, float) and 0 <= v <= 100 and not math.isnan(v))
