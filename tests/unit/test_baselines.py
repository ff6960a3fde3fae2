"""The randomised baselines measure what the paper measured (Tables 4/5, the authors'
attack_resnet_baselines.py): Xie et al. as crop-and-zero-pad without resizing, and Gaussian noise
of std sigma / 2 on [0, 1] pixels (the paper's sigma is on the [-1, 1] scale), not clamped."""

import pytest
import torch
from torch import nn

from mixup_inference.core.defenses.baselines import crop_pad, gaussian_noise, random_crop_pad
from mixup_inference.core.utils import make_generator


class Recorder(nn.Module):
    """A linear classifier that records every batch it is given."""

    def __init__(self, pixels: int):
        super().__init__()
        self.inner = nn.Sequential(nn.Flatten(), nn.Linear(pixels, 2))
        self.batches: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.detach().clone())
        return self.inner(x)


def test_xie_copies_are_an_exact_s_by_s_crop_of_the_input_zero_padded():
    # distinct positive pixel values: every output pixel must be one of them or exactly 0
    height = width = 9
    image = (torch.randperm(3 * height * width, generator=make_generator(0)).double() + 1).reshape(3, height, width)
    model = Recorder(3 * height * width).double()
    random_crop_pad(model, image[None], min_size=4, max_size=7, n_samples=300, generator=make_generator(1))
    seen = torch.cat(model.batches)
    assert seen.shape == (300, 3, height, width)
    sizes, pad_offsets, crop_offsets = set(), set(), set()
    for copy in seen:
        kept = copy[0] != 0
        rows, cols = kept.any(1).nonzero().flatten(), kept.any(0).nonzero().flatten()
        top, left, s = int(rows[0]), int(cols[0]), len(rows)
        assert len(cols) == s and kept.sum() == s * s  # one square block
        assert bool(kept[top:top + s, left:left + s].all())
        block = copy[:, top:top + s, left:left + s]
        # the block is the input window at some position, pixel for pixel (no interpolated values)
        hits = [(i, j) for i in range(height - s + 1) for j in range(width - s + 1)
                if torch.equal(image[:, i:i + s, j:j + s], block)]
        assert len(hits) == 1
        sizes.add(s)
        pad_offsets.add((top, left))
        crop_offsets.add(hits[0])
    assert sizes == {4, 5, 6, 7}  # s uniform in [min_size, max_size]
    assert len(pad_offsets) > 20 and len(crop_offsets) > 20  # both positions vary independently


def test_xie_crop_position_and_pad_offset_are_independent():
    # size 8 of 9: crop and pad offsets are each in {0, 1}^2; all 16 combinations must occur
    image = torch.arange(1, 82, dtype=torch.float64).reshape(1, 1, 9, 9)
    model = Recorder(81).double()
    random_crop_pad(model, image, min_size=8, max_size=8, n_samples=400, generator=make_generator(2))
    combos = set()
    for copy in torch.cat(model.batches)[:, 0]:
        kept = copy != 0
        top, left = int(kept.any(1).nonzero()[0]), int(kept.any(0).nonzero()[0])
        first = int(copy[top, left].item()) - 1  # value v at input (v // 9, v % 9)
        combos.add((top, left, first // 9, first % 9))
    assert len(combos) == 16


def test_crop_pad_is_differentiable_with_a_zero_gradient_outside_the_window():
    images = torch.rand(2, 3, 6, 6, generator=make_generator(3), requires_grad=True)
    out = crop_pad(images, torch.tensor([3, 4]), torch.tensor([1, 0]), torch.tensor([2, 1]), torch.tensor([0, 2]),
                   torch.tensor([3, 0]))
    out.sum().backward()
    grad = images.grad
    expected = torch.zeros_like(grad)
    expected[0, :, 1:4, 2:5] = 1
    expected[1, :, 0:4, 1:5] = 1
    assert torch.equal(grad, expected)  # each kept input pixel reaches the output exactly once
    assert torch.equal(out[0, :, 0:3, 3:6], images[0, :, 1:4, 2:5])
    assert torch.equal(out[1, :, 2:6, 0:4], images[1, :, 0:4, 1:5])


@pytest.mark.parametrize("sigma", [0.04, 0.3])
def test_gaussian_noise_std_is_half_sigma_in_pixel_units_and_not_clamped(sigma):
    x = torch.full((2, 3, 8, 8), 0.5, dtype=torch.float64)
    x[1] = 1.0  # at the top of the range: unclamped noise goes above 1 half of the time
    model = Recorder(3 * 64).double()
    gaussian_noise(model, x, sigma=sigma, n_samples=200, generator=make_generator(4))
    noise = torch.cat(model.batches).reshape(2, 200, -1) - x.reshape(2, 1, -1)
    std = noise.std().item()
    assert abs(std - sigma / 2) < 0.01 * sigma  # 76,800 draws: relative error of the std ~ 0.3%
    assert (torch.cat(model.batches) > 1).double().mean() > 0.2  # values leave [0, 1]
    assert abs(noise.mean().item()) < 0.01 * sigma


def test_gaussian_clamp_is_an_explicit_option():
    x = torch.full((1, 3, 8, 8), 1.0)
    model = Recorder(3 * 64)
    gaussian_noise(model, x, sigma=0.2, n_samples=50, clamp=True, generator=make_generator(5))
    seen = torch.cat(model.batches)
    assert seen.max() <= 1.0 and seen.min() >= 0.0 and (seen < 1.0).any()
