"""Our numbers from ``results.csv`` laid out as the paper's Tables 2 and 3 (their rows and, apart from
them, the paper's numbers: design.paper_tables).

* :func:`build_table` lays our accuracies (with 95% Wilson intervals) next to the paper's, and, where the
  robustness evaluation attacked the rows, their worst case per point twice: all R verdicts right, and
  averaged over the R verdicts;
  :func:`write_table` writes it as Markdown, CSV (numeric, long form), LaTeX (booktabs) and HTML.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .aggregate import WORST_CASE
from ..design.paper_tables import AT_MOST_1, RowSpec
from ..core.attacks.specs import PAPER_ATTACKS, parse_attack
from ..core.utils import atomic_write_text

__all__ = ["COLUMNS", "LONG_COLUMNS", "MISSING", "WORST_CASE_MEAN", "attack_display_name", "build_table",
           "caption", "write_table"]

#: The paper's attack columns (Tables 2 and 3), in order.
COLUMNS: list[str] = list(PAPER_ATTACKS)
#: Shown for an evaluation that is not in the results (or a number the paper does not report).
MISSING = "–"
#: The column beside "Worst case": the worst case averaged over the R verdict runs (results.csv's worst-case
#: ``mean_accuracy``, aggregate.worst_case_rows), where "Worst case" needs all R right.
WORST_CASE_MEAN = "worst_case_mean"

#: Columns of the long, numeric form of a table (``stem.csv``); accuracies in %.
LONG_COLUMNS = [
    "method", "regime", "defense", "setting", "attack",
    "ours", "ci_low", "ci_high", "n", "paper", "paper_upper_bound",
]  # fmt: skip


def attack_display_name(attack: str) -> str:
    """Column header of an attack: "Clean", "PGD10", "tPGD50", also for steps the paper lacks; "Worst
    case (all R)" for the worst case per point over every attack (aggregate.worst_case_rows), "Worst case
    (mean over R)" for the same averaged over the R verdict runs."""
    if attack == WORST_CASE:
        return "Worst case (all R)"
    if attack == WORST_CASE_MEAN:
        return "Worst case (mean over R)"
    return parse_attack(attack).display


def epochs_text(value: Any) -> str:
    """An extrapolated number of epochs for the page: thousands separated up to 99,999, in powers of ten beyond
    (a trend of +0.6 points per doubling puts the paper's gain at ~1e11 epochs; its digits mean nothing)."""
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "never"
    return f"{round(value):,}" if value < 1e5 else f"{value:.1e}"


def epochs_span(trend: dict[str, Any]) -> str:
    """' [low, high]' of a trend's extrapolated epochs (:func:`epochs_text`), the upper end 'no bound' when the slope's
    interval includes no rise; '' where the trend has no finite lower end."""
    low = trend.get("epochs_low")
    if low is None or not math.isfinite(float(low)):
        return ""
    high = epochs_text(trend["epochs_high"]) if trend["slope_low"] > 0 else "no bound"
    return f" [{epochs_text(low)}, {high}]"


def _paper_value(paper: dict[str, tuple], label: str, attack: str) -> tuple[float, bool]:
    """(value in %, is an upper bound) of the paper's number, (NaN, False) if it has none: a row the paper
    lacks (no entry under its label) or an attack column it does not report."""
    values = paper.get(label)
    if values is None or attack not in COLUMNS:
        return math.nan, False
    value = values[COLUMNS.index(attack)]
    if value == AT_MOST_1:
        return 1.0, True
    return float(value), False


