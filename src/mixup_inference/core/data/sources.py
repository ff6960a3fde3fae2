"""Dataset sources by name, and the sizes known before anything is prepared: the built-in
source names, the synthetic generator's defaults, and the test-split sizes of the downloadable
data sets. Torch-free on purpose: `configcheck` reads these facts before any job runs, and
`datasets.prepare_dataset` builds from them."""

from __future__ import annotations

__all__ = ["DATASET_SOURCES", "KNOWN_TEST_SIZES", "KNOWN_TRAIN_SIZES", "SYNTHETIC_DEFAULTS"]

#: Built-in sources; any other source is the path of an image folder or a .tar.gz/.tgz/.tar/.zip archive.
DATASET_SOURCES: tuple[str, ...] = ("cifar10", "cifar100", "synthetic")

#: Options of the synthetic source and their defaults (image_size defaults to the dataset's image_size).
SYNTHETIC_DEFAULTS: dict[str, int] = {"n_train": 2000, "n_test": 500, "num_classes": 10, "image_size": 32,
                                      "channels": 3}

#: Test-split sizes of the downloadable data sets, to check n_test before anything is downloaded.
KNOWN_TEST_SIZES: dict[str, int] = {"cifar10": 10_000, "cifar100": 10_000}
#: Train-split sizes of the downloadable data sets (3-channel images), for the memory estimate.
KNOWN_TRAIN_SIZES: dict[str, int] = {"cifar10": 50_000, "cifar100": 50_000}
