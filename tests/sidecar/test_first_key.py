"""The injected agent's first key, written before kopf is imported (``agent.sidecar.firstkey``).

Covers, with the real ``captchakey agent --binding`` process, the rig's API server and a
real OpenBao. What the process imports is watched from outside the product: a wrapper
around the real entry point adds an audit hook that, when kopf starts loading, logs
whether the key file is already on disk.

- a readable, valid binding: the key is on disk before kopf is imported; the one plain
  read is a GET of the binding itself and the agent only ever reads; kopf's first event
  (the same binding again) neither logs in nor writes again, and the watch carries on
  from there (a rotation announced later is applied, still on the first login);
- a binding the platform's policy refuses (a Vault address not on the allow-list): the
  fast path steps aside, kopf's path reports it exactly once as it always has, and the
  refused address never sees a connection; fixed, the binding is followed;
- Vault unreachable at start: the failure is reported as any refresh failure is,
  ``/readyz`` stays 503, the watch starts anyway and, once the binding names a Vault
  that answers, the key lands;
- a binding that does not exist yet: kopf is loaded with no key on disk and the binding
  is followed once it is created;
- a policy that denies the read while the binding's status announces a newer version
  than the one left on disk by an earlier container: ``/readyz`` never says ready with
  the old key, and says ready with the new one once the policy allows it;
- a SIGTERM the moment the first key is on disk (before kopf has taken the signals
  over) stops the agent as gracefully as one later: exit code 0, no traceback;
- the plain read itself (:func:`read_binding`, :func:`api_access`): a kubeconfig in JSON
  or YAML with a token; ``None``, so kopf's path decides, for an absent binding, a
  refused token, client certificates, several kubeconfig files or none; the token
  never in a repr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

import pytest
import requests
import yaml

from agent import keyfile
from agent.contract import agentstatus, pod
from agent.sidecar.firstkey import api_access, read_binding
from tests.rig.helpers import free_port, wait_until
from tests.rig.kube import BaoAuth, RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.scenario import BINDINGS_PATH, Workload
from tests.sidecar.process import AgentProcess, Listener, agent_env, running

KEY_1 = "1" * 32
KEY_2 = "2" * 32
INVALID = agentstatus.INVALID_BINDING

# The real entry point, with an audit hook that says whether the key file exists at the
# moment kopf starts loading (one JSON line on stderr, among the agent's own).
WATCHED = (
    sys.executable,
    "-c",
    """
import json, os, sys
sys.argv = sys.argv[1:]  # the console script's path, "agent", its options
key = os.path.join(sys.argv[sys.argv.index("--out-dir") + 1], "api_key")
def on_import(event, args):
    if event == "import" and args[0] == "kopf":
        line = {"message": "kopf imported", "key_on_disk": os.path.exists(key)}
        print(json.dumps(line), file=sys.stderr, flush=True)
sys.addaudithook(on_import)
from agent.cli import main
main()
""",
)


def workload_in(
    kube: RealisticKubernetes, openbao: OpenBaoServer, auth: BaoAuth, tmp: Path
) -> Workload:
    return Workload(kube, openbao, auth, tmp, namespace="solver-dev")


def start(
    workload: Workload, out: Path, *, allowed: str | None = None
) -> tuple[list[str], dict[str, str], str]:
    """The injected agent's options and environment (as the webhook sets them), and its
    API token; ``allowed`` lists the Vault addresses the binding may name."""
    token = workload.api_token()
    kubeconfig = workload.kube.kubeconfig(workload.tmp / "kubeconfig", token=token)
    args = [
        *("--binding", "captchaai"),
        *("--namespace", workload.namespace),
        *("--vault-addr", workload.openbao.addr),
        *("--token-file", str(workload.token_file)),
        *("--out-dir", str(out)),
        *("--allowed-vault-addrs", allowed or workload.openbao.addr),
        "--allow-insecure-http",
        *("--backoff-cap", "1"),
    ]
    return args, agent_env(KUBECONFIG=str(kubeconfig)), token


def create_binding_naming(workload: Workload, address: str) -> None:
    """The workload's binding, with ``spec.vault.address`` set to ``address``."""
    body = workload.binding("captchaai")
    body["spec"]["vault"]["address"] = address
    asyncio.run(workload.kube.call("POST", BINDINGS_PATH.format(ns=workload.namespace), body))


def kopf_imported(agent: AgentProcess) -> dict[str, object]:
    wait_until(lambda: bool(agent.logged("kopf imported")), timeout=30)
    (line,) = agent.logged("kopf imported")
    return line


def readyz(agent: AgentProcess) -> int | None:
    try:
        return requests.get(f"http://127.0.0.1:{agent.port}/readyz", timeout=2).status_code
    except requests.RequestException:
        return None  # not listening yet: the health server starts with the watch.


