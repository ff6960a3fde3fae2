"""Image folders and archives as dataset sources: a folder or a .tar.gz/.tgz/.tar/.zip archive
laid out as ``train/<class>/*`` and ``test/<class>/*`` (optionally inside one wrapping folder),
read in one sequential pass and decoded with PIL (`read_image_folder`). `datasets.prepare_dataset`
turns the result into an `ImageDataset`."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..utils import sha256_file

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
SPLITS = ("train", "test")

SOURCE_HELP = ("pass 'cifar10', 'cifar100', 'synthetic', or the path of an image folder or "
                ".tar.gz/.tgz/.tar/.zip archive laid out as train/<class>/* and test/<class>/*")
_RGB_CONVERSION = ("PIL Image.convert('RGB') (grayscale replicated to 3 channels, alpha dropped, "
                   "palette expanded), resized to {size}x{size} with PIL bilinear (antialiased) "
                   "only when the size differs (aspect ratio not kept)")


def _skipped(parts: tuple[str, ...]) -> bool:
    """Hidden files/folders and macOS zip metadata are never dataset content."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _candidate(parts: tuple[str, ...]) -> bool:
    """A file that can be an image of ``[wrapper/]split/class/.../file``."""
    return (len(parts) >= 3 and parts[0] in SPLITS) or (len(parts) >= 4 and parts[1] in SPLITS)


def _split_path(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(name).parts if p not in ("", ".", "/"))


def _archive_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    return None


def _iter_entries(path: Path, kind: str) -> Iterator[tuple[tuple[str, ...], bool, bytes | None]]:
    """(path parts, is_dir, file bytes for candidate files else None) for every entry of the
    folder/archive. Tar archives are read as one sequential stream (no random member lookups)."""
    if kind == "folder":
        for dirpath, dirnames, filenames in os.walk(path):
            rel = _split_path(Path(dirpath).relative_to(path).as_posix())
            dirnames.sort()
            for d in dirnames:
                yield rel + (d,), True, None
            for f in sorted(filenames):
                parts = rel + (f,)
                wanted = _candidate(parts) and not _skipped(parts)
                yield parts, False, (Path(dirpath, f).read_bytes() if wanted else None)
    elif kind == "tar":
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                parts = _split_path(member.name)
                if member.isdir():
                    yield parts, True, None
                elif member.isfile():
                    wanted = _candidate(parts) and not _skipped(parts)
                    yield parts, False, (archive.extractfile(member).read() if wanted else None)
    else:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                parts = _split_path(info.filename)
                if info.is_dir():
                    yield parts, True, None
                else:
                    wanted = _candidate(parts) and not _skipped(parts)
                    yield parts, False, (archive.read(info) if wanted else None)


