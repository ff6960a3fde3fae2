"""Tests for mixup_inference.core.models.networks: shapes, parameter budgets, the fixed input normalisation."""

from __future__ import annotations

import pytest
import torch

from mixup_inference.core.models.networks import (AIRBENCH_WIDTHS, MODEL_NAMES, Normalize, NormalizedClassifier, PatchWhitening,
                                    build_model, whitening_layers)


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


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_are_differentiable_wrt_input(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=3).eval()
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0


# ---------------------------------------------------------------- the airbench94 networks


@pytest.mark.parametrize("name", sorted(AIRBENCH_WIDTHS))
@pytest.mark.parametrize("size", [8, 9, 13, 16, 31, 32, 40])
def test_airbench_models_accept_any_image_size_from_8(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, in_channels=1).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, size, size))
    assert out.shape == (3, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(AIRBENCH_WIDTHS))
def test_airbench_parameter_count_and_frozen_parts(name: str) -> None:
    """airbench94's layout, counted layer by layer: a 2x2 whitening conv with bias (24 channels for
    RGB), per group two bias-free 3x3 convs and two BatchNorms, a bias-free linear head. The
    whitening weight and the BatchNorm scales do not train."""
    w1, w2, w3 = AIRBENCH_WIDTHS[name]
    model = build_model(name, 10)
    whiten = 24 * 3 * 2 * 2 + 24
    groups = sum(9 * cin * cout + 9 * cout * cout + 4 * cout for cin, cout in ((24, w1), (w1, w2), (w2, w3)))
    assert n_params(model) == whiten + groups + w3 * 10
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"net.whiten.weight"} | {k for k in dict(model.named_parameters())
                                              if "norm" in k and k.endswith("weight")}
    if name == "airbench94":
        assert round(n_params(model) / 1e6, 2) == 1.97  # the paper's count


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Images with strongly correlated neighbouring pixels and channels (upsampled coarse noise
    plus a shared grey level): their 2x2 patch covariance is far from the identity."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g)
    grey = torch.rand(n, 1, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(0.3 * coarse + 0.7 * grey, size=(size, size), mode="bilinear")
    return x + 0.01 * torch.randn(n, 3, size, size, generator=g)


def patch_output_covariance(layer: PatchWhitening, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance over all positions and images of the layer's output channels."""
    with torch.no_grad():
        out = layer(x).double()
    flat = out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])
    return flat.mean(0), torch.cov(flat.T)


def test_whitening_layer_whitens_the_patches_it_was_fitted_on() -> None:
    x = smooth_images(200, 16, seed=0)
    layer = PatchWhitening(3)
    _, before = patch_output_covariance(layer, x)
    half = layer.out_channels // 2
    assert (before[:half, :half] - torch.eye(half, dtype=torch.float64)).abs().max() > 0.5  # not white unfitted
    layer.fit(x, eps=1e-9)
    mean, cov = patch_output_covariance(layer, x)
    # The first half of the channels: zero mean, identity covariance; the second half is their negative.
    assert mean.abs().max() < 1e-4
    assert (cov[:half, :half] - torch.eye(half, dtype=torch.float64)).abs().max() < 1e-3
    assert torch.allclose(cov[half:, :half], -cov[:half, :half], atol=1e-6)
    # With airbench's eps the variances are eigenvalue / (eigenvalue + eps), in closed form.
    record = layer.fit(x, eps=5e-4)
    _, cov = patch_output_covariance(layer, x)
    patches = x.double().unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    eig = torch.linalg.eigvalsh(torch.cov(patches.T))
    assert torch.allclose(cov[:half, :half], torch.diag(eig / (eig + 5e-4)), atol=1e-3)
    assert record["eigenvalue_min"] == pytest.approx(float(eig.min()), rel=1e-6)
    # On other data it is no longer white: the fit is a function of the data.
    _, other = patch_output_covariance(layer, torch.rand(50, 3, 16, 16))
    assert (other[:half, :half] - torch.eye(half, dtype=torch.float64)).abs().max() > 0.5


def test_only_the_airbench_models_have_a_whitening_layer() -> None:
    for name in MODEL_NAMES:
        layers = whitening_layers(build_model(name, 10))
        assert len(layers) == (1 if name in AIRBENCH_WIDTHS else 0), name


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet50_paper.*preact_resnet18.*compact_resnet.*tiny_cnn"):
        build_model("resnet51", num_classes=10)


@pytest.mark.parametrize("kwargs", [{"num_classes": 1}, {"num_classes": 10, "in_channels": 0}])
def test_bad_sizes_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="num_classes|in_channels"):
        build_model("tiny_cnn", **kwargs)
