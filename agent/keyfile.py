"""The key file on the shared in-memory volume, and the metadata file beside it.

Why atomic replacement matters: the application reads the key through
:class:`captchakeys.KeyReader` at any moment, including mid-rotation. Writing in place
would let it see an empty or half-written key, and a CaptchaAI request with a truncated
key fails as "wrong key", which looks exactly like a revoked one. So every write goes
to a temporary file in the same directory, is fsynced and chmodded, then renamed over
the old one (rename within one filesystem is atomic), and the directory is fsynced so
the rename itself survives a crash.

The metadata file (``<name>.meta.json``) lets people and probes see *which* key is in
place (version, when Vault created it, when it was fetched, from where, a short
fingerprint) without ever exposing the key itself. It is renamed into place after the
key, so a reader that sees metadata whose fingerprint does not match the key knows it
caught the pair mid-update.

Write faults (a full volume, a read-only or vanished directory, no permission, a quota)
must not leave half a pair: both temporary files are written and fsynced *before*
either rename, so a fault replaces nothing, removes its temporary files, and raises
:class:`KeyFileUnwritableError`, which names the path and what to check.

What the files contain and how they are named (the format both readers implement) is
defined in :mod:`captchakeys.keyfile`, the reader distribution's, and only imported
here: this module is the writer, the only one, and adds nothing to the format but the
rule for the names a binding may choose.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path

from captchakeys.keyfile import (
    DEFAULT_DIR,
    DEFAULT_FILE_NAME,
    METADATA_SUFFIX,
    KeyMetadata,
    Version,
    fingerprint,
    metadata_path,
    read_metadata,
)

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_FILE_NAME",
    "DEFAULT_MODE",
    "METADATA_SUFFIX",
    "InvalidFileNameError",
    "KeyFileUnwritableError",
    "KeyMetadata",
    "fingerprint",
    "metadata_path",
    "read_metadata",
    "validate_file_name",
    "write_key",
]

DEFAULT_MODE = 0o440

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class InvalidFileNameError(ValueError):
    """A key file name that could escape the output directory or collide with ours."""


class KeyFileUnwritableError(OSError):
    """The key file could not be replaced; nothing was: the last good key stays in place."""

    reason = "KeyFileUnwritable"

    def __init__(self, path: Path, cause: OSError):
        self.path = path
        self.errno_name = errno.errorcode.get(cause.errno or 0, "unknown error")
        hint = _WRITE_FAULT_HINTS.get(cause.errno or 0, "check the key volume")
        super().__init__(
            cause.errno,
            f"cannot write the key file {path} ({cause.strerror or cause}, "
            f"{self.errno_name}): {hint}; the last good key stays in place and the agent "
            "retries with backoff",
        )

    def __str__(self) -> str:
        return str(self.strerror)


_WRITE_FAULT_HINTS = {
    errno.ENOSPC: "the key volume is full: check its sizeLimit and what else writes there",
    errno.EDQUOT: "the disk quota of the agent's user is exhausted on the key volume",
    errno.EROFS: "the key volume is mounted read-only: the agent needs it read-write",
    errno.EACCES: "the agent's user may not write the key directory: check its owner, mode "
    "and fsGroup",
    errno.EPERM: "the key directory refuses writes (immutable attribute or a security "
    "policy): check it",
    errno.ENOENT: "the key directory does not exist (any more): check the volume mount",
    errno.ENOTDIR: "the key directory's path is not a directory: check the volume mount",
}


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


def write_key(
    directory: Path,
    name: str,
    key: str,
    *,
    version: Version,
    source: str,
    fetched_at: str,
    mode: int = DEFAULT_MODE,
    created_time: str | None = None,
) -> KeyMetadata:
    """Atomically replace the key file and then its metadata; return the metadata.

    Raises :class:`KeyFileUnwritableError` (having replaced nothing) on a write fault.
    """
    if not key:
        raise ValueError("refusing to write an empty key: the last good key stays in place")
    key_path = directory / validate_file_name(name)
    meta = KeyMetadata(
        version=version,
        fingerprint=fingerprint(key),
        fetched_at=fetched_at,
        source=source,
        created_time=created_time,
    )
    meta_path = metadata_path(key_path)
    staged: list[str] = []
    try:
        staged.append(_stage(key_path, key.encode(), mode))
        staged.append(_stage(meta_path, meta.to_json(), 0o444))
        os.replace(staged.pop(0), key_path)
        os.replace(staged.pop(0), meta_path)
    except OSError as exc:
        raise KeyFileUnwritableError(key_path, exc) from None
    finally:
        for leftover in staged:
            with contextlib.suppress(OSError):
                os.unlink(leftover)
    # Both renames are visible now; the directory's fsync only makes them crash-safe.
    with contextlib.suppress(OSError):
        _fsync_directory(directory)
    return meta


def _stage(path: Path, content: bytes, mode: int) -> str:
    """Write ``content`` to a fsynced temporary file beside ``path``; return its name."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return tmp_name


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
