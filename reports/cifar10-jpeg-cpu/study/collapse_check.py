"""The recipe comparison's catastrophic-overfitting check, beside the study's rows (issue 35): each AT and IAT model's
accuracy on the run's 400 class-stratified points, clean, under its FGSM-RS training attack (one step of 1.25 eps
from a uniform random start) and under PGD-10 (step 2/255, random start). A model that has catastrophically
overfitted keeps about its clean accuracy under FGSM-RS and loses it under PGD (Wong et al. 2020).

    python reports/cifar10-jpeg-cpu/study/collapse_check.py results/cifar10-jpeg-cpu/cifar10 > collapse_check.txt

Both attacks start from a random point drawn from generator seed 0, one thread; the study's own PGD-10 numbers
come from the workflow's attack rule (its seed), so they differ from this column by a point or so.
"""

import sys

import torch

from mixup_inference.core.attacks.pgd import pgd
from mixup_inference.core.models.files import load_model
from mixup_inference.core.utils import load_checkpoint

MODELS = ["at", "at-fgsm_rs-e10-s0", "interpolated_at", "interpolated_at-fgsm_rs-e10-s0"]
EPS = 8 / 255


def main(results: str) -> None:
    torch.set_num_threads(1)
    clean = load_checkpoint(f"{results}/at/attacks/clean.pt")  # the run's points, the same for all models
    x, y = clean["x"], clean["y"]
    print(f"{len(y)} points, per class {torch.bincount(y).tolist()}")
    print("model | clean | FGSM-RS (1 x 1.25 eps) | PGD-10 (10 x 2/255)")
    for name in MODELS:
        model = load_model(f"{results}/{name}/model.pt").eval()
        accuracy = {}
        for label, steps, step in (("fgsm_rs", 1, 1.25 * EPS), ("pgd10", 10, 2 / 255)):
            x_adv = pgd(model, x, y, eps=EPS, step_size=step, steps=steps, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                accuracy[label] = (model(x_adv).argmax(1) == y).float().mean().item()
        with torch.no_grad():
            accuracy["clean"] = (model(x).argmax(1) == y).float().mean().item()
        print(f"{name} | {100 * accuracy['clean']:.2f} | {100 * accuracy['fgsm_rs']:.2f} | {100 * accuracy['pgd10']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
