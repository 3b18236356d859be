"""The in-pod key agent driven by its CaptchaKeyBinding: real kopf, the rig's API, real OpenBao.

Covers:
- start: the agent logs in with Kubernetes auth (TokenReview through the rig) and writes the
  key; once the key file and its metadata are there, /readyz and /status say so too;
- rotation: a new Vault version announced in ``status.currentVersion`` is fetched and
  written, and an application's KeyReader callback fires;
- the rotation spread: the operator's ``status.rotationSpreadSeconds`` wins over the
  agent's own default (0: the key is read at once, however long the default); the wait
  is drawn once per announced version, so status updates during a rollout never restart
  it;
- pinning a version in the spec moves the file to that version, unpinning back to latest;
- JWT auth (offline validation) as the alternative login;
- binding deleted: the key stays, refreshes stop, a clear log line;
- Vault token rejected by TokenReview: a clear error, the last good key stays;
- the binding's spec.key rules: a key not in the captchaai format is never written, a
  good one is, and a lowered maxLength refuses it while the last good key stays;
- strictly read-only: every request the agent sent is a GET (get/list/watch) on bindings
  or discovery; never a write, never anything else.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import aiohttp
import pytest

from agent import keyfile
from agent.sidecar.bindingagent import BindingAgent
from captchakeys import KeyReader
from tests.rig.helpers import free_port
from tests.rig.kube import BaoAuth, RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.scenario import Workload, eventually, running_agent

# Discovery (which resources exist: /api, /api/v1, /apis, /apis/G, /apis/G/V) is open to
# every authenticated identity; kopf reads it to resolve the binding resource.
DISCOVERY = re.compile(r"^/api(/v1)?$|^/apis(/[^/]+){0,2}$")


def held(out: Path) -> int | None:
    meta = keyfile.read_metadata(out / "api_key")
    return meta.version if meta else None


async def test_agent_writes_the_key_at_start(workload: Workload, tmp_path: Path) -> None:
    workload.put_key("first-key-000000000000000000000")
    await workload.create_binding("captchaai")
    out = tmp_path / "keys"
    port = free_port()
    async with running_agent(workload, "captchaai", out, health=("127.0.0.1", port)):
        await eventually(lambda: held(out) == 1)
        assert (out / "api_key").read_text() == "first-key-000000000000000000000"
        # Asked the way the kubelet's probe asks: once the file is there, the agent says so.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                assert ready.status == 200
            async with http.get(f"http://127.0.0.1:{port}/status") as status:
                assert (await status.json())["version"] == 1


async def test_rotation_announced_in_status_reaches_the_reader(
    workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("old-key-1111111111111111111111")
    await workload.create_binding("captchaai")
    out = tmp_path / "keys"
    async with running_agent(workload, "captchaai", out):
        await eventually(lambda: held(out) == 1)
        rotated = threading.Event()
        seen: list[str] = []
        with KeyReader(out / "api_key") as reader:
            reader.on_change(lambda key: (seen.append(key), rotated.set()))
            version = workload.put_key("new-key-2222222222222222222222")
            await workload.patch_binding(
                "captchaai", {"status": {"currentVersion": version}}, status=True
            )
            await eventually(rotated.is_set)
            await eventually(lambda: reader.version == 2)
        assert seen == ["new-key-2222222222222222222222"]


async def test_the_published_spread_wins_and_is_drawn_once_per_version(
    workload: Workload, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.sidecar.bindingagent")
    workload.put_key("old-key-1111111111111111111111")
    await workload.create_binding("captchaai")
    out = tmp_path / "keys"
    # The agent's own default would wait up to an hour: only the published spread counts.
    async with running_agent(workload, "captchaai", out, spread=3600):
        await eventually(lambda: held(out) == 1)
        second = workload.put_key("new-key-2222222222222222222222")
        announce = {"currentVersion": second, "rotationSpreadSeconds": 3600}
        await workload.patch_binding("captchaai", {"status": announce}, status=True)
        for done in range(3):  # the operator's rollout updates while agents wait.
            progress = {"rollout": {"consumers": 3, "upToDate": done}}
            await workload.patch_binding("captchaai", {"status": progress}, status=True)
        third = workload.put_key("new-key-3333333333333333333333")
        announce = {"currentVersion": third, "rotationSpreadSeconds": 0}
        await workload.patch_binding("captchaai", {"status": announce}, status=True)
        await eventually(lambda: held(out) == third)
    waits = [r.getMessage() for r in caplog.records if "announced" in r.getMessage()]
    assert waits[0].startswith(f"version {second} announced: refreshing in ")
    assert waits[1:] == [f"version {third} announced: refreshing now"], waits


async def test_pin_and_unpin(workload: Workload, tmp_path: Path) -> None:
    for n in range(1, 4):
        workload.put_key(f"key-version-{n}-0000000000000000000")
    await workload.create_binding("captchaai")
    out = tmp_path / "keys"
    async with running_agent(workload, "captchaai", out):
        await eventually(lambda: held(out) == 3)
        await workload.patch_binding("captchaai", {"spec": {"kv": {"version": 1}}})
        await eventually(lambda: held(out) == 1)
        assert (out / "api_key").read_text() == "key-version-1-0000000000000000000"
        await workload.patch_binding("captchaai", {"spec": {"kv": {"version": None}}})
        await eventually(lambda: held(out) == 3)


async def test_jwt_auth_alternative(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_jwt_openbao: BaoAuth, tmp_path: Path
) -> None:
    workload = Workload(kube, openbao, kube_jwt_openbao, tmp_path, namespace="solver-jwt")
    workload.put_key("jwt-key-33333333333333333333333")
    await workload.create_binding("captchaai")
    out = tmp_path / "keys"
    async with running_agent(workload, "captchaai", out):
        await eventually(lambda: held(out) == 1)


async def test_binding_deleted_keeps_the_key(
    workload: Workload, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workload.put_key("kept-key-44444444444444444444444")
    await workload.create_binding("captchaai")
    out = tmp_path / "keys"
    async with running_agent(workload, "captchaai", out) as agent:
        await eventually(lambda: held(out) == 1)
        with caplog.at_level(logging.WARNING):
            await workload.delete_binding("captchaai")
            await eventually(lambda: agent.problem == "BindingDeleted")
        assert "was deleted" in caplog.text
        assert "last good key stays" in caplog.text
        workload.put_key("never-fetched-5555555555555555555")
        assert (out / "api_key").read_text() == "kept-key-44444444444444444444444"
        assert held(out) == 1


async def test_rejected_token_keeps_the_last_good_key(
    workload: Workload, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "keys"
    out.mkdir()
    keyfile.write_key(
        out,
        "api_key",
        "previous-key-666666666666666666",
        version=1,
        source="earlier",
        fetched_at="then",
    )
    workload.put_key("unreachable-key-7777777777777777")
    workload.kube.revoke_token(workload.token_file.read_text())
    await workload.create_binding("captchaai")
    with caplog.at_level(logging.ERROR):
        async with running_agent(workload, "captchaai", out) as agent:
            await eventually(
                lambda: agent.agent is not None and agent.agent.consecutive_failures >= 2
            )
    assert "Vault refused the kubernetes login" in caplog.text
    assert (out / "api_key").read_text() == "previous-key-666666666666666666"


# What the operator's status daemon puts on every binding (kopf's default finalizer name).
OPERATORS_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


@pytest.mark.parametrize("finalizers", [[], [OPERATORS_FINALIZER]], ids=["bare", "kept"])
async def test_agent_only_reads_bindings(
    workload: Workload, tmp_path: Path, finalizers: list[str]
) -> None:
    workload.put_key("read-only-key-888888888888888888")
    await workload.create_binding("captchaai")
    if finalizers:
        await workload.patch_binding("captchaai", {"metadata": {"finalizers": finalizers}})
    version = workload.put_key("read-only-key-999999999999999999")
    token = workload.api_token()
    out = tmp_path / "keys"
    async with running_agent(workload, "captchaai", out, token=token):
        await eventually(lambda: held(out) == 2)
        await workload.patch_binding(
            "captchaai", {"status": {"currentVersion": version}}, status=True
        )
        await workload.patch_binding("captchaai", {"spec": {"refreshIntervalSeconds": 60}})
        await eventually(lambda: held(out) == 2)
    sent = workload.kube.requests_by(token)
    assert sent, "the agent sent nothing: the test would prove nothing"
    assert any(r.watch for r in sent), "the agent never watched its binding"
    for request in sent:
        where = f"{request.method} {request.path}"
        assert request.method == "GET", f"the agent wrote to the API: {where}"
        on_bindings = request.path.startswith(
            f"/apis/captchakeys.io/v1alpha1/namespaces/{workload.namespace}/captchakeybindings"
        )
        assert on_bindings or DISCOVERY.match(request.path), (
            f"the agent read something else: {where}"
        )


async def test_binding_key_rules_refuse_a_bad_key_and_keep_the_good_one(
    workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("Mistyped-Key-From-The-Dashboard")
    await workload.create_binding("captchaai", key={"format": "captchaai"})
    out = tmp_path / "keys"
    good = "0123456789abcdef" * 2

    def error(agent: BindingAgent) -> dict[str, str]:
        last = agent.status()["lastError"]
        return last if isinstance(last, dict) else {}

    def reason(agent: BindingAgent) -> str | None:
        return error(agent).get("reason")

    async with running_agent(workload, "captchaai", out) as agent:
        await eventually(lambda: reason(agent) == "KeyRejected")
        message = error(agent)["message"]
        assert f'"secret/data/{workload.path}"' in message
        assert "not in the 'captchaai' format" in message
        assert "Mistyped" not in message
        assert not (out / "api_key").exists()  # nothing wrong is ever written.

        version = workload.put_key(good)
        await workload.patch_binding(
            "captchaai", {"status": {"currentVersion": version}}, status=True
        )
        await eventually(lambda: held(out) == 2)
        assert (out / "api_key").read_text() == good

        await workload.patch_binding("captchaai", {"spec": {"key": {"maxLength": 16}}})
        await eventually(lambda: reason(agent) == "KeyRejected")
        assert "more than the maximum of 16" in error(agent)["message"]
        assert (out / "api_key").read_text() == good  # the last good key stays in place.
