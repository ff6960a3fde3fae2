"""The paper's Tables 2 and 3: their rows (with the Table 4/5 settings), their numbers, and our
numbers from ``results.csv`` laid out the same way.

* :data:`TABLE2_ROWS` / :data:`TABLE3_ROWS`: one :class:`RowSpec` per row of Table 2 (CIFAR-10) /
  Table 3 (CIFAR-100), in the paper's order, with the training regime, the defense and its
  canonical setting (:mod:`mixup_inference.settings`) from Table 4 / Table 5.
* :data:`PAPER_TABLE2` / :data:`PAPER_TABLE3`: the reported accuracies (%), label -> 7 values in
  :data:`COLUMNS` order; the paper's "≤ 1" is the string :data:`AT_MOST_1`.
* :func:`build_table` lays our accuracies (with 95% Wilson intervals) next to the paper's;
  :func:`write_table` writes it as Markdown, CSV (numeric, long form), LaTeX (booktabs) and HTML.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from .aggregate import WORST_CASE
from .settings import ATTACKS, PLAIN_SETTING, parse_attack, parse_setting
from .utils import atomic_write_text

__all__ = [
    "AT_MOST_1",
    "COLUMNS",
    "COLUMN_NAMES",
    "LONG_COLUMNS",
    "MISSING",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "RowSpec",
    "TABLE2_ROWS",
    "TABLE3_ROWS",
    "TABLE_SPECS",
    "attack_display_name",
    "build_table",
    "model_rows",
    "required_evaluations",
    "write_table",
]

#: The paper's attack columns (Tables 2 and 3), in order.
COLUMNS: list[str] = list(ATTACKS)
COLUMN_NAMES: dict[str, str] = {
    "clean": "Clean",
    "pgd10": "PGD10",
    "pgd50": "PGD50",
    "pgd200": "PGD200",
    "tpgd10": "tPGD10",
    "tpgd50": "tPGD50",
    "tpgd200": "tPGD200",
}
#: The paper's "≤ 1" (accuracy below 1%).
AT_MOST_1 = "≤1"
#: Shown for an evaluation that is not in the results (or a number the paper does not report).
MISSING = "–"


@dataclass(frozen=True)
class RowSpec:
    """One row of a paper table: its label and the evaluation that reproduces it."""

    label: str
    regime: str  # erm | mixup | at | interpolated_at
    defense: str  # a name of settings.DEFENSE_NAMES
    setting: str  # canonical setting string, e.g. "lam=0.5"

    def __post_init__(self) -> None:
        parse_setting(self.defense, self.setting)  # raises ValueError on a malformed setting


def _mixup_iat_rows(
    mixup: dict[str, str], iat: dict[str, str], *, erm_ablation: str | None, at_ablation: str | None
) -> list[RowSpec]:
    rows = [RowSpec("Mixup", "mixup", "none", PLAIN_SETTING)]
    rows += [
        RowSpec("Mixup + Gaussian noise", "mixup", "gaussian", mixup["gaussian"]),
        RowSpec("Mixup + Random rotation", "mixup", "rotation", mixup["rotation"]),
        RowSpec("Mixup + Xie et al.", "mixup", "xie", mixup["xie"]),
        RowSpec("Mixup + Guo et al.", "mixup", "guo", mixup["guo"]),
    ]
    if erm_ablation is not None:
        rows.append(RowSpec("ERM + MI-OL (ablation)", "erm", "mi_ol", erm_ablation))
    rows += [
        RowSpec("Mixup + MI-OL", "mixup", "mi_ol", mixup["mi_ol"]),
        RowSpec("Mixup + MI-Combined", "mixup", "mi_combined", mixup["mi_combined"]),
        RowSpec("Interpolated AT", "interpolated_at", "none", PLAIN_SETTING),
        RowSpec("IAT + Gaussian noise", "interpolated_at", "gaussian", iat["gaussian"]),
        RowSpec("IAT + Random rotation", "interpolated_at", "rotation", iat["rotation"]),
        RowSpec("IAT + Xie et al.", "interpolated_at", "xie", iat["xie"]),
        RowSpec("IAT + Guo et al.", "interpolated_at", "guo", iat["guo"]),
    ]
    if at_ablation is not None:
        rows.append(RowSpec("AT + MI-OL (ablation)", "at", "mi_ol", at_ablation))
    rows.append(RowSpec("IAT + MI-OL", "interpolated_at", "mi_ol", iat["mi_ol"]))
    return rows


# Table 4 (settings of Table 2, CIFAR-10).
TABLE2_ROWS: list[RowSpec] = _mixup_iat_rows(
    mixup={
        "gaussian": "sigma=0.04",
        "rotation": "deg=40",
        "xie": "size=16-24",
        "guo": "size=22-30",
        "mi_ol": "lam=0.5",
        "mi_combined": "pl=0.5_ol=0.4_th=0.2",
    },
    iat={"gaussian": "sigma=0.075", "rotation": "deg=30", "xie": "size=20-28", "guo": "size=20-28", "mi_ol": "lam=0.6"},
    erm_ablation="lam=0.6",
    at_ablation="lam=0.8",
)

# Table 5 (settings of Table 3, CIFAR-100).
TABLE3_ROWS: list[RowSpec] = _mixup_iat_rows(
    mixup={
        "gaussian": "sigma=0.025",
        "rotation": "deg=20",
        "xie": "size=18-26",
        "guo": "size=24-32",
        "mi_ol": "lam=0.5",
        "mi_combined": "pl=0.5_ol=0.4_th=0.2",
    },
    iat={"gaussian": "sigma=0.06", "rotation": "deg=20", "xie": "size=22-30", "guo": "size=24-32", "mi_ol": "lam=0.6"},
    erm_ablation=None,
    at_ablation=None,
)

_L = AT_MOST_1
# Table 2, CIFAR-10, accuracy (%) on 1,000 test points; columns as COLUMNS.
PAPER_TABLE2: dict[str, tuple] = {
    "Mixup": (93.8, 3.6, 3.2, 3.1, _L, _L, _L),
    "Mixup + Gaussian noise": (84.4, 13.5, 9.6, 8.8, 37.7, 28.6, 27.9),
    "Mixup + Random rotation": (82.0, 21.8, 18.7, 18.2, 38.9, 32.5, 26.5),
    "Mixup + Xie et al.": (82.1, 23.0, 19.6, 19.1, 38.4, 31.1, 25.2),
    "Mixup + Guo et al.": (83.3, 31.2, 28.8, 28.3, 57.8, 49.1, 48.9),
    "ERM + MI-OL (ablation)": (81.6, 7.4, 6.4, 6.1, 33.0, 26.7, 23.2),
    "Mixup + MI-OL": (83.9, 26.1, 18.8, 18.3, 55.6, 51.2, 50.8),
    "Mixup + MI-Combined": (82.9, 33.7, 31.0, 30.7, 56.1, 49.7, 49.4),
    "Interpolated AT": (89.7, 46.7, 43.5, 42.5, 65.6, 62.5, 61.9),
    "IAT + Gaussian noise": (84.7, 55.6, 53.7, 53.5, 70.1, 69.1, 69.0),
    "IAT + Random rotation": (83.4, 57.8, 56.7, 55.9, 69.8, 68.2, 67.4),
    "IAT + Xie et al.": (82.1, 59.7, 58.4, 57.9, 71.1, 69.7, 69.3),
    "IAT + Guo et al.": (83.9, 60.9, 60.7, 60.3, 73.2, 72.1, 71.6),
    "AT + MI-OL (ablation)": (81.2, 56.2, 55.8, 55.1, 67.7, 67.2, 66.4),
    "IAT + MI-OL": (84.2, 64.5, 63.8, 63.3, 75.3, 74.7, 74.5),
}

# Table 3, CIFAR-100.
PAPER_TABLE3: dict[str, tuple] = {
    "Mixup": (74.2, 5.5, 5.3, 5.2, _L, _L, _L),
    "Mixup + Gaussian noise": (65.0, 5.5, 5.3, 5.3, 10.0, 4.3, 4.1),
    "Mixup + Random rotation": (66.2, 7.8, 6.7, 6.3, 21.4, 15.5, 15.2),
    "Mixup + Xie et al.": (66.3, 9.6, 7.6, 7.4, 30.2, 22.5, 22.3),
    "Mixup + Guo et al.": (66.1, 13.1, 10.8, 10.5, 33.3, 26.3, 26.1),
    "Mixup + MI-OL": (68.8, 12.6, 9.4, 9.1, 37.0, 29.0, 28.7),
    "Mixup + MI-Combined": (67.0, 14.8, 11.7, 11.3, 31.4, 26.9, 26.7),
    "Interpolated AT": (64.7, 26.6, 24.1, 24.0, 52.0, 50.1, 49.8),
    "IAT + Gaussian noise": (60.4, 32.6, 31.6, 31.4, 50.1, 50.0, 49.6),
    "IAT + Random rotation": (62.6, 34.5, 32.4, 32.1, 51.0, 49.9, 49.7),
    "IAT + Xie et al.": (62.1, 42.2, 41.5, 41.3, 57.1, 56.3, 55.8),
    "IAT + Guo et al.": (61.5, 36.2, 33.7, 33.3, 53.8, 52.4, 52.2),
    "IAT + MI-OL": (62.0, 43.8, 42.8, 42.5, 58.1, 56.7, 56.5),
}
del _L

TABLE_SPECS: dict[str, tuple[list[RowSpec], dict[str, tuple]]] = {
    "table2": (TABLE2_ROWS, PAPER_TABLE2),
    "table3": (TABLE3_ROWS, PAPER_TABLE3),
}

_ROW_PREFIXES = {"mixup": ("Mixup", "Mixup"), "interpolated_at": ("Interpolated AT", "IAT")}


def model_rows(table_name: str, model: str, like: str = "mixup") -> list[RowSpec]:
    """The rows of a paper table for a user's own model `model`: the rows of regime `like` (``mixup``
    or ``interpolated_at``: whose Table 4/5 defense settings to use) with `model` in place of the
    regime, labelled ``<model>``, ``<model> + Gaussian noise``, ... (a Table-2-shaped table of its own)."""
    if like not in _ROW_PREFIXES:
        raise ValueError(f"like={like!r} is unknown; use one of {', '.join(_ROW_PREFIXES)}")
    bare, prefix = _ROW_PREFIXES[like]
    rows = [row for row in TABLE_SPECS[table_name][0] if row.regime == like]
    return [RowSpec(model if row.label == bare else row.label.replace(prefix, model, 1), model, row.defense,
                    row.setting) for row in rows]


#: Columns of the long, numeric form of a table (``stem.csv``); accuracies in %.
LONG_COLUMNS = [
    "method", "regime", "defense", "setting", "attack",
    "ours", "ci_low", "ci_high", "n", "paper", "paper_upper_bound",
]  # fmt: skip


def required_evaluations(table_name: str) -> list[tuple[str, str, str]]:
    """The (regime, defense, setting) triples a table needs, in row order, each once."""
    if table_name not in TABLE_SPECS:
        raise ValueError(f"table_name={table_name!r} is unknown; use one of {sorted(TABLE_SPECS)}")
    rows, _paper = TABLE_SPECS[table_name]
    return list(dict.fromkeys((row.regime, row.defense, row.setting) for row in rows))


def attack_display_name(attack: str) -> str:
    """Column header of an attack: "Clean", "PGD10", "tPGD50", also for steps the paper lacks; "Worst
    case" for the worst case per point over every attack (aggregate.worst_case_rows)."""
    if attack == WORST_CASE:
        return "Worst case"
    targeted, steps = parse_attack(attack)
    if steps == 0:
        return "Clean"
    return f"{'t' if targeted else ''}PGD{steps}"


