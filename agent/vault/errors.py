"""Vault failures as actionable errors: what went wrong, where, and how to fix it.

The messages follow the guide's troubleshooting table (403 → check the policy path,
expired token → use a renewable auth method, Vault unavailable → the cached key is
kept). They name paths, roles and mounts, never a secret value: the key must not reach
a log line or a traceback through an exception.

Errors split in two families that callers treat differently:
:class:`VaultUnavailableError` is transient (retry with backoff, keep the last good
key); every other :class:`VaultError` is a configuration problem that retrying will
not fix soon, but the agent keeps retrying slowly anyway, since a policy can be fixed
without restarting anyone.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "EmptyKeyError",
    "FieldMissingError",
    "PermissionDeniedError",
    "SecretNotFoundError",
    "VaultError",
    "VaultTLSError",
    "VaultUnavailableError",
    "VersionUnavailableError",
]

_SETUP_DOC = "docs/vault-setup.md"


class VaultError(Exception):
    """Base of every error this package raises: ``str()`` is the whole actionable message."""

    reason = "VaultError"  # a CamelCase word for Kubernetes conditions and events.


class VaultUnavailableError(VaultError):
    """Vault cannot answer now (unreachable, sealed, 5xx, rate-limited): retry later."""

    reason = "VaultUnavailable"

    def __init__(self, addr: str, detail: str):
        super().__init__(
            f"Vault at {addr} is unavailable ({detail}); retrying with backoff. Check the "
            "address, the network path and that Vault is unsealed (`vault status`)."
        )


class VaultTLSError(VaultError):
    """The TLS handshake failed: almost always a missing or wrong CA certificate."""

    reason = "VaultTLSError"

    def __init__(self, addr: str, detail: str):
        super().__init__(
            f"TLS verification failed talking to Vault at {addr} ({detail}). Set VAULT_CACERT "
            "(or --vault-cacert) to the PEM file of the CA that signed Vault's certificate."
        )


class AuthenticationError(VaultError):
    """Login was refused, or the token in use cannot be renewed or replaced."""

    reason = "VaultAuthFailed"


class PermissionDeniedError(VaultError):
    """The token is valid, but its policies do not allow this path."""

    reason = "VaultPermissionDenied"

    def __init__(self, path: str, capability: str):
        self.path = path
        super().__init__(
            f'403 Forbidden from Vault on "{path}": the token\'s policies do not grant '
            f'"{capability}" there. Add to the policy of this role: '
            f'path "{path}" {{ capabilities = ["{capability}"] }} (see {_SETUP_DOC}); '
            "a role bound to one environment is refused every other environment's path."
        )


class SecretNotFoundError(VaultError):
    """No secret at the path: a typo in the path or mount, or it was never written."""

    reason = "SecretNotFound"

    def __init__(self, path: str, mount: str, kv_path: str):
        super().__init__(
            f'no secret at "{path}" in Vault: check the KV mount ("{mount}") and path '
            f'("{kv_path}"), or store the key: vault kv put {mount}/{kv_path} api_key=...'
        )


class VersionUnavailableError(VaultError):
    """A pinned version does not exist, or was deleted or destroyed."""

    reason = "VersionUnavailable"

    def __init__(self, path: str, version: int, state: str, current: int | None):
        latest = f" (the current version is {current})" if current else ""
        super().__init__(
            f'version {version} of "{path}" is {state}{latest}: pin an existing version, '
            "or remove the pin to follow the latest one. Consumers keep the key they hold."
        )


class FieldMissingError(VaultError):
    """The secret exists but has no such field."""

    reason = "FieldMissing"

    def __init__(self, path: str, field: str, present: list[str]):
        names = ", ".join(repr(name) for name in sorted(present)) or "none"
        super().__init__(
            f'the secret at "{path}" has no field {field!r} (fields present: {names}): '
            "set the field name (--field, or spec.kv.field) or re-write the secret with it."
        )


class EmptyKeyError(VaultError):
    """The field exists but holds an empty value, or not a string."""

    reason = "EmptyKey"

    def __init__(self, path: str, field: str):
        super().__init__(
            f'the field {field!r} of "{path}" is empty or not a string: write the CaptchaAI '
            "API key into it."
        )
