"""The key file on the shared in-memory volume, and the metadata file beside it.

Why atomic replacement matters: the application reads the key through
:class:`agent.reader.KeyReader` at any moment, including mid-rotation. Writing in place
would let it see an empty or half-written key, and a CaptchaAI request with a truncated
key fails as "wrong key", which looks exactly like a revoked one. So every write goes
to a temporary file in the same directory, is fsynced and chmodded, then renamed over
the old one (rename within one filesystem is atomic), and the directory is fsynced so
the rename itself survives a crash.

The metadata file (``<name>.meta.json``) lets people and probes see *which* key is in
place (version, when it was fetched, from where, a short fingerprint) without ever
exposing the key itself. It is written after the key, so a reader that sees metadata
whose fingerprint does not match the key knows it caught the pair mid-update.

Only the standard library is used here: the reader imports this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from agent import versions
from agent.versions import Version

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_FILE_NAME",
    "DEFAULT_MODE",
    "InvalidFileNameError",
    "KeyMetadata",
    "fingerprint",
    "metadata_path",
    "read_metadata",
    "validate_file_name",
    "write_key",
]

DEFAULT_DIR = Path("/var/run/captchaai")
DEFAULT_FILE_NAME = "api_key"
DEFAULT_MODE = 0o440
METADATA_SUFFIX = ".meta.json"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class InvalidFileNameError(ValueError):
    """A key file name that could escape the output directory or collide with ours."""


@dataclass(frozen=True)
class KeyMetadata:
    """What may be said about the key in place: everything except the key."""

    version: Version  # a Vault version number, or an AWS Secrets Manager version id.
    fingerprint: str
    fetched_at: str
    source: str


def fingerprint(key: str) -> str:
    """A short, stable, non-reversible identifier of a key, safe to log and display.

    Twelve hex characters of SHA-256 (48 bits) tell keys apart at a glance without
    giving anything away about a key of CaptchaAI's length.
    """
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def validate_file_name(name: str) -> str:
    """Return ``name`` if it is a plain file name inside the directory, else raise.

    Refuses path separators, ``.``/``..``, hidden names (the kubelet's ``..data``
    style belongs to volume plumbing) and our own metadata suffix.
    """
    if not _SAFE_NAME.fullmatch(name) or name.endswith(METADATA_SUFFIX):
        raise InvalidFileNameError(
            f"invalid key file name {name!r}: use 1-128 characters from [A-Za-z0-9._-], "
            f"not starting with '.' or '-' and not ending in {METADATA_SUFFIX!r}, "
            "so that the file stays inside the key directory"
        )
    return name


def metadata_path(key_path: Path) -> Path:
    """Where the metadata of the key at ``key_path`` lives."""
    return key_path.with_name(key_path.name + METADATA_SUFFIX)


def write_key(
    directory: Path,
    name: str,
    key: str,
    *,
    version: Version,
    source: str,
    fetched_at: str,
    mode: int = DEFAULT_MODE,
) -> KeyMetadata:
    """Atomically replace the key file and then its metadata; return the metadata."""
    if not key:
        raise ValueError("refusing to write an empty key: the last good key stays in place")
    key_path = directory / validate_file_name(name)
    meta = KeyMetadata(
        version=version, fingerprint=fingerprint(key), fetched_at=fetched_at, source=source
    )
    _replace_atomically(key_path, key.encode(), mode)
    _replace_atomically(
        metadata_path(key_path), json.dumps(asdict(meta), sort_keys=True).encode(), 0o444
    )
    return meta


def read_metadata(key_path: Path) -> KeyMetadata | None:
    """The metadata beside ``key_path``, or ``None`` when absent or unreadable."""
    try:
        raw = json.loads(metadata_path(key_path).read_bytes())
        return KeyMetadata(
            version=_version(raw["version"]),
            fingerprint=str(raw["fingerprint"]),
            fetched_at=str(raw["fetched_at"]),
            source=str(raw["source"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _version(value: object) -> Version:
    version = versions.parse(value)
    if version is None:
        raise ValueError("no version")
    return version


def _replace_atomically(path: Path, content: bytes, mode: int) -> None:
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
