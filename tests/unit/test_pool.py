"""The MI sample pool: built from the training split (distinct images, every class, sorted by class,
uniform within a class, seeded). The sampling of pool images per input is tested with the defenses
that use it (tests/unit/test_defenses.py)."""

import pytest
import torch

from mixup_inference.core.defenses.pool import build_pool
from mixup_inference.core.utils import make_generator


def _indexed_train(counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """'Images' that hold their own index, labels shuffled."""
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=make_generator(0))]
    return torch.arange(len(y), dtype=torch.int64).view(-1, 1, 1, 1), y


def test_build_pool_properties():
    x, y = _indexed_train([30, 12, 50, 3])
    pool_x, pool_y = build_pool(x, y, per_class=10, num_classes=4, generator=make_generator(1))
    idx = pool_x.flatten()
    assert pool_x.dtype == x.dtype and pool_y.dtype == torch.int64
    assert pool_y.bincount(minlength=4).tolist() == [10, 10, 10, 3]  # class 3 has only 3: all taken
    assert torch.equal(pool_y, pool_y.sort().values)  # sorted by class
    assert len(idx.unique()) == len(idx)  # distinct images
    assert torch.equal(y[idx], pool_y)  # labels match the chosen images
    again_x, _ = build_pool(x, y, per_class=10, num_classes=4, generator=make_generator(1))
    other_x, _ = build_pool(x, y, per_class=10, num_classes=4, generator=make_generator(2))
    assert torch.equal(again_x, pool_x) and not torch.equal(other_x.flatten().sort().values, idx.sort().values)


def test_build_pool_covers_each_class_uniformly():
    x, y = _indexed_train([20, 20])
    hits = torch.zeros(40)
    generator = make_generator(0)
    for _ in range(400):
        hits[build_pool(x, y, per_class=5, num_classes=2, generator=generator)[0].flatten()] += 1
    assert hits.min() > 60 and hits.max() < 140  # each image expected 100 times


def test_build_pool_errors():
    x, y = _indexed_train([5, 0, 5])
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no training images; the MI pool needs every class"):
        build_pool(x, y, per_class=2, num_classes=3, generator=None)
    with pytest.raises(ValueError, match="per_class=0 must be >= 1"):
        build_pool(x, y, per_class=0, num_classes=3, generator=None)
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        build_pool(x, y, per_class=2, num_classes=2, generator=None)
