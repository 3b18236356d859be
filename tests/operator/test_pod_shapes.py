"""Every pod shape a cluster sends, through the running webhook, checked as the cluster would.

Each pod is sent as the API server sends it (after defaulting and the ServiceAccount
admission plugin: ``tests.rig.apiserver``), in an AdmissionReview over HTTPS to the
running operator; the patched pod is validated against the strict Kubernetes OpenAPI
schema of the oldest and the newest supported version (1.29, 1.37).

Covers:
- identity (issue 11 item 1): root at pod level, root at container level, a pod user plus
  a container with its own user (an exporter's nobody), fsGroup only, supplementalGroups
  already set, runAsGroup set: the agent runs as 65532:65532 and non-root in each, and
  the key it writes is readable by every container that receives it and by nobody else.
  That last part is checked for real: the key is written by ``agent.keyfile`` in a
  process running as the agent's uid/gid/groups into a tmpfs prepared as the kubelet
  prepares an emptyDir (0777; setgid to fsGroup when the pod has one), then read by a
  process with each container's identity (resolved by the kubelet's rules: container
  fields over the pod's, plus fsGroup and supplementalGroups), and refused to a stranger;
- reinvocation (item 2): a later webhook adds a container, the API server reinvokes ours,
  the new container gets the mount and CAPTCHAAI_KEY_FILE; a further pass changes nothing;
- QoS (item 3): a Guaranteed pod is still Guaranteed, a Burstable one Burstable, every
  container has cpu and memory limits (what a ResourceQuota on limits.* requires) and the
  pod fits a quota sized for it; pod-level resources (1.32+, checked against 1.37) grow by
  the agent's and stay Guaranteed; the agent-resources annotation is applied, and a bad
  one is refused with the annotation's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import requests
from kubernetes.utils import parse_quantity

from agent.contract.pod import AGENT_CONTAINER, AGENT_GID, AGENT_UID
from tests.rig.apiserver import admission_chain, admission_review, as_admitted, default_container
from tests.rig.operator import RunningOperator
from tests.rig.scenario import Workload

SCHEMAS = ("1.29.0", "1.37.0")
IMAGE_UID = 10001  # the USER of an application image that sets one (unknown to the pod spec)
STRANGER = (4242, 4242)


def deployment_pod(workload: Workload, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A Deployment's pod as its ReplicaSet creates it: generateName, owner, labels."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "solver-7d9f8b6c4-",
            "namespace": workload.namespace,
            "labels": {
                "app": "solver",
                "pod-template-hash": "7d9f8b6c4",
                "captchakeys.io/inject": "true",
            },
            "annotations": {"captchakeys.io/binding": "captchaai"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "solver-7d9f8b6c4",
                    "uid": "0c6d1f5e-1111-4a2b-9c3d-5e6f7a8b9c0d",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": list(containers or [{"name": "app", "image": "solver:1.4"}]),
            **spec,
        },
    }


def webhook(op: RunningOperator) -> Any:
    async def call(pod: dict[str, Any]) -> dict[str, Any]:
        def post() -> dict[str, Any]:
            body = admission_review(pod)
            answer = requests.post(
                f"{op.url}/mutate-pods", json=body, verify=str(op.ca_file), timeout=10
            )
            answer.raise_for_status()
            response: dict[str, Any] = answer.json()["response"]
            assert response["uid"] == body["request"]["uid"]
            return response

        return await asyncio.to_thread(post)

    return call


async def admitted(op: RunningOperator, pod: dict[str, Any], *later: Any) -> dict[str, Any]:
    final, _ = await admission_chain(webhook(op), as_admitted(pod), later)
    for version in SCHEMAS:
        kubernetes_validate.validate(final, version, strict=True)
    return final


def agent_of(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["initContainers"] if c["name"] == AGENT_CONTAINER)


def receivers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c
        for c in pod["spec"]["containers"]
        if any(m["name"] == "captchaai-key" for m in c.get("volumeMounts", []))
    ]


# --- who runs as whom, and who can read the key ------------------------------------------


def identity(pod: dict[str, Any], container: dict[str, Any]) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary groups of a container's process, by the kubelet's rules."""
    pod_sc = pod["spec"].get("securityContext") or {}
    own = container.get("securityContext") or {}
    uid = own.get("runAsUser", pod_sc.get("runAsUser", IMAGE_UID))
    gid = own.get("runAsGroup", pod_sc.get("runAsGroup", 0))
    groups = ([pod_sc["fsGroup"]] if "fsGroup" in pod_sc else []) + list(
        pod_sc.get("supplementalGroups") or []
    )
    return uid, gid, groups


