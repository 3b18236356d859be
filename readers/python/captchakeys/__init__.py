"""captchakeys: read the CaptchaAI key that captcha-key-agent delivers into the pod.

Applications import this distribution (``captchakeys-reader``), never the agent's: it
needs only ``watchdog``, so it adds nothing heavy to a program and collides with none of
its modules::

    from captchakeys import KeyReader

    reader = KeyReader()            # $CAPTCHAAI_KEY_FILE or /var/run/captchaai/api_key
    key = reader.wait(timeout=30)   # until the key agent has written a key
    reader.on_change(lambda _key: log.info("key rotated to %s", reader.fingerprint))

The CaptchaAI client built on the reader is :mod:`captchakeys.captchaai`
(``captchakeys-reader[client]``, which adds httpx). It is not imported here, so that
``import captchakeys`` stays as light as the reader.

The reader (and with it watchdog) is loaded on first use of its names, not by the
package itself: the key agent imports :mod:`captchakeys.keyfile`, the format it writes,
and every consumer pod would otherwise pay for a file watcher its agent never runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from captchakeys.keyfile import (
    DEFAULT_DIR,
    DEFAULT_FILE_NAME,
    ENV_VAR,
    KeyMetadata,
    Version,
    fingerprint,
    metadata_path,
    read_metadata,
)

if TYPE_CHECKING:
    from captchakeys.reader import ChangeCallback, KeyReader, KeyUnavailableError, get_key

_READER_NAMES = frozenset({"ChangeCallback", "KeyReader", "KeyUnavailableError", "get_key"})

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_FILE_NAME",
    "ENV_VAR",
    "ChangeCallback",
    "KeyMetadata",
    "KeyReader",
    "KeyUnavailableError",
    "Version",
    "fingerprint",
    "get_key",
    "metadata_path",
    "read_metadata",
]


def __getattr__(name: str) -> object:
    if name in _READER_NAMES:
        return getattr(importlib.import_module("captchakeys.reader"), name)
    raise AttributeError(f"module 'captchakeys' has no attribute {name!r}")
