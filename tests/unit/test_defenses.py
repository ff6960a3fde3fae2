"""Defenses: Mixup Inference closed forms (paper Table 1) on a model whose softmax output is its
input, pool sampling distributions, chunking, and the randomised baselines."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixup_inference.core.defenses.averaging import predict_probs
from mixup_inference.core.defenses.baselines import (gaussian_noise, random_crop_pad, random_crop_resize, random_resize_pad,
                                       random_rotation)
from mixup_inference.core.defenses.specs import DEFENSES
from mixup_inference.core.defenses.mi import mi_combined, mixup_inference
from mixup_inference.core.defenses.pool import sample_pool_indices
from mixup_inference.core.utils import make_generator

C = 5  # classes of the probability-vector toy problem
TOL = 1e-12


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py: one torch thread per module


class SoftmaxIsInput(nn.Module):
    """Images are probability vectors [B, C, 1, 1]; logits log(x) make softmax(F(x)) == x, so the
    model is exactly linear on the simplex (the 'ideal linearity' of the paper's Table 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x.flatten(1) + 1e-300)


class Recorder(nn.Module):
    """Wraps a model; records every batch it sees and the mode it was called in."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.batches: list[torch.Tensor] = []
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.detach().clone())
        self.modes.append(self.training)
        return self.inner(x)


def one_hot_images(labels, num_classes=C) -> torch.Tensor:
    return F.one_hot(torch.as_tensor(labels), num_classes).double()[:, :, None, None]


def one_hot_pool(per_class=(2, 3, 1, 4, 2)) -> tuple[torch.Tensor, torch.Tensor]:
    pool_y = torch.repeat_interleave(torch.arange(len(per_class)), torch.tensor(per_class))
    return one_hot_images(pool_y, len(per_class)), pool_y


def tiny_cnn(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))


# --------------------------------------------------------------------------------------------
# Mixup Inference: Table 1 closed forms under ideal linearity
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lam", [0.3, 0.5, 0.8])
def test_mi_ol_on_clean_input_gives_lambda(lam):
    pool_x, pool_y = one_hot_pool()
    y = torch.arange(C)
    probs = mixup_inference(SoftmaxIsInput(), one_hot_images(y), pool_x, pool_y, lam=lam, n_samples=20, mode="ol",
                            generator=make_generator(0))
    assert probs.dtype == torch.float64 and probs.shape == (C, C)
    assert torch.allclose(probs.sum(1), torch.ones(C, dtype=torch.float64), atol=TOL)
    # F_y = lam exactly: the other-label sample never carries class y
    assert torch.allclose(probs[y, y], torch.full((C,), lam, dtype=torch.float64), atol=TOL)


def test_mi_ol_never_draws_the_predicted_class_per_execution():
    pool_x, pool_y = one_hot_pool()
    lam, y = 0.6, 2
    x = one_hot_images([y] * 400)
    probs = mixup_inference(SoftmaxIsInput(), x, pool_x, pool_y, lam=lam, n_samples=1, mode="ol",
                            generator=make_generator(1))
    pool_side = (probs - lam * x.flatten(1)) / (1 - lam)  # one execution each: the one-hot of y_s
    assert torch.allclose(pool_side[:, y], torch.zeros(400, dtype=torch.float64), atol=TOL)
    assert torch.allclose(pool_side.max(1).values, torch.ones(400, dtype=torch.float64), atol=TOL)
    drawn = pool_side.argmax(1)
    assert set(drawn.tolist()) == set(range(C)) - {y}


def test_mi_pl_on_clean_input_returns_it():
    pool_x, pool_y = one_hot_pool()
    x = one_hot_images(torch.arange(C))
    probs = mixup_inference(SoftmaxIsInput(), x, pool_x, pool_y, lam=0.4, n_samples=7, mode="pl",
                            generator=make_generator(2))
    assert torch.allclose(probs, x.flatten(1), atol=TOL)


@pytest.mark.parametrize("lam", [0.3, 0.6])
def test_mi_on_adversarial_input_matches_table_1(lam):
    # an "adversarial" input of true class y predicted as yhat: x = 0.4 e_y + 0.6 e_yhat
    pool_x, pool_y = one_hot_pool()
    y, yhat = 1, 3
    x = 0.4 * one_hot_images([y]) + 0.6 * one_hot_images([yhat])
    model = SoftmaxIsInput()
    pl = mixup_inference(model, x, pool_x, pool_y, lam=lam, n_samples=9, mode="pl", generator=make_generator(3))
    ol = mixup_inference(model, x, pool_x, pool_y, lam=lam, n_samples=9, mode="ol", generator=make_generator(3))
    assert pl[0, yhat].item() == pytest.approx(lam * 0.6 + (1 - lam), abs=TOL)
    assert pl[0, y].item() == pytest.approx(lam * 0.4, abs=TOL)
    assert ol[0, yhat].item() == pytest.approx(lam * 0.6, abs=TOL)
    assert ol[0, y].item() >= lam * 0.4 - TOL


def test_mi_accepts_uint8_pool_and_keeps_dtype():
    pool_x, pool_y = one_hot_pool()
    x = one_hot_images(torch.arange(C))
    as_float = mixup_inference(SoftmaxIsInput(), x, pool_x, pool_y, lam=0.5, n_samples=6, mode="ol",
                               generator=make_generator(4))
    as_uint8 = mixup_inference(SoftmaxIsInput(), x, (pool_x * 255).to(torch.uint8), pool_y, lam=0.5, n_samples=6,
                               mode="ol", generator=make_generator(4))
    assert as_uint8.dtype == torch.float64
    assert torch.allclose(as_float, as_uint8, atol=TOL)


# --------------------------------------------------------------------------------------------
# Pool sampling distributions
# --------------------------------------------------------------------------------------------

def chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


def test_ol_classes_uniform_over_other_classes_and_images_uniform_within_class():
    per_class = (2, 3, 1, 4, 2)
    _, pool_y = one_hot_pool(per_class)
    labels = torch.tensor([0, 3] * 2000)
    index = sample_pool_indices(pool_y, labels, mode="ol", n=5, num_classes=C, generator=make_generator(5))
    assert index.shape == (4000, 5)
    classes = pool_y[index]
    assert not (classes == labels[:, None]).any()
    for label in (0, 3):
        drawn = classes[labels == label].flatten()
        counts = torch.bincount(drawn, minlength=C).double()
        others = counts[torch.arange(C) != label]
        # 10,000 draws over 4 classes; chi-square with 3 df: P(> 27.9) < 4e-6
        assert chi_square(others) < 27.9
    # class 3 has 4 pool images (indices 6..9): uniform within the class
    within = index[classes == 3]
    counts = torch.bincount(within - 6, minlength=4).double()
    assert counts.numel() == 4 and chi_square(counts) < 27.9


def test_pl_draws_the_given_class_and_pool_order_does_not_matter():
    _, pool_y = one_hot_pool()
    shuffled = pool_y[torch.randperm(pool_y.numel(), generator=make_generator(6))]
    labels = torch.tensor([4, 0, 2, 1, 3])
    index = sample_pool_indices(shuffled, labels, mode="pl", n=50, num_classes=C, generator=make_generator(7))
    assert torch.equal(shuffled[index], labels[:, None].expand(5, 50))
    index = sample_pool_indices(shuffled, labels, mode="ol", n=50, num_classes=C, generator=make_generator(7))
    assert not (shuffled[index] == labels[:, None]).any()


def test_pool_missing_a_class_is_an_error():
    pool_x, pool_y = one_hot_pool((2, 3, 0, 4, 2))
    x = one_hot_images([0, 1])
    with pytest.raises(ValueError, match=r"no image of class\(es\) \[2\]"):
        mixup_inference(SoftmaxIsInput(), x, pool_x, pool_y, lam=0.5, n_samples=3, mode="ol")


# --------------------------------------------------------------------------------------------
# MI-Combined
# --------------------------------------------------------------------------------------------

def test_mi_combined_routes_flagged_inputs_to_mi_ol():
    pool_x, pool_y = one_hot_pool()
    clean = one_hot_images([1, 4])
    adversarial = 0.4 * one_hot_images([0, 2]) + 0.6 * one_hot_images([3, 1])
    x = torch.cat([clean, adversarial])
    model = SoftmaxIsInput()
    # gaps max F - max F_MI-PL: clean 0, adversarial 0.6 - (0.5 * 0.6 + 0.5) = -0.2
    out = mi_combined(model, x, pool_x, pool_y, lam_pl=0.5, lam_ol=0.4, threshold=-0.1, n_pl=5, n_ol=15,
                      generator=make_generator(8))
    assert torch.allclose(out[[0, 1], [1, 4]], torch.full((2,), 0.4, dtype=torch.float64), atol=TOL)  # MI-OL: lam_ol
    assert torch.allclose(out[[2, 3], [3, 1]], torch.full((2,), 0.8, dtype=torch.float64), atol=TOL)  # MI-PL
    # the paper's threshold flags nothing here: everything is the MI-PL output
    out = mi_combined(model, x, pool_x, pool_y, generator=make_generator(8))
    expected = mixup_inference(model, x, pool_x, pool_y, lam=0.5, n_samples=5, mode="pl", generator=make_generator(8))
    assert torch.allclose(out, expected, atol=TOL)


# --------------------------------------------------------------------------------------------
# Chunking, determinism, model mode
# --------------------------------------------------------------------------------------------

def pool_for_images(n_per_class=3, num_classes=3):
    pool_y = torch.arange(num_classes).repeat_interleave(n_per_class)
    pool_x = (torch.rand(pool_y.numel(), 3, 8, 8, generator=make_generator(9)) * 255).to(torch.uint8)
    return pool_x, pool_y


BASELINES = [
    (gaussian_noise, dict(sigma=0.1)),
    (random_rotation, dict(max_degrees=30)),
    (random_resize_pad, dict(min_size=4, max_size=7)),
    (random_crop_pad, dict(min_size=4, max_size=7)),
    (random_crop_resize, dict(min_size=4, max_size=7)),
]
POOLED = [(mixup_inference, dict(lam=0.6, mode="ol")), (mixup_inference, dict(lam=0.6, mode="pl"))]


@pytest.mark.parametrize("defense, kwargs", BASELINES + POOLED)
def test_results_independent_of_chunk_size_and_batches_bounded(defense, kwargs):
    x = torch.rand(5, 3, 8, 8, generator=make_generator(10))
    extra = pool_for_images() if defense is mixup_inference else ()
    runs = []
    for chunk_size in (7, 1000):
        model = Recorder(tiny_cnn())
        model.train()
        probs = defense(model, x, *extra, n_samples=60, generator=make_generator(11), chunk_size=chunk_size, **kwargs)
        assert max(batch.shape[0] for batch in model.batches) <= chunk_size
        assert model.training and not any(model.modes)  # eval during, mode restored after
        assert probs.shape == (5, 3)
        assert torch.allclose(probs.sum(1), torch.ones(5), atol=1e-6)
        runs.append((probs, torch.cat(model.batches)))
    (probs_small, seen_small), (probs_large, seen_large) = runs
    assert torch.equal(seen_small, seen_large)  # the very same transformed copies
    assert torch.allclose(probs_small, probs_large, atol=1e-6)
    # same seed -> same result; another seed -> other random copies
    again = defense(tiny_cnn(), x, *extra, n_samples=60, generator=make_generator(11), chunk_size=7, **kwargs)
    assert torch.allclose(again, probs_small, atol=1e-6)
    if defense is not mixup_inference or kwargs["mode"] == "ol":
        other = Recorder(tiny_cnn())
        defense(other, x, *extra, n_samples=60, generator=make_generator(12), chunk_size=1000, **kwargs)
        assert not torch.equal(torch.cat(other.batches), seen_large)


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("defense, kwargs", [
    (gaussian_noise, dict(sigma=0.0)),
    (random_rotation, dict(max_degrees=0)),
    (random_resize_pad, dict(min_size=8, max_size=8)),
    (random_crop_pad, dict(min_size=8, max_size=8)),
    (random_crop_resize, dict(min_size=8, max_size=8)),
])
def test_baselines_with_trivial_parameters_are_the_identity(defense, kwargs):
    model = tiny_cnn()
    x = torch.rand(4, 3, 8, 8, generator=make_generator(13))
    probs = defense(model, x, n_samples=3, generator=make_generator(14), **kwargs)
    assert torch.allclose(probs, predict_probs(model, x), atol=1e-6)


def test_rotation_keeps_the_centre_and_zero_fills_corners():
    # every rotated copy of an all-ones image keeps its centre and loses corners to the zero fill
    model = Recorder(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)))
    random_rotation(model, torch.ones(2, 3, 8, 8), max_degrees=45, n_samples=20, generator=make_generator(15))
    seen = torch.cat(model.batches)
    assert torch.allclose(seen[:, :, 3:5, 3:5], torch.ones(40, 3, 2, 2), atol=1e-5)
    assert (seen[:, :, 0, 0] < 1 - 1e-3).float().mean() > 0.5


def resize_pad_reference(image, size, top, left):
    resized = F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)
    height, width = image.shape[-2:]
    return F.pad(resized, (left, width - size - left, top, height - size - top))[0]


def crop_resize_reference(image, size, top, left):
    crop = image[None, :, top:top + size, left:left + size]
    return F.interpolate(crop, size=image.shape[-2:], mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("defense, reference", [(random_resize_pad, resize_pad_reference),
                                                (random_crop_resize, crop_resize_reference)])
@pytest.mark.parametrize("size", [5, 7])
def test_affine_resize_pad_and_crop_resize_match_interpolate(defense, reference, size):
    image = torch.rand(3, 9, 9, generator=make_generator(16))
    model = Recorder(nn.Sequential(nn.Flatten(), nn.Linear(3 * 9 * 9, 2)))
    defense(model, image[None], min_size=size, max_size=size, n_samples=64, generator=make_generator(17))
    seen = torch.cat(model.batches)
    offsets = [(top, left) for top in range(9 - size + 1) for left in range(9 - size + 1)]
    references = torch.stack([reference(image, size, top, left) for top, left in offsets])
    errors = (seen[:, None] - references[None]).abs().flatten(2).max(2).values  # [copies, offsets]
    best = errors.min(1)
    assert best.values.max() < 1e-5  # every copy is exactly one integer-offset reference
    assert len(set(best.indices.tolist())) > len(offsets) // 2  # and offsets vary


def test_resize_pad_sizes_cover_the_range():
    model = Recorder(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)))
    random_resize_pad(model, torch.ones(1, 3, 8, 8), min_size=3, max_size=6, n_samples=200, generator=make_generator(18))
    areas = (torch.cat(model.batches)[:, 0] > 0.5).flatten(1).sum(1)
    assert set(areas.tolist()) == {9, 16, 25, 36}


# --------------------------------------------------------------------------------------------
# Registry and argument validation
# --------------------------------------------------------------------------------------------

def test_registry_names():
    assert set(DEFENSES) == {"none", "mi_pl", "mi_ol", "mi_combined", "gaussian", "rotation", "xie", "xie_resize",
                             "guo"}
    assert DEFENSES["xie"].function is random_crop_pad and DEFENSES["xie_resize"].function is random_resize_pad
    assert {name for name, spec in DEFENSES.items() if spec.needs_pool} == {"mi_pl", "mi_ol", "mi_combined"}
    pool_x, pool_y = one_hot_pool()
    x = one_hot_images([0, 3])
    out = DEFENSES["mi_ol"](SoftmaxIsInput(), x, pool_x, pool_y, lam=0.7, n_samples=4, generator=make_generator(0))
    assert torch.allclose(out[[0, 1], [0, 3]], torch.full((2,), 0.7, dtype=torch.float64), atol=TOL)
    assert torch.allclose(DEFENSES["none"](SoftmaxIsInput(), x, generator=None), x.flatten(1), atol=TOL)


@pytest.mark.parametrize("call, message", [
    (lambda m, x, p, y: mixup_inference(m, x, p, y, lam=0.0, n_samples=3, mode="ol"), "lam must be in"),
    (lambda m, x, p, y: mixup_inference(m, x, p, y, lam=1.5, n_samples=3, mode="ol"), "lam must be in"),
    (lambda m, x, p, y: mixup_inference(m, x, p, y, lam=0.5, n_samples=0, mode="ol"), "n_samples"),
    (lambda m, x, p, y: mixup_inference(m, x, p, y, lam=0.5, n_samples=3, mode="xx"), "mode must"),
    (lambda m, x, p, y: mixup_inference(m, x, p, y[:-1], lam=0.5, n_samples=3, mode="pl"), "pool_y must"),
    (lambda m, x, p, y: mi_combined(m, x, p, y, lam_ol=0.0), "lam_ol"),
    (lambda m, x, p, y: gaussian_noise(m, x, sigma=-0.1, n_samples=3), "sigma"),
    (lambda m, x, p, y: random_rotation(m, x, max_degrees=-1, n_samples=3), "max_degrees"),
    (lambda m, x, p, y: random_resize_pad(m, x, min_size=2, max_size=1, n_samples=3), "min_size"),
    (lambda m, x, p, y: random_crop_resize(m, x, min_size=1, max_size=2, n_samples=3), "max_size <= 1"),
    (lambda m, x, p, y: predict_probs(m, x, chunk_size=0), "chunk_size"),
])
def test_invalid_arguments_raise(call, message):
    pool_x, pool_y = one_hot_pool()
    with pytest.raises(ValueError, match=message):
        call(SoftmaxIsInput(), one_hot_images([0, 1]), pool_x, pool_y)