# Imports first: the interpreter's own files are not readable by the other users.
_DROP = (
    "import os\nfrom pathlib import Path\nfrom agent import keyfile\n"
    "os.setgroups({groups}); os.setgid({gid}); os.setuid({uid})\n"
)


def run_as(who: tuple[int, int, list[int]], code: str) -> subprocess.CompletedProcess[str]:
    uid, gid, groups = who
    script = _DROP.format(uid=uid, gid=gid, groups=groups) + code
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


@contextlib.contextmanager
def empty_dir(pod: dict[str, Any]) -> Iterator[Path]:
    """An emptyDir{medium: Memory} as the kubelet makes it: tmpfs, 0777, setgid to fsGroup."""
    path = Path(tempfile.mkdtemp(prefix="captchaai-emptydir-"))
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        os.chmod(path, 0o777)  # noqa: S103 - as the kubelet makes an emptyDir.
        fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        if fs_group is not None:
            os.chown(path, -1, fs_group)
            os.chmod(path, 0o2777)  # noqa: S103 - setgid to fsGroup, as the kubelet does.
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)
        subprocess.run(["rm", "-rf", str(path)], check=True)


def assert_every_receiver_and_nobody_else_reads_the_key(pod: dict[str, Any]) -> None:
    agent = agent_of(pod)
    with empty_dir(pod) as directory:
        wrote = run_as(
            identity(pod, agent),
            (
                f"keyfile.write_key(Path({str(directory)!r}), 'api_key', 'k' * 32, version=1, "
                "source='secret/captchaai/dev', fetched_at='2026-01-01T00:00:00Z')\n"
            ),
        )
        assert wrote.returncode == 0, wrote.stderr
        read = f"print(open({str(directory / 'api_key')!r}).read() == 'k' * 32)\n"
        for container in receivers(pod):
            result = run_as(identity(pod, container), read)
            assert result.stdout.strip() == "True", (container["name"], result.stderr)
        stranger = run_as((*STRANGER, []), read)
        assert "PermissionError" in stranger.stderr, "the key must not be world-readable"


def exporter(uid: int, gid: int | None = None) -> dict[str, Any]:
    security = {"runAsUser": uid} | ({"runAsGroup": gid} if gid is not None else {})
    return {"name": "exporter", "image": "exporter:2", "securityContext": security}


IDENTITY_CASES: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "root at pod level": ({"runAsUser": 0}, [{"name": "app", "image": "legacy:1"}]),
    "root at container level": (
        {},
        [{"name": "app", "image": "legacy:1", "securityContext": {"runAsUser": 0}}],
    ),
    "pod user and a container with its own": (
        {"runAsUser": 1000},
        [{"name": "app", "image": "solver:1"}, exporter(65534, 65534)],
    ),
    "fsGroup only": ({"fsGroup": 2000}, [{"name": "app", "image": "solver:1"}]),
    "supplementalGroups already set": (
        {"runAsUser": 1000, "supplementalGroups": [3000]},
        [{"name": "app", "image": "solver:1"}, exporter(65534)],
    ),
    "runAsGroup set": (
        {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True},
        [{"name": "app", "image": "solver:1"}, exporter(2000, 5000)],
    ),
}


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to each container's uid needs root")
async def test_the_agent_has_its_own_identity_and_every_receiver_reads_the_key(
    operator: RunningOperator, workload: Workload
) -> None:
    await workload.create_binding("captchaai")
    for case, (security, containers) in IDENTITY_CASES.items():
        pod = await admitted(
            operator, deployment_pod(workload, *containers, securityContext=dict(security))
        )
        agent = agent_of(pod)["securityContext"]
        assert (agent["runAsUser"], agent["runAsGroup"]) == (AGENT_UID, AGENT_GID), case
        assert agent["runAsNonRoot"] is True, case
        assert identity(pod, agent_of(pod))[0] != 0, case
        assert len(receivers(pod)) == len(containers), case
        for key, value in security.items():  # the pod's own choices are kept
            if key != "supplementalGroups":
                assert pod["spec"]["securityContext"][key] == value, case
        assert set(security.get("supplementalGroups", [])) <= set(
            pod["spec"]["securityContext"]["supplementalGroups"]
        ), case
        assert_every_receiver_and_nobody_else_reads_the_key(pod)


# --- reinvocation -----------------------------------------------------------------------


def mesh_webhook(pod: dict[str, Any]) -> dict[str, Any]:
    """A later mutating webhook (a service mesh's) that adds a container, defaulted."""
    proxy = default_container(
        {
            "name": "istio-proxy",
            "image": "proxyv2:1.24",
            "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}],
        }
    )
    pod["spec"]["containers"].append(proxy)
    return pod


