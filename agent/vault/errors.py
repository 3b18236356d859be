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

from collections.abc import Sequence
from typing import ClassVar

from agent.contract import agentstatus

__all__ = [
    "AuthenticationError",
    "EmptyKeyError",
    "FieldMissingError",
    "KvVersionOneError",
    "PermissionDeniedError",
    "SecretNotFoundError",
    "VaultError",
    "VaultSealedError",
    "VaultTLSError",
    "VaultUnavailableError",
    "VersionUnavailableError",
]

_SETUP_DOC = "docs/vault-setup.md"


class VaultError(Exception):
    """Base of every error this package raises: ``str()`` is the whole actionable message."""

    # A CamelCase word for /status, Kubernetes conditions, events and metrics labels.
    reason: str = agentstatus.VAULT_ERROR


class _AtAddress(VaultError):
    """A failure to talk to the Vault at an address: the message is the class's ``template``."""

    template: ClassVar[str]

    def __init__(self, addr: str, detail: str = ""):
        super().__init__(self.template.format(addr=addr, detail=detail))


class VaultUnavailableError(_AtAddress):
    """Vault cannot answer now (unreachable, sealed, 5xx, rate-limited): retry later."""

    reason = agentstatus.VAULT_UNREACHABLE
    template = (
        "Vault at {addr} is unavailable ({detail}); retrying with backoff. Check the address, "
        "the network path and that Vault is unsealed (`vault status`)."
    )


class VaultSealedError(VaultUnavailableError):
    """Vault answers, but is sealed: nothing can be read until an operator unseals it."""

    reason = agentstatus.VAULT_SEALED
    template = (
        "Vault at {addr} is sealed; retrying with backoff. Unseal it (`vault operator "
        "unseal`, or check its auto-unseal) and the agent recovers by itself; the last good "
        "key stays in place meanwhile."
    )


class VaultTLSError(_AtAddress):
    """The TLS handshake failed: almost always a missing or wrong CA certificate."""

    reason = agentstatus.VAULT_TLS
    template = (
        "TLS verification failed talking to Vault at {addr} ({detail}). Set VAULT_CACERT (or "
        "--vault-cacert) to the PEM file of the CA that signed Vault's certificate."
    )


class AuthenticationError(VaultError):
    """Login was refused, or the token in use cannot be renewed or replaced."""

    reason = agentstatus.LOGIN_REFUSED


class PermissionDeniedError(VaultError):
    """The token is valid, but its policies do not allow this path."""

    reason = agentstatus.VAULT_FORBIDDEN

    def __init__(
        self,
        path: str,
        capability: str,
        *,
        policies: Sequence[str] | None = None,
        policy_holder: str | None = None,
    ):
        self.path = path
        self.capability = capability
        self.policies = tuple(policies) if policies is not None else None
        self.policy_holder = policy_holder
        if self.policies is None:
            held = "the token's policies"
        elif self.policies:
            held = f"the token's policies ({', '.join(self.policies)})"
        else:
            held = "the token, which has no policies,"
        where = f"a policy of {policy_holder}" if policy_holder else "a policy of this identity"
        super().__init__(
            f'403 Forbidden from Vault on "{path}": {held} do not grant "{capability}" '
            f'there. Add to {where}: path "{path}" {{ capabilities = ["{capability}"] }} '
            f"(see {_SETUP_DOC}); a role bound to one environment is refused every other "
            "environment's path."
        )


class SecretNotFoundError(VaultError):
    """No secret at the path: a typo in the path or mount, or it was never written."""

    reason = agentstatus.SECRET_NOT_FOUND

    def __init__(self, path: str, mount: str, kv_path: str):
        super().__init__(
            f'no secret at "{path}" in Vault: check the KV mount ("{mount}") and path '
            f'("{kv_path}"), or store the key: vault kv put {mount}/{kv_path} api_key=...'
        )


class KvVersionOneError(SecretNotFoundError):
    """The mount is a KV version 1 engine: nothing is ever found under ``<mount>/data/``."""

    def __init__(self, path: str, mount: str):
        # Not the "no secret" message: the secret may well be there, in the wrong engine.
        VaultError.__init__(
            self,
            f'"{mount}/" is a KV version 1 mount, so "{path}" (a KV version 2 path) does not '
            f"exist there: the key agent needs KV version 2 (versions, metadata, rotation). "
            f"Upgrade the mount in place with `vault kv enable-versioning {mount}` (existing "
            "secrets become version 1), or point spec.kv.mount at a KV version 2 mount.",
        )


class VersionUnavailableError(VaultError):
    """A pinned version does not exist, or was deleted or destroyed."""

    reason = agentstatus.VERSION_UNAVAILABLE

    def __init__(self, path: str, version: int, state: str, current: int | None):
        latest = f" (the current version is {current})" if current else ""
        super().__init__(
            f'version {version} of "{path}" is {state}{latest}: pin an existing version, '
            "or remove the pin to follow the latest one. Consumers keep the key they hold."
        )


class FieldMissingError(VaultError):
    """The secret exists but has no such field."""

    reason = agentstatus.FIELD_MISSING

    def __init__(self, path: str, field: str, present: list[str]):
        names = ", ".join(repr(name) for name in sorted(present)) or "none"
        super().__init__(
            f'the secret at "{path}" has no field {field!r} (fields present: {names}): '
            "set the field name (--field, or spec.kv.field) or re-write the secret with it."
        )


class EmptyKeyError(VaultError):
    """The field exists but holds an empty value, or not a string."""

    reason = agentstatus.KEY_REJECTED

    def __init__(self, path: str, field: str):
        super().__init__(
            f'the field {field!r} of "{path}" is empty or not a string: write the CaptchaAI '
            "API key into it."
        )
