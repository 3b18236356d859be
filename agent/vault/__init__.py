"""Vault (or OpenBao) access for the key agent and the operator: auth, KV v2 reads, errors.

Public surface: :class:`VaultClient` with :class:`SecretRef` / :class:`KeyVersion` /
:class:`SecretMetadata`, the auth methods, and the :mod:`~agent.vault.errors` family.
"""

from agent.vault import errors
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
from agent.vault.errors import *  # noqa: F403  (the whole family: errors.__all__ says which)

__all__ = [
    "DEFAULT_TOKEN_FILE",
    "AppRoleAuth",
    "Auth",
    "JwtAuth",
    "KeyVersion",
    "KubernetesAuth",
    "SecretMetadata",
    "SecretRef",
    "TokenAuth",
    "VaultClient",
    "VaultObserver",
    "auth_from_settings",
]
__all__ += errors.__all__
