"""Rotation end to end: the operator, many key agents, the rig's API and real OpenBao.

Covers:
- the whole path in one test: binding created → version 1 published → key written;
  Vault write + rotation request → version 2 published → agent rewrites → the
  application's KeyReader callback fires; rollout status and "safe to revoke";
- a dozen consumers rotate: progress goes from 0 to all; version 1 shows as safe to
  revoke only once every consumer holds version 2; each agent logged in to Vault once
  (tokens reused: no login storm);
- a consumer pod that dies mid-rotation is dropped from the count and stops blocking;
- pin and unpin through the spec move every consumer; a pin on a destroyed version is a
  clear condition and consumers keep their key;
- two rotations in quick succession both land;
- ``captchakey rotate`` (the real CLI, as a subprocess) stores a key from stdin, waits,
  and names the version that is safe to revoke.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent import keyfile
from agent.reader import KeyReader
from agent.sidecar.binding import BindingAgent
from tests.operator.conftest import RunningOperator
from tests.rig.helpers import free_port
from tests.rig.scenario import (
    Workload,
    create_consumer_pod,
    delete_pod,
    eventually,
    running_agent,
)


def held(out: Path) -> int | None:
    meta = keyfile.read_metadata(out / "api_key")
    return meta.version if meta else None


async def status_of(workload: Workload, name: str = "captchaai") -> dict[str, Any]:
    body = await workload.get_binding(name)
    return body.get("status") or {}


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


async def wait_status(workload: Workload, predicate: Any, seconds: float = 15.0) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal latest
        latest = await status_of(workload)
        return bool(predicate(latest))

    try:
        async with asyncio.timeout(seconds):
            while not await check():  # noqa: ASYNC110 - polling the API, as kubectl wait does.
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"status never matched; last seen: {latest}") from None
    return latest


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
            status = await status_of(workload)
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
        command = [captchakey, "rotate", "--binding", "captchaai",
                   "-n", workload.namespace, "--new-key-stdin", "--timeout", "30"]  # fmt: skip
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "VAULT_ADDR": workload.openbao.addr,
               "VAULT_TOKEN": workload.openbao.root_token}  # fmt: skip
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
