"""Vault (or OpenBao) access for the key agent and the operator: auth, KV v2 reads, errors.

Public surface: :class:`VaultClient` with :class:`SecretRef` / :class:`KeyVersion` /
:class:`SecretMetadata`, the auth methods, and the :mod:`~agent.vault.errors` family.
"""

from agent.vault.auth import (
    DEFAULT_TOKEN_FILE,
    AppRoleAuth,
    Auth,
    JwtAuth,
    KubernetesAuth,
    TokenAuth,
    auth_from_settings,
)
from agent.vault.client import KeyVersion, SecretMetadata, SecretRef, VaultClient, VaultObserver
from agent.vault.errors import (
    AuthenticationError,
    EmptyKeyError,
    FieldMissingError,
    KvVersionOneError,
    PermissionDeniedError,
    SecretNotFoundError,
    VaultError,
    VaultSealedError,
    VaultTLSError,
    VaultUnavailableError,
    VersionUnavailableError,
)

__all__ = [
    "DEFAULT_TOKEN_FILE",
    "AppRoleAuth",
    "Auth",
    "AuthenticationError",
    "EmptyKeyError",
    "FieldMissingError",
    "JwtAuth",
    "KeyVersion",
    "KubernetesAuth",
    "KvVersionOneError",
    "PermissionDeniedError",
    "SecretMetadata",
    "SecretNotFoundError",
    "SecretRef",
    "TokenAuth",
    "VaultClient",
    "VaultError",
    "VaultObserver",
    "VaultSealedError",
    "VaultTLSError",
    "VaultUnavailableError",
    "VersionUnavailableError",
    "auth_from_settings",
]
