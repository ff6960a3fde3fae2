"""The authors' per-image MI-OL loop, the reference point of the speed-up row (not a defense)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def authors_mi_ol_loop(model: nn.Module, x: Tensor, pool_x: Tensor, pool_y: Tensor, *, lam: float,
                       n_samples: int, num_classes: int, seed: int = 0) -> Tensor:
    """MI-OL as the authors' attack_resnet_mixuptest_OL.py computes it: one test image at a time
    (batch 1), the pool held as one list of single images per class, and for each of the N
    executions a NumPy-drawn other label (rejection sampling), a NumPy-drawn image of it, one
    mix and one single-image forward pass; softmax outputs summed then divided by N.

    Differences, all in the reference's favour: torch.no_grad() around the forwards (the authors
    build autograd graphs), and only one image set (their loop also handles the adversarial copy).
    Returns [B, C] averaged probabilities.
    """
    rng = np.random.RandomState(seed)
    pool = {c: [pool_x[i:i + 1] for i in torch.nonzero(pool_y == c).flatten().tolist()]
            for c in range(num_classes)}
    rows = []
    model.eval()
    with torch.no_grad():
        for i in range(x.shape[0]):
            image = x[i:i + 1]
            predicted = int(model(image).argmax(1)[0])
            total = 0
            for _ in range(n_samples):
                label = rng.randint(num_classes)
                while label == predicted:
                    label = rng.randint(num_classes)
                pick = rng.randint(len(pool[label]))
                mixed = (1 - lam) * pool[label][pick] + lam * image
                total = total + F.softmax(model(mixed), dim=-1)
            rows.append(total / n_samples)
    return torch.cat(rows)