def test_the_key_is_on_disk_before_kopf_is_imported(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_openbao: BaoAuth, tmp_path: Path
) -> None:
    workload = workload_in(kube, openbao, kube_openbao, tmp_path)
    workload.put_key(KEY_1)
    asyncio.run(workload.create_binding("captchaai"))
    out = tmp_path / "keys"
    out.mkdir()
    args, env, token = start(workload, out)
    with running(args, env, tmp_path / "log", prefix=WATCHED) as agent:
        assert kopf_imported(agent)["key_on_disk"] is True
        assert (out / "api_key").read_text() == KEY_1
        wait_until(lambda: agent.status().get("ready") is True, timeout=30)

        version = workload.put_key(KEY_2)
        announce = {"status": {"currentVersion": version, "rotationSpreadSeconds": 0}}
        asyncio.run(workload.patch_binding("captchaai", announce, status=True))
        wait_until(lambda: (out / "api_key").read_text() == KEY_2, timeout=30)
        wait_until(lambda: agent.status().get("version") == version, timeout=30)
        # kopf's first event was the same binding again: no second login, no rewrite.
        assert agent.metric("captchakey_agent_vault_logins_total", result="ok") == 1
        assert agent.metric("captchakey_agent_refreshes_total", result="changed") == 2
    sent = kube.requests_by(token)
    bindings = BINDINGS_PATH.format(ns=workload.namespace)
    first = next(r for r in sent if r.path.startswith(bindings))
    assert (first.method, first.path, first.watch) == ("GET", f"{bindings}/captchaai", False)
    assert any(r.watch for r in sent), "the watch never started"
    assert {r.method for r in sent} == {"GET"}, "the agent wrote to the API"
    assert KEY_1 not in agent.log.read_text()


def test_a_binding_the_policy_refuses_is_reported_once_by_the_watch(
    kube: RealisticKubernetes,
    openbao: OpenBaoServer,
    kube_openbao: BaoAuth,
    tmp_path: Path,
    elsewhere: Listener,
) -> None:
    workload = workload_in(kube, openbao, kube_openbao, tmp_path)
    workload.put_key(KEY_1)
    redirect = f"http://127.0.0.1:{elsewhere.port}"
    create_binding_naming(workload, redirect)
    out = tmp_path / "keys"
    out.mkdir()
    args, env, _ = start(workload, out)
    with running(args, env, tmp_path / "log", prefix=WATCHED) as agent:
        assert kopf_imported(agent)["key_on_disk"] is False
        wait_until(lambda: agent.status().get("problem") == INVALID, timeout=30)
        assert readyz(agent) == 503
        # kopf's own line for each event handled: its first is the binding as created.
        wait_until(lambda: bool(agent.logged("on_binding' succeeded")), timeout=30)
        refusals = agent.logged(f"spec.vault.address {redirect!r} is not allowed")
        assert len(refusals) == 1, refusals  # said once, on the watch's first event.
        assert refusals[0]["level"] == "error"
        assert "the last good key stays in place" in refusals[0]["message"]
        assert not (out / "api_key").exists()

        allowed = {"spec": {"vault": {"address": openbao.addr}}}
        asyncio.run(workload.patch_binding("captchaai", allowed))
        wait_until(lambda: (out / "api_key").is_file(), timeout=30)
        assert (out / "api_key").read_text() == KEY_1
    assert elsewhere.connections == 0, "the agent connected to the address it must refuse"


def test_vault_unreachable_at_start_is_reported_and_the_watch_starts(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_openbao: BaoAuth, tmp_path: Path
) -> None:
    workload = workload_in(kube, openbao, kube_openbao, tmp_path)
    workload.put_key(KEY_1)
    away = f"http://127.0.0.1:{free_port()}"  # nothing listens there.
    create_binding_naming(workload, away)
    out = tmp_path / "keys"
    out.mkdir()
    args, env, _ = start(workload, out, allowed=f"{away},{openbao.addr}")
    with running(args, env, tmp_path / "log", prefix=WATCHED) as agent:
        assert kopf_imported(agent)["key_on_disk"] is False
        wait_until(lambda: agent.reason() == agentstatus.VAULT_UNREACHABLE, timeout=30)
        assert readyz(agent) == 503
        (failure, *_) = agent.logged("key refresh failed")
        assert failure["reason"] == agentstatus.VAULT_UNREACHABLE
        assert "the last good key stays in place" in failure["message"]

        asyncio.run(
            workload.patch_binding("captchaai", {"spec": {"vault": {"address": openbao.addr}}})
        )
        wait_until(lambda: (out / "api_key").is_file(), timeout=30)
        wait_until(lambda: readyz(agent) == 200, timeout=30)
        assert (out / "api_key").read_text() == KEY_1


