"""The key agent's ``/status`` JSON: the one definition the agent serves and the operator reads.

The agent (sidecar) and the operator are sibling processes, so the shape of what one
serves and the other parses lives here, below both. ``/status`` never carries the key.

``lastError`` is ``null`` while the last attempt succeeded, otherwise an object::

    {"reason": "KeyFileUnwritable", "message": "<one line, never the key>",
     "since": "2026-12-01T21:45:00Z"}

``reason`` is one CamelCase word from :data:`REASONS` (also the ``reason`` of the
error classes, of log lines and of the agent's failure metrics), ``message`` says what
to fix, and ``since`` is when the current run of failures began (RFC 3339, UTC): it
stays the same while the same problem persists, so an operator can tell "failing for
a minute" from "failing for a day".
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Final, TypedDict

from agent import versions
from agent.versions import Version

__all__ = [
    "AWS_ERROR",
    "AWS_FORBIDDEN",
    "AWS_THROTTLED",
    "AWS_UNREACHABLE",
    "BINDING_DELETED",
    "FIELD_MISSING",
    "INVALID_BINDING",
    "KEY_FILE_UNWRITABLE",
    "KEY_REJECTED",
    "LOGIN_REFUSED",
    "REASONS",
    "SECRET_NOT_FOUND",
    "VAULT_ERROR",
    "VAULT_FORBIDDEN",
    "VAULT_SEALED",
    "VAULT_TLS",
    "VAULT_UNREACHABLE",
    "VERSION_UNAVAILABLE",
    "LastError",
    "last_error",
    "parse_last_error",
    "parse_version",
]

# Vault
VAULT_UNREACHABLE: Final = "VaultUnreachable"  # network, 5xx, rate limit: retried with backoff.
VAULT_SEALED: Final = "VaultSealed"  # Vault answers, but is sealed.
VAULT_TLS: Final = "VaultTLSError"  # the CA does not verify Vault's certificate.
VAULT_FORBIDDEN: Final = "VaultForbidden"  # a 403 on the key's path: the policy.
LOGIN_REFUSED: Final = "LoginRefused"  # the auth method refused the login (role, audience).
SECRET_NOT_FOUND: Final = "SecretNotFound"
VERSION_UNAVAILABLE: Final = "VersionUnavailable"  # a pinned version deleted or destroyed.
FIELD_MISSING: Final = "FieldMissing"
# AWS Secrets Manager (spec.source: aws)
AWS_UNREACHABLE: Final = "AwsUnreachable"  # network, 5xx: retried with backoff.
AWS_THROTTLED: Final = "AwsThrottled"  # ThrottlingException: retried with backoff and jitter.
AWS_FORBIDDEN: Final = "AwsForbidden"  # AccessDeniedException: the role's IAM policy.
AWS_ERROR: Final = "AwsError"  # anything else AWS said (binary secret, KMS decryption).
# The key and its file
KEY_REJECTED: Final = "KeyRejected"  # empty, whitespace, control characters, too long, format.
KEY_FILE_UNWRITABLE: Final = "KeyFileUnwritable"  # ENOSPC, EROFS, EACCES, EDQUOT, no directory.
# The binding (the agent in a pod)
INVALID_BINDING: Final = "InvalidBinding"
BINDING_DELETED: Final = "BindingDeleted"
# Anything else Vault said that has no word of its own.
VAULT_ERROR: Final = "VaultError"

REASONS: Final = frozenset(
    {
        VAULT_UNREACHABLE,
        VAULT_SEALED,
        VAULT_TLS,
        VAULT_FORBIDDEN,
        LOGIN_REFUSED,
        SECRET_NOT_FOUND,
        VERSION_UNAVAILABLE,
        FIELD_MISSING,
        KEY_REJECTED,
        KEY_FILE_UNWRITABLE,
        INVALID_BINDING,
        BINDING_DELETED,
        VAULT_ERROR,
        AWS_UNREACHABLE,
        AWS_THROTTLED,
        AWS_FORBIDDEN,
        AWS_ERROR,
    }
)

_MAX_MESSAGE = 1024


class LastError(TypedDict):
    """``/status`` ``lastError``: why the agent's last attempt failed, never the key."""

    reason: str
    message: str
    since: str


def last_error(reason: str, message: str, since: float) -> LastError:
    """Build ``lastError`` from a reason, a message (kept to one line) and a Unix time."""
    line = " ".join(message.split())[:_MAX_MESSAGE]
    moment = datetime.datetime.fromtimestamp(since, datetime.UTC)
    return {"reason": reason, "message": line, "since": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}


def parse_last_error(status: Mapping[str, object]) -> LastError | None:
    """``lastError`` from an agent's ``/status`` body, or ``None`` (none, or malformed).

    Tolerates agents older than this contract, which sent the bare reason as a string.
    """
    value = status.get("lastError")
    if isinstance(value, str) and value:
        return {"reason": value, "message": value, "since": ""}
    if not isinstance(value, Mapping):
        return None
    reason, message, since = value.get("reason"), value.get("message"), value.get("since")
    if not isinstance(reason, str) or not reason:
        return None
    return {
        "reason": reason,
        "message": message if isinstance(message, str) else "",
        "since": since if isinstance(since, str) else "",
    }


def parse_version(status: Mapping[str, object]) -> Version | None:
    """The key version an agent's ``/status`` body says it holds, or ``None``.

    A number from Vault, an id string from AWS Secrets Manager (see agent.versions).
    """
    return versions.parse(status.get("version"))
