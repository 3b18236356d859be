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
"""

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
from captchakeys.reader import ChangeCallback, KeyReader, KeyUnavailableError, get_key

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
