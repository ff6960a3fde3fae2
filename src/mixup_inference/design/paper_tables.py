"""The paper's Tables 2 and 3 as data: their rows (with the defense settings of Tables 4 and 5) in one
place, and the numbers the paper reports for them in another.

* :data:`ROWS`: every row of the paper's tables, one line each, in the paper's order: its label, training
  regime, defense and canonical setting (:mod:`mixup_inference.core.defenses.specs`) in each table that
  has it (Table 4's for ``table2``, Table 5's for ``table3``). The tables job, the evaluations a table
  needs (design.plan), ``robustness.targets: [table2]`` (its rows with a randomized defense) and the
  config checks all read the rows from here, through :func:`rows_of`.
* :data:`PAPER_NUMBERS`: table -> row label -> the paper's 7 accuracies (%) in :data:`report.tables.COLUMNS`
  order; the paper's "≤ 1" is the string :data:`AT_MOST_1`. A row without an entry (one the paper lacks,
  e.g. a defense of our own) is allowed and shows "–" in the paper's cells.
* :func:`rows_of` / :func:`paper_numbers`: one table's rows (:class:`RowSpec`) / numbers, checked (labels
  unique, every number's label a row); :func:`model_rows`: the rows for a user's own model;
  :func:`required_evaluations`: what a table needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.defenses.specs import parse_setting

__all__ = ["AT_MOST_1", "PAPER_EPOCHS", "PAPER_NUMBERS", "PAPER_TABLE2", "PAPER_TABLE3", "ROWS", "RowSpec", "TABLE2_ROWS",
           "TABLE3_ROWS", "TABLES", "model_rows", "paper_numbers", "required_evaluations", "rows_of"]

#: The paper's training length, every regime (Sec. 4.1; config/paper.yaml's training.epochs): its tables' models.
PAPER_EPOCHS = 200

#: The paper's "≤ 1" (accuracy below 1%).
AT_MOST_1 = "≤1"

#: The paper tables a config may name (``tables:``, ``robustness.targets``): name -> what it is.
TABLES: dict[str, str] = {"table2": "Table 2, CIFAR-10 (settings: Table 4)",
                          "table3": "Table 3, CIFAR-100 (settings: Table 5)"}

#: Every row of the paper tables in the paper's order: (label, regime, defense, {table: setting}); a row
#: is in each table it has a setting for (Table 3 has no ablation rows). Adding a row is one line here.
ROWS: list[tuple[str, str, str, dict[str, str]]] = [
    ("Mixup", "mixup", "none", {"table2": "plain", "table3": "plain"}),
    ("Mixup + Gaussian noise", "mixup", "gaussian", {"table2": "sigma=0.04", "table3": "sigma=0.025"}),
    ("Mixup + Random rotation", "mixup", "rotation", {"table2": "deg=40", "table3": "deg=20"}),
    ("Mixup + Xie et al.", "mixup", "xie", {"table2": "size=16-24", "table3": "size=18-26"}),
    ("Mixup + Guo et al.", "mixup", "guo", {"table2": "size=22-30", "table3": "size=24-32"}),
    ("ERM + MI-OL (ablation)", "erm", "mi_ol", {"table2": "lam=0.6"}),
    ("Mixup + MI-OL", "mixup", "mi_ol", {"table2": "lam=0.5", "table3": "lam=0.5"}),
    ("Mixup + MI-Combined", "mixup", "mi_combined", {"table2": "pl=0.5_ol=0.4_th=0.2", "table3": "pl=0.5_ol=0.4_th=0.2"}),
    ("Interpolated AT", "interpolated_at", "none", {"table2": "plain", "table3": "plain"}),
    ("IAT + Gaussian noise", "interpolated_at", "gaussian", {"table2": "sigma=0.075", "table3": "sigma=0.06"}),
    ("IAT + Random rotation", "interpolated_at", "rotation", {"table2": "deg=30", "table3": "deg=20"}),
    ("IAT + Xie et al.", "interpolated_at", "xie", {"table2": "size=20-28", "table3": "size=22-30"}),
    ("IAT + Guo et al.", "interpolated_at", "guo", {"table2": "size=20-28", "table3": "size=24-32"}),
    ("AT + MI-OL (ablation)", "at", "mi_ol", {"table2": "lam=0.8"}),
    ("IAT + MI-OL", "interpolated_at", "mi_ol", {"table2": "lam=0.6", "table3": "lam=0.6"}),
]


@dataclass(frozen=True)
class RowSpec:
    """One row of one paper table: its label and the evaluation that reproduces it."""

    label: str
    regime: str  # erm | mixup | at | interpolated_at
    defense: str  # a name of core.defenses.specs.DEFENSES
    setting: str  # canonical setting string, e.g. "lam=0.5"

    def __post_init__(self) -> None:
        parse_setting(self.defense, self.setting)  # raises ValueError on a malformed setting


def rows_of(table_name: str) -> list[RowSpec]:
    """The rows of paper table `table_name`, in :data:`ROWS` order; ValueError for an unknown table, a row
    with a setting for a table that does not exist (a misspelled name would drop the row), or two rows with
    one label (the label names the row in the table and in :data:`PAPER_NUMBERS`)."""
    if table_name not in TABLES:
        raise ValueError(f"table_name={table_name!r} is unknown; use one of {', '.join(TABLES)}")
    for label, _regime, _defense, settings in ROWS:
        unknown = [name for name in settings if name not in TABLES]
        if unknown:
            raise ValueError(f"row {label!r} of paper_tables.ROWS has a setting for {unknown}, which is no table; "
                             f"use one of {', '.join(TABLES)}")
    rows = [RowSpec(label, regime, defense, settings[table_name])
            for label, regime, defense, settings in ROWS if table_name in settings]
    labels = [row.label for row in rows]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"{table_name} has two rows labelled {twice}; give each row of paper_tables.ROWS its own "
                         "label")
    return rows


#: The paper's rows of Table 2 / Table 3 as RowSpecs (as ROWS defines them at import).
TABLE2_ROWS: list[RowSpec] = rows_of("table2")
TABLE3_ROWS: list[RowSpec] = rows_of("table3")

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

#: The paper's numbers per table: name -> row label -> values. Keyed by label, apart from the rows: a
#: row that has no entry here shows "–" in the paper's cells.
PAPER_NUMBERS: dict[str, dict[str, tuple]] = {"table2": PAPER_TABLE2, "table3": PAPER_TABLE3}


def paper_numbers(table_name: str) -> dict[str, tuple]:
    """The paper's numbers of table `table_name`, label -> values ({} for a table it reports none of);
    ValueError if a label names no row of the table (a renamed row whose numbers would silently vanish)."""
    labels = {row.label for row in rows_of(table_name)}
    numbers = PAPER_NUMBERS.get(table_name, {})
    orphans = [label for label in numbers if label not in labels]
    if orphans:
        raise ValueError(f"PAPER_NUMBERS[{table_name!r}] has numbers for {orphans}, which are no row of "
                         f"{table_name}; use the row's label in paper_tables.ROWS")
    return dict(numbers)


_ROW_PREFIXES = {"mixup": ("Mixup", "Mixup"), "interpolated_at": ("Interpolated AT", "IAT")}


def model_rows(table_name: str, model: str, like: str = "mixup") -> list[RowSpec]:
    """The rows of a paper table for a user's own model `model`: the rows of regime `like` (``mixup``
    or ``interpolated_at``: whose Table 4/5 defense settings to use) with `model` in place of the
    regime, labelled ``<model>``, ``<model> + Gaussian noise``, ... (a Table-2-shaped table of its own)."""
    if like not in _ROW_PREFIXES:
        raise ValueError(f"like={like!r} is unknown; use one of {', '.join(_ROW_PREFIXES)}")
    bare, prefix = _ROW_PREFIXES[like]
    rows = [row for row in rows_of(table_name) if row.regime == like]
    return [RowSpec(model if row.label == bare else row.label.replace(prefix, model, 1), model, row.defense,
                    row.setting) for row in rows]


def required_evaluations(table_name: str) -> list[tuple[str, str, str]]:
    """The (regime, defense, setting) triples a table needs, in row order, each once."""
    return list(dict.fromkeys((row.regime, row.defense, row.setting) for row in rows_of(table_name)))
