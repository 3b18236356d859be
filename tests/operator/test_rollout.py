"""Rotation end to end: the operator, many key agents, the rig's API and real OpenBao.

Covers:
- the whole path in one test: binding created → version 1 published → key written;
  Vault write + rotation request → version 2 published → agent rewrites → the
  application's KeyReader callback fires; rollout status and "safe to revoke";
- a dozen consumers rotate: progress goes from 0 to all; version 1 shows as safe to
  revoke only once every consumer holds version 2; each agent logged in to Vault once
  (tokens reused: no login storm);
- a consumer pod that dies mid-rotation is named as failing (AgentUnreachable) while it is
  listed, then dropped from the count and stops blocking;
- pin and unpin through the spec move every consumer; a pin on a destroyed version is a
  clear condition and consumers keep their key;
- two rotations in quick succession both land;
- ``captchakey rotate`` (the real CLI, as a subprocess) stores a key from stdin, waits,
  and names the version that is safe to revoke;
- Events, read back from the rig's API as ``kubectl get events`` does: a rotation leaves
  Normal VersionChanged, RotationRequested, RolloutComplete and SafeToRevoke (no key in
  any); a destroyed pinned version a Warning VersionUnavailable;
- a consumer whose agent cannot log in is named in ``status.rollout.failing`` and in the
  ``ConsumersHealthy`` condition with the reason and message its own ``/status`` serves,
  announced by one Warning ConsumerFailing (rate-limited: no repeat while nothing
  changes); once it is gone the condition turns True and the list empties;
- consumers failing for different reasons (a refused login, a read-only key volume: a
  real read-only tmpfs) are each named with their own reason; the condition's reason is
  then ConsumerErrors.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agent import keyfile
from agent.sidecar.bindingagent import BindingAgent
from captchakeys import KeyReader
from tests.rig.helpers import free_port
from tests.rig.operator import RunningOperator
from tests.rig.scenario import (
    Workload,
    binding_status,
    create_consumer_pod,
    delete_pod,
    eventually,
    running_agent,
    wait_status,
)


def held(out: Path) -> int | None:
    meta = keyfile.read_metadata(out / "api_key")
    return meta.version if meta else None


async def request_rotation(workload: Workload, name: str = "captchaai") -> str:
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    await workload.patch_binding(name, {"spec": {"rotation": {"requestedAt": stamp}}})
    return stamp


@contextlib.asynccontextmanager
async def consumers(
    workload: Workload, tmp_path: Path, count: int, *, spread: float = 0.05
) -> AsyncIterator[list[tuple[BindingAgent, Path]]]:
    """``count`` agents, each with its pod in the rig pointing at its /status port."""
    async with contextlib.AsyncExitStack() as stack:
        agents: list[tuple[BindingAgent, Path]] = []
        for number in range(count):
            port, out = free_port(), tmp_path / f"consumer-{number}"
            agent = await stack.enter_async_context(
                running_agent(workload, "captchaai", out, health=("127.0.0.1", port), spread=spread)
            )
            await create_consumer_pod(workload, f"solver-{number}", port, "captchaai")
            agents.append((agent, out))
        yield agents


async def events_of(workload: Workload, name: str = "captchaai") -> list[dict[str, Any]]:
    """The Events about a binding, read back from the API as ``kubectl get events`` does."""
    listing = await workload.kube.call("GET", f"/api/v1/namespaces/{workload.namespace}/events")
    return [
        e
        for e in listing.get("items") or []
        if (e.get("involvedObject") or {}).get("kind") == "CaptchaKeyBinding"
        and e["involvedObject"].get("name") == name
    ]


async def wait_events(
    workload: Workload, wanted: set[tuple[str, str]], seconds: float = 15.0
) -> list[dict[str, Any]]:
    """Wait until Events with each (type, reason) in ``wanted`` exist; return them all."""
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                found = await events_of(workload)
                if wanted <= {(e.get("type"), e.get("reason")) for e in found}:
                    return found
                await asyncio.sleep(0.1)
    except TimeoutError:
        seen = sorted({(e.get("type"), e.get("reason")) for e in found})
        raise AssertionError(f"missing Events {sorted(wanted)}; seen: {seen}") from None


def ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


async def test_end_to_end_rotation_reaches_the_application(
    operator: RunningOperator, workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("e2e-key-version-1-0000000000000")
    await workload.create_binding("captchaai")
    status = await wait_status(workload, lambda s: s.get("currentVersion") == 1 and ready(s))
    assert status["vaultPath"] == f"secret/{workload.path}"
    async with consumers(workload, tmp_path, 1) as [(_, out)]:
        await eventually(lambda: held(out) == 1)
        rotated = threading.Event()
        with KeyReader(out / "api_key") as reader:
            reader.on_change(lambda _key: rotated.set())
            workload.put_key("e2e-key-version-2-0000000000000")
            request = await request_rotation(workload)
            await eventually(rotated.is_set)
            assert reader.get() == "e2e-key-version-2-0000000000000"
        status = await wait_status(
            workload, lambda s: (s.get("rollout") or {}).get("safeToRevoke") == [1]
        )
    assert status["currentVersion"] == 2
    assert status["lastRotationRequest"] == request
    assert status["rollout"]["consumers"] == 1
    assert status["rollout"]["upToDate"] == 1
    assert status["rollout"]["versions"] == {"2": 1}
    history = {
        ("Normal", r)
        for r in ("VersionChanged", "RotationRequested", "RolloutComplete", "SafeToRevoke")
    }
    events = await wait_events(workload, history)
    changes = [e["message"] for e in events if e["reason"] == "VersionChanged"]
    assert any("version 1 -> 2" in m for m in changes), changes
    for event in events:
        assert "e2e-key-version" not in json.dumps(event), "no key in any Event"
        assert event["involvedObject"]["namespace"] == workload.namespace


# 11 / 4 reads/s: the operator spreads the 12 agents' reads over 2.75 s, several of its
# 0.5 s rollout polls; at the default rate (55 ms) the rollout could end between two.
@pytest.mark.operator_config(vault_reads_per_second=4.0)
async def test_many_consumers_and_safe_to_revoke_only_after_the_last(
    operator: RunningOperator, workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("fleet-key-version-1-00000000000")
    await workload.create_binding("captchaai")
    await wait_status(workload, lambda s: s.get("currentVersion") == 1)
    async with consumers(workload, tmp_path, 12, spread=1.0) as fleet:
        await wait_status(workload, lambda s: (s.get("rollout") or {}).get("upToDate") == 12)
        workload.put_key("fleet-key-version-2-00000000000")
        await request_rotation(workload)
        progress: set[int] = set()
        while True:
            status = await binding_status(workload)
            rollout = status.get("rollout") or {}
            if status.get("currentVersion") == 2:
                progress.add(rollout.get("upToDate", 0))
                if 1 in rollout.get("safeToRevoke", []):
                    # Every consumer must really hold version 2 by now.
                    assert all(held(out) == 2 for _, out in fleet)
                    assert rollout["upToDate"] == 12
                    break
            await asyncio.sleep(0.02)
        assert max(progress) == 12
        assert min(progress) < 12, "the rollout was never seen in progress"
        logins = [agent.agent.refresher.client.logins for agent, _ in fleet if agent.agent]
        assert logins == [1] * 12


async def test_dead_consumer_is_dropped(
    operator: RunningOperator, workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("dead-pod-key-1-0000000000000000")
    await workload.create_binding("captchaai")
    async with consumers(workload, tmp_path, 2):
        await create_consumer_pod(
            workload, "solver-dead", free_port(), "captchaai"
        )  # nobody answers
        workload.put_key("dead-pod-key-2-0000000000000000")
        await request_rotation(workload)
        status = await wait_status(
            workload,
            lambda s: (
                s.get("currentVersion") == 2 and (s.get("rollout") or {}).get("upToDate") == 2
            ),
        )
        assert status["rollout"]["stragglers"] == ["solver-dead"]
        assert status["rollout"]["safeToRevoke"] == []
        (silent,) = status["rollout"]["failing"]  # named, with why: its agent never answers.
        assert (silent["pod"], silent["reason"]) == ("solver-dead", "AgentUnreachable")
        assert "port 8099" in silent["message"]
        await delete_pod(workload, "solver-dead")
        status = await wait_status(
            workload, lambda s: (s.get("rollout") or {}).get("safeToRevoke") == [1]
        )
        assert status["rollout"]["consumers"] == 2


async def test_pin_unpin_and_destroyed_version(
    operator: RunningOperator, workload: Workload, tmp_path: Path
) -> None:
    for n in (1, 2, 3):
        workload.put_key(f"pin-key-version-{n}-000000000000")
    await workload.create_binding("captchaai")
    async with consumers(workload, tmp_path, 2) as fleet:
        await eventually(lambda: all(held(out) == 3 for _, out in fleet))
        await workload.patch_binding("captchaai", {"spec": {"kv": {"version": 2}}})
        await wait_status(workload, lambda s: s.get("currentVersion") == 2)
        await eventually(lambda: all(held(out) == 2 for _, out in fleet))
        await workload.patch_binding("captchaai", {"spec": {"kv": {"version": None}}})
        await eventually(lambda: all(held(out) == 3 for _, out in fleet))
        workload.openbao.client().secrets.kv.v2.destroy_secret_versions(
            path=workload.path, versions=[1], mount_point="secret"
        )
        await workload.patch_binding("captchaai", {"spec": {"kv": {"version": 1}}})
        status = await wait_status(
            workload,
            lambda s: any(c.get("reason") == "VersionUnavailable" for c in s.get("conditions", [])),
        )
        message = next(c["message"] for c in status["conditions"] if c["type"] == "Ready")
        assert "pinned version 1 is destroyed" in message
        warnings = await wait_events(workload, {("Warning", "VersionUnavailable")})
        assert any("pinned version 1 is destroyed" in e["message"] for e in warnings)
        await asyncio.sleep(0.5)
        assert all(held(out) == 3 for _, out in fleet), "consumers must keep their key"


async def test_two_quick_rotations_both_land(
    operator: RunningOperator, workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("quick-key-version-1-00000000000")
    await workload.create_binding("captchaai")
    async with consumers(workload, tmp_path, 3) as fleet:
        await eventually(lambda: all(held(out) == 1 for _, out in fleet))
        workload.put_key("quick-key-version-2-00000000000")
        await request_rotation(workload)
        workload.put_key("quick-key-version-3-00000000000")
        second = await request_rotation(workload)
        status = await wait_status(
            workload,
            lambda s: (
                s.get("lastRotationRequest") == second
                and (s.get("rollout") or {}).get("safeToRevoke") == [1, 2]
            ),
        )
        assert status["currentVersion"] == 3
        assert all(
            (out / "api_key").read_text() == "quick-key-version-3-00000000000" for _, out in fleet
        )


async def test_rotate_command_transcript(
    operator: RunningOperator, workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("cli-key-version-1-0000000000000")
    await workload.create_binding("captchaai")
    kubeconfig = workload.kube.kubeconfig(tmp_path / "kubeconfig")
    async with consumers(workload, tmp_path, 3):
        await wait_status(workload, lambda s: (s.get("rollout") or {}).get("upToDate") == 3)
        captchakey = str(Path(sys.executable).with_name("captchakey"))
        command = [
            captchakey,
            "rotate",
            *("--binding", "captchaai"),
            *("-n", workload.namespace),
            "--new-key-stdin",
            *("--timeout", "30"),
        ]
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "VAULT_ADDR": workload.openbao.addr,
            "VAULT_TOKEN": workload.openbao.root_token,
        }
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(
            process.communicate(b"cli-key-version-2-0000000000000\n"), timeout=60
        )
    transcript = stdout.decode()
    (tmp_path / "rotate-transcript.txt").write_text(transcript)
    print(transcript)
    assert process.returncode == 0, stderr.decode()
    assert "stored a new key at secret/" in transcript
    assert "as version 2" in transcript
    assert "all 3 consumers hold version 2; version 1 is safe to revoke" in transcript
    assert "cli-key-version-2" not in transcript + stderr.decode()


async def test_failing_consumers_are_named_with_the_reason_their_agent_reports(
    operator: RunningOperator, workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("failing-key-version-1-000000000")
    await workload.create_binding("captchaai")
    await wait_status(workload, lambda s: s.get("currentVersion") == 1)
    # A pod whose service account the Vault role does not bind: its login is refused.
    intruder = copy.copy(workload)
    intruder.token_file = tmp_path / "intruder-vault-token"
    intruder.token_file.write_text(
        workload.kube.issue_token(workload.namespace, "intruder", audience="vault")
    )
    port = free_port()
    async with (
        consumers(workload, tmp_path, 1) as [(_, healthy)],
        running_agent(intruder, "captchaai", tmp_path / "broken", health=("127.0.0.1", port)),
    ):
        await create_consumer_pod(workload, "solver-broken", port, "captchaai")
        await eventually(lambda: held(healthy) == 1)
        # The keeper's first round can scrape the healthy agent before its first write, so
        # wait for the round that sees it hold the key: then only the broken pod lags.
        status = await wait_status(
            workload,
            lambda s: (
                bool((s.get("rollout") or {}).get("failing"))
                and s["rollout"].get("stragglers") == ["solver-broken"]
            ),
        )
        (failing,) = status["rollout"]["failing"]
        served = await asyncio.to_thread(
            lambda: requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()
        )
        error = served["lastError"]
        assert error is not None, served
        assert failing["pod"] == "solver-broken"
        assert failing["reason"] == error["reason"] == "LoginRefused"  # the agentstatus word
        assert failing["message"] == error["message"]
        assert "Vault refused the kubernetes login" in failing["message"]
        assert failing["since"] == error["since"]  # when its run of failures began
        assert status["rollout"]["stragglers"] == ["solver-broken"]
        condition = next(c for c in status["conditions"] if c["type"] == "ConsumersHealthy")
        assert condition["status"] == "False"
        assert condition["reason"] == error["reason"]
        assert "1/2 consumer(s) fail: solver-broken" in condition["message"]
        warnings = await wait_events(workload, {("Warning", "ConsumerFailing")})
        failing_events = [e for e in warnings if e["reason"] == "ConsumerFailing"]
        assert "solver-broken" in failing_events[0]["message"]
        # Rate-limited: further rounds while nothing changes post no more Events.
        workload.put_key("failing-key-version-2-000000000")
        await request_rotation(workload)
        await eventually(lambda: held(healthy) == 2)
        await wait_status(workload, lambda s: (s.get("rollout") or {}).get("versions", {}).get("2"))
        again = [e for e in await events_of(workload) if e["reason"] == "ConsumerFailing"]
        assert len(again) == 1, [e["message"] for e in again]
        await delete_pod(workload, "solver-broken")
        status = await wait_status(
            workload,
            lambda s: any(
                c["type"] == "ConsumersHealthy" and c["status"] == "True"
                for c in s.get("conditions", [])
            ),
        )
        assert status["rollout"]["failing"] == []
        assert "failing-key-version" not in json.dumps(status)


@contextlib.contextmanager
def read_only_tmpfs(path: Path) -> Iterator[Path]:
    """A real read-only volume (as a broken mount would leave the key directory)."""
    path.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("mounting a read-only tmpfs needs root, and the OS refused it here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


async def test_consumers_failing_for_different_reasons_are_each_named(
    operator: RunningOperator, workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("mixed-key-version-1-00000000000")
    await workload.create_binding("captchaai")
    await wait_status(workload, lambda s: s.get("currentVersion") == 1)
    intruder = copy.copy(workload)
    intruder.token_file = tmp_path / "intruder-vault-token"
    intruder.token_file.write_text(
        workload.kube.issue_token(workload.namespace, "intruder", audience="vault")
    )
    refused_port, read_only_port = free_port(), free_port()
    with read_only_tmpfs(tmp_path / "read-only") as read_only:
        async with (
            running_agent(
                intruder, "captchaai", tmp_path / "refused", health=("127.0.0.1", refused_port)
            ),
            running_agent(workload, "captchaai", read_only, health=("127.0.0.1", read_only_port)),
        ):
            await create_consumer_pod(workload, "solver-refused", refused_port, "captchaai")
            await create_consumer_pod(workload, "solver-read-only", read_only_port, "captchaai")
            status = await wait_status(
                workload, lambda s: len((s.get("rollout") or {}).get("failing") or []) == 2
            )
    reasons = {f["pod"]: f["reason"] for f in status["rollout"]["failing"]}
    assert reasons == {"solver-read-only": "KeyFileUnwritable", "solver-refused": "LoginRefused"}
    condition = next(c for c in status["conditions"] if c["type"] == "ConsumersHealthy")
    assert condition["reason"] == "ConsumerErrors"  # more than one reason
    assert condition["message"].startswith("2/2 consumer(s) fail: solver-read-only: KeyFile")
