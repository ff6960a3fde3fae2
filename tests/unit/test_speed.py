"""The workflow's fast-path choices (core.models.speed): what `speed:` resolves to per job, that the plain
path is the untouched fp32 model, and that bf16 training reaches fp32 accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from mixup_inference.core.data.datasets import to_float
from mixup_inference.core.defenses.averaging import predict_probs
from mixup_inference.core.models.fastpath import FastModel
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.models.speed import (DEFAULT_SPEED, cpu_flags, cpu_model, measure_bf16_speedup, native_bf16,
                                        resolve_speed, speed_model)
from mixup_inference.core.training.loop import train
from mixup_inference.core.training.config import TrainConfig
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


def test_training_bf16_is_on_for_cuda_with_bf16_and_follows_the_config():
    assert resolve_speed({}, CUDA, purpose="train", cuda_bf16=True)["bf16"] is True
    assert resolve_speed({}, CUDA, purpose="train", cuda_bf16=False)["bf16"] is False  # e.g. a pre-Ampere GPU
    assert resolve_speed({"train_bf16": False}, CUDA, purpose="train", cuda_bf16=True)["bf16"] is False
    assert resolve_speed({"train_bf16": True}, CPU, purpose="train")["bf16"] is True
    assert resolve_speed({"channels_last": False}, CUDA, purpose="eval")["channels_last"] is False
    assert resolve_speed({}, CUDA, purpose="eval")["channels_last"] is True


AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})


@pytest.mark.parametrize("flags, bf16", [(AVX2, False), (AVX2 | {"avx512f", "avx512bw"}, False), (None, False),
                                         (AVX2 | {"avx512f", "avx512_bf16"}, True),
                                         (AVX2 | {"amx_tile", "amx_bf16"}, True)])
def test_cpu_auto_bf16_follows_the_cpu_flags_and_a_config_forces_either(flags, bf16):
    resolved = resolve_speed({}, CPU, purpose="train", flags=flags)
    assert resolved["bf16"] is bf16
    assert resolved["reason"].startswith("auto: ") and ("native bf16" in resolved["reason"]) is bf16
    assert resolve_speed({"train_bf16": True}, CPU, purpose="train", flags=flags)["bf16"] is True
    assert resolve_speed({"train_bf16": False}, CPU, purpose="train", flags=flags)["bf16"] is False
    # attacks and evaluations stay fp32 whatever the CPU
    assert resolve_speed({}, CPU, purpose="eval", flags=flags)["bf16"] is False


def test_cpu_flags_are_read_from_cpuinfo_and_decide_this_machine(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n"
                    "flags\t\t: fpu avx2 avx512_bf16\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "absent")) is None
    info.write_text("processor\t: 0\nFeatures\t: fp asimd\n")  # ARM: no flags line
    assert cpu_flags(str(info)) is None
    # the default reads this machine's flags: the same answer every time, never a timing
    expected = native_bf16(cpu_flags())[0]
    assert all(resolve_speed({}, CPU, purpose="train")["bf16"] is expected for _ in range(3))


def test_cpu_model_is_read_from_cpuinfo_with_a_fallback(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000 @ 3GHz\nflags\t: fpu avx512_bf16\n")
    assert cpu_model(str(info)) == "Test CPU 9000 @ 3GHz"
    assert cpu_model(str(tmp_path / "missing")) and cpu_model(str(tmp_path / "missing")) != "Test CPU 9000 @ 3GHz"


def test_the_bf16_measurement_leaves_the_model_unchanged():
    x = to_float(make_data(64, seed=0)[0])
    net = model()
    before = {k: v.clone() for k, v in net.state_dict().items()}
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
