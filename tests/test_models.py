"""Tests for mixup_inference.core.models: shapes, parameter budgets, the fixed input normalisation."""

from __future__ import annotations

import pytest
import torch

from mixup_inference.core.models import MODEL_NAMES, Normalize, NormalizedClassifier, build_model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_every_model_outputs_logits_per_class(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=in_channels).eval()
    x = torch.rand(2, in_channels, 8, 8)  # the smallest supported image size
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [16, 32])
def test_compact_and_tiny_models_accept_other_image_sizes(size: int) -> None:
    for name in ("compact_resnet", "tiny_cnn"):
        model = build_model(name, num_classes=4).eval()
        with torch.no_grad():
            assert model(torch.rand(3, 3, size, size)).shape == (3, 4)


def test_parameter_budgets() -> None:
    assert 150_000 <= n_params(build_model("compact_resnet", 10)) <= 900_000
    assert 10_000 <= n_params(build_model("tiny_cnn", 10)) <= 30_000
    # Closed-form counts of the two reference architectures (10 classes, RGB).
    assert n_params(build_model("preact_resnet18", 10)) == 11_172_170
    assert n_params(build_model("resnet50_paper", 10)) == 4_752_586


def test_paper_resnet_layout() -> None:
    net = build_model("resnet50_paper", 10).net
    stem_conv = net.stem[0]
    assert stem_conv.kernel_size == (5, 5) and stem_conv.stride == (1, 1) and stem_conv.out_channels == 64
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    assert [len(stage) for stage in net.stages] == [5, 5, 5]
    assert [stage[-1].conv3.out_channels for stage in net.stages] == [64, 128, 256]
    # Expansion 1: the bottleneck's output width equals its inner width.
    assert all(block.conv1.out_channels == block.conv3.out_channels for stage in net.stages for block in stage)
    # Two stride-2 stages: 32x32 -> 8x8 before the global pool.
    features = net.stages(net.stem(torch.rand(1, 3, 32, 32)))
    assert features.shape == (1, 256, 8, 8)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_normalisation_is_inside_the_model(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, in_channels=3).eval()
    assert isinstance(model, NormalizedClassifier)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), model.net(2 * x - 1), atol=1e-5, rtol=1e-5)
    # The normalisation is fixed: buffers, not trainable parameters.
    assert {k for k, _ in model.normalize.named_buffers()} == {"mean", "std"}
    assert not list(model.normalize.parameters())


def test_normalize_maps_unit_interval_to_symmetric_interval() -> None:
    norm = Normalize(2)
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(1, 2, 1, 3)
    assert torch.equal(norm(x), torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3).expand(1, 2, 1, 3))


def test_models_are_differentiable_wrt_input() -> None:
    model = build_model("tiny_cnn", num_classes=3).eval()
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet50_paper.*preact_resnet18.*compact_resnet.*tiny_cnn"):
        build_model("resnet51", num_classes=10)


@pytest.mark.parametrize("kwargs", [{"num_classes": 1}, {"num_classes": 10, "in_channels": 0}])
def test_bad_sizes_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="num_classes|in_channels"):
        build_model("tiny_cnn", **kwargs)
