"""Where datasets live: the data home, sha256 checks and the download fallback.

The data home is `$DIVREC_DATA_HOME` when set, else a per-user cache directory. Each dataset
is a folder below it laid out as its official archive unpacks (`ml-100k/u.data`,
`ml-1m/ratings.dat`, `ncf/ml-1m.test.negative`, ...). A file that is missing is downloaded
from its official source, checked against a pinned sha256 and only then moved into place,
so a failed or tampered download never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from divrec.data.interactions import DataError

ENV_VAR = "DIVREC_DATA_HOME"


@dataclass(frozen=True)
class RemoteFile:
    """A downloadable file: its URL, size and sha256, and where it goes in the data home."""

    url: str
    sha256: str
    target: str  # path relative to the data home (a zip is unpacked into its folder)
    size: int | None = None
    is_zip: bool = False


# Official sources. The MovieLens archive checksums are the ones pinned by TensorFlow Datasets
# (url_checksums/movielens.txt); the NCF files are pinned to the verified copies described in
# the shared data README (hexiangnan/neural_collaborative_filtering, Data/).
_NCF = "https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/master/Data/"
REMOTE_FILES: dict[str, RemoteFile] = {
    "ml-100k": RemoteFile(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        "ml-100k",
        4924029,
        is_zip=True,
    ),
    "ml-1m": RemoteFile(
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        "ml-1m",
        5917549,
        is_zip=True,
    ),
    "ncf/ml-1m.test.rating": RemoteFile(
        _NCF + "ml-1m.test.rating",
        "231ae11eb060b643a8c58c063cd17ffc743b54f569afb073d1abb6cf126b88b5",
        "ncf/ml-1m.test.rating",
        128039,
    ),
    "ncf/ml-1m.test.negative": RemoteFile(
        _NCF + "ml-1m.test.negative",
        "127853228a76b7d21c0481e8ef8d00dd009cd5c88670dbdd9e9debfdb9f93de4",
        "ncf/ml-1m.test.negative",
        2891424,
    ),
}

# sha256 of files as they lie in a data home (checked on first use of each file).
KNOWN_SHA256: dict[str, str] = {
    "ml-100k/u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "ml-100k/u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "ml-1m/movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
    "ml-1m/ratings.users-0001-2999.dat.gz": (
        "2fedcf5405373a49df4041e3d3fe1e8db9eacf2c77c209ae1f686ea06b7a16d9"
    ),
    "ml-1m/derived/ratings_no_timestamps.user-itemrank-rating.tsv.gz": (
        "863e7f5717465739ecb0f0e9a96d56fc9419a10f8972097ec4f0363dfa1404e6"
    ),
    "ml-1m/derived/item_rank_to_movie_id.tsv": (
        "fb69e46eb71f6cd6e4b731dfe573afae7bdae30beef321edbb5e86803ac08e04"
    ),
    "ncf/ml-1m.test.rating": REMOTE_FILES["ncf/ml-1m.test.rating"].sha256,
    "ncf/ml-1m.test.negative": REMOTE_FILES["ncf/ml-1m.test.negative"].sha256,
}

_verified: set[Path] = set()


def data_home(path: str | os.PathLike | None = None) -> Path:
    """The data home: `path` if given, else `$DIVREC_DATA_HOME`, else a user cache dir."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("divrec")) / "data"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, relative: str) -> None:
    """Checks `path` against its pinned sha256 (once per process); raises DataError if off."""
    expected = KNOWN_SHA256.get(relative)
    if expected is None or path in _verified:
        return
    got = sha256_of(path)
    if got != expected:
        raise DataError(f"{path}: sha256 {got[:12]}… does not match the pinned {expected[:12]}…")
    _verified.add(path)


def find_file(relative: str, home: Path | None = None, download: str | None = None) -> Path:
    """The path of `relative` in the data home, downloading its archive when allowed.

    Args:
        relative: path inside the data home, e.g. "ml-100k/u.data".
        home: the data home (default: `data_home()`).
        download: key in `REMOTE_FILES` to fetch when the file is missing, or None.

    Raises:
        DataError: the file is missing and cannot be downloaded, or fails its sha256 check.
    """
    home = data_home(home)
    path = home / relative
    if not path.exists() and download is not None and _downloads_allowed():
        fetch(download, home)
    if not path.exists():
        hint = f" (set {ENV_VAR} to a folder that has it"
        hint += f", or allow the download of {download})" if download else ")"
        raise DataError(f"{path}: dataset file not found{hint}")
    verify(path, relative)
    return path


def exists(relative: str, home: Path | None = None) -> bool:
    """Whether `relative` exists in the data home (no download)."""
    return (data_home(home) / relative).exists()


def _downloads_allowed() -> bool:
    return os.environ.get("DIVREC_NO_DOWNLOAD", "") not in ("1", "true", "yes")


def fetch(key: str, home: Path | None = None, progress: bool = True) -> Path:
    """Downloads a `REMOTE_FILES` entry into the data home after checking its sha256.

    The file is downloaded to a temporary folder inside the data home, verified, unpacked if
    it is a zip, and only then moved into place.
    """
    remote = REMOTE_FILES[key]
    home = data_home(home)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=".download-") as tmp:
        tmp_path = Path(tmp) / Path(remote.url).name
        try:
            _download(remote, tmp_path, progress)
        except OSError as err:
            raise DataError(f"{remote.url}: download failed ({err})") from None
        got = sha256_of(tmp_path)
        if got != remote.sha256:
            raise DataError(
                f"{remote.url}: sha256 {got[:12]}… does not match {remote.sha256[:12]}…"
            )
        target = home / remote.target
        if remote.is_zip:
            with zipfile.ZipFile(tmp_path) as zf:
                zf.extractall(tmp)
            unpacked = Path(tmp) / Path(remote.target).name
            if target.exists():  # partial folder (e.g. only metadata): merge missing files
                for src in unpacked.rglob("*"):
                    dst = target / src.relative_to(unpacked)
                    if src.is_file() and not dst.exists():
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.move(str(src), dst)
            else:
                shutil.move(str(unpacked), target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp_path), target)
    return target


def _download(remote: RemoteFile, dest: Path, progress: bool) -> None:
    from rich.progress import Progress

    with urllib.request.urlopen(remote.url, timeout=60) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or remote.size or 0) or None
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"downloading {Path(remote.url).name}", total=total)
            while block := resp.read(1 << 16):
                out.write(block)
                bar.advance(task, len(block))