async def test_reinvocation_gives_the_key_to_a_container_a_later_webhook_added(
    operator: RunningOperator, workload: Workload
) -> None:
    await workload.create_binding("captchaai", file={"name": "captcha.key"})
    call = webhook(operator)
    pod, calls = await admission_chain(call, as_admitted(deployment_pod(workload)), [mesh_webhook])
    assert calls == 2
    for version in SCHEMAS:
        kubernetes_validate.validate(pod, version, strict=True)
    proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    assert {"name": "CAPTCHAAI_KEY_FILE", "value": "/var/run/captchaai/captcha.key"} in proxy["env"]
    assert {"name": "captchaai-key", "mountPath": "/var/run/captchaai", "readOnly": True} in (
        proxy["volumeMounts"]
    )
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [AGENT_CONTAINER]
    again = await call(pod)
    assert again["allowed"]
    assert "patch" not in again  # idempotent: nothing left to add.


# --- resources and the QoS class --------------------------------------------------------


def sized(name: str, cpu: str, memory: str, *, guaranteed: bool) -> dict[str, Any]:
    limits = {"cpu": cpu, "memory": memory}
    requests_ = dict(limits) if guaranteed else {"cpu": "10m", "memory": "16Mi"}
    return {
        "name": name,
        "image": f"{name}:1",
        "resources": {"requests": requests_, "limits": limits},
    }


def every_container(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def assert_quota_admits(pod: dict[str, Any], hard: dict[str, str]) -> None:
    """What the ResourceQuota admission plugin checks for ``limits.cpu``/``limits.memory``."""
    for resource, allowed in hard.items():
        name = resource.removeprefix("limits.")
        values = [c["resources"].get("limits", {}).get(name) for c in every_container(pod)]
        assert None not in values, f"a container without {resource}: the quota refuses the pod"
        assert sum(parse_quantity(v) for v in values) <= parse_quantity(allowed), resource


async def test_qos_class_is_kept_and_limits_quotas_admit_the_pod(
    operator: RunningOperator, workload: Workload
) -> None:
    await workload.create_binding("captchaai")
    guaranteed = await admitted(
        operator,
        deployment_pod(
            workload,
            sized("app", "500m", "256Mi", guaranteed=True),
            sized("worker", "1", "1Gi", guaranteed=True),
        ),
    )
    for container in every_container(guaranteed):
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], container["name"]  # Guaranteed
        assert set(resources["limits"]) == {"cpu", "memory"}, container["name"]
    assert_quota_admits(guaranteed, {"limits.cpu": "2", "limits.memory": "2Gi"})

    burstable = await admitted(
        operator, deployment_pod(workload, sized("app", "500m", "256Mi", guaranteed=False))
    )
    agent = agent_of(burstable)["resources"]
    assert agent["requests"] != agent["limits"]  # the configured, cheaper requests
    assert_quota_admits(burstable, {"limits.cpu": "1", "limits.memory": "512Mi"})

    # Pod-level resources (1.32+): they must cover the agent too, and decide the class.
    both = {"cpu": "1", "memory": "1Gi"}
    pod_level = deployment_pod(workload, resources={"requests": dict(both), "limits": both})
    final, _ = await admission_chain(webhook(operator), as_admitted(pod_level))
    kubernetes_validate.validate(final, "1.37.0", strict=True)
    pod_resources = final["spec"]["resources"]
    assert pod_resources["requests"] == pod_resources["limits"]  # still Guaranteed
    agent = agent_of(final)["resources"]
    assert parse_quantity(pod_resources["limits"]["cpu"]) == 1 + parse_quantity(
        agent["limits"]["cpu"]
    )

    custom = deployment_pod(workload, sized("app", "500m", "256Mi", guaranteed=True))
    custom["metadata"]["annotations"]["captchakeys.io/agent-resources"] = (
        '{"limits": {"cpu": "300m", "memory": "128Mi"}}'
    )
    agent = agent_of(await admitted(operator, custom))["resources"]
    assert agent == {
        "requests": {"cpu": "300m", "memory": "128Mi"},
        "limits": {"cpu": "300m", "memory": "128Mi"},
    }

    custom["metadata"]["annotations"]["captchakeys.io/agent-resources"] = '{"limits": {"cpu": "x"}}'
    answer = await webhook(operator)(as_admitted(custom))
    assert not answer["allowed"]
    assert "captchakeys.io/agent-resources.limits.cpu: 'x'" in answer["status"]["message"]
