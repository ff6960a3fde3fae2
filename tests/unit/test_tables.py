"""The paper's tables: row specs and, apart from them, the paper's numbers; our numbers laid out beside
them, the writers. Properties of the rows, never their counts: a row added to a table keeps these passing."""

import math

import pandas as pd
import pytest
import torch
import yaml
from workflow_helpers import REPO

from mixup_inference.report.aggregate import RESULT_COLUMNS
from mixup_inference.core.attacks.specs import parse_attack
from mixup_inference.core.defenses.averaging import averaged_softmax, copy_owners
from mixup_inference.core.defenses.specs import DEFENSES, DefenseSpec, Param, parse_setting, register_defense, setting_param
from mixup_inference.design import plan
from mixup_inference.design.configcheck import check_config, validate_config
from mixup_inference.design import paper_tables
from mixup_inference.design.paper_tables import (AT_MOST_1, PAPER_NUMBERS, PAPER_TABLE2, PAPER_TABLE3, ROWS, TABLE2_ROWS,
                                               TABLE3_ROWS, TABLES, RowSpec, paper_numbers, required_evaluations,
                                               rows_of)
from mixup_inference.report.tables import COLUMNS, LONG_COLUMNS, MISSING, build_table, write_table

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


@pytest.mark.parametrize("table", TABLES)
def test_each_row_once_and_every_paper_number_names_a_row(table):
    rows = rows_of(table)
    assert len({row.label for row in rows}) == len(rows)  # a label names one row
    assert set(paper_numbers(table)) <= {row.label for row in rows}
    assert all(len(values) == len(COLUMNS) for values in paper_numbers(table).values())


def test_row_specs_follow_the_paper():
    # the rows the paper reports keep its order (rows of our own may sit anywhere, without numbers)
    for rows, paper in ((TABLE2_ROWS, PAPER_TABLE2), (TABLE3_ROWS, PAPER_TABLE3)):
        assert [row.label for row in rows if row.label in paper] == list(paper)
    assert PAPER_NUMBERS == {"table2": PAPER_TABLE2, "table3": PAPER_TABLE3}
    assert rows_of("table2") == TABLE2_ROWS and rows_of("table3") == TABLE3_ROWS
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


@pytest.mark.parametrize("table", TABLES)
def test_required_evaluations(table):
    needed = required_evaluations(table)
    assert needed == [(row.regime, row.defense, row.setting) for row in rows_of(table)] and len(set(needed)) == len(needed)
    assert needed[0] == ("mixup", "none", "plain")


def test_an_unknown_table_a_label_twice_and_numbers_without_a_row_are_errors(monkeypatch):
    with pytest.raises(ValueError, match="table4.*table2"):
        required_evaluations("table4")
    monkeypatch.setattr(paper_tables, "ROWS", [*ROWS, ROWS[0]])
    with pytest.raises(ValueError, match=r"two rows labelled \['Mixup'\]"):
        rows_of("table2")
    monkeypatch.setattr(paper_tables, "ROWS", [*ROWS, ("Mixup + JPEG", "mixup", "gaussian", {"tabel2": "sigma=0.1"})])
    with pytest.raises(ValueError, match=r"'Mixup \+ JPEG' of paper_tables.ROWS has a setting for \['tabel2'\]"):
        rows_of("table2")
    monkeypatch.setattr(paper_tables, "ROWS", ROWS[1:])
    with pytest.raises(ValueError, match=r"numbers for \['Mixup'\], which are no row of table2"):
        paper_numbers("table2")


def test_build_table_layout_and_cells(results_df):
    table = build_table(results_df, TABLE2_ROWS, PAPER_TABLE2, "cifar10")
    assert list(table.index) == [row.label for row in TABLE2_ROWS]  # every row once, in the spec's order
    assert list(table.columns) == DISPLAY  # the configured attacks (here the default: the paper's columns)
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
    assert list(long.columns) == LONG_COLUMNS and len(long) == len(TABLE2_ROWS) * len(COLUMNS)
    mixup_t = long[(long["method"] == "Mixup") & (long["attack"] == "tpgd10")].iloc[0]
    assert mixup_t["ours"] == pytest.approx(0.4) and mixup_t["paper"] == 1.0 and mixup_t["paper_upper_bound"]


def test_build_table_other_attacks_and_empty(results_df):
    extra = pd.DataFrame([result("mixup", "none", "plain", "pgd5", 500, dataset="synth")], columns=RESULT_COLUMNS)
    table = build_table(pd.concat([results_df, extra]), TABLE2_ROWS, PAPER_TABLE2, "synth", attacks=["clean", "pgd5"])
    assert list(table.columns) == ["Clean", "PGD5"]
    assert table.loc["Mixup", "PGD5"] == f"50.0 [48.0, 52.0] / {MISSING}"  # the paper has no PGD-5 column
    assert table.loc["Mixup", "Clean"] == f"{MISSING} / 93.8"
    empty = build_table(pd.DataFrame(columns=RESULT_COLUMNS), TABLE3_ROWS, PAPER_TABLE3, "cifar100")
    assert empty.shape == (len(TABLE3_ROWS), len(COLUMNS)) and list(empty.columns) == DISPLAY
    assert empty.map(lambda cell: cell.split(" / ")[0] == MISSING).to_numpy().all()