def _table_long(
    results_df: pd.DataFrame, rows: Sequence[RowSpec], paper: dict[str, tuple], dataset: str, attacks: Sequence[str]
) -> pd.DataFrame:
    required = {"dataset", "regime", "defense", "setting", "attack", "adaptive", "accuracy", "ci_low", "ci_high", "n"}
    missing = required - set(results_df.columns)
    if missing:
        raise ValueError(f"results_df lacks columns {sorted(missing)}; pass the frame of results.csv")
    labels = [row.label for row in rows]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"rows {twice} appear twice; give each row its own label")
    for attack in attacks:
        parse_attack(attack)
    oblivious = results_df[(results_df["dataset"] == dataset) & (results_df["adaptive"] == "none")]
    index = {}
    for record in oblivious.to_dict("records"):
        key = (record["regime"], record["defense"], record["setting"], record["attack"])
        if key in index:
            raise ValueError(f"results_df has two oblivious rows for {dataset} {key}; deduplicate it")
        index[key] = record
    worst = results_df[(results_df["dataset"] == dataset) & (results_df["adaptive"] == WORST_CASE)]
    for record in worst.to_dict("records"):
        index[(record["regime"], record["defense"], record["setting"], WORST_CASE)] = record
        mean = record.get("mean_accuracy", math.nan)  # a descriptive number: no interval
        index[(record["regime"], record["defense"], record["setting"], WORST_CASE_MEAN)] = {
            **record, "accuracy": mean, "ci_low": math.nan, "ci_high": math.nan}
    if len(worst):  # the worst case over every evaluation, all R and mean over R, beside the paper's columns
        attacks = [*attacks, WORST_CASE, WORST_CASE_MEAN]
    out = []
    for row in rows:
        for attack in attacks:
            record = index.get((row.regime, row.defense, row.setting, attack))
            paper_value, upper = _paper_value(paper, row.label, attack)
            out.append(
                {
                    "method": row.label,
                    "regime": row.regime,
                    "defense": row.defense,
                    "setting": row.setting,
                    "attack": attack,
                    "ours": 100 * record["accuracy"] if record else math.nan,
                    "ci_low": 100 * record["ci_low"] if record else math.nan,
                    "ci_high": 100 * record["ci_high"] if record else math.nan,
                    "n": int(record["n"]) if record else 0,
                    "paper": paper_value,
                    "paper_upper_bound": upper,
                }
            )
    return pd.DataFrame(out, columns=LONG_COLUMNS)


def _format_ours(record: dict) -> str:
    if math.isnan(record["ours"]):
        return MISSING
    if math.isnan(record["ci_low"]):
        return f"{record['ours']:.1f}"
    return f"{record['ours']:.1f} [{record['ci_low']:.1f}, {record['ci_high']:.1f}]"


def _format_paper(record: dict) -> str:
    if record["paper_upper_bound"]:
        return AT_MOST_1
    if math.isnan(record["paper"]):
        return MISSING
    return f"{record['paper']:.1f}"


def build_table(
    results_df: pd.DataFrame,
    rows: Sequence[RowSpec],
    paper: dict[str, tuple],
    dataset: str,
    attacks: Sequence[str] = COLUMNS,
) -> pd.DataFrame:
    """Our accuracies next to the paper's, laid out like the paper's table.

    One row per ``RowSpec`` (index "Method", the rows' labels, in ``rows`` order) and one column
    per attack (headers "Clean", "PGD10", ...). Each cell reads ``"ours [ci_low, ci_high] / paper"``
    in % with one decimal (95% Wilson interval); our number is looked up in the oblivious rows
    (``adaptive == "none"``) of ``results_df`` for ``dataset`` and the row's (regime, defense,
    setting); the paper's by the row's label in ``paper`` (label -> values, design.paper_tables.PAPER_NUMBERS).
    A missing evaluation or paper number is shown as "–" (a cell missing both is just "–"), so a preset
    that skips PGD-200 keeps the paper's layout and a row the paper lacks has "–" in its paper cells.

    The numeric long form (columns :data:`LONG_COLUMNS`, accuracies in %) is kept in
    ``table.attrs["long"]`` for :func:`write_table`, with ``attrs["dataset"]``.
    """
    long = _table_long(results_df, rows, paper, dataset, attacks)
    headers = [attack_display_name(attack) for attack in dict.fromkeys(long["attack"])] or \
        [attack_display_name(attack) for attack in attacks]
    cells: dict[str, list[str]] = {header: [] for header in headers}
    for record in long.to_dict("records"):
        ours, theirs = _format_ours(record), _format_paper(record)
        text = MISSING if ours == MISSING and theirs == MISSING else f"{ours} / {theirs}"
        cells[attack_display_name(record["attack"])].append(text)
    table = pd.DataFrame(cells, index=pd.Index([row.label for row in rows], name="Method"), columns=headers)
    table.attrs["long"] = long
    table.attrs["dataset"] = dataset
    return table


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}  # fmt: skip


def _tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(char, char) for char in text)


