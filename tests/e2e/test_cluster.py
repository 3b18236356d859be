"""The product on a real cluster: injection, the key in the pod, rotation without restart.

Correct by construction: it uses what the README's install creates and tells a user to
create, never names of its own. The namespace, service account and binding are those of
``manifests/examples/binding-dev.yaml`` and ``docs/examples/solver-deployment.yaml``
(``solver-dev``, ``solver``, ``captchaai-dev``), which ``scripts/vault-setup.sh`` binds by
default; the agent's RoleBinding is the chart's ``sidecar.rbac.bindings`` from the README's
flags. ``scripts/e2e-kind.sh`` prepares all of it on a kind cluster (docs/e2e.md).

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
from typing import Any

import hvac
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_BINDING = ROOT / "manifests" / "examples" / "binding-dev.yaml"
EXAMPLE_WORKLOAD = ROOT / "docs" / "examples" / "solver-deployment.yaml"
GROUP, VERSION, PLURAL = "captchakeys.io", "v1alpha1", "captchakeybindings"


def example_service_account() -> str:
    docs = [d for d in yaml.safe_load_all(EXAMPLE_WORKLOAD.read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    account: str = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    return account


def created_or_there(create: Any, *args: Any) -> None:
    """Create as the README says to; an object the user already created is fine."""
    try:
        create(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


def test_injection_and_rotation_on_a_real_cluster(cluster: client.ApiClient) -> None:
    core, custom = client.CoreV1Api(cluster), client.CustomObjectsApi(cluster)
    binding: dict[str, Any] = yaml.safe_load(EXAMPLE_BINDING.read_text())
    namespace, name = binding["metadata"]["namespace"], binding["metadata"]["name"]
    account = example_service_account()
    created_or_there(core.create_namespace, {"metadata": {"name": namespace}})
    created_or_there(
        core.create_namespaced_service_account, namespace, {"metadata": {"name": account}}
    )
    _assert_agent_may_read_bindings(cluster, namespace, account)
    created_or_there(
        custom.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, binding
    )
    vault = hvac.Client(
        os.environ["CAPTCHAKEY_E2E_VAULT_ADDR"], os.environ["CAPTCHAKEY_E2E_VAULT_TOKEN"]
    )
    first, second = uuid.uuid4().hex, uuid.uuid4().hex  # 32 lowercase hex, as CaptchaAI's.
    vault.secrets.kv.v2.create_or_update_secret(path="captchaai/dev", secret={"api_key": first})
    pod = f"solver-e2e-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {
                "name": pod,
                "labels": {"captchakeys.io/inject": "true"},
                "annotations": {"captchakeys.io/binding": name},
            },
            "spec": {
                "serviceAccountName": account,
                "containers": [
                    {"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}
                ],
            },
        },
    )
    try:
        running = _wait_running(core, namespace, pod)
        assert [c.name for c in running.spec.init_containers] == ["captcha-key-agent"]
        assert _read_key(core, namespace, pod) == first
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("captchakey")),
                "rotate",
                *("--binding", name),
                *("-n", namespace),
                "--new-key-stdin",
                *("--timeout", "120"),
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
        assert _read_key(core, namespace, pod) == second
        statuses = core.read_namespaced_pod(pod, namespace).status.container_statuses
        assert [s.restart_count for s in statuses] == [0]
    finally:
        core.delete_namespaced_pod(pod, namespace)


def _assert_agent_may_read_bindings(
    cluster: client.ApiClient, namespace: str, account: str
) -> None:
    """The README's helm flags give the agent's service account read access to bindings."""
    bindings = client.RbacAuthorizationV1Api(cluster).list_namespaced_role_binding(namespace)
    granted = [
        b.metadata.name
        for b in bindings.items
        if b.role_ref.kind == "ClusterRole"
        and b.role_ref.name.endswith("-sidecar")
        and any(s.kind == "ServiceAccount" and s.name == account for s in b.subjects or [])
    ]
    assert granted, (
        f"no RoleBinding in {namespace} lets {account} read its CaptchaKeyBinding: install the "
        f"chart with the README's --set 'sidecar.rbac.bindings[0].namespace={namespace}' "
        f"--set 'sidecar.rbac.bindings[0].serviceAccount={account}' (scripts/e2e-kind.sh does)"
    )


def _wait_running(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase == "Running":
            return pod
        time.sleep(1)
    raise AssertionError(f"pod {namespace}/{name} did not start: {pod.status}")


def _read_key(core: client.CoreV1Api, namespace: str, pod: str) -> str:
    output: str = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container="app",
        command=["sh", "-c", "cat $CAPTCHAAI_KEY_FILE"],
        stdout=True,
        stderr=True,
    )
    return output.strip()
