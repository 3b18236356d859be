"""How the agent proves its identity to Vault: Kubernetes, JWT, AppRole or a token.

Every method reads its credentials *at login time*, not at start: the kubelet rotates
projected service-account tokens (every hour or so, at 80% of their lifetime), and an
AppRole secret id may be re-issued into a mounted file. A login with a token read at
start-up would fail after the first rotation.

The guide's table of methods applies: Kubernetes (the pod's own service account, the
default in a pod), JWT (the same token validated offline by Vault, for clusters where
Vault cannot reach the TokenReview API), AppRole (services outside Kubernetes), and a
plain token (development, CI).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import hvac

from agent.contract import pod
from agent.contract.auth import WORKLOAD_AUTH_METHODS, BuiltinAuth
from agent.vault.errors import AuthenticationError

__all__ = [
    "DEFAULT_TOKEN_FILE",
    "AppRoleAuth",
    "Auth",
    "JwtAuth",
    "KubernetesAuth",
    "TokenAuth",
    "auth_from_settings",
]

# The projected, audience-bound token that the webhook mounts into the agent only.
DEFAULT_TOKEN_FILE = pod.VAULT_TOKEN_FILE


class Auth(Protocol):
    """One way of obtaining a Vault token."""

    @property
    def renewable_by_login(self) -> bool:
        """Whether a fresh login can replace an expired token (a static token cannot)."""

    def describe(self) -> str:
        """A human description for messages: method, mount, role. Never a credential."""

    def login(self, client: hvac.Client) -> Mapping[str, Any]:
        """Log in, set ``client.token``, and return Vault's ``auth`` block."""

    def policy_holder(self, token_meta: Mapping[str, Any]) -> str:
        """Who a missing grant belongs to, in the method's own words (for 403 messages).

        ``token_meta`` is the ``meta`` of ``lookup-self`` (may be empty).
        """


def _read_credential(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise AuthenticationError(
            f"cannot read the {what} at {path} ({exc.strerror}): in a pod, check that the "
            "projected token volume is mounted; elsewhere, point the option at the file"
        ) from None
    if not value:
        raise AuthenticationError(f"the {what} at {path} is empty")
    return value


@dataclass(frozen=True)
class KubernetesAuth:
    """Vault's ``kubernetes`` method: Vault checks the token with the TokenReview API."""

    role: str
    mount: str = "kubernetes"
    token_file: Path = DEFAULT_TOKEN_FILE
    renewable_by_login = True

    def describe(self) -> str:
        return f"kubernetes login as role {self.role!r} at auth/{self.mount}"

    def policy_holder(self, token_meta: Mapping[str, Any]) -> str:
        return _role_holder(self.role, self.mount)

    def login(self, client: hvac.Client) -> Mapping[str, Any]:
        jwt = _read_credential(self.token_file, "service-account token")
        response = client.auth.kubernetes.login(self.role, jwt, mount_point=self.mount)
        return _auth_block(response)


@dataclass(frozen=True)
class JwtAuth:
    """Vault's ``jwt`` method: the same token, validated offline against the cluster's keys."""

    role: str
    mount: str = "jwt"
    token_file: Path = DEFAULT_TOKEN_FILE
    renewable_by_login = True

    def describe(self) -> str:
        return f"jwt login as role {self.role!r} at auth/{self.mount}"

    def policy_holder(self, token_meta: Mapping[str, Any]) -> str:
        return _role_holder(self.role, self.mount)

    def login(self, client: hvac.Client) -> Mapping[str, Any]:
        jwt = _read_credential(self.token_file, "service-account token")
        response = client.auth.jwt.jwt_login(role=self.role, jwt=jwt, path=self.mount)
        return _auth_block(response)


@dataclass(frozen=True)
class AppRoleAuth:
    """Vault's ``approle`` method, with the secret id from the environment or a file."""

    role_id: str = field(repr=False)
    secret_id: str | None = field(default=None, repr=False)
    secret_id_file: Path | None = None
    mount: str = "approle"
    renewable_by_login = True

    def describe(self) -> str:
        return f"approle login at auth/{self.mount}"

    def policy_holder(self, token_meta: Mapping[str, Any]) -> str:
        name = token_meta.get("role_name")
        if isinstance(name, str) and name:
            return _role_holder(name, self.mount)
        return f"the AppRole role (auth/{self.mount}/role/<name>, token_policies)"

    def login(self, client: hvac.Client) -> Mapping[str, Any]:
        secret_id = self.secret_id
        if self.secret_id_file is not None:
            secret_id = _read_credential(self.secret_id_file, "AppRole secret id")
        if not secret_id:
            raise AuthenticationError(
                "AppRole needs a secret id: set VAULT_SECRET_ID or --secret-id-file"
            )
        response = client.auth.approle.login(self.role_id, secret_id, mount_point=self.mount)
        return _auth_block(response)


@dataclass(frozen=True)
class TokenAuth:
    """A token handed to the agent (VAULT_TOKEN or a file); renewed, never re-obtained."""

    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    renewable_by_login = False

    def describe(self) -> str:
        return f"token from {self.token_file}" if self.token_file else "token from VAULT_TOKEN"

    def policy_holder(self, token_meta: Mapping[str, Any]) -> str:
        # A plain token has no role: its policies were fixed when it was created.
        return "this token (token auth has no role: create a token with that policy)"

    def login(self, client: hvac.Client) -> Mapping[str, Any]:
        token = self.token
        if self.token_file is not None:
            token = _read_credential(self.token_file, "Vault token")
        if not token:
            raise AuthenticationError(
                "token auth needs a token: set VAULT_TOKEN or --token-file "
                "(or use kubernetes/approle auth, whose tokens are renewed for you)"
            )
        client.token = token
        data = client.auth.token.lookup_self()["data"]
        ttl = int(data.get("ttl") or 0)
        if not ttl and data.get("expire_time"):
            ttl = 1  # under a second left (the TTL is rounded down): not a token without expiry.
        return {
            "client_token": token,
            "lease_duration": ttl,
            "renewable": bool(data.get("renewable")),
        }


def _role_holder(role: str, mount: str) -> str:
    return f"the Vault role {role!r} (auth/{mount}/role/{role}, token_policies)"


def _auth_block(response: Mapping[str, Any]) -> Mapping[str, Any]:
    auth: Mapping[str, Any] = response["auth"]
    return auth


def auth_from_settings(
    method: BuiltinAuth,
    *,
    role: str | None = None,
    mount: str | None = None,
    token_file: Path | None = None,
    secret_id_file: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Auth:
    """Build the auth method from CLI/CRD settings and the usual ``VAULT_*`` variables."""
    if method in WORKLOAD_AUTH_METHODS:
        if not role:
            raise AuthenticationError(
                f"{method} auth needs a Vault role: set --role (or spec.vault.auth.role) to "
                "the role bound to this service account and namespace"
            )
        cls = KubernetesAuth if method == "kubernetes" else JwtAuth
        return cls(role=role, mount=mount or method, token_file=token_file or DEFAULT_TOKEN_FILE)
    if method == "approle":
        role_id = role or environ.get("VAULT_ROLE_ID")
        if not role_id:
            raise AuthenticationError("approle auth needs a role id: set VAULT_ROLE_ID or --role")
        return AppRoleAuth(
            role_id=role_id,
            secret_id=environ.get("VAULT_SECRET_ID"),
            secret_id_file=secret_id_file,
            mount=mount or "approle",
        )
    return TokenAuth(token=environ.get("VAULT_TOKEN"), token_file=token_file)
