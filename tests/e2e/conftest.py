"""Real-cluster end-to-end tests (kind or any cluster), kept apart from the rest of the suite.

They run only where a cluster is reachable *and* prepared (see ``docs/e2e.md``): the chart
installed with an image the cluster can pull, and an OpenBao/Vault reachable both from the
cluster and from the test (``CAPTCHAKEY_E2E_VAULT_ADDR``, ``CAPTCHAKEY_E2E_VAULT_TOKEN``).
Anywhere else they skip, each with the reason, never silently pass.
"""

from __future__ import annotations

import os

import pytest
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException


@pytest.fixture(scope="session")
def cluster() -> client.ApiClient:
    try:
        config.load_kube_config()
        api = client.ApiClient()
        client.VersionApi(api).get_code(_request_timeout=5)
    except (ConfigException, OSError, client.exceptions.ApiException) as exc:
        reason = type(exc).__name__
        pytest.skip(f"no reachable Kubernetes cluster ({reason}): create one, see docs/e2e.md")
    except Exception as exc:  # urllib3 connection errors and friends: still "no cluster".
        pytest.skip(f"no reachable Kubernetes cluster ({type(exc).__name__}: {exc})")
    crds = client.ApiextensionsV1Api(api).list_custom_resource_definition()
    if not any(c.metadata.name == "captchakeybindings.captchakeys.io" for c in crds.items):
        pytest.skip(
            "the cluster has no CaptchaKeyBinding CRD: helm install the chart first (docs/e2e.md)"
        )
    if not os.environ.get("CAPTCHAKEY_E2E_VAULT_ADDR"):
        pytest.skip("set CAPTCHAKEY_E2E_VAULT_ADDR and CAPTCHAKEY_E2E_VAULT_TOKEN (docs/e2e.md)")
    return api
