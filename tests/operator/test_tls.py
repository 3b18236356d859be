"""Webhook TLS: the CA and serving certificate generated with ``cryptography``.

Aspects covered:
- generate() gives a CA (self-signed, CA:TRUE) and a serving certificate that verifies
  as directly issued by it, with SANs for every service name and for an IP address, for
  server authentication only;
- service_names() lists the short, namespaced, .svc and cluster.local names;
- lifetimes: the serving certificate lives 90 days, the CA barely longer; no CA private
  key is returned or stored (the Secret data is ca.crt, tls.crt, tls.key only);
- renewal overlap: a new chain's bundle holds the new CA first and the previous CAs
  still valid (so a replica serving the previous certificate stays trusted), and drops
  expired ones and garbage;
- needs_renewal: False for a fresh certificate; True when a name is missing, inside the
  last 30 days (60+ days later), after expiry, and for garbage; False shortly before;
- a real TLS handshake on 127.0.0.1 with the generated cert/key: a client trusting only
  the generated CA succeeds (by DNS name and by IP SAN); a client trusting another CA
  fails; a name not in the certificate fails.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.operator import tls

NAMES = [*tls.service_names("captcha-key-agent-webhook", "captchakeys"), "127.0.0.1"]
DNS_NAME = "captcha-key-agent-webhook.captchakeys.svc"


@pytest.fixture(scope="module")
def certs() -> tls.WebhookCertificates:
    return tls.generate(NAMES)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_service_names() -> None:
    assert tls.service_names("hook", "ns") == [
        "hook",
        "hook.ns",
        "hook.ns.svc",
        "hook.ns.svc.cluster.local",
    ]


def test_generate_gives_a_ca_and_a_serving_cert_it_issued(certs: tls.WebhookCertificates) -> None:
    ca, cert = load(certs.ca_cert), load(certs.cert)
    ca.verify_directly_issued_by(ca)  # self-signed
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == NAMES[:-1]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert (
        datetime.timedelta(days=89) < cert.not_valid_after_utc - now <= datetime.timedelta(days=90)
    )
    assert ca.not_valid_after_utc - now <= datetime.timedelta(days=91)
    assert certs.as_secret_data() == {
        "ca.crt": certs.ca_cert,
        "tls.crt": certs.cert,
        "tls.key": certs.key,
    }
    assert b"PRIVATE KEY" in certs.key
    assert b"PRIVATE KEY" not in certs.ca_cert


def test_a_new_ca_each_time(certs: tls.WebhookCertificates) -> None:
    other = tls.generate(NAMES)
    assert other.ca_cert != certs.ca_cert
    with pytest.raises((InvalidSignature, ValueError)):  # another issuer name, another key
        load(other.cert).verify_directly_issued_by(load(certs.ca_cert))


def test_renewal_keeps_the_previous_ca_trusted_until_it_expires(
    certs: tls.WebhookCertificates,
) -> None:
    renewed = tls.generate(NAMES, previous_bundle=certs.ca_cert)
    bundle = x509.load_pem_x509_certificates(renewed.ca_cert)
    assert [c.subject for c in bundle][1:] == [load(certs.ca_cert).subject]
    load(renewed.cert).verify_directly_issued_by(bundle[0])  # signed by the new CA
    load(certs.cert).verify_directly_issued_by(bundle[1])  # the old cert is still trusted
    third = tls.generate(NAMES, previous_bundle=renewed.ca_cert + b"garbage")
    assert len(x509.load_pem_x509_certificates(third.ca_cert)) == 3
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=95)
    assert tls.ca_bundle(third.ca_cert, later) == b""  # expired CAs leave the bundle
    assert tls.ca_bundle(b"not pem", later) == b""


def test_needs_renewal(certs: tls.WebhookCertificates) -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert tls.needs_renewal(certs.cert, NAMES) is False
    assert tls.needs_renewal(certs.cert, NAMES[:2]) is False  # a subset is covered
    assert tls.needs_renewal(certs.cert, [*NAMES, "new-name.captchakeys.svc"]) is True
    assert tls.needs_renewal(certs.cert, ["10.0.0.1"]) is True
    days = datetime.timedelta(days=1)
    assert tls.needs_renewal(certs.cert, NAMES, now=now + 55 * days) is False
    assert tls.needs_renewal(certs.cert, NAMES, now=now + 61 * days) is True
    assert tls.needs_renewal(certs.cert, NAMES, now=now + 100 * days) is True
    assert tls.needs_renewal(b"not a certificate", NAMES) is True
    assert tls.needs_renewal(certs.ca_cert, NAMES) is True  # no SANs at all


# --- a real handshake ------------------------------------------------------------


@pytest.fixture
def server(certs: tls.WebhookCertificates, tmp_path: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 answering each connection with b"ok"; yields its port."""
    (tmp_path / "tls.crt").write_bytes(certs.cert)
    (tmp_path / "tls.key").write_bytes(certs.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()  # the client refused us: that is what some tests want

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def handshake(port: int, ca_pem: bytes, server_hostname: str) -> bytes:
    client = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=server_hostname) as conn,
    ):
        return conn.recv(2)


@pytest.mark.parametrize("hostname", [DNS_NAME, "127.0.0.1"])
def test_handshake_succeeds_trusting_only_the_generated_ca(
    server: int, certs: tls.WebhookCertificates, hostname: str
) -> None:
    assert handshake(server, certs.ca_cert, hostname) == b"ok"


def test_handshake_succeeds_with_strict_x509_verification(
    server: int, certs: tls.WebhookCertificates
) -> None:
    # Python >= 3.13 turns VERIFY_X509_STRICT on by default; stay compatible with it.
    client = ssl.create_default_context(cadata=certs.ca_cert.decode())
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection(("127.0.0.1", server), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=DNS_NAME) as conn,
    ):
        assert conn.recv(2) == b"ok"


def test_handshake_fails_with_another_ca(server: int) -> None:
    other = tls.generate(NAMES)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(server, other.ca_cert, DNS_NAME)


def test_handshake_fails_for_a_name_not_in_the_certificate(
    server: int, certs: tls.WebhookCertificates
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|match"):
        handshake(server, certs.ca_cert, "evil.example.com")
