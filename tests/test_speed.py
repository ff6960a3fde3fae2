"""The workflow's fast-path choices (speed.py): what `speed:` resolves to per job, that the plain
path is the untouched fp32 model, and that bf16 training reaches fp32 accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from mixup_inference.core.data import to_float
from mixup_inference.core.averaging import predict_probs
from mixup_inference.core.fastpath import FastModel
from mixup_inference.core.models import build_model
from mixup_inference.core.speed import DEFAULT_SPEED, measure_bf16_speedup, resolve_speed, speed_model
from mixup_inference.core.training import TrainConfig, train
from test_training import NUM_CLASSES, make_data

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def model(seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model("tiny_cnn", NUM_CLASSES)


def test_no_section_is_the_plain_fp32_model():
    resolved = resolve_speed(None, CPU, purpose="train")
    assert not resolved["channels_last"] and not resolved["bf16"]
    net = model()
    assert speed_model(net, resolved) is net  # no wrapper: bit for bit the pre-speed path


def test_attacks_and_evaluations_stay_fp32_unless_asked():
    for device in (CPU, CUDA):
        assert resolve_speed(DEFAULT_SPEED, device, purpose="eval")["bf16"] is False
    assert resolve_speed({"eval_bf16": True}, CPU, purpose="eval")["bf16"] is True


def test_training_bf16_is_on_for_cuda_and_follows_the_config():
    assert resolve_speed({}, CUDA, purpose="train")["bf16"] is True
    assert resolve_speed({"train_bf16": False}, CUDA, purpose="train")["bf16"] is False
    assert resolve_speed({"train_bf16": True}, CPU, purpose="train")["bf16"] is True
    assert resolve_speed({"channels_last": False}, CUDA, purpose="eval")["channels_last"] is False
    assert resolve_speed({}, CUDA, purpose="eval")["channels_last"] is True


def test_cpu_auto_is_fp32_and_the_measurement_leaves_the_model_unchanged():
    x = to_float(make_data(64, seed=0)[0])
    net = model()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # auto never depends on a timing on a CPU (the same config must give the same numbers)
    assert resolve_speed({}, CPU, purpose="train")["bf16"] is False
    assert resolve_speed({"train_bf16": True}, CPU, purpose="train")["bf16"] is True
    assert measure_bf16_speedup(net, x) > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # measured on a copy


@pytest.mark.parametrize("bad", [{"train_bf16": "yes"}, {"eval_bf16": "auto"}, {"fast": True}])
def test_bad_switches_are_one_line_errors(bad):
    with pytest.raises(ValueError, match="speed"):
        resolve_speed(bad, CPU, purpose="eval")


def test_channels_last_gives_the_same_predictions():
    net = model().eval()
    x = to_float(make_data(64, seed=2)[0])
    plain = predict_probs(net, x)
    fast = speed_model(net, resolve_speed({"train_bf16": False}, CPU, purpose="eval"))
    assert isinstance(fast, FastModel) and fast.channels_last and fast.autocast_dtype is None
    probs = predict_probs(fast, x)
    assert torch.allclose(probs, plain, atol=1e-5)
    assert torch.equal(probs.argmax(1), plain.argmax(1))


def test_bf16_training_reaches_fp32_accuracy_within_noise():
    """Same data, seed and schedule, trained with bf16 autocast and in fp32: test accuracies on 512
    images differ by less than 3 standard errors of a difference of two independent accuracies."""
    train_x, train_y = make_data(512, seed=0)
    test_x, test_y = make_data(512, seed=1)
    config = TrainConfig(epochs=3, batch_size=32, lr=0.05, schedule="onecycle", weight_decay=5e-4, seed=0)
    accuracy = {}
    for bf16 in (False, True):
        net = model()
        resolved = {"device": "cpu", "channels_last": False, "bf16": bf16}
        train(speed_model(net, resolved), train_x, train_y, config, progress=False)
        net.eval()
        accuracy[bf16] = (predict_probs(net, to_float(test_x)).argmax(1) == test_y).float().mean().item()
    p = accuracy[False]
    assert p > 0.5  # well above chance (0.25): the comparison is not between two untrained models
    noise = 3 * math.sqrt(2 * max(p * (1 - p), 0.01) / len(test_y))
    assert abs(accuracy[True] - p) <= noise, accuracy
