"""The real OpenBao wired to the rig: Kubernetes auth through TokenReview, or JWT offline.

With Kubernetes auth, OpenBao POSTs every login's JWT to the rig's TokenReview endpoint,
as it does to a real API server; with JWT auth it checks the signature with the rig's
public key and never calls the API server (the guide's path for workloads outside the
cluster). A :class:`BaoRole` binds the same claims in both, so a test can run either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import hvac

from tests.rig.identity import API_AUDIENCE, ISSUER
from tests.rig.openbao import OpenBaoServer

if TYPE_CHECKING:
    from tests.rig.client import ApiServer
    from tests.rig.kube import RealisticKubernetes

__all__ = ["BaoAuth", "BaoRole", "configure_jwt_auth", "configure_kubernetes_auth"]


@dataclass(frozen=True)
class BaoRole:
    """A Vault role for workloads: which service accounts in which namespaces get what.

    ``audience`` is what the role demands of the login token; None leaves it to the API
    server's default audience, as OpenBao does (and then "vault" tokens are refused).
    ``"*"`` in namespaces or service accounts means any.
    """

    name: str
    namespaces: Sequence[str]
    service_accounts: Sequence[str]
    policies: Sequence[str] = ()
    ttl: str = "1h"
    audience: str | None = "vault"


@dataclass(frozen=True)
class BaoAuth:
    """An auth method on the real OpenBao that trusts the rig's service-account tokens."""

    openbao: OpenBaoServer
    method: str  # "kubernetes" (TokenReview through the rig) or "jwt" (offline keys)
    mount: str

    def add_role(self, role: BaoRole) -> None:
        """Create or replace a role; it binds the same claims in both methods."""
        if self.method == "kubernetes":
            self._add_kubernetes_role(role)
        else:
            self._add_jwt_role(role)

    def login(self, role: str, jwt: str) -> hvac.Client:
        """Log in as a workload would; a refusal raises ``hvac.exceptions.Forbidden``.

        Blocking is fine even inside a test's event loop: the rig answers OpenBao's
        TokenReview from its own thread.
        """
        client = hvac.Client(url=self.openbao.addr)
        if self.method == "kubernetes":
            client.auth.kubernetes.login(role, jwt, mount_point=self.mount)
        else:
            client.auth.jwt.jwt_login(role, jwt, path=self.mount)
        return client

    def disable(self) -> None:
        self.openbao.client().sys.disable_auth_method(path=self.mount)

    def _add_kubernetes_role(self, role: BaoRole) -> None:
        self.openbao.client().auth.kubernetes.create_role(
            name=role.name,
            bound_service_account_names=list(role.service_accounts),
            bound_service_account_namespaces=list(role.namespaces),
            policies=list(role.policies),
            ttl=role.ttl,
            audience=role.audience,
            mount_point=self.mount,
        )

    def _add_jwt_role(self, role: BaoRole) -> None:
        """The Kubernetes role's bindings as claims; ``"*"`` binds nothing, as there."""
        bound_claims = {
            pointer: list(values)
            for pointer, values in (
                ("/kubernetes.io/namespace", role.namespaces),
                ("/kubernetes.io/serviceaccount/name", role.service_accounts),
            )
            if "*" not in values
        }
        self.openbao.client().auth.jwt.create_role(
            name=role.name,
            role_type="jwt",
            user_claim="sub",
            allowed_redirect_uris=[],
            bound_audiences=[role.audience or API_AUDIENCE],
            bound_claims=bound_claims or None,
            token_policies=list(role.policies),
            token_ttl=role.ttl,
            path=self.mount,
        )


def _with_roles(auth: BaoAuth, roles: Iterable[BaoRole]) -> BaoAuth:
    for role in roles:
        auth.add_role(role)
    return auth


def configure_kubernetes_auth(
    openbao: OpenBaoServer,
    rig: ApiServer,
    *,
    mount: str = "kubernetes",
    roles: Iterable[BaoRole] = (),
) -> BaoAuth:
    """Enable OpenBao's Kubernetes auth at ``mount``, reviewing tokens through the rig.

    OpenBao authenticates its TokenReviews with a reviewer token the rig issued
    (``kube-system/openbao-token-reviewer``).
    """
    client = openbao.client()
    client.sys.enable_auth_method("kubernetes", path=mount)
    reviewer = rig.issue_token(
        "kube-system", "openbao-token-reviewer", audience=API_AUDIENCE, expires_in=86400
    )
    client.auth.kubernetes.configure(
        kubernetes_host=rig.api_url,
        kubernetes_ca_cert=rig.ca_pem,
        token_reviewer_jwt=reviewer,
        disable_local_ca_jwt=True,
        mount_point=mount,
    )
    return _with_roles(BaoAuth(openbao, "kubernetes", mount), roles)


def configure_jwt_auth(
    openbao: OpenBaoServer,
    rig: RealisticKubernetes,
    *,
    mount: str = "jwt",
    roles: Iterable[BaoRole] = (),
) -> BaoAuth:
    """Enable OpenBao's JWT auth at ``mount``, verifying the rig's tokens offline."""
    client = openbao.client()
    client.sys.enable_auth_method("jwt", path=mount)
    client.auth.jwt.configure(
        jwt_validation_pubkeys=[rig.public_key_pem], bound_issuer=ISSUER, path=mount
    )
    return _with_roles(BaoAuth(openbao, "jwt", mount), roles)