def test_a_binding_created_after_the_start_is_followed(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_openbao: BaoAuth, tmp_path: Path
) -> None:
    workload = workload_in(kube, openbao, kube_openbao, tmp_path)
    workload.put_key(KEY_1)
    out = tmp_path / "keys"
    out.mkdir()
    args, env, _ = start(workload, out)
    with running(args, env, tmp_path / "log", prefix=WATCHED) as agent:
        assert kopf_imported(agent)["key_on_disk"] is False
        wait_until(lambda: agent.status().get("binding") == "captchaai", timeout=30)
        assert readyz(agent) == 503
        asyncio.run(workload.create_binding("captchaai"))
        wait_until(lambda: (out / "api_key").is_file(), timeout=30)
        assert (out / "api_key").read_text() == KEY_1


def test_readiness_never_vouches_for_the_key_an_earlier_container_left(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_openbao: BaoAuth, tmp_path: Path
) -> None:
    workload = workload_in(kube, openbao, kube_openbao, tmp_path)
    workload.put_key(KEY_1)
    version = workload.put_key(KEY_2)
    asyncio.run(workload.create_binding("captchaai"))
    announce = {"status": {"currentVersion": version, "rotationSpreadSeconds": 0}}
    asyncio.run(workload.patch_binding("captchaai", announce, status=True))
    out = tmp_path / "keys"
    out.mkdir()
    # What the pod's volume holds after a container restart: version 1 and its metadata.
    keyfile.write_key(
        out, "api_key", KEY_1, version=1, source="earlier container", fetched_at="then"
    )
    vault = openbao.client().sys
    policy = vault.read_policy(workload.role)["data"]["rules"]
    vault.create_or_update_policy(
        workload.role, 'path "secret/data/elsewhere" { capabilities = ["read"] }'
    )
    args, env, _ = start(workload, out)
    with running(args, env, tmp_path / "log", prefix=WATCHED) as agent:
        wait_until(lambda: agent.reason() == agentstatus.VAULT_FORBIDDEN, timeout=30)
        assert readyz(agent) == 503
        assert agent.status()["version"] == 1
        assert agent.status()["desiredVersion"] == version

        vault.create_or_update_policy(workload.role, policy)
        seen: list[tuple[int | None, str]] = []

        def ready_with_the_new_key() -> bool:
            seen.append((readyz(agent), (out / "api_key").read_text()))
            return seen[-1][0] == 200

        wait_until(ready_with_the_new_key, timeout=30)
    assert all(key == KEY_2 for code, key in seen if code == 200), seen


def test_a_sigterm_as_the_first_key_lands_is_a_graceful_stop(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_openbao: BaoAuth, tmp_path: Path
) -> None:
    workload = workload_in(kube, openbao, kube_openbao, tmp_path)
    workload.put_key(KEY_1)
    asyncio.run(workload.create_binding("captchaai"))
    out = tmp_path / "keys"
    out.mkdir()
    args, env, _ = start(workload, out)
    with running(args, env, tmp_path / "log", prefix=WATCHED):  # asserts exit code 0.
        wait_until(lambda: (out / "api_key").is_file(), timeout=30, step=0.002)
    assert (out / "api_key").read_text() == KEY_1
    assert "Traceback" not in (tmp_path / "log").read_text()


def test_the_plain_read_takes_the_kubeconfigs_kopf_reads_and_leaves_the_rest(
    kube: RealisticKubernetes, tmp_path: Path
) -> None:
    if Path(pod.KUBE_API_DIR, "token").exists():
        pytest.skip("this runs in a pod: its service account comes first, as for kopf")
    binding = {
        "apiVersion": "captchakeys.io/v1alpha1",
        "kind": "CaptchaKeyBinding",
        "metadata": {"name": "captchaai", "namespace": "solver-dev"},
        "spec": {"environment": "dev"},
    }
    asyncio.run(kube.call("POST", BINDINGS_PATH.format(ns="solver-dev"), binding))
    as_json = kube.kubeconfig(tmp_path / "kubeconfig.json")
    config = json.loads(as_json.read_text())
    as_yaml = tmp_path / "kubeconfig.yaml"
    as_yaml.write_text(yaml.safe_dump(config))
    for path in (as_json, as_yaml):
        access = api_access({"KUBECONFIG": str(path)})
        assert access is not None, path
        assert kube.admin_token not in repr(access)
        read = read_binding("captchaai", "solver-dev", access)
        assert read is not None
        assert read["spec"] == {"environment": "dev"}

    assert read_binding("absent", "solver-dev", access) is None  # 404
    assert read_binding("captchaai", "solver-dev", dataclasses.replace(access, token="x")) is None
    config["users"][0]["user"] = {"client-certificate": "c.pem", "client-key": "k.pem"}
    certificates = tmp_path / "certificates.json"
    certificates.write_text(json.dumps(config))
    assert api_access({"KUBECONFIG": str(certificates)}) is None
    assert api_access({"KUBECONFIG": f"{as_json}:{as_yaml}"}) is None
    assert api_access({"KUBECONFIG": str(tmp_path / "absent")}) is None