def test_build_table_errors(results_df):
    with pytest.raises(ValueError, match="two oblivious rows"):
        build_table(pd.concat([results_df, results_df]), TABLE2_ROWS, PAPER_TABLE2, "cifar10")
    with pytest.raises(ValueError, match="appear twice"):
        build_table(results_df, [TABLE2_ROWS[0], TABLE2_ROWS[0]], PAPER_TABLE2, "cifar10")
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
    n_rows = len(TABLE2_ROWS)
    assert len(rows) == 2 + n_rows  # header, separator, one line per method
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header == ["Method", *DISPLAY]
    assert all(len(line.strip("|").split("|")) == 8 for line in rows)
    assert rows[2].split("|")[1].strip() == "Mixup"

    csv = pd.read_csv(paths[1])
    assert list(csv.columns) == LONG_COLUMNS and len(csv) == n_rows * 7
    clean = csv[(csv["method"] == "Mixup") & (csv["attack"] == "clean")].iloc[0]
    assert (clean["ours"], clean["ci_low"], clean["ci_high"], clean["paper"]) == pytest.approx((93.8, 91.8, 95.8, 93.8))
    assert csv["ours"].isna().sum() == n_rows * 7 - 5
    assert (csv["paper"].isna() == ~csv["method"].isin(list(PAPER_TABLE2))).all()  # "–" exactly where the paper has none
    assert csv.loc[csv["paper_upper_bound"], "attack"].tolist() == ["tpgd10", "tpgd50", "tpgd200"]

    tex = paths[2].read_text(encoding="utf-8")
    body = tex[tex.index(r"\midrule") : tex.index(r"\bottomrule")].strip().splitlines()[1:]
    assert len(body) == n_rows
    assert all(line.count("&") == 14 and line.endswith(r"\\") for line in body)
    assert tex.count("{") == tex.count("}")
    assert r"\begin{tabular}{l" + "rr" * 7 + "}" in tex and r"\toprule" in tex
    assert r"$\leq$1" in tex and r"93.8\,{\scriptsize[91.8, 95.8]}" in tex
    assert "%" not in tex.replace(r"\%", "").split("\n", 1)[1]  # only the comment line has a bare %
    assert tex.isascii()  # pdflatex-safe: no "–" or "≤"

    html = paths[3].read_text(encoding="utf-8")
    assert html.count("<tr") == 1 + 1 + n_rows and "IAT + MI-OL" in html


def test_the_worst_case_shows_all_r_and_mean_over_r_side_by_side(results_df, tmp_path):
    """Issue 33: where the robustness evaluation attacked a row (the bare model's too), the table gives its worst
    case with every verdict right and averaged over the R verdicts, and the caption says which columns have R
    verdicts."""
    worst = [{**result(regime, defense, setting, "clean", correct, n=400), "attack": "worst_case", "steps": 0,
              "adaptive": "worst_case", "mean_accuracy": mean, "repeats": repeats}
             for regime, defense, setting, correct, mean, repeats in (
                 ("interpolated_at", "mi_ol", "lam=0.6", 84, 0.2575, 10), ("interpolated_at", "none", "plain", 88, 0.22, 1))]
    frame = pd.concat([results_df, pd.DataFrame(worst)], ignore_index=True)
    table = build_table(frame, TABLE2_ROWS, PAPER_TABLE2, "cifar10")
    assert list(table.columns[-2:]) == ["Worst case (all R)", "Worst case (mean over R)"]
    assert table.loc["IAT + MI-OL", "Worst case (all R)"] == f"21.0 [19.0, 23.0] / {MISSING}"
    assert table.loc["IAT + MI-OL", "Worst case (mean over R)"] == f"25.8 / {MISSING}"  # no interval: descriptive
    assert table.loc["Interpolated AT", "Worst case (all R)"].startswith("22.0 [")
    assert table.loc["Mixup", "Worst case (all R)"] == MISSING
    md, _csv, tex, _html = write_table(table, tmp_path / "table2")
    caption = md.read_text(encoding="utf-8").splitlines()[0]
    assert "single-verdict" in caption and "'all R'" in caption and "'mean over R'" in caption
    assert tex.read_text(encoding="utf-8").isascii()
    plain = write_table(build_table(results_df, TABLE2_ROWS, PAPER_TABLE2, "cifar10"), tmp_path / "t")[0]
    assert "'all R'" not in plain.read_text(encoding="utf-8")  # no worst case, no word about it


