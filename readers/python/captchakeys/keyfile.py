"""The key file's format, written down once: what the key agent writes and readers read.

``docs/keyfile-format.md`` is the specification; this module is its Python text. The key
agent's writer (``agent.keyfile``) imports these definitions instead of restating them,
and the Node.js reader (``readers/node``) implements the same specification, which a
cross-language test holds it to. So a change to the format is a change here, in the
specification, and in the Node reader, and nowhere else.

In short: the key is the whole content of one file (default
``/var/run/captchaai/api_key``, or ``$CAPTCHAAI_KEY_FILE``); beside it,
``<name>.meta.json`` is a JSON object saying which key it is (version, fingerprint,
fetch time, source) and never the key itself. The pair is replaced key first, metadata
second, each by an atomic rename, so a reader may catch a new key with the previous
metadata: a version is therefore believed only when the metadata's fingerprint is the
fingerprint of the key read.

Only the standard library is used here: applications import this module.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_FILE_NAME",
    "ENV_VAR",
    "MAX_VERSION_NUMBER",
    "METADATA_SUFFIX",
    "KeyMetadata",
    "Version",
    "fingerprint",
    "key_path",
    "metadata_path",
    "parse_version",
    "read_key",
    "read_metadata",
    "read_version",
]

ENV_VAR = "CAPTCHAAI_KEY_FILE"
DEFAULT_DIR = Path("/var/run/captchaai")
DEFAULT_FILE_NAME = "api_key"
METADATA_SUFFIX = ".meta.json"
# The largest integer every JSON parser holds exactly (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_VERSION_NUMBER = 2**53 - 1
# What a reader strips around the key: a Secret's value often ends in a newline.
_BLANKS = " \t\r\n"

Version = int | str
"""A Vault KV v2 version number, or an AWS Secrets Manager version id."""


@dataclass(frozen=True)
class KeyMetadata:
    """What may be said about the key in place: everything except the key."""

    version: Version
    fingerprint: str
    fetched_at: str
    source: str
    created_time: str | None = None  # when Vault created the version (None: unknown).

    def to_json(self) -> bytes:
        """The metadata file's content: the fields that are set, keys sorted."""
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(fields, sort_keys=True).encode()


def fingerprint(key: str) -> str:
    """A short, stable, non-reversible identifier of a key, safe to log and display.

    Twelve hex characters of SHA-256 (48 bits) tell keys apart at a glance without
    giving anything away about a key of CaptchaAI's length.
    """
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def key_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The key file a reader follows: ``path``, else ``$CAPTCHAAI_KEY_FILE``, else the default."""
    return Path(path or os.environ.get(ENV_VAR) or DEFAULT_DIR / DEFAULT_FILE_NAME)


def metadata_path(key_path: Path) -> Path:
    """Where the metadata of the key at ``key_path`` lives."""
    return key_path.with_name(key_path.name + METADATA_SUFFIX)


def parse_version(value: object) -> Version | None:
    """A version from JSON (metadata, an agent's /status), or ``None`` if it is none.

    An integer is a Vault version and a non-empty string an AWS version id. Integers are
    taken by their JSON value (``3.0`` is 3) and only up to :data:`MAX_VERSION_NUMBER`,
    because that is what a JavaScript reader can hold: the two readers must agree.
    Booleans (which Python counts as numbers), fractions and the rest are no version.
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) <= MAX_VERSION_NUMBER else None
    return None


def read_key(key_path: Path) -> str | None:
    """The key in the file, without surrounding blanks; ``None`` if there is none to take.

    None to take: the file is absent (mid-swap too, a kubelet's ``..data`` link being
    replaced), blank, or not UTF-8 text; the caller keeps the key it had. Spaces, tabs,
    CR and LF around the key are dropped because a Secret's value often ends in a
    newline that is not part of the key.
    """
    try:
        key = key_path.read_bytes().decode("utf-8").strip(_BLANKS)
    except (OSError, UnicodeDecodeError):
        return None
    return key or None


def read_metadata(key_path: Path) -> KeyMetadata | None:
    """The metadata beside ``key_path``, or ``None`` when absent or unreadable."""
    raw = _load(key_path)
    try:
        version = parse_version(raw["version"])
        if version is None:
            return None
        return KeyMetadata(
            version=version,
            fingerprint=str(raw["fingerprint"]),
            fetched_at=str(raw["fetched_at"]),
            source=str(raw["source"]),
            created_time=str(raw["created_time"]) if raw.get("created_time") else None,
        )
    except KeyError:
        return None


def read_version(key_path: Path, key: str) -> Version | None:
    """The version of ``key``, read from ``key_path``: only if the metadata describes it.

    Needs nothing of the metadata but ``fingerprint`` and ``version``, so that every
    reader (this one and the Node.js one) answers alike for the same files. ``None``
    when the metadata is absent, unreadable, or still describes the previous key.
    """
    raw = _load(key_path)
    if raw.get("fingerprint") != fingerprint(key):
        return None
    return parse_version(raw.get("version"))


def _load(key_path: Path) -> dict[str, Any]:
    """The metadata as a JSON object; empty when absent, not UTF-8 JSON, or not an object."""
    try:
        raw = json.loads(metadata_path(key_path).read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}
