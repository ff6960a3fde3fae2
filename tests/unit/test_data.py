"""Tests for mixup_inference.core.data.datasets: preparation (synthetic, folder, archives, CIFAR offline error),
cache validation, the MI pool, test-point selection and crop/flip augmentation."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mixup_inference.core import utils
from mixup_inference.core.data import datasets


# ---------------------------------------------------------------------------------------------
# Synthetic
# ---------------------------------------------------------------------------------------------

SMALL = {"n_train": 120, "n_test": 40, "num_classes": 4, "image_size": 16, "channels": 3}


def test_synthetic_is_deterministic_and_seed_dependent(tmp_path):
    a = datasets.prepare_dataset("synthetic", tmp_path / "a.pt", synthetic=SMALL, seed=3)
    b = datasets.prepare_dataset("synthetic", tmp_path / "b.pt", synthetic=SMALL, seed=3)
    c = datasets.prepare_dataset("synthetic", tmp_path / "c.pt", synthetic=SMALL, seed=4)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, key), getattr(b, key))
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.shape == (120, 3, 16, 16) and a.test_x.shape == (40, 3, 16, 16)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    assert a.classes == ["class0", "class1", "class2", "class3"]
    assert (a.num_classes, a.in_channels, a.image_size) == (4, 3, 16)
    assert a.train_y.bincount(minlength=4).tolist() == [30, 30, 30, 30]
    assert a.provenance["seed"] == 3 and a.provenance["options"] == SMALL


def test_synthetic_options_channels_and_unknown_key(tmp_path):
    d = datasets.prepare_dataset("synthetic", tmp_path / "g.pt", synthetic={**SMALL, "channels": 1}, image_size=8)
    assert d.train_x.shape == (120, 1, 16, 16)  # the option overrides the image_size argument
    d = datasets.prepare_dataset("synthetic", tmp_path / "h.pt", synthetic={"n_train": 20, "n_test": 10}, image_size=8)
    assert d.train_x.shape == (20, 3, 8, 8)  # image_size argument is the option's default
    with pytest.raises(ValueError, match=r"unknown synthetic option\(s\) \['n_trian'\]"):
        datasets.prepare_dataset("synthetic", tmp_path / "x.pt", synthetic={"n_trian": 10})


def test_synthetic_has_learnable_but_not_trivial_structure(tmp_path):
    d = datasets.prepare_dataset("synthetic", tmp_path / "s.pt", seed=0)  # defaults: 2000/500, 10 classes
    x = datasets.to_float(d.train_x).flatten(1)
    means = torch.stack([x[d.train_y == c].mean(0) for c in range(d.num_classes)])
    pred = torch.cdist(datasets.to_float(d.test_x).flatten(1), means).argmin(1)
    accuracy = (pred == d.test_y).float().mean().item()
    assert 0.3 < accuracy < 0.95  # chance is 0.1


# ---------------------------------------------------------------------------------------------
# Image folders and archives
# ---------------------------------------------------------------------------------------------

def _rng_image(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    array = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array[..., 0] if mode == "L" else array, mode=mode)


def _write_folder(root: Path) -> dict[str, Image.Image]:
    """A tiny train/test image folder with PNG and JPEG files of different sizes and modes.
    Returns the exactly-representable images by relative path."""
    exact = {
        "train/cat/a.png": _rng_image(1, (32, 32)),
        "train/cat/b_gray.png": _rng_image(2, (32, 32), "L"),
        "train/dog/c.png": _rng_image(3, (32, 32)),
        "test/cat/d.png": _rng_image(4, (32, 32), "RGBA"),
        "test/dog/e.png": _rng_image(5, (32, 32)),
    }
    lossy = {
        "train/cat/f.jpg": _rng_image(6, (40, 24)),
        "train/dog/g.jpeg": _rng_image(7, (16, 16)),
        "test/dog/h.jpg": _rng_image(8, (64, 64)),
    }
    for rel, image in {**exact, **lossy}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / rel)
    (root / "README.txt").write_text("not an image, outside the splits: ignored")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"hidden files are ignored")
    return exact


def _tar(src: Path, out: Path, wrap: str | None) -> Path:
    with tarfile.open(out, "w:gz") as archive:
        for path in sorted(src.rglob("*")):
            archive.add(path, arcname=str(Path(wrap or "") / path.relative_to(src)), recursive=False)
    return out


def _zip(src: Path, out: Path, wrap: str | None) -> Path:
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(src.rglob("*")):
            archive.write(path, arcname=str(Path(wrap or "") / path.relative_to(src)))
    return out


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "folder"
    exact = _write_folder(root)
    return root, exact


# expected order within a split: by (class, path)
TRAIN_ORDER = ["train/cat/a.png", "train/cat/b_gray.png", "train/cat/f.jpg", "train/dog/c.png", "train/dog/g.jpeg"]
TEST_ORDER = ["test/cat/d.png", "test/dog/e.png", "test/dog/h.jpg"]


@pytest.mark.parametrize("packing", ["folder", "tar.gz", "tgz-wrapped", "zip", "zip-wrapped"])
def test_image_folder_round_trip(image_folder, tmp_path, packing):
    root, exact = image_folder
    if packing == "folder":
        source = root
    elif packing.startswith("t"):
        source = _tar(root, tmp_path / ("d.tar.gz" if packing == "tar.gz" else "d.tgz"), "wrap" if "wrapped" in packing else None)
    else:
        source = _zip(root, tmp_path / "d.zip", "wrap" if "wrapped" in packing else None)
    prepared = datasets.prepare_dataset(str(source), tmp_path / "cache.pt", image_size=32)
    d = datasets.load_dataset(tmp_path / "cache.pt")
    assert torch.equal(prepared.train_x, d.train_x) and torch.equal(prepared.test_y, d.test_y)
    assert d.classes == ["cat", "dog"]
    assert d.train_x.shape == (5, 3, 32, 32) and d.test_x.shape == (3, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert d.train_y.tolist() == [0, 0, 0, 1, 1] and d.test_y.tolist() == [0, 1, 1]
    for order, images in ((TRAIN_ORDER, d.train_x), (TEST_ORDER, d.test_x)):
        for i, rel in enumerate(order):
            if rel in exact:  # PNGs at the target size round-trip exactly (RGB; gray replicated; alpha dropped)
                expected = torch.from_numpy(np.array(exact[rel].convert("RGB"))).permute(2, 0, 1)
                assert torch.equal(images[i], expected), rel
    gray = d.train_x[TRAIN_ORDER.index("train/cat/b_gray.png")]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])
    # the 64x64 JPEG was resized (bilinear antialias): close to a torch antialiased downscale of the decoded image
    decoded = torch.from_numpy(np.array(Image.open(root / "test/dog/h.jpg").convert("RGB"))).permute(2, 0, 1)
    reference = F.interpolate(decoded[None].float(), size=(32, 32), mode="bilinear", antialias=True)[0]
    assert (d.test_x[2].float() - reference).abs().mean() < 3.0
    p = d.provenance
    assert (p["n_train"], p["n_test"], p["n_resized_train"], p["n_resized_test"]) == (5, 3, 2, 1)
    assert p["per_class_train"] == [3, 2] and p["per_class_test"] == [1, 2]
    if packing != "folder":
        assert p["sha256"] == hashlib.sha256(Path(source).read_bytes()).hexdigest()
        assert p["root_in_archive"] == ("wrap" if "wrapped" in packing else "")


def test_all_packings_give_identical_tensors(image_folder, tmp_path):
    root, _ = image_folder
    with tarfile.open(tmp_path / "dot.tar", "w") as archive:  # member names like ./train/cat/a.png
        archive.add(root, arcname=".")
    sources = [root, _tar(root, tmp_path / "x.tar", None), tmp_path / "dot.tar", _zip(root, tmp_path / "x.zip", "top")]
    results = [datasets.prepare_dataset(str(s), tmp_path / f"c{i}.pt") for i, s in enumerate(sources)]
    for other in results[1:]:
        assert torch.equal(results[0].train_x, other.train_x) and torch.equal(results[0].test_x, other.test_x)
        assert torch.equal(results[0].train_y, other.train_y) and results[0].classes == other.classes


def test_image_size_resizes_every_image(image_folder, tmp_path):
    root, _ = image_folder
    d = datasets.prepare_dataset(str(root), tmp_path / "c.pt", image_size=8)
    assert d.train_x.shape == (5, 3, 8, 8) and d.provenance["n_resized_train"] == 5


# --- errors -----------------------------------------------------------------------------------

def _prepare(source, tmp_path):
    return datasets.prepare_dataset(str(source), tmp_path / "out.pt")


def test_missing_source_path(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist; pass 'cifar10', 'cifar100', 'synthetic', or the path"):
        _prepare(tmp_path / "nope", tmp_path)


def test_unsupported_file_type(tmp_path):
    (tmp_path / "data.rar").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"is not a folder or a \.tar\.gz/\.tgz/\.tar/\.zip archive"):
        _prepare(tmp_path / "data.rar", tmp_path)


def test_missing_split(image_folder, tmp_path):
    root, _ = image_folder
    for path in (root / "test").rglob("*"):
        if path.is_file():
            path.unlink()
    for path in sorted((root / "test").rglob("*"), reverse=True):
        path.rmdir()
    (root / "test").rmdir()
    with pytest.raises(ValueError, match=r"has no test/ folder; lay it out as train/<class>/\* and test/<class>/\*"):
        _prepare(root, tmp_path)


def test_no_splits_at_top(tmp_path):
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "a" / "y").mkdir()
    with pytest.raises(ValueError, match=r"has no train/ and test/ folders at its top \(found: \['x', 'y'\]\)"):
        _prepare(tmp_path / "a", tmp_path)


def test_class_sets_differ(image_folder, tmp_path):
    root, _ = image_folder
    _rng_image(9, (32, 32)).save(root / "train" / "dog" / "z.png")
    (root / "train" / "bird").mkdir()
    _rng_image(9, (32, 32)).save(root / "train" / "bird" / "z.png")
    (root / "test" / "fish").mkdir()
    _rng_image(9, (32, 32)).save(root / "test" / "fish" / "z.png")
    with pytest.raises(ValueError, match=r"class folders of .* differ: only in train \['bird'\], only in test \['fish'\]"):
        _prepare(root, tmp_path)


@pytest.mark.parametrize("packing", ["folder", "tar.gz"])
def test_empty_class_folder(image_folder, tmp_path, packing):
    root, _ = image_folder
    (root / "train" / "eel").mkdir()
    (root / "test" / "eel").mkdir()
    _rng_image(9, (32, 32)).save(root / "test" / "eel" / "z.png")
    source = root if packing == "folder" else _tar(root, tmp_path / "e.tar.gz", None)
    with pytest.raises(ValueError, match=r"class folder train/eel in .* has no images; add images or remove the folder"):
        _prepare(source, tmp_path)


@pytest.mark.parametrize("packing", ["folder", "zip"])
def test_corrupt_image_is_named(image_folder, tmp_path, packing):
    root, _ = image_folder
    (root / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    source = root if packing == "folder" else _zip(root, tmp_path / "c.zip", "wrap")
    member = "train/dog/broken.png" if packing == "folder" else "wrap/train/dog/broken.png"
    with pytest.raises(ValueError, match=rf"image {member} in .* is unreadable or corrupt \(not an image format PIL can identify\); fix or remove that file"):
        _prepare(source, tmp_path)


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar", ".zip"])
def test_truncated_archive(image_folder, tmp_path, suffix):
    root, _ = image_folder
    full = _zip(root, tmp_path / "f.zip", None) if suffix == ".zip" else None
    if suffix == ".tar.gz":
        full = _tar(root, tmp_path / "f.tar.gz", None)
    if suffix == ".tar":
        with tarfile.open(tmp_path / "f.tar", "w") as archive:
            archive.add(root, arcname=".")
        full = tmp_path / "f.tar"
    cut = tmp_path / f"cut{suffix}"
    payload = full.read_bytes()
    cut.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match=rf"archive .*cut{suffix} is corrupted or truncated: .*; re-download it"):
        _prepare(cut, tmp_path)


# --- CIFAR download failure ------------------------------------------------------------------

@pytest.mark.parametrize("name, pretty, filename", [("cifar10", "CIFAR-10", "cifar-10-python.tar.gz"),
                                                    ("cifar100", "CIFAR-100", "cifar-100-python.tar.gz")])
def test_cifar_offline_error_says_where_to_put_the_archive(tmp_path, monkeypatch, name, pretty, filename):
    # Route every request to a closed local port so the failure is immediate, with or without internet.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "downloads"
    with pytest.raises(ValueError, match=rf"could not download {pretty} \(.*\); with no internet, place {filename} "
                                         rf"\(from https://www\.cs\.toronto\.edu/~kriz/{filename}, md5 [0-9a-f]{{32}}\) "
                                         rf"in {root}/ and rerun, or point the dataset source at a local image folder/archive"):
        datasets.prepare_dataset(name, tmp_path / "out.pt", download_root=root)
    assert not (tmp_path / "out.pt").exists()


# ---------------------------------------------------------------------------------------------
# Cache file
# ---------------------------------------------------------------------------------------------

def test_cache_is_plain_and_weights_only_loadable(tmp_path):
    datasets.prepare_dataset("synthetic", tmp_path / "s.pt", synthetic=SMALL)
    raw = torch.load(tmp_path / "s.pt", weights_only=True)
    assert set(raw) == {"format", "train_x", "train_y", "test_x", "test_y", "classes", "provenance"}
    assert raw["format"] == datasets.CACHE_FORMAT and isinstance(raw["provenance"]["created"], str)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def _corrupt(obj: dict, key: str) -> dict:
    bad = dict(obj)
    if key == "missing":
        del bad["test_y"]
    elif key == "dtype":
        bad["train_x"] = bad["train_x"].float()
    elif key == "labels":
        bad["train_y"] = bad["train_y"].clone()
        bad["train_y"][0] = len(bad["classes"])
    elif key == "shape":
        bad["test_x"] = bad["test_x"][:, :, :8, :8]
    elif key == "count":
        bad["train_y"] = bad["train_y"][:-1]
    return bad


@pytest.mark.parametrize("problem, message", [("missing", "missing key 'test_y'"),
                                              ("dtype", "train_x must be a uint8 tensor"),
                                              ("labels", r"train_y has labels outside \[0, 4\)"),
                                              ("shape", "train images are .* but test images are"),
                                              ("count", "train_x has 120 images but train_y has 119 labels")])
def test_load_validates(tmp_path, problem, message):
    datasets.prepare_dataset("synthetic", tmp_path / "s.pt", synthetic=SMALL)
    utils.atomic_save(_corrupt(utils.load_checkpoint(tmp_path / "s.pt"), problem), tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=rf"dataset cache .*bad\.pt is invalid: {message}.*; delete it and rerun prepare"):
        datasets.load_dataset(tmp_path / "bad.pt")


def test_load_unreadable_and_missing(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match=r"dataset cache .*junk\.pt is unreadable \(.*\); delete it and rerun prepare"):
        datasets.load_dataset(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match=r"dataset cache .*none\.pt does not exist"):
        datasets.load_dataset(tmp_path / "none.pt")


def test_to_float():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(datasets.to_float(x), torch.tensor([0.0, 0.2, 1.0]))
    assert datasets.to_float(x).dtype == torch.float32
    with pytest.raises(ValueError, match="to_float expects uint8"):
        datasets.to_float(torch.tensor([1, 2]))


# ---------------------------------------------------------------------------------------------
# Pool and test points
# ---------------------------------------------------------------------------------------------

def test_select_test_points_seeded_distinct_and_validated():
    labels = torch.arange(100) % 10
    idx = datasets.select_test_points(labels, 30, generator=utils.make_generator(0))
    assert idx.dtype == torch.int64 and len(set(idx.tolist())) == 30 and 0 <= int(idx.min()) and int(idx.max()) < 100
    assert torch.equal(idx, datasets.select_test_points(labels, 30, generator=utils.make_generator(0)))
    assert not torch.equal(idx, datasets.select_test_points(labels, 30, generator=utils.make_generator(1)))
    assert sorted(datasets.select_test_points(labels[:7], 7, generator=None).tolist()) == list(range(7))
    with pytest.raises(ValueError, match="n_test=101 exceeds the 100 test images"):
        datasets.select_test_points(labels, 101, generator=None)
    with pytest.raises(ValueError, match="n_test=0 exceeds the 100 test images or is < 1"):
        datasets.select_test_points(labels, 0, generator=None)


@pytest.mark.parametrize("seed", range(5))
def test_every_prefix_is_class_balanced_whatever_the_file_order(seed):
    """The test split of an image folder is read class by class: 10 classes of 60, in blocks. Every prefix of the
    draw holds each class floor(k/10) or ceil(k/10) times, and the order is random (not sorted, not blocked)."""
    labels = torch.arange(10).repeat_interleave(60)
    idx = datasets.select_test_points(labels, 400, generator=utils.make_generator(seed))
    drawn = labels[idx]
    for k in range(1, 401):
        counts = torch.bincount(drawn[:k], minlength=10)
        assert int(counts.max()) - int(counts.min()) <= 1, (k, counts.tolist())
    assert not torch.equal(idx, idx.sort().values)
    # within a class, which images are drawn is uniform: over the 5 seeds the draws differ
    assert len(set(idx[:10].tolist())) == 10


def test_unbalanced_classes_stay_balanced_while_each_has_images():
    labels = torch.cat([torch.zeros(5, dtype=torch.long), torch.ones(50, dtype=torch.long), torch.full((50,), 2)])
    drawn = labels[datasets.select_test_points(labels, 60, generator=utils.make_generator(3))]
    first = torch.bincount(drawn[:15], minlength=3)
    assert first.tolist() == [5, 5, 5]
    assert torch.bincount(drawn, minlength=3).tolist() == [5, 28, 27] or \
        torch.bincount(drawn, minlength=3).tolist() == [5, 27, 28]


def test_class_counts_names_every_class():
    assert datasets.class_counts(torch.tensor([0, 2, 2]), ["a", "b", "c"]) == {"a": 1, "b": 0, "c": 2}

# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_crop_flip_outputs_are_crops_of_the_padded_input(dtype):
    x = torch.randint(1, 256, (64, 3, 8, 8), generator=utils.make_generator(0)).to(dtype)
    out = datasets.random_crop_flip(x, padding=4, generator=utils.make_generator(1))
    assert out.shape == x.shape and out.dtype == dtype
    padded = F.pad(x, (4, 4, 4, 4))
    candidates = torch.stack([  # [81 * 2, B, C, H, W]: every offset, with and without flip
        w for top in range(9) for left in range(9)
        for w in (padded[:, :, top:top + 8, left:left + 8], padded[:, :, top:top + 8, left:left + 8].flip(-1))])
    match = (candidates == out[None]).flatten(2).all(-1)  # [162, B]
    assert match.any(0).all()
    choice = match.float().argmax(0)
    flips = (choice % 2).float()
    assert 0.25 < flips.mean() < 0.75 and len(choice.unique()) > 20  # flips and many offsets occur


def test_random_crop_flip_is_seeded_and_padding_zero_only_flips():
    x = torch.rand(16, 3, 6, 6, generator=utils.make_generator(0))
    a = datasets.random_crop_flip(x, generator=utils.make_generator(5))
    assert torch.equal(a, datasets.random_crop_flip(x, generator=utils.make_generator(5)))
    assert not torch.equal(a, datasets.random_crop_flip(x, generator=utils.make_generator(6)))
    b = datasets.random_crop_flip(x, padding=0, generator=utils.make_generator(5))
    same, flipped = (b == x).flatten(1).all(1), (b == x.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all() and same.any() and flipped.any()


def test_flip_translate_outputs_are_reflected_shifts_of_the_flipped_input():
    """Every output image is its input, mirrored where asked, shifted by some (dy, dx) in
    {-2..2}^2 with the border filled by reflection; over a large batch all 25 shifts occur."""
    x = torch.rand(400, 3, 10, 10)
    flip = torch.arange(400) % 3 == 0
    out = datasets.flip_translate(x, flip, translate=2, generator=utils.make_generator(3))
    source = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = torch.nn.functional.pad(source, (2, 2, 2, 2), mode="reflect")
    windows = torch.stack([padded[:, :, dy:dy + 10, dx:dx + 10] for dy in range(5) for dx in range(5)], 1)
    match = (windows == out[:, None]).flatten(2).all(2)  # [400, 25]: which shifts reproduce each output
    assert match.any(1).all()
    assert match.any(0).all()
    # translate 0 is the flip alone; the same generator seed gives the same batch
    assert torch.equal(datasets.flip_translate(x, flip, translate=0), source)
    assert torch.equal(out, datasets.flip_translate(x, flip, translate=2, generator=utils.make_generator(3)))


def test_alternating_flips_show_each_image_both_ways_every_two_epochs():
    first = torch.rand(1000, generator=utils.make_generator(0)) < 0.5
    for epoch in range(4):
        now, following = datasets.alternating_flips(first, epoch), datasets.alternating_flips(first, epoch + 1)
        assert torch.equal(now, ~following)
    assert torch.equal(datasets.alternating_flips(first, 0), first)
    assert 400 < int(first.sum()) < 600
    with pytest.raises(ValueError, match="bool"):
        datasets.alternating_flips(first.long(), 0)