def _paper_value(paper: dict[str, tuple], label: str, attack: str) -> tuple[float, bool]:
    """(value in %, is an upper bound) of the paper's number, (NaN, False) if it has none."""
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
    unknown = [row.label for row in rows if paper and row.label not in paper]
    if unknown:
        raise ValueError(f"row labels {unknown} are not in the paper table; use the paper's labels exactly")
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
    if len(worst):  # the worst case over every attack, oblivious and adaptive, beside the paper's columns
        attacks = [*attacks, WORST_CASE]
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

    One row per ``RowSpec`` (index "Method", the paper's labels, in ``rows`` order) and one column
    per attack (headers "Clean", "PGD10", ...). Each cell reads ``"ours [ci_low, ci_high] / paper"``
    in % with one decimal (95% Wilson interval); our number is looked up in the oblivious rows
    (``adaptive == "none"``) of ``results_df`` for ``dataset`` and the row's (regime, defense,
    setting); the paper's by the row's label. A missing evaluation or paper number is shown as "–"
    (a cell missing both is just "–"), so a preset that skips PGD-200 keeps the paper's layout.

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


def _to_latex(table: pd.DataFrame, long: pd.DataFrame, dataset: str) -> str:
    """A booktabs table, ASCII only: per attack an "ours [95% CI]" and a "paper" column."""
    caption = (
        f"Accuracy (\\%) on {_tex_escape(dataset)}, oblivious attacks: ours with its 95\\% Wilson interval, and the "
        "paper's number. -- = not evaluated or not reported; $\\leq$1 = below 1\\% (paper)."
    )
    attacks = list(dict.fromkeys(long["attack"]))
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        f"\\caption{{{caption}}}",
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
    caption = (
        f"Accuracy (%) on {dataset}, oblivious attacks: ours [95% Wilson CI] / paper. "
        f"{MISSING} = not evaluated or not reported; {AT_MOST_1} = below 1% (paper)."
    )
    texts = {
        ".md": f"{caption}\n\n{df.to_markdown()}\n",
        ".csv": long.to_csv(index=False),
        ".tex": _to_latex(df, long, dataset),
        ".html": f"<p>{html.escape(caption)}</p>\n{df.to_html()}\n",
    }
    paths = []
    for suffix, text in texts.items():
        path = stem.with_name(stem.name + suffix)
        atomic_write_text(path, text)
        paths.append(path)
    return paths
