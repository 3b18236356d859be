"""The key agent's ``/status`` JSON: the one definition the agent serves and the operator reads.

The agent (sidecar) and the operator are sibling processes, so the shape of what one
serves and the other parses lives here, below both: :class:`AgentStatus` is the payload
(each key is a field's name in camelCase), :func:`payload` the JSON the agent serves and
:func:`parse` what the operator makes of it. ``/status`` never carries the key. Every
key is always there, ``null`` when there is nothing to say (an agent that has not
started yet holds no version and has no last success).

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
from dataclasses import dataclass, replace
from typing import Annotated, Final

from agent.contract import _wire
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
    "AgentStatus",
    "LastError",
    "last_error",
    "parse",
    "payload",
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


@dataclass(frozen=True)
class LastError:
    """``/status`` ``lastError``: why the agent's last attempt failed, never the key."""

    reason: Annotated[str, _wire.text] = ""
    message: Annotated[str, _wire.text] = ""
    since: Annotated[str, _wire.text] = ""  # "": not said (an older agent, no answer).


def _last_error(value: object) -> LastError | None:
    """``lastError`` as sent: an object with a reason, or (older agents) the bare reason."""
    if isinstance(value, str) and value:
        return LastError(value, value)
    error = _wire.nested(LastError)(value)
    return error if error is not None and error.reason else None


@dataclass(frozen=True)
class AgentStatus:
    """What an agent says on ``/status``: the version it holds and how its refreshes go."""

    version: Annotated[Version | None, _wire.version] = None
    fingerprint: Annotated[str | None, _wire.text] = None
    # The version the binding's status announces, which the agent is fetching.
    desired_version: Annotated[Version | None, _wire.version] = None
    ready: Annotated[bool, _wire.flag] = False
    last_success: Annotated[float | None, _wire.number] = None  # Unix time.
    last_error: Annotated[LastError | None, _last_error] = None
    consecutive_failures: Annotated[int | None, _wire.integer] = None
    # Whether the policy lets the agent poll metadata rather than read the key each time.
    metadata_access: Annotated[bool | None, _wire.flag] = None
    source: Annotated[str | None, _wire.text] = None  # where the key is read, never the key.
    # An agent driven by a binding: its name, and the reason refreshes are stopped.
    binding: Annotated[str | None, _wire.text] = None
    problem: Annotated[str | None, _wire.text] = None


def last_error(reason: str, message: str, since: float) -> LastError:
    """Build ``lastError`` from a reason, a message (kept to one line) and a Unix time."""
    line = " ".join(message.split())[:_MAX_MESSAGE]
    moment = datetime.datetime.fromtimestamp(since, datetime.UTC)
    return LastError(reason, line, moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def payload(status: AgentStatus) -> dict[str, object]:
    """The JSON an agent serves on ``/status``: every key, ``null`` where there is none."""
    body: dict[str, object] = _wire.dump(status, nulls=True)
    return body


def parse(body: object) -> AgentStatus:
    """What an agent's ``/status`` body says; whatever is missing or malformed is unknown.

    Tolerates agents older than the ``lastError`` contract, which named the reason alone,
    as ``lastError`` or as ``problem``.
    """
    status = _wire.load(AgentStatus, body)
    if status.last_error is None and status.problem:
        return replace(status, last_error=LastError(status.problem, status.problem))
    return status
