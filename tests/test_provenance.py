"""Provenance: the list of settings in which a run differs from the paper's preset."""

import yaml

from mixup_inference.provenance import differences_from_paper
from workflow_helpers import REPO


def preset(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())


def test_default_preset_names_every_cut_relative_to_the_paper():
    rows = {row["setting"]: (row["this run"], row["paper"])
            for row in differences_from_paper(preset("config"), preset("paper"))}
    assert rows["model"] == ("compact_resnet", "resnet50_paper")
    assert rows["datasets.cifar10.n_test"] == (400, 1000)
    assert rows["training.mixup.epochs"] == (6, 200)
    assert rows["training.at.epochs"] == (2, 200)
    assert rows["training.interpolated_at.at.steps"] == (2, 10)
    assert rows["adaptive.n_test"] == (200, 1000)
    # the training attack is listed only for the regimes that use it
    assert "training.mixup.at.steps" not in rows and "training.erm.at.step_size" not in rows
    # what decides speed or output names, not numbers, is not a difference
    assert not any(key.startswith(("resources", "run", "device", "defenses.chunk_size", "attacks.batch_size"))
                   for key in rows)
    # the threat model and N are the paper's
    for key in ("attacks.eps", "attacks.step_size", "attacks.names", "defenses.n_samples", "seed"):
        assert key not in rows


def test_paper_preset_differs_from_itself_nowhere_and_a_changed_data_source_shows():
    paper = preset("paper")
    assert differences_from_paper(paper, paper) == []
    local = yaml.safe_load(yaml.safe_dump(paper))
    local["datasets"]["cifar10"]["source"] = "../shared/data/cifar10-jpeg.tar.gz"
    local["training"]["regimes"]["interpolated_at"]["lr"] = 0.05
    assert differences_from_paper(local, paper) == [
        {"setting": "datasets.cifar10.source", "this run": "../shared/data/cifar10-jpeg.tar.gz", "paper": "cifar10"},
        {"setting": "training.interpolated_at.lr", "this run": 0.05, "paper": 0.1},
    ]
