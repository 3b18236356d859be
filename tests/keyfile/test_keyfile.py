"""The key file on disk: ``agent.keyfile``.

Covers:
- atomic replace: the new content lands whole, no temporary files are left behind,
  the requested mode is applied (default 0440), an existing file is replaced;
- the metadata file beside the key: version, fingerprint, fetched_at, source, and
  never the key; ``read_metadata`` round-trips it and answers ``None`` when absent;
- the fingerprint: 12 hex characters of SHA-256, stable, distinct per key;
- refusal of file names that escape or pollute the directory ('../x', 'a/b', '.',
  '..', '.hidden', 'x.meta.json', '', absolute paths), with nothing written;
- refusal of empty keys, with the previous key file and metadata left intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from agent import keyfile
from agent.keyfile import InvalidFileNameError, KeyMetadata, read_metadata, write_key

KEY_1 = "a" * 32
KEY_2 = "b" * 32


def _write(directory: Path, key: str, version: int, **kwargs: object) -> KeyMetadata:
    return write_key(
        directory,
        "api_key",
        key,
        version=version,
        source="secret/captchaai/dev#api_key",
        fetched_at="2026-01-02T03:04:05+00:00",
        **kwargs,  # type: ignore[arg-type]
    )


def test_write_creates_key_with_exact_content_and_default_mode(tmp_path: Path) -> None:
    _write(tmp_path, KEY_1, 1)
    key_path = tmp_path / "api_key"
    assert key_path.read_text() == KEY_1
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o440


def test_write_applies_requested_mode(tmp_path: Path) -> None:
    _write(tmp_path, KEY_1, 1, mode=0o400)
    assert stat.S_IMODE((tmp_path / "api_key").stat().st_mode) == 0o400
    _write(tmp_path, KEY_2, 2, mode=0o444)
    assert stat.S_IMODE((tmp_path / "api_key").stat().st_mode) == 0o444


def test_replace_swaps_the_inode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    _write(tmp_path, KEY_1, 1)
    key_path = tmp_path / "api_key"
    # Held open, the first inode cannot be recycled by the file system for a later file.
    with key_path.open() as reader:
        first_inode = os.fstat(reader.fileno()).st_ino
        for version in range(2, 12):
            _write(tmp_path, chr(ord("a") + version) * 32, version)
        # A rename, not an in-place write: open readers keep the old inode whole.
        assert key_path.stat().st_ino != first_inode
        assert reader.read() == KEY_1
    assert key_path.read_text() == chr(ord("a") + 11) * 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api_key", "api_key.meta.json"]


def test_metadata_carries_version_fingerprint_time_source_and_never_the_key(
    tmp_path: Path,
) -> None:
    meta = _write(tmp_path, KEY_1, 7)
    raw_text = keyfile.metadata_path(tmp_path / "api_key").read_text()
    raw = json.loads(raw_text)
    assert raw == {
        "version": 7,
        "fingerprint": hashlib.sha256(KEY_1.encode()).hexdigest()[:12],
        "fetched_at": "2026-01-02T03:04:05+00:00",
        "source": "secret/captchaai/dev#api_key",
    }
    assert KEY_1 not in raw_text
    assert meta == KeyMetadata(
        version=7,
        fingerprint=raw["fingerprint"],
        fetched_at="2026-01-02T03:04:05+00:00",
        source="secret/captchaai/dev#api_key",
    )
    assert read_metadata(tmp_path / "api_key") == meta
    assert KEY_1 not in repr(meta)


def test_metadata_follows_each_rewrite(tmp_path: Path) -> None:
    _write(tmp_path, KEY_1, 1)
    _write(tmp_path, KEY_2, 2)
    meta = read_metadata(tmp_path / "api_key")
    assert meta is not None
    assert (meta.version, meta.fingerprint) == (2, keyfile.fingerprint(KEY_2))


def test_read_metadata_is_none_when_absent_or_garbage(tmp_path: Path) -> None:
    assert read_metadata(tmp_path / "api_key") is None
    keyfile.metadata_path(tmp_path / "api_key").write_text("{not json")
    assert read_metadata(tmp_path / "api_key") is None


def test_fingerprint_is_short_stable_and_distinct() -> None:
    fp = keyfile.fingerprint(KEY_1)
    assert len(fp) == 12
    assert all(c in "0123456789abcdef" for c in fp)
    assert fp == keyfile.fingerprint(KEY_1)
    assert fp != keyfile.fingerprint(KEY_2)
    assert KEY_1[:12] != fp


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", ".", "..", ".hidden", "x.meta.json", "", "/etc/passwd", "..data", "-x"],
)
def test_names_that_escape_or_collide_are_refused(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidFileNameError, match="invalid key file name"):
        write_key(out, name, KEY_1, version=1, source="s", fetched_at="t")
    with pytest.raises(InvalidFileNameError):
        keyfile.validate_file_name(name)
    # Nothing was written anywhere: not in the directory, not beside it.
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("name", ["api_key", "key.txt", "API-KEY_2", "a"])
def test_plain_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert keyfile.validate_file_name(name) == name
    write_key(tmp_path, name, KEY_1, version=1, source="s", fetched_at="t")
    assert (tmp_path / name).read_text() == KEY_1


def test_empty_key_is_refused_and_old_file_stays(tmp_path: Path) -> None:
    _write(tmp_path, KEY_1, 1)
    before_key = (tmp_path / "api_key").read_bytes()
    before_meta = keyfile.metadata_path(tmp_path / "api_key").read_bytes()
    with pytest.raises(ValueError, match="empty key"):
        _write(tmp_path, "", 2)
    assert (tmp_path / "api_key").read_bytes() == before_key
    assert keyfile.metadata_path(tmp_path / "api_key").read_bytes() == before_meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api_key", "api_key.meta.json"]
