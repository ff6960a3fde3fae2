"""The authors' released checkpoints: a state_dict in their exact key layout (resnet_3layer.resnet50 of
github.com/P2333/Mixup-Inference) loads into a model whose logits on [0, 1] images equal an independent
forward pass over those weights on [-1, 1] inputs; anything else is refused in one line."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from mixup_inference import load_authors_checkpoint
from model_files import BLOCKS, authors_state_dict

pytestmark = pytest.mark.usefixtures("single_thread")

def reference_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """resnet_3layer.ResNet.forward in eval mode, written with torch.nn.functional over `sd`;
    `x` already in [-1, 1] (the authors' input range)."""
    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                            sd[f"{name}.bias"], training=False, eps=1e-5)

    out = F.relu(bn(F.conv2d(x, sd["conv1.weight"], padding=2), "bn1"))
    for layer in range(1, 4):
        for block in range(BLOCKS):
            p = f"layer{layer}.{block}"
            stride = 2 if (layer > 1 and block == 0) else 1
            h = F.relu(bn(F.conv2d(out, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            h = F.relu(bn(F.conv2d(h, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            h = bn(F.conv2d(h, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            identity = out
            if f"{p}.downsample.0.weight" in sd:
                identity = bn(F.conv2d(out, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            out = F.relu(h + identity)
    return F.linear(out.mean(dim=(2, 3)), sd["fc_dense.weight"], sd["fc_dense.bias"])


def test_the_authors_layout_has_290_tensors():
    sd = authors_state_dict()
    assert len(sd) == 290
    assert "layer1.0.downsample.0.weight" not in sd and "layer2.0.downsample.0.weight" in sd


@pytest.mark.parametrize("prefix", ["", "module."])
def test_logits_equal_an_independent_forward_pass_on_minus_one_to_one_inputs(tmp_path, prefix):
    sd = authors_state_dict(num_classes=10)
    path = tmp_path / "model_mixup.ckpt"
    # the authors saved with PyTorch 1.2: the legacy (pre-zip) format
    torch.save(OrderedDict((prefix + k, v) for k, v in sd.items()), path, _use_new_zipfile_serialization=False)
    model = load_authors_checkpoint(path, num_classes=10)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # pixels in [0, 1]
    with torch.no_grad():
        ours = model(x)
        theirs = reference_forward(sd, 2 * x - 1)
    assert ours.shape == (6, 10)
    assert theirs.abs().max() > 0.1  # not a vacuous comparison of near-zero logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert not model.training
    assert torch.equal(load_authors_checkpoint(sd, num_classes=10)(x).detach(), ours)  # a dict in memory too


def test_cifar100_checkpoints_load_with_100_classes():
    sd = authors_state_dict(num_classes=100, seed=3)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_authors_checkpoint(sd, 100)(x), reference_forward(sd, 2 * x - 1),
                                   rtol=1e-4, atol=1e-4)


def _refusal(tmp_path, state, num_classes=10) -> str:
    path = tmp_path / "bad.ckpt"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        load_authors_checkpoint(path, num_classes=num_classes)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_wrong_class_count_is_refused(tmp_path):
    message = _refusal(tmp_path, authors_state_dict(num_classes=100), num_classes=10)
    assert "has 100 classes" in message and "the data set has 10" in message


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = authors_state_dict()
    del sd["layer3.4.conv2.weight"]
    sd["layer4.0.conv1.weight"] = torch.zeros(1)
    message = _refusal(tmp_path, sd)
    assert "missing keys layer3.4.conv2.weight" in message and "unexpected keys layer4.0.conv1.weight" in message


def test_a_mismatched_shape_is_named(tmp_path):
    sd = authors_state_dict()
    sd["layer2.1.conv2.weight"] = torch.zeros(128, 128, 5, 5)
    message = _refusal(tmp_path, sd)
    assert "layer2.1.conv2.weight has shape (128, 128, 5, 5), expected (128, 128, 3, 3)" in message


def test_keys_of_another_architecture_are_refused(tmp_path):
    from mixup_inference.core.models.networks import build_model

    message = _refusal(tmp_path, build_model("tiny_cnn", 10).state_dict())
    assert "does not match the authors' ResNet-50" in message and "missing keys conv1.weight" in message


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError, match=rf"^checkpoint {path} is unreadable .*authors' resnet_3layer"):
        load_authors_checkpoint(path, 10)
    message = _refusal(tmp_path, {"weights": [1, 2, 3]})
    assert "is not a state_dict" in message
