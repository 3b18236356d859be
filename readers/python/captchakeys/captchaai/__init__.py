"""A small CaptchaAI client that takes its key from the delivered key file.

Why it exists: the guide's solver fetched the key from Vault itself and re-read it
hourly. In a pod the key agent already keeps the key file current, so the client asks
:class:`captchakeys.KeyReader` for the key on every request (from memory), and when
CaptchaAI says the key was revoked it waits briefly for the rotated key and retries
once. The key only ever travels in POST bodies and never appears in errors or reprs::

    from captchakeys import KeyReader
    from captchakeys.captchaai import CaptchaAIClient, RecaptchaV2

    reader = KeyReader()
    reader.wait(timeout=30)
    with CaptchaAIClient(reader) as client:
        token = client.solve(RecaptchaV2(sitekey="6Le-...", pageurl="https://example.com/"))

:class:`AsyncCaptchaAIClient` is the same with ``await client.solve(...)``. Both need
httpx, which the reader does not: install ``captchakeys-reader[client]``.
"""

from captchakeys.captchaai._core import DEFAULT_BASE_URL, KeySource, Timing
from captchakeys.captchaai.client import AsyncCaptchaAIClient, CaptchaAIClient
from captchakeys.captchaai.errors import (
    AccessDeniedError,
    BadTaskError,
    CaptchaAIError,
    KeyRejectedError,
    ProtocolError,
    ServiceBusyError,
    ServiceError,
    SolveTimeoutError,
    TransportError,
    UnsolvableError,
    ZeroBalanceError,
)
from captchakeys.captchaai.tasks import RecaptchaV2, Task

__all__ = [
    "DEFAULT_BASE_URL",
    "AccessDeniedError",
    "AsyncCaptchaAIClient",
    "BadTaskError",
    "CaptchaAIClient",
    "CaptchaAIError",
    "KeyRejectedError",
    "KeySource",
    "ProtocolError",
    "RecaptchaV2",
    "ServiceBusyError",
    "ServiceError",
    "SolveTimeoutError",
    "Task",
    "Timing",
    "TransportError",
    "UnsolvableError",
    "ZeroBalanceError",
]
