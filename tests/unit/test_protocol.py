"""The measurement protocol options of issue 12: which label untargeted attacks push away from
(attacks.labels, recorded in every artifact and results row), the authors' weight initialisation
(training.init), and config/paper.yaml matching the paper's Sec. 4.1 and the authors' code."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import yaml
from torch import nn

from mixup_inference.report.aggregate import result_row
from mixup_inference.design.configcheck import check_config, validate_config
from mixup_inference.core.models.networks import INITS, build_model, init_weights
from mixup_inference.jobs.points import ATTACK_LABELS, attack_labels
from mixup_inference.core.training.config import TrainConfig
from workflow_helpers import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def preset(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())


# ---------------------------------------------------------------- attacks.labels
def test_attack_labels_choose_between_prediction_true_label_and_target():
    y, pred, target = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 2, 1]), torch.tensor([4, 4, 0, 0])
    untargeted = {"targeted": False, "steps": 10}
    assert torch.equal(attack_labels({**untargeted, "labels": "prediction"}, pred, y, target), pred)
    assert torch.equal(attack_labels({**untargeted, "labels": "true"}, pred, y, target), y)
    assert torch.equal(attack_labels(untargeted, pred, y, target), pred)  # the paper's, when unset
    for labels in ATTACK_LABELS:  # targeted attacks always pull toward their target
        assert torch.equal(attack_labels({"targeted": True, "steps": 10, "labels": labels}, pred, y, target), target)
    with pytest.raises(ValueError, match="attacks.labels"):
        attack_labels({**untargeted, "labels": "truth"}, pred, y, target)


def test_results_rows_record_the_attack_labels():
    probs = torch.eye(3)[[0, 1, 2]]
    meta = {"dataset": "d", "regime": "mixup", "attack": "pgd10", "defense": "none", "setting": "plain"}
    art = {"probs": probs, "plain_probs": probs, "y": torch.tensor([0, 1, 2]), "meta": {**meta, "labels": "true"}}
    assert result_row(art)["labels"] == "true"
    art["meta"] = meta  # artifacts written before the option pushed away from the prediction
    assert result_row(art)["labels"] == "prediction"


@pytest.mark.parametrize("value, ok", [("prediction", True), ("true", True), (True, True), ("truth", False),
                                       (False, False)])
def test_schema_accepts_the_two_label_choices_only(value, ok):
    config = preset("smoke")
    config["attacks"]["labels"] = value
    if ok:
        validate_config(config, SCHEMA)
    else:
        with pytest.raises(ValueError, match="labels"):
            validate_config(config, SCHEMA)


def test_presets_choose_their_labels():
    assert preset("paper")["attacks"]["labels"] == "prediction"  # the paper's protocol
    assert preset("config")["attacks"]["labels"] == "true"  # the CPU preset's weak models: see its comment


# ---------------------------------------------------------------- init
def test_kaiming_fan_out_init_matches_the_authors():
    torch.manual_seed(0)
    model = build_model("resnet50_paper", 10, init="kaiming_fan_out")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert convs and norms
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected = math.sqrt(2.0 / fan_out)
        std = conv.weight.std().item()
        n = conv.weight.numel()
        assert abs(std / expected - 1) < 6 / math.sqrt(2 * n) + 0.02, (conv, std, expected)
    for norm in norms:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
    # PyTorch's default conv init (kaiming_uniform with a = sqrt(5)) has std sqrt(1 / (3 fan_in)): smaller
    torch.manual_seed(0)
    default = build_model("resnet50_paper", 10)
    big = next(m for m in default.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 256)
    fan_in = big.in_channels * big.kernel_size[0] * big.kernel_size[1]
    assert abs(big.weight.std().item() - math.sqrt(1 / (3 * fan_in))) < 0.1 * math.sqrt(1 / (3 * fan_in))


def test_init_is_checked():
    with pytest.raises(ValueError, match="init"):
        build_model("tiny_cnn", 10, init="xavier")
    with pytest.raises(ValueError, match="init"):
        init_weights(nn.Conv2d(1, 1, 1), "he")
    with pytest.raises(ValueError, match="init"):
        TrainConfig(init="he")
    assert set(INITS) == {"pytorch", "kaiming_fan_out"}


# ---------------------------------------------------------------- config/paper.yaml
def test_paper_preset_matches_section_4_1_and_the_authors_code():
    config = preset("paper")
    validate_config(config, SCHEMA)
    check_config(copy.deepcopy(config))
    training = config["training"]
    assert config["model"] == "resnet50_paper"
    assert (training["epochs"], training["batch_size"], training["lr"]) == (200, 64, 0.01)
    assert (training["momentum"], training["weight_decay"]) == (0.9, 0.0)  # authors' SGD: no weight decay
    assert (training["schedule"], training["milestones"]) == ("step", [100, 150])
    assert (training["mixup_alpha"], training["augment"], training["init"]) == (1.0, True, "kaiming_fan_out")
    assert training["at"] == {"eps": 0.0313725, "step_size": 0.0078431, "steps": 10}
    assert training["regimes"]["interpolated_at"] == {"lr": 0.1}
    assert all(training["regimes"][r] == {} for r in ("erm", "mixup", "at"))
    attacks = config["attacks"]
    assert (attacks["eps"], attacks["step_size"], attacks["labels"]) == (0.0313725, 0.0078431, "prediction")
    assert attacks["names"] == ["clean", "pgd10", "pgd50", "pgd200", "tpgd10", "tpgd50", "tpgd200"]
    assert config["defenses"]["n_samples"] == 30
    assert all(ds["n_test"] == 1000 for ds in config["datasets"].values())
    assert {n: ds["pool_per_class"] * (10 if n == "cifar10" else 100) for n, ds in config["datasets"].items()} == \
        {"cifar10": 10000, "cifar100": 10000}
    # TrainConfig's own defaults are the paper's too
    assert TrainConfig().weight_decay == 0.0 and TrainConfig().init == "kaiming_fan_out"
