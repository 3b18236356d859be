"""The self-signed webhook chain kept in one Secret, as two operator replicas use it.

Covers: the first replica creates the Secret and writes the CA into both webhook
configurations; a second replica serves the very same chain; a serving certificate that
is due is renewed under the same CA (so the caBundle in the API server stays valid), and
the files on disk follow.
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

from cryptography import x509

from agent.operator import tls
from agent.operator.kube import KubeApi
from tests.operator.conftest import OPERATOR_NS, webhook_configurations
from tests.rig.kube import RealisticKubernetes

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


async def test_replicas_share_one_chain_and_renew_under_the_same_ca(
    kube: RealisticKubernetes, tmp_path: Path
) -> None:
    await webhook_configurations(kube)
    first, second = replica(kube, tmp_path / "a"), replica(kube, tmp_path / "b")
    await first.refresh("captcha-key-agent", "captcha-key-agent")
    await second.refresh("captcha-key-agent", "captcha-key-agent")
    assert first.certfile.read_bytes() == second.certfile.read_bytes()
    ca = await ca_bundle(kube)
    issuer = x509.load_pem_x509_certificate(ca)
    x509.load_pem_x509_certificate(first.certfile.read_bytes()).verify_directly_issued_by(issuer)

    # Make the stored serving certificate due: issued long ago, about to expire.
    secret_path = f"/api/v1/namespaces/{OPERATOR_NS}/secrets/{SECRET}"
    stored = (await kube.call("GET", secret_path))["data"]
    ca_pair = (base64.b64decode(stored["ca.crt"]), base64.b64decode(stored["ca.key"]))
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=350)
    old = tls.generate(NAMES, ca=ca_pair, now=long_ago)
    await kube.call(
        "PATCH",
        secret_path,
        {
            "data": {
                "tls.crt": base64.b64encode(old.cert).decode(),
                "tls.key": base64.b64encode(old.key).decode(),
            }
        },
        content_type="application/merge-patch+json",
    )

    await second.refresh("captcha-key-agent", "captcha-key-agent")
    renewed = x509.load_pem_x509_certificate(second.certfile.read_bytes())
    assert not tls.needs_renewal(second.certfile.read_bytes(), NAMES)
    renewed.verify_directly_issued_by(issuer)  # same CA ...
    assert await ca_bundle(kube) == ca  # ... so the caBundle did not have to change.
    await first.refresh("captcha-key-agent", "captcha-key-agent")
    assert first.certfile.read_bytes() == second.certfile.read_bytes()
