"""Who a bearer token is: ServiceAccount tokens the rig issues, and its TokenReview.

The rig signs JWTs (RS256) with the claims the kubelet's projected tokens carry, and
reviews them as the API server does for OpenBao's Kubernetes auth: an unknown, revoked,
expired or wrong-audience token is refused, and a review without audiences checks the
API server's own audience, so a token minted for "vault" cannot talk to the API.
OpenBao's JWT auth verifies the same tokens offline with :attr:`TokenAuthority.public_key_pem`.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

__all__ = ["API_AUDIENCE", "ISSUER", "TokenAuthority"]

#: The audience and issuer of a default kube-apiserver: a token must carry this audience
#: to talk to the API, and a TokenReview without ``spec.audiences`` checks against it.
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = API_AUDIENCE


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused(error: str) -> dict[str, Any]:
    return {"authenticated": False, "error": error}


def _user(claims: dict[str, Any]) -> dict[str, Any]:
    """The ``status.user`` of a TokenReview: the account, its groups, and its pod if bound."""
    kubernetes = claims["kubernetes.io"]
    namespace = kubernetes["namespace"]
    user: dict[str, Any] = {
        "username": claims["sub"],
        "uid": kubernetes["serviceaccount"]["uid"],
        "groups": [
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ],
    }
    if "pod" in kubernetes:
        user["extra"] = {
            "authentication.kubernetes.io/pod-name": [kubernetes["pod"]["name"]],
            "authentication.kubernetes.io/pod-uid": [kubernetes["pod"]["uid"]],
        }
    return user


class TokenAuthority:
    """The rig's signing key, the tokens it issued, and the ones it revoked."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._claims: dict[str, dict[str, Any]] = {}
        self._revoked: set[str] = set()
        self._account_uids: dict[tuple[str, str], str] = {}

    def issue(
        self,
        namespace: str,
        service_account: str,
        *,
        audience: str | Sequence[str],
        uid: str | None,
        expires_in: float,
        pod: str | None,
    ) -> str:
        """A service-account JWT as the kubelet projects it, signed RS256."""
        account_uid = uid or self._account_uids.setdefault(
            (namespace, service_account), str(uuid.uuid4())
        )
        kubernetes: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": account_uid},
        }
        if pod is not None:
            kubernetes["pod"] = {"name": pod, "uid": str(uuid.uuid4())}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": [audience] if isinstance(audience, str) else list(audience),
            "exp": int(now + expires_in),
            "iat": now,
            "nbf": now,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": kubernetes,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/service-account.name": service_account,
            "kubernetes.io/serviceaccount/service-account.uid": account_uid,
        }
        token = self._signed(claims)
        self._claims[token] = claims
        return token

    def revoke(self, token: str) -> None:
        """Make a token invalid, as deleting its pod or service account does."""
        self._revoked.add(token)

    def review(self, token: str, audiences: Sequence[str] | None = None) -> dict[str, Any]:
        """The ``status`` of a TokenReview: what the API server knows of this token."""
        claims = self._claims.get(token)
        wanted = list(audiences or [API_AUDIENCE])
        if claims is None:
            return _refused("invalid bearer token")
        if token in self._revoked:
            return _refused("service account token has been invalidated")
        if claims["exp"] <= time.time():
            return _refused("service account token has expired")
        matched = [audience for audience in wanted if audience in claims["aud"]]
        if not matched:
            return _refused(
                f"token audiences {claims['aud']} is invalid for the target audiences {wanted}"
            )
        return {"authenticated": True, "user": _user(claims), "audiences": matched}

    def token_review(self, body: Any) -> dict[str, Any]:
        """The answer to a posted TokenReview: its spec, and the review as its status."""
        spec = (body or {}).get("spec") or {}
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": self.review(spec.get("token", ""), spec.get("audiences")),
        }

    @property
    def public_key_pem(self) -> str:
        """The key that verifies the tokens offline (OpenBao's JWT auth)."""
        public = self._key.public_key()
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @property
    def ca_pem(self) -> str:
        """A CA certificate for configs that require one; the rig itself serves plain HTTP."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-rig-ca")])
        now = datetime.datetime.now(tz=datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()

    def _signed(self, claims: dict[str, Any]) -> str:
        header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims).encode())
        signature = self._key.sign(
            f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{header}.{payload}.{_b64url(signature)}"
