"""Mixup Inference (Pang, Xu, Zhu, ICLR 2020) as a small, batched PyTorch library.

Models take pixels in [0, 1] (normalisation inside), so every eps is in pixel units.

    >>> from mixup_inference import build_model, pgd, mixup_inference
    >>> probs = mixup_inference(model, x, pool_x, pool_y, lam=0.5, n_samples=30, mode="ol")

The core layer's domains (`mixup_inference.core`): data (datasets, tensor augmentation), models,
defenses (MI-PL, MI-OL, MI-Combined, baseline input transformations, the MI sample pool), attacks
(PGD, the paper's adaptive PGD, EOT PGD, attacks through a whole defense), training (ERM, mixup, AT,
interpolated AT), and metrics (Wilson intervals, detection AUC). Above it: the study's design
(`design`), the workflow's jobs (`jobs`), the report (`report`) and the benchmarks (`perf`).
"""

from .core.attacks.pgd import adaptive_pgd, eot_pgd, pgd
from .core.models.checkpoints import load_authors_checkpoint
from .core.data.datasets import (
    ImageDataset,
    load_dataset,
    prepare_dataset,
    random_crop_flip,
    select_test_points,
    to_float,
)
from .core.defenses.averaging import averaged_softmax, predict_probs
from .core.defenses.baselines import (
    gaussian_noise,
    random_crop_pad,
    random_crop_resize,
    random_resize_pad,
    random_rotation,
)
from .core.defenses.specs import DEFENSES
from .core.defenses.mi import mi_combined, mi_ol, mi_pl, mixup_inference
from .core.metrics import (
    accuracy_with_ci,
    auc_difference_ci,
    auc_with_ci,
    confidence_score,
    detection_auc,
    mi_pl_detection_score,
    paired_auc_ci,
    paired_auc_difference_ci,
    paired_difference_ci,
    wilson_interval,
)
from .core.models.networks import MODEL_NAMES, build_model
from .core.defenses.pool import build_pool
from .core.training.mixing import mixup_batch, soft_cross_entropy
from .core.training.loop import TrainingDiverged, train
from .core.training.config import TrainConfig

__version__ = "0.1.0"

__all__ = [
    "DEFENSES", "MODEL_NAMES", "ImageDataset", "TrainConfig", "TrainingDiverged",
    "accuracy_with_ci", "adaptive_pgd", "averaged_softmax", "auc_difference_ci", "auc_with_ci", "build_model", "build_pool", "confidence_score", "detection_auc",
    "eot_pgd", "gaussian_noise", "load_authors_checkpoint", "load_dataset", "mi_combined", "mi_ol", "mi_pl", "mi_pl_detection_score", "mixup_batch", "mixup_inference",
    "paired_auc_ci", "paired_auc_difference_ci", "paired_difference_ci", "pgd", "predict_probs", "prepare_dataset", "random_crop_flip", "random_crop_pad", "random_crop_resize", "random_resize_pad",
    "random_rotation", "select_test_points", "soft_cross_entropy", "to_float", "train", "wilson_interval",
]