def test_write_table_needs_build_table_output(tmp_path):
    with pytest.raises(ValueError, match="build_table"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t")


def test_paper_numbers_are_finite_percentages():
    for paper in (PAPER_TABLE2, PAPER_TABLE3):
        for values in paper.values():
            for v in values:
                assert v == AT_MOST_1 or (isinstance(v, float) and 0 <= v <= 100 and not math.isnan(v))


# ---------------------------------------------------------------- a Table-2 row the paper lacks, added at run time
def _dither(model, x, *, step, n_samples, generator=None, chunk_size=None, grad=False):
    """A researcher's JPEG-like lossy transform: each pixel quantised to a multiple of `step` after a
    uniform random dither, the softmax averaged over `n_samples` copies."""
    def make_inputs(start, stop):
        copies = x[copy_owners(start, stop, n_samples, x.device)]
        dither = torch.rand(copies.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (torch.floor(copies / step + dither) * step).clamp(0.0, 1.0)

    return averaged_softmax(model, x, make_inputs, n_samples, chunk_size=chunk_size, grad=grad)


@pytest.fixture
def dither_row(monkeypatch):
    """The whole of adding a row (README's how-to): its defense registered, one line in paper_tables.ROWS
    with its Table-2 setting, no paper numbers."""
    spec = register_defense(DefenseSpec("dither", _dither, "Dithered quantisation", "C8", (Param("step", "step", "ratio"),),
                                        main_param="step", example="step=0.125", baseline=True))
    monkeypatch.setattr(paper_tables, "ROWS", [*ROWS, ("Mixup + Dithered quantisation", "mixup", "dither",
                                                       {"table2": "step=0.125"})])
    yield RowSpec("Mixup + Dithered quantisation", "mixup", "dither", "step=0.125")
    del DEFENSES[spec.name]


def test_a_table2_row_without_paper_numbers_is_planned_tabled_and_targeted(dither_row, tmp_path):
    """Issue 32's proof: a row added at run time with no edit outside this test is a valid row of the
    smoke preset's Table 2, evaluated under every configured attack, laid out with "–" in its paper
    cells in every format, and a target of `robustness.targets: [table2]` (its defense is randomized)."""
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["robustness"]["targets"] = ["table2"]
    validate_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    check_config(config)
    spec = plan.table_specs(config)["table2"]
    assert plan.table_rows(spec)[-1] == dither_row and dither_row.label not in spec["paper"]
    dataset, attacks = spec["dataset"], spec["attacks"]
    evaluations = set(plan.evaluations(config))
    assert all((dataset, "mixup", attack, "dither", "step=0.125") in evaluations for attack in attacks)
    targets = plan.robust_targets(config)
    assert (dataset, "mixup", "dither", "step=0.125") in targets
    # the bare row is no target of the table item; the bare model is one as the defenses' reference (issue 33)
    assert (dataset, "mixup", "none", "plain") not in plan.robust_target_item(config, "table2")
    assert (dataset, "mixup", "none", "plain") in plan.bare_targets(config)

    results = pd.DataFrame([result("mixup", "dither", "step=0.125", attack, 610 - 100 * i, dataset=dataset)
                            for i, attack in enumerate(attacks)]
                           + [result("mixup", "none", "plain", "clean", 900, dataset=dataset)], columns=RESULT_COLUMNS)
    table = build_table(results, plan.table_rows(spec), spec["paper"], dataset, attacks=attacks)
    assert list(table.index) == [row.label for row in plan.table_rows(spec)]
    assert table.loc[dither_row.label].tolist() == [f"61.0 [59.0, 63.0] / {MISSING}", f"51.0 [49.0, 53.0] / {MISSING}",
                                                    f"41.0 [39.0, 43.0] / {MISSING}"]
    assert table.loc["Mixup", "Clean"] == "90.0 [88.0, 92.0] / 93.8"  # the paper's rows keep their numbers
    md, csv, tex, html = write_table(table, tmp_path / "table2")
    line = next(line for line in md.read_text(encoding="utf-8").splitlines() if dither_row.label in line)
    assert [cell.strip() for cell in line.strip("|").split("|")][1:] == table.loc[dither_row.label].tolist()
    long = pd.read_csv(csv)
    mine = long[long["method"] == dither_row.label]
    assert list(mine["attack"]) == attacks and mine["paper"].isna().all() and not mine["paper_upper_bound"].any()
    assert list(mine["ours"]) == pytest.approx([61.0, 51.0, 41.0])
    assert long.loc[long["method"] != dither_row.label, "paper"].notna().any()
    tex_line = next(line for line in tex.read_text(encoding="utf-8").splitlines() if line.startswith("Mixup + Dithered"))
    assert tex_line.split(" & ")[2::2] == ["--", "--", r"-- \\"]
    assert html.read_text(encoding="utf-8").count(MISSING) >= len(attacks) and dither_row.label in html.read_text(
        encoding="utf-8")
