"""The training-frontier benchmark (perf/frontier.py): its points, its Pareto marking, one real
point on a tiny data set, and the report it writes."""

from __future__ import annotations

import json

import pytest
import torch

from mixup_inference.core.data.datasets import ImageDataset
from mixup_inference.core.training.config import REGIMES
import yaml

from mixup_inference.perf.frontier import (GRIDS, RECIPES, FrontierPoint, frontier_points, main, pareto, rows_from_run,
                                           run_point, write_report)
from reliability_helpers import prepared


def test_every_grid_names_known_recipes_and_regimes_and_precisions_double_it():
    for grid in GRIDS:
        assert set(GRIDS[grid]) <= set(RECIPES)
        points = frontier_points(grid, [False])
        assert {p.regime for p in points} <= set(REGIMES) and points
        if grid != "precision":  # that one compares precisions on ERM and mixup only
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
    rows[0]["machine"] = {"cpu": "test CPU", "threads": 1, "torch": torch.__version__, "bf16_reason": "none"}
    write_report(rows, tmp_path, ["python -m mixup_inference.perf.frontier --grid smoke"])
    text = (tmp_path / "frontier.md").read_text()
    assert "## erm" in text and "## mixup" in text and "--grid smoke" in text and "airbench94_narrow" in text
    assert f"`python -m mixup_inference.perf.frontier --out {tmp_path} --grid none`" in text  # runs from a clone
    assert "test CPU, 1 thread(s)" in text and "| measured |" in text
    saved = json.loads((tmp_path / "frontier.json").read_text())
    assert [r["label"] for r in saved["rows"]] == [r["label"] for r in rows]
    assert (tmp_path / "frontier.png").stat().st_size > 0


def test_a_runs_train_jobs_become_rows_of_the_recipe_of_their_model(tmp_path):
    provenance = {"run": "r", "environment": {"cpu_model": "test CPU", "torch_threads": 1, "packages": {"torch": "2"}},
                  "models": {
                      "cifar10/mixup": {"model": "airbench94_narrow", "test_accuracy": 0.88, "test_n": 10000,
                                        "epochs": 40, "seconds_per_epoch": 41.5, "speed": {"bf16": True}},
                      "cifar10/erm": {"model": "compact_resnet", "test_accuracy": 0.8137, "test_n": 10000,
                                      "epochs": 10, "seconds_per_epoch": 120.0, "speed": {"bf16": False}},
                      # a model imported from a file was not trained: no frontier point
                      "cifar10/at": {"model": "authors_resnet", "test_accuracy": 0.5, "test_n": 10000,
                                     "epochs": None, "seconds_per_epoch": None, "source": "x.pt"}}}
    path = tmp_path / "provenance.yaml"
    path.write_text(yaml.safe_dump(provenance))
    rows = {r["label"]: r for r in rows_from_run(path)}
    assert set(rows) == {"fast/mixup/40ep/bf16", "default/erm/10ep/fp32"}
    mixup = rows["fast/mixup/40ep/bf16"]
    assert mixup["core_seconds"] == pytest.approx(40 * 41.5) and mixup["model"] == "airbench94_narrow"
    assert mixup["test"]["ci_low"] == pytest.approx(0.8736, abs=1e-3) and mixup["test"]["ci_high"] == pytest.approx(
        0.8862, abs=1e-3)  # Wilson 95% for 8,800 of 10,000
    assert "run r" in mixup["source"] and mixup["machine"]["cpu"] == "test CPU"


def test_the_report_resumes_trains_only_missing_points_and_keeps_every_source(tmp_path):
    data = prepared(tmp_path, num_classes=2, n_train=1024)  # the fast recipe's batch is 512
    out = tmp_path / "bench"
    torch.set_num_threads(1)
    # every smoke point but one is already known (from an earlier call or another source)
    known = [{**row(p.label, p.regime, 1.0, 0.5), **{k: getattr(p, k) for k in ("recipe", "epochs", "bf16")},
              "model": RECIPES[p.recipe][0], "wall_seconds": 1.0, "source": "earlier"}
             for p in frontier_points("smoke", [False]) if p.label != "fast/erm/1ep/fp32"]
    for r in known:
        r["test"].update(n=10, ci_low=0.2, ci_high=0.8)
    included = tmp_path / "rows.jsonl"
    included.write_text("".join(json.dumps(r) + "\n" for r in known))
    main(["--out", str(out), "--grid", "none", "--include", str(included)])
    assert [r["label"] for r in json.loads((out / "frontier.json").read_text())["rows"]] == [r["label"] for r in known]
    main(["--data", str(data), "--out", str(out), "--grid", "smoke", "--precision", "fp32", "--threads", "1"])
    saved = json.loads((out / "frontier.json").read_text())
    assert len(saved["commands"]) == 2 and "--grid smoke" in saved["commands"][1]
    assert [r["source"] for r in saved["rows"]] == ["earlier"] * len(known) + ["measured (alone)"]
    assert saved["rows"][-1]["label"] == "fast/erm/1ep/fp32" and saved["rows"][-1]["machine"]["threads"] == 1
    # nothing left to train: a third call trains nothing, and needs no data
    main(["--out", str(out), "--grid", "smoke", "--precision", "fp32"])
    again = json.loads((out / "frontier.json").read_text())
    assert len(again["rows"]) == len(known) + 1 and again["commands"] == saved["commands"]  # it only redrew