def _decode(data: bytes, size: int) -> tuple[np.ndarray | None, bool, str | None]:
    """(HWC uint8 RGB array, was resized, error message) for one encoded image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
        resized = rgb.size != (size, size)
        if resized:
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8), resized, None
    except UnidentifiedImageError:
        return None, False, "not an image format PIL can identify"
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError...) for bad data
        return None, False, f"{type(exc).__name__}: {exc}"


def read_image_folder(path: Path, image_size: int) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]:
    """The images of a folder or archive laid out as ``[wrapper/]train/<class>/*`` and
    ``test/<class>/*`` (see `datasets.prepare_dataset`): ({"train_x", "train_y", "test_x", "test_y"}
    uint8/int64 tensors, sorted class names, provenance of plain values). One clear ValueError
    for a missing, unreadable or mis-laid-out source."""
    if not path.exists():
        raise ValueError(f"dataset source {str(path)!r} does not exist; {SOURCE_HELP}")
    if path.is_dir():
        kind = "folder"
    else:
        kind = _archive_kind(path)
        if kind is None:
            raise ValueError(f"dataset source {path} is not a folder or a {'/'.join(ARCHIVE_SUFFIXES)} archive; {SOURCE_HELP}")

    top_level: set[str] = set()
    dirs: set[tuple[str, ...]] = set()
    files: dict[tuple[str, ...], tuple[np.ndarray | None, bool, str | None]] = {}
    folder_digests: list[str] = []
    try:
        for parts, is_dir, data in _iter_entries(path, kind):
            if not parts or _skipped(parts):
                continue
            top_level.add(parts[0])
            dirs.update(parts[:i] for i in range(1, len(parts) if not is_dir else len(parts) + 1))
            if data is not None:
                files[parts] = _decode(data, image_size)  # errors kept: only raised for files inside the root
                if kind == "folder":
                    folder_digests.append(f"{'/'.join(parts)}\t{hashlib.sha256(data).hexdigest()}")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"archive {path} is corrupted or truncated: {type(exc).__name__}: {exc}; re-download it") from exc

    # Layout: train/ and test/ at the top, or inside one wrapping top-level directory.
    if top_level & set(SPLITS):
        root: tuple[str, ...] = ()
    elif len(top_level) == 1 and (next(iter(top_level)),) in dirs:
        root = (next(iter(top_level)),)
    else:
        raise ValueError(f"{path} has no train/ and test/ folders at its top (found: {sorted(top_level) or 'nothing'}); "
                         f"lay it out as train/<class>/* and test/<class>/*")
    where = "/".join(root + ("",))
    for split in SPLITS:
        if root + (split,) not in dirs:
            raise ValueError(f"{path} has no {where}{split}/ folder; lay it out as train/<class>/* and test/<class>/*")

    depth = len(root)
    class_sets = {split: sorted(d[depth + 1] for d in dirs if len(d) == depth + 2 and d[:depth + 1] == root + (split,))
                  for split in SPLITS}
    if class_sets["train"] != class_sets["test"]:
        only_train = sorted(set(class_sets["train"]) - set(class_sets["test"]))
        only_test = sorted(set(class_sets["test"]) - set(class_sets["train"]))
        raise ValueError(f"train and test class folders of {path} differ: only in train {only_train}, only in test "
                         f"{only_test}; make both splits have the same class folders")
    classes = class_sets["train"]
    if not classes:
        raise ValueError(f"{path} has no class folders in {where}train/; lay it out as train/<class>/* and test/<class>/*")
    index = {name: i for i, name in enumerate(classes)}

    tensors: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    n_resized: dict[str, int] = {}
    for split in SPLITS:
        prefix = root + (split,)
        members = sorted((parts for parts in files if len(parts) >= depth + 3 and parts[:depth + 1] == prefix),
                         key=lambda parts: (index[parts[depth + 1]], parts))
        present = {parts[depth + 1] for parts in members}
        for name in classes:
            if name not in present:
                raise ValueError(f"class folder {where}{split}/{name} in {path} has no images; add images or remove the folder")
        for parts in members:
            error = files[parts][2]
            if error is not None:
                raise ValueError(f"image {'/'.join(parts)} in {path} is unreadable or corrupt ({error}); "
                                 f"fix or remove that file")
        tensors[f"{split}_x"] = torch.from_numpy(np.stack([files[p][0] for p in members])).permute(0, 3, 1, 2).contiguous()
        tensors[f"{split}_y"] = torch.tensor([index[p[depth + 1]] for p in members], dtype=torch.int64)
        counts[split] = len(members)
        n_resized[split] = sum(files[p][1] for p in members)

    if kind == "folder":
        sha256 = hashlib.sha256("\n".join(sorted(folder_digests)).encode()).hexdigest()
        sha_note = "sha256 of the sorted 'relative/path<TAB>file sha256' lines of every image file"
    else:
        sha256, sha_note = sha256_file(path), "sha256 of the archive file"
    provenance = {"source": "folder" if kind == "folder" else "archive", "path": str(path.resolve()),
                  "sha256": sha256, "sha256_of": sha_note, "root_in_archive": "/".join(root),
                  "n_train": counts["train"], "n_test": counts["test"],
                  "per_class_train": tensors["train_y"].bincount(minlength=len(classes)).tolist(),
                  "per_class_test": tensors["test_y"].bincount(minlength=len(classes)).tolist(),
                  "image_size": image_size, "image_conversion": _RGB_CONVERSION.format(size=image_size),
                  "n_resized_train": n_resized["train"], "n_resized_test": n_resized["test"]}
    return tensors, classes, provenance
