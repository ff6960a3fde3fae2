"""The training-frontier benchmark (perf/frontier.py): its points, its Pareto marking, one real
point on a tiny data set, and the report it writes."""

from __future__ import annotations

import json

import pytest
import torch

from mixup_inference.core.data import ImageDataset
from mixup_inference.core.trainconfig import REGIMES
from mixup_inference.perf.frontier import GRIDS, RECIPES, FrontierPoint, frontier_points, pareto, run_point, write_report


def test_every_grid_names_known_recipes_and_regimes_and_precisions_double_it():
    for grid in GRIDS:
        assert set(GRIDS[grid]) <= set(RECIPES)
        points = frontier_points(grid, [False])
        assert {p.regime for p in points} == set(REGIMES)
        assert len(frontier_points(grid, [False, True])) == 2 * len(points)
    with pytest.raises(ValueError, match="grid"):
        frontier_points("huge", [False])


def row(label: str, regime: str, seconds: float, accuracy: float) -> dict:
    return {"label": label, "regime": regime, "core_seconds": seconds, "test": {"accuracy": accuracy}}


def test_pareto_keeps_the_points_nothing_cheaper_beats_within_a_regime():
    rows = [row("a", "erm", 10, 0.80), row("b", "erm", 20, 0.85), row("c", "erm", 30, 0.84),
            row("d", "erm", 5, 0.70), row("e", "mixup", 100, 0.50)]
    assert pareto(rows) == {"a", "b", "d", "e"}  # c costs more than b for less; e has no rival in its regime


def tiny_data(n: int = 1024, size: int = 8) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = (torch.rand(n, 3, size, size, generator=g) * 0.5 + y[:, None, None, None] * 0.5) * 255
    x = x.to(torch.uint8)
    return ImageDataset(x, y, x[:64], y[:64], ["a", "b"], {"source": "test"})


def test_a_point_trains_measures_and_reports(tmp_path):
    data = tiny_data()
    torch.set_num_threads(1)
    rows = [run_point(FrontierPoint("fast", "erm", 1, False), data, device=torch.device("cpu")),
            run_point(FrontierPoint("default", "mixup", 1, False), data, device=torch.device("cpu"))]
    for r in rows:
        assert r["core_seconds"] > 0 and r["wall_seconds"] > 0 and r["test"]["n"] == 64
        assert 0 <= r["test"]["ci_low"] <= r["test"]["accuracy"] <= r["test"]["ci_high"] <= 1
    assert rows[0]["model"] == "airbench94_narrow" and rows[0]["training"]["label_smoothing"] == 0.2
    assert rows[1]["model"] == "compact_resnet" and rows[1]["training"]["optimizer"] == "sgd"
    # the same point again gives the same accuracy (seeded); only the timings may differ
    again = run_point(FrontierPoint("fast", "erm", 1, False), data, device=torch.device("cpu"))
    assert again["test"] == rows[0]["test"]
    machine = {"cpu": "test CPU", "threads": 1, "torch": torch.__version__, "device": "cpu", "bf16_reason": "none"}
    write_report(rows, tmp_path, machine, "python -m mixup_inference.perf.frontier --grid smoke")
    text = (tmp_path / "frontier.md").read_text()
    assert "## erm" in text and "## mixup" in text and "--grid smoke" in text and "airbench94_narrow" in text
    saved = json.loads((tmp_path / "frontier.json").read_text())
    assert [r["label"] for r in saved["rows"]] == [r["label"] for r in rows]
    assert (tmp_path / "frontier.png").stat().st_size > 0
