"""The paper's Tables 2 and 3 as data: their rows, with the defense settings of Tables 4 and 5, and the
numbers the paper reports.

* :data:`TABLE2_ROWS` / :data:`TABLE3_ROWS`: one :class:`RowSpec` per row of Table 2 (CIFAR-10) /
  Table 3 (CIFAR-100), in the paper's order, with the training regime, the defense and its
  canonical setting (:mod:`mixup_inference.core.defense_specs`) from Table 4 / Table 5.
* :data:`PAPER_TABLE2` / :data:`PAPER_TABLE3`: the reported accuracies (%), label -> 7 values in
  :data:`tables.COLUMNS` order; the paper's "≤ 1" is the string :data:`AT_MOST_1`.
* :func:`model_rows`: the same rows for a user's own model; :func:`required_evaluations`: what a
  table needs. tables.py lays our numbers out beside these.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.defense_specs import PLAIN_SETTING, parse_setting

__all__ = ["AT_MOST_1", "PAPER_TABLE2", "PAPER_TABLE3", "RowSpec", "TABLE2_ROWS", "TABLE3_ROWS", "TABLE_SPECS",
           "model_rows", "required_evaluations"]

#: The paper's "≤ 1" (accuracy below 1%).
AT_MOST_1 = "≤1"




@dataclass(frozen=True)
class RowSpec:
    """One row of a paper table: its label and the evaluation that reproduces it."""

    label: str
    regime: str  # erm | mixup | at | interpolated_at
    defense: str  # a name of defense_specs.DEFENSES
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


def required_evaluations(table_name: str) -> list[tuple[str, str, str]]:
    """The (regime, defense, setting) triples a table needs, in row order, each once."""
    if table_name not in TABLE_SPECS:
        raise ValueError(f"table_name={table_name!r} is unknown; use one of {sorted(TABLE_SPECS)}")
    rows, _paper = TABLE_SPECS[table_name]
    return list(dict.fromkeys((row.regime, row.defense, row.setting) for row in rows))
