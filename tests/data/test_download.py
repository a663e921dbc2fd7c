"""The download fallback: sha256-checked, unpacked, and never half-written."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from divrec.data import DataError, home
from divrec.data.home import RemoteFile, fetch, find_file


def _zip(tmp_path, name="toy"):
    src = tmp_path / "src" / name
    src.mkdir(parents=True)
    (src / "u.data").write_text("1\t2\t5\t100\n")
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(src / "u.data", f"{name}/u.data")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_fetch_verifies_and_unpacks(tmp_path, monkeypatch):
    archive, digest = _zip(tmp_path)
    dest = tmp_path / "home"
    monkeypatch.setitem(
        home.REMOTE_FILES, "toy", RemoteFile(archive.as_uri(), digest, "toy", is_zip=True)
    )
    monkeypatch.delenv("DIVREC_NO_DOWNLOAD")
    path = find_file("toy/u.data", dest, download="toy")
    assert path.read_text() == "1\t2\t5\t100\n"
    assert [p.name for p in dest.iterdir()] == ["toy"]  # no temporary folder left


def test_fetch_rejects_wrong_checksum_and_leaves_nothing(tmp_path, monkeypatch):
    archive, _ = _zip(tmp_path)
    dest = tmp_path / "home"
    monkeypatch.setitem(
        home.REMOTE_FILES, "toy", RemoteFile(archive.as_uri(), "0" * 64, "toy", is_zip=True)
    )
    with pytest.raises(DataError, match="sha256 .* does not match"):
        fetch("toy", dest, progress=False)
    assert list(dest.iterdir()) == []


def test_pinned_checksum_mismatch_is_reported(tmp_path, monkeypatch):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("tampered\n")
    with pytest.raises(DataError, match="u.data: sha256 .* does not match the pinned"):
        find_file("ml-100k/u.data", tmp_path)


def test_no_download_when_disabled(tmp_path):
    with pytest.raises(DataError, match="dataset file not found"):
        find_file("ml-1m/ratings.dat", tmp_path, download="ml-1m")