def _tex_cell(value: float, low: float = math.nan, high: float = math.nan, upper: bool = False) -> str:
    if upper:
        return r"$\leq$1"
    if math.isnan(value):
        return "--"
    if math.isnan(low):
        return f"{value:.1f}"
    return f"{value:.1f}\\,{{\\scriptsize[{low:.1f}, {high:.1f}]}}"


def caption(dataset: str, attacks: Sequence[str]) -> str:
    """The table's caption: what its columns measure and how many verdicts judge each (issue 33)."""
    text = (f"Accuracy (%) on {dataset}, oblivious attacks: ours [95% Wilson CI] / paper. {MISSING} = not evaluated "
            f"or not reported; {AT_MOST_1} = below 1% (paper). The oblivious columns are single-verdict: one run of "
            "the defense (its N executions averaged) judges each example.")
    if WORST_CASE in attacks:
        text += (" Worst case: the share of points that survive every evaluation of the row, oblivious (clean "
                 "included), Fig. 4's adaptive attacks and the robustness evaluation's runs (bare models: AutoAttack "
                 "standard and PGD; defenses: AutoAttack rand, EOT PGD, Tramer et al.'s attack). The robustness "
                 "runs judge each final example by R verdict runs of the defense (one for a bare model): 'all R' "
                 "counts a point only if every verdict is right, 'mean over R' averages the verdicts (per point "
                 "at the evaluation where it fell; no interval); the other evaluations give one verdict each.")
    return text


def _to_latex(table: pd.DataFrame, long: pd.DataFrame, dataset: str) -> str:
    """A booktabs table, ASCII only: per attack an "ours [95% CI]" and a "paper" column."""
    attacks = list(dict.fromkeys(long["attack"]))
    text = caption(dataset, attacks).replace(MISSING, "--").replace(AT_MOST_1, "<=1")
    caption_tex = _tex_escape(text).replace("<=1", "$\\leq$1")
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        f"\\caption{{{caption_tex}}}",
        r"\begin{tabular}{l" + "rr" * len(attacks) + "}",
        r"\toprule",
        "Method & "
        + " & ".join(f"\\multicolumn{{2}}{{c}}{{{attack_display_name(a)}}}" for a in attacks)
        + r" \\",
        "".join(f"\\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(attacks))),
        " & " + " & ".join(["ours [95\\% CI] & paper"] * len(attacks)) + r" \\",
        r"\midrule",
    ]
    by_method = {method: group for method, group in long.groupby("method", sort=False)}
    for method in table.index:
        group = by_method[method].set_index("attack")
        cells = []
        for attack in attacks:
            r = group.loc[attack]
            cells.append(_tex_cell(r["ours"], r["ci_low"], r["ci_high"]))
            cells.append(_tex_cell(r["paper"], upper=bool(r["paper_upper_bound"])))
        lines.append(_tex_escape(method) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write_table(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Write a :func:`build_table` result as ``stem.md``, ``stem.csv``, ``stem.tex`` and ``stem.html``.

    * ``.md``: a one-line caption then the display table (``DataFrame.to_markdown``, needs tabulate);
    * ``.csv``: the numeric long form, columns :data:`LONG_COLUMNS` (accuracies in %, NaN when
      missing; the paper's "≤1" is ``paper = 1.0`` with ``paper_upper_bound = True``);
    * ``.tex``: a hand-written booktabs table (two columns per attack: ours [95% CI], paper);
    * ``.html``: the display table (``DataFrame.to_html``).

    Returns the four paths (each written atomically with :func:`utils.atomic_write_text`).
    """
    long = df.attrs.get("long")
    if long is None:
        raise ValueError("df has no attrs['long']; pass the DataFrame returned by build_table")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    dataset = df.attrs.get("dataset", "")
    text = caption(dataset, list(dict.fromkeys(long["attack"])))
    texts = {
        ".md": f"{text}\n\n{df.to_markdown()}\n",
        ".csv": long.to_csv(index=False),
        ".tex": _to_latex(df, long, dataset),
        ".html": f"<p>{html.escape(text)}</p>\n{df.to_html()}\n",
    }
    paths = []
    for suffix, text in texts.items():
        path = stem.with_name(stem.name + suffix)
        atomic_write_text(path, text)
        paths.append(path)
    return paths
