"""Model files from a URL or a local path: downloaded once, never left half-written, checksummed.

:func:`fetch_file` copies ``http://``, ``https://`` or ``file://`` URLs (or plain paths) to a
destination in the data folder through ``<dest>.part`` and an atomic rename, so an interrupted or
failed download never sits under the final name; checks a sha256 when one is given, and returns
the file's sha256 either way (the workflow records it in provenance).
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..utils import sha256_file

__all__ = ["check_sha256", "fetch_file", "is_url", "url_filename"]

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def is_url(source: str) -> bool:
    """Whether `source` is an http(s):// or file:// URL (anything else is a local path)."""
    return urllib.parse.urlparse(str(source)).scheme in ("http", "https", "file")


def url_filename(source: str) -> str:
    """The file name a URL or path ends in (``.../CIFAR10/model_IAT.ckpt`` -> ``model_IAT.ckpt``)."""
    return os.path.basename(urllib.parse.urlparse(str(source)).path) or "model"


def check_sha256(path: str | os.PathLike, sha256: str | None, *, where: str,
                 fix: str = "fix the file or the config's sha256") -> str:
    """The file's hex sha256; ValueError naming `where`, both hashes and the `fix` when `sha256` is
    given (any case) and differs."""
    actual = sha256_file(path)
    if sha256 is not None and actual != sha256.lower():
        raise ValueError(f"{where}: sha256 {actual} does not match the expected {sha256.lower()} (a corrupt or "
                         f"different file); {fix}")
    return actual


def _download(url: str, part: Path, *, progress: bool) -> None:
    from tqdm import tqdm

    try:
        # a fresh opener reads the proxy settings of the environment now (urlopen caches its first one)
        opener = urllib.request.build_opener()
        with opener.open(url, timeout=_TIMEOUT_S) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=url_filename(url), disable=not progress,
                      file=sys.stderr, mininterval=1.0) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            if total is not None and out.tell() != total:
                raise ValueError(f"cannot download {url}: the connection closed after {out.tell()} of {total} "
                                 "bytes; rerun to retry, or put the file in place by hand")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:  # HTTPError: a URLError
        reason = getattr(error, "reason", None) or error
        raise ValueError(f"cannot download {url} ({reason}); check the URL and the network, or download the "
                         f"file by hand and give its local path in the config") from None


def fetch_file(source: str | os.PathLike, dest: str | os.PathLike, sha256: str | None = None, *,
               progress: bool = True) -> str:
    """Put the file `source` (an http(s):// or file:// URL, or a local path) at `dest`; return its sha256.

    A download goes to ``<dest>.part`` first and is renamed onto `dest` only once complete and (when
    `sha256` is given) checked, so a failed or interrupted download never leaves a file under the
    final name. An existing `dest` is reused, not downloaded again (it is checked all the same). A
    local path or file:// URL is copied (no network). ValueError, one line naming the URL or file
    and the fix, for an unreachable URL, a missing file or a checksum mismatch.
    """
    source, dest = str(source), Path(dest)
    if dest.exists():
        return check_sha256(dest, sha256, where=str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    parsed = urllib.parse.urlparse(source)
    try:
        if parsed.scheme in ("http", "https"):
            _download(source, part, progress=progress)
        else:
            local = urllib.request.url2pathname(parsed.path) if parsed.scheme == "file" else source
            if not os.path.isfile(local):
                raise ValueError(f"model file {local} does not exist; fix the path in the config, or put the "
                                 "file there")
            shutil.copyfile(local, part)
        actual = check_sha256(part, sha256, where=source)
        os.replace(part, dest)
        return actual
    finally:
        if part.exists():
            part.unlink()
