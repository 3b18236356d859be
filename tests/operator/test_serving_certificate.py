"""The self-signed webhook chain kept in one Secret, as two operator replicas use it.

Covers: the first replica creates the Secret (ca.crt, tls.crt, tls.key: never a CA private
key) and writes the CA into both webhook configurations; a second replica serves the very
same chain; a serving certificate that is due is renewed under a new CA while the caBundle
keeps the previous CA, so the replica still serving the previous certificate stays
trusted until its next refresh, and the files on disk follow; a Secret left by an older
release with a stored ``ca.key`` is re-issued and the key removed from it.
"""

from __future__ import annotations

import base64
import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from agent.kube import KubeApi
from agent.operator import tls
from tests.rig.kube import RealisticKubernetes
from tests.rig.operator import OPERATOR_NS, webhook_configurations

NAMES = tls.service_names("captcha-key-agent-webhook", OPERATOR_NS)
SECRET = "captcha-key-agent-webhook-tls"


def replica(kube: RealisticKubernetes, workdir: Path) -> tls.ServingCertificate:
    workdir.mkdir()
    api = KubeApi.connect(kube.api_url, kube.admin_token)
    return tls.ServingCertificate(api, OPERATOR_NS, SECRET, NAMES, workdir)


async def ca_bundle(kube: RealisticKubernetes) -> bytes:
    config = await kube.call(
        "GET",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/captcha-key-agent",
    )
    return base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])


SECRET_PATH = f"/api/v1/namespaces/{OPERATOR_NS}/secrets/{SECRET}"


async def stored(kube: RealisticKubernetes) -> dict[str, bytes]:
    data = (await kube.call("GET", SECRET_PATH))["data"]
    return {k: base64.b64decode(v) for k, v in data.items()}


def trusted(bundle: bytes, cert_pem: bytes) -> bool:
    """Whether a client trusting ``bundle`` accepts ``cert_pem`` (a real chain check)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    for ca in x509.load_pem_x509_certificates(bundle):
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, InvalidSignature):  # another issuer name, or another key.
            pass
        else:
            return True
    return False


async def test_replicas_share_one_chain_and_renew_under_a_new_ca_with_overlap(
    kube: RealisticKubernetes, tmp_path: Path
) -> None:
    await webhook_configurations(kube)
    first, second = replica(kube, tmp_path / "a"), replica(kube, tmp_path / "b")
    await first.refresh("captcha-key-agent", "captcha-key-agent")
    await second.refresh("captcha-key-agent", "captcha-key-agent")
    assert first.certfile.read_bytes() == second.certfile.read_bytes()
    assert set(await stored(kube)) == {"ca.crt", "tls.crt", "tls.key"}  # no CA key at rest
    ca = await ca_bundle(kube)
    assert trusted(ca, first.certfile.read_bytes())

    # Make the stored serving certificate due: issued long ago, about to expire.
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=70)
    old = tls.generate(NAMES, now=long_ago, previous_bundle=ca)
    await kube.call(
        "PATCH",
        SECRET_PATH,
        {"data": {k: base64.b64encode(v).decode() for k, v in old.as_secret_data().items()}},
        content_type="application/merge-patch+json",
    )
    served_by_first = first.certfile.read_bytes()  # first has not refreshed since.

    await second.refresh("captcha-key-agent", "captcha-key-agent")
    renewed = second.certfile.read_bytes()
    assert renewed not in (old.cert, served_by_first)
    assert not tls.needs_renewal(renewed, NAMES)
    bundle = await ca_bundle(kube)
    assert trusted(bundle, renewed)
    assert trusted(bundle, served_by_first)  # the replica that has not refreshed is trusted
    assert "ca.key" not in await stored(kube)
    await first.refresh("captcha-key-agent", "captcha-key-agent")
    assert first.certfile.read_bytes() == renewed


async def test_a_stored_ca_key_from_an_older_release_is_dropped(
    kube: RealisticKubernetes, tmp_path: Path
) -> None:
    await webhook_configurations(kube)
    first = replica(kube, tmp_path / "a")
    await first.refresh("captcha-key-agent", "captcha-key-agent")
    legacy = {**(await stored(kube)), "ca.key": b"-----BEGIN PRIVATE KEY-----\n..."}
    await kube.call(
        "PATCH",
        SECRET_PATH,
        {"data": {k: base64.b64encode(v).decode() for k, v in legacy.items()}},
        content_type="application/merge-patch+json",
    )
    served_before = first.certfile.read_bytes()
    await first.refresh("captcha-key-agent", "captcha-key-agent")
    assert set(await stored(kube)) == {"ca.crt", "tls.crt", "tls.key"}
    assert first.certfile.read_bytes() != served_before
    assert trusted(await ca_bundle(kube), served_before)  # overlap for the other replicas
    ssl.create_default_context(cadata=(await ca_bundle(kube)).decode())  # a loadable bundle
