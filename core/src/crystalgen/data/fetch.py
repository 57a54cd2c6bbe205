"""Download the official CDVAE benchmark CSVs, verified against their git blob ids.

Each file streams to a temporary file next to its destination; only when the whole body has arrived (as long as
the server's Content-Length says) and its git blob id matches the official one is it renamed into place. A
dropped connection, a short body or a wrong blob id raises :class:`FetchError` naming the file, and leaves
nothing behind: neither a half-written file nor a changed destination.
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crystalgen.data.benchmarks import BENCHMARKS, CDVAE_COMMIT, data_root, git_blob_id

DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/txie-93/cdvae/{CDVAE_COMMIT}/data"
BASE_URL_ENV = "CRYSTALGEN_FETCH_BASE_URL"
_BLOCK = 1 << 16


class FetchError(RuntimeError):
    """A download that failed, was cut short, or is not the official file."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    blob_id: str
    downloaded: bool  # False: an identical file was already in place


def default_base_url() -> str:
    """``$CRYSTALGEN_FETCH_BASE_URL`` (a mirror, or a test server), else the CDVAE repository at the pinned commit."""
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def fetch_dataset(name: str, dest_root: str | os.PathLike | None = None, *, base_url: str | None = None,
                  splits: Sequence[str] | None = None, force: bool = False, progress: bool = True,
                  timeout: float = 60.0) -> list[Fetched]:
    """Put the official ``<name>/<split>.csv`` files into ``dest_root/<name>/`` (default: the data root).

    Args:
        name: perov_5, carbon_24 or mp_20.
        dest_root: folder holding one sub-folder per dataset (default :func:`crystalgen.data.benchmarks.data_root`).
        base_url: where ``<name>/<split>.csv`` is served (default ``$CRYSTALGEN_FETCH_BASE_URL`` or the CDVAE
            repository at the pinned commit).
        splits: the splits to fetch (default all).
        force: replace a destination file that is not the official one (default: refuse).
    """
    if name not in BENCHMARKS:
        raise ValueError(f"no official files for dataset {name!r}; fetchable datasets: {', '.join(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    folder = Path(dest_root or data_root()) / name
    folder.mkdir(parents=True, exist_ok=True)
    root_url = (base_url or default_base_url()).rstrip("/")
    fetched = []
    for split in splits or tuple(bench.rows):
        if split not in bench.blob_ids:
            raise ValueError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(bench.blob_ids)}")
        target, expected = folder / f"{split}.csv", bench.blob_ids[split]
        if target.exists():
            present = git_blob_id(target)
            if present == expected:
                fetched.append(Fetched(target, present, downloaded=False))
                continue
            if not force:
                raise FetchError(f"{target} exists and is not the official file (git blob {present}, official {expected}); "
                                 f"move it away or fetch with --force to replace it")
        download_verified(f"{root_url}/{name}/{split}.csv", target, expected, progress=progress, timeout=timeout)
        fetched.append(Fetched(target, expected, downloaded=True))
    return fetched


def download_verified(url: str, target: Path, blob_id: str, *, progress: bool = True, timeout: float = 60.0) -> None:
    """Stream ``url`` to ``target`` if and only if the whole body arrives and its git blob id is ``blob_id``."""
    from tqdm.auto import tqdm

    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    expected = int(length) if length is not None else None
                    received = 0
                    with tqdm(total=expected, unit="B", unit_scale=True, desc=target.name, disable=not progress, file=sys.stderr, leave=False) as bar:
                        while block := response.read(_BLOCK):
                            out.write(block)
                            received += len(block)
                            bar.update(len(block))
            except urllib.error.HTTPError as exc:
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; {target} was not changed") from exc
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                raise FetchError(f"{url}: download interrupted ({type(exc).__name__}: {exc}); {target} was not changed") from exc
        if expected is not None and received != expected:
            raise FetchError(f"{url}: download interrupted after {received:,} of {expected:,} bytes; {target} was not changed")
        got = git_blob_id(tmp)
        if got != blob_id:
            raise FetchError(f"{url}: the downloaded file is corrupt or not the official one (git blob {got}, expected {blob_id}); "
                             f"{target} was not changed")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
