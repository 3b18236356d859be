"""The product on a real cluster: injection, the key in the pod, rotation without restart.

Covers: a labelled pod gets the native sidecar and starts only once the key is there;
the application container reads the key Vault holds; ``captchakey rotate`` moves every
consumer to the new version and names the old one as safe to revoke; the pod never restarts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import hvac
import pytest
from kubernetes import client
from kubernetes.stream import stream

pytestmark = pytest.mark.e2e
ROLE = os.environ.get("CAPTCHAKEY_E2E_ROLE", "captcha-worker-dev")  # scripts/vault-setup.sh


def test_injection_and_rotation_on_a_real_cluster(cluster: client.ApiClient) -> None:
    core, custom = client.CoreV1Api(cluster), client.CustomObjectsApi(cluster)
    namespace = f"ckb-e2e-{uuid.uuid4().hex[:6]}"
    vault = hvac.Client(
        os.environ["CAPTCHAKEY_E2E_VAULT_ADDR"], os.environ["CAPTCHAKEY_E2E_VAULT_TOKEN"]
    )
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    vault.secrets.kv.v2.create_or_update_secret(path="captchaai/dev", secret={"api_key": first})
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        custom.create_namespaced_custom_object(
            "captchakeys.io",
            "v1alpha1",
            namespace,
            "captchakeybindings",
            {
                "apiVersion": "captchakeys.io/v1alpha1",
                "kind": "CaptchaKeyBinding",
                "metadata": {"name": "captchaai"},
                "spec": {"environment": "dev", "vault": {"auth": {"role": ROLE}}},
            },
        )
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {
                    "name": "solver",
                    "labels": {"captchakeys.io/inject": "true"},
                    "annotations": {"captchakeys.io/binding": "captchaai"},
                },
                "spec": {
                    "containers": [
                        {"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}
                    ]
                },
            },
        )
        pod = _wait_running(core, namespace, "solver")
        assert [c.name for c in pod.spec.init_containers] == ["captcha-key-agent"]
        assert _read_key(core, namespace) == first
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("captchakey")),
                "rotate",
                "--binding",
                "captchaai",
                "-n",
                namespace,
                "--new-key-stdin",
                "--timeout",
                "120",
            ],
            input=second,
            capture_output=True,
            text=True,
            timeout=180,
            env={
                **os.environ,
                "VAULT_ADDR": os.environ["CAPTCHAKEY_E2E_VAULT_ADDR"],
                "VAULT_TOKEN": os.environ["CAPTCHAKEY_E2E_VAULT_TOKEN"],
            },
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "is safe to revoke" in result.stdout
        assert _read_key(core, namespace) == second
        restarts = (
            core.read_namespaced_pod("solver", namespace).status.container_statuses[0].restart_count
        )
        assert restarts == 0
    finally:
        core.delete_namespace(namespace)


def _wait_running(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase == "Running":
            return pod
        time.sleep(1)
    raise AssertionError(f"pod {namespace}/{name} did not start: {pod.status}")


def _read_key(core: client.CoreV1Api, namespace: str) -> str:
    output: str = stream(
        core.connect_get_namespaced_pod_exec,
        "solver",
        namespace,
        container="app",
        command=["sh", "-c", "cat $CAPTCHAAI_KEY_FILE"],
        stdout=True,
        stderr=True,
    )
    return output.strip()
