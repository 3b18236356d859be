"""What can go wrong when solving, as types a caller can catch selectively.

The service answers with a code (``ERROR_ZERO_BALANCE`` ...). Callers care about what
to *do*, not the exact code: fix the key, top up, back off and retry, fix the task, give
up on this CAPTCHA. So codes map onto a handful of types by remedy, and the code itself
stays on the exception for logs and dashboards. A code this module does not know still
raises :class:`ServiceError`, never a bare ``Exception``, so new codes are never lost.

No exception carries the API key: messages are built from codes, task ids, endpoints
and status codes only.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "BadTaskError",
    "CaptchaAIError",
    "KeyRejectedError",
    "ProtocolError",
    "ServiceBusyError",
    "ServiceError",
    "SolveTimeoutError",
    "TransportError",
    "UnsolvableError",
    "ZeroBalanceError",
    "error_for_code",
]


class CaptchaAIError(Exception):
    """Any failure to get a solution from CaptchaAI."""

    def __init__(self, message: str, *, task_id: str | None = None):
        super().__init__(message)
        self.task_id = task_id


class ServiceError(CaptchaAIError):
    """The service answered with an error code (``code``)."""

    def __init__(self, code: str, message: str, *, task_id: str | None = None):
        super().__init__(f"{code}: {message}", task_id=task_id)
        self.code = code


class KeyRejectedError(ServiceError):
    """The key is malformed, unknown or revoked: the remedy is a rotation in Vault."""


class ZeroBalanceError(ServiceError):
    """The account has no free threads or funds for a new task."""


class ServiceBusyError(ServiceError):
    """A transient condition on the service's side: retrying later can succeed."""


class BadTaskError(ServiceError):
    """The task's parameters (sitekey, page URL, task id ...) were refused."""


class AccessDeniedError(ServiceError):
    """The caller's IP address is not allowed, or banned after bad authorizations."""


class UnsolvableError(ServiceError):
    """The workers could not solve this CAPTCHA; submitting it again may work."""


class SolveTimeoutError(CaptchaAIError):
    """The solution was not ready after the configured number of polls."""


class ProtocolError(CaptchaAIError):
    """The answer was not the JSON the protocol promises (a proxy page, a truncation ...)."""


class TransportError(CaptchaAIError):
    """No usable HTTP answer: connection failure, timeout, or an HTTP error status."""

    def __init__(self, message: str, *, status_code: int | None = None, task_id: str | None = None):
        super().__init__(message, task_id=task_id)
        self.status_code = status_code


_REMEDIES: dict[type[ServiceError], tuple[str, frozenset[str]]] = {
    KeyRejectedError: (
        "CaptchaAI rejected the API key; rotate it in Vault",
        frozenset({"ERROR_WRONG_USER_KEY", "ERROR_KEY_DOES_NOT_EXIST"}),
    ),
    ZeroBalanceError: (
        "no free threads or funds on the CaptchaAI account",
        frozenset({"ERROR_ZERO_BALANCE"}),
    ),
    ServiceBusyError: (
        "CaptchaAI is busy or failing; retry later",
        frozenset(
            {
                "ERROR_NO_SLOT_AVAILABLE",
                "ERROR_TOO_MUCH_REQUESTS",
                "MAX_USER_TURN",
                "ERROR_SERVER_ERROR",
                "ERROR_INTERNAL_SERVER_ERROR",
            }
        ),
    ),
    BadTaskError: (
        "CaptchaAI refused the task's parameters",
        frozenset(
            {
                "ERROR_PAGEURL",
                "ERROR_GOOGLEKEY",
                "ERROR_WRONG_GOOGLEKEY",
                "ERROR_BAD_TOKEN_OR_PAGEURL",
                "ERROR_BAD_PARAMETERS",
                "ERROR_BAD_DUPLICATES",
                "ERROR_WRONG_ID_FORMAT",
                "ERROR_WRONG_CAPTCHA_ID",
                "ERROR_EMPTY_ACTION",
            }
        ),
    ),
    AccessDeniedError: (
        "CaptchaAI does not accept requests from this IP address",
        frozenset({"ERROR_IP_NOT_ALLOWED", "IP_BANNED", "ERROR_IP_BANNED"}),
    ),
    UnsolvableError: (
        "CaptchaAI could not solve this CAPTCHA",
        frozenset({"ERROR_CAPTCHA_UNSOLVABLE"}),
    ),
}

_BY_CODE: dict[str, tuple[type[ServiceError], str]] = {
    code: (kind, remedy) for kind, (remedy, codes) in _REMEDIES.items() for code in codes
}


def error_for_code(code: str, *, task_id: str | None = None) -> ServiceError:
    """The exception for a service error ``code``; unknown codes give a plain ServiceError."""
    kind, remedy = _BY_CODE.get(code, (ServiceError, "CaptchaAI returned an unknown error"))
    return kind(code, remedy, task_id=task_id)
