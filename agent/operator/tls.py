"""Webhook TLS: a private CA and serving certificate, generated with ``cryptography``.

The API server only calls webhooks over HTTPS and must trust the certificate through
the ``caBundle`` of the webhook configuration. In the default *self-signed* mode the
operator owns that chain, the way the Vault injector and cert-manager's CA issuer do,
with their habits:

- *Short lifetimes*: the serving certificate lives :data:`SERVING_VALIDITY` (90 days,
  cert-manager's default) and is renewed :data:`RENEW_BEFORE` its end (at two thirds of
  its life), checked every :data:`REFRESH_SECONDS`, so no replica ever serves an
  expiring certificate.
- *No CA private key at rest*: each renewal mints a new CA in memory, signs one serving
  certificate with it, and forgets the CA key. Nothing that can sign a certificate the
  API server trusts is ever stored; whoever reads the serving Secret gets one serving
  key that expires within 90 days. (A Secret written by an older release that still
  holds a ``ca.key`` is re-issued at the first refresh, and the key dropped.)
- *Overlap on renewal*: ``ca.crt`` (the caBundle) carries the new CA and the previous
  CAs whose certificates have not expired, so a replica still serving the previous
  certificate stays trusted until its next refresh picks up the new one.

Every replica serves the chain stored in one Secret, so the caBundle is the same for
all of them. kopf's own generator needs oscrypto, which cannot load OpenSSL 3 on
current distributions; ``cryptography`` is the maintained choice.

In *cert-manager* mode none of this runs: cert-manager issues the certificate into
a mounted Secret and injects the caBundle; kopf's server reloads changed files.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.kube import KubeApi

__all__ = [
    "ServingCertificate",
    "WebhookCertificates",
    "ca_bundle",
    "generate",
    "needs_renewal",
    "service_names",
]

SERVING_VALIDITY = datetime.timedelta(days=90)
# The CA signs one certificate and is then forgotten: it need not outlive it (a day of
# slack covers clock skew between the operator and the API server).
CA_VALIDITY = SERVING_VALIDITY + datetime.timedelta(days=1)
RENEW_BEFORE = datetime.timedelta(days=30)
REFRESH_SECONDS = 12 * 3600  # well inside RENEW_BEFORE: no replica serves an expiring cert.
# Secret keys of the chain (a kubernetes.io/tls-compatible layout, plus the bundle).
SECRET_KEYS = ("ca.crt", "tls.crt", "tls.key")
_LEGACY_CA_KEY = "ca.key"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookCertificates:
    """PEM-encoded CA bundle, serving certificate and serving key: no CA key, ever."""

    ca_cert: bytes
    cert: bytes
    key: bytes

    def as_secret_data(self) -> dict[str, bytes]:
        return {"ca.crt": self.ca_cert, "tls.crt": self.cert, "tls.key": self.key}


def service_names(service: str, namespace: str) -> list[str]:
    """Every DNS name the API server may use to reach the webhook Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def generate(
    names: Iterable[str],
    *,
    now: datetime.datetime | None = None,
    previous_bundle: bytes = b"",
) -> WebhookCertificates:
    """A serving certificate for ``names`` (DNS names or IPs), signed by a new, forgotten CA.

    The returned ``ca_cert`` is the new CA followed by the CAs of ``previous_bundle``
    that are still valid at ``now``: what the caBundle must hold during the overlap.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "captcha-key-agent webhook CA"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(x509.random_serial_number())),
        ]
    )
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    names = list(names)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, SERVING_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # RFC 5280 identifiers: strict verifiers (Python >= 3.13's default) require them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    bundle = ca_cert.public_bytes(serialization.Encoding.PEM) + ca_bundle(previous_bundle, now)
    return WebhookCertificates(
        ca_cert=bundle,
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=_private_pem(key),
    )


def ca_bundle(pem: bytes, now: datetime.datetime) -> bytes:
    """The certificates of ``pem`` still valid at ``now`` (expired CAs leave the bundle)."""
    try:
        certificates = x509.load_pem_x509_certificates(pem) if pem.strip() else []
    except ValueError:
        return b""  # unreadable: nothing worth keeping in the caBundle.
    return b"".join(
        c.public_bytes(serialization.Encoding.PEM)
        for c in certificates
        if c.not_valid_after_utc > now
    )


def needs_renewal(
    cert_pem: bytes, names: Iterable[str], *, now: datetime.datetime | None = None
) -> bool:
    """Whether a serving certificate expires soon or does not cover every name."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return True
    covered = {str(n) for n in sans.get_values_for_type(x509.DNSName)}
    covered |= {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return cert.not_valid_after_utc - now < RENEW_BEFORE or not set(names) <= covered


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
    validity: datetime.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class ServingCertificate:
    """The self-signed webhook chain, shared by replicas through one Secret.

    Every replica serves the chain stored in the Secret, so the caBundle is the same
    for all of them; whichever replica finds the serving certificate due renews it
    (same CA, so the caBundle does not change) and the others pick it up at their next
    refresh. The files are rewritten in place, and kopf's server reloads them.
    """

    def __init__(
        self, kube: KubeApi, namespace: str, secret: str, names: Iterable[str], workdir: Path
    ):
        self.kube, self.namespace, self.secret = kube, namespace, secret
        self.names = list(names)
        self.certfile, self.keyfile = workdir / "tls.crt", workdir / "tls.key"

    async def refresh(self, mutating: str, validating: str) -> None:
        """Bring the Secret, the caBundle and the served files up to date."""
        chain = await self._current_chain()
        await self.kube.set_ca_bundle(mutating, validating, chain["ca.crt"])
        self.certfile.write_bytes(chain["tls.crt"])
        self.keyfile.write_bytes(chain["tls.key"])
        self.keyfile.chmod(0o600)

    async def keep_fresh(self, mutating: str, validating: str) -> None:
        """Refresh twice a day for as long as the operator runs."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh(mutating, validating)
            except Exception:  # the served certificate stays valid for weeks: retry later.
                _log.exception("could not refresh the webhook certificate; retrying later")

    async def _current_chain(self) -> Mapping[str, bytes]:
        stored = await self.kube.read_secret(self.namespace, self.secret)
        if (
            stored is not None
            and _LEGACY_CA_KEY not in stored
            and all(k in stored for k in SECRET_KEYS)
            and not needs_renewal(stored["tls.crt"], self.names)
        ):
            return stored
        fresh = generate(self.names, previous_bundle=(stored or {}).get("ca.crt", b""))
        data = fresh.as_secret_data()
        if stored is not None:
            _log.info("issuing a new webhook certificate under a new CA (the old stays trusted)")
            removed = {_LEGACY_CA_KEY: None} if _LEGACY_CA_KEY in stored else {}
            await self.kube.replace_secret(self.namespace, self.secret, {**data, **removed})
            return data
        if await self.kube.create_secret(self.namespace, self.secret, data):
            return data
        # Another replica created it first: serve theirs, so the caBundle matches.
        return await self.kube.read_secret(self.namespace, self.secret) or data
