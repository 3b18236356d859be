"""The key agent loop: ``agent.sidecar`` (KeyAgent, KeyRefresher, serve_health).

Covers, against a real OpenBao:
- the agent writes the key (and its metadata) at start and becomes ready;
- an unchanged version costs a metadata read and no data read, counted honestly in
  OpenBao's audit log; a changed version is read once and rewritten;
- ``request_refresh(at_least=N)`` (a rotation announced by the operator) skips the
  metadata read and reads the data once;
- OpenBao killed mid-run: the key file stays byte-identical to the last good one the
  whole outage (checked repeatedly), failures are counted; OpenBao restarted and
  re-seeded with a new key: the agent recovers by itself, without restart, and writes
  the new key;
- health endpoints: /healthz 200 even while Vault is down, /readyz 503 before the key
  and 200 after, /status JSON with version and fingerprint and never the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from agent import keyfile
from agent.runtime.backoff import Backoff
from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
from agent.sidecar.health import serve_health
from agent.vault import SecretRef, TokenAuth, VaultClient
from tests.rig.helpers import free_port
from tests.rig.openbao import OpenBaoServer

KEY_1 = "11111111" * 4
KEY_2 = "22222222" * 4
KEY_3 = "33333333" * 4


async def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - state owned by other tasks and threads.
            await asyncio.sleep(0.01)


def make_agent(bao: OpenBaoServer, path: str, out: Path, **kwargs: object) -> KeyAgent:
    client = VaultClient(bao.addr, TokenAuth(token=bao.root_token), timeout=2)
    return KeyAgent(KeyRefresher(client, SecretRef(path), KeyTarget(out)), **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(agent: KeyAgent) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        agent.stop()
        await asyncio.wait_for(task, timeout=10)


class Audit:
    """Counts what clients asked of OpenBao, from its file audit device."""

    def __init__(self, path: Path):
        self.path = path

    def count(self, vault_path: str) -> int:
        """How many *reads* of ``vault_path`` (writes go to the data path too)."""
        if not self.path.exists():
            return 0
        n = 0
        for line in self.path.read_text().splitlines():
            entry = json.loads(line)
            request = entry.get("request") or {}
            if (
                entry.get("type") == "request"
                and request.get("path") == vault_path
                and request.get("operation") == "read"
            ):
                n += 1
        return n


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[tuple[OpenBaoServer, Audit]]:
    log = tmp_path / "audit.log"
    with OpenBaoServer(audit_log=log) as bao:
        yield bao, Audit(log)


async def test_agent_writes_the_key_at_start(
    openbao: OpenBaoServer, unique_path: str, tmp_path: Path
) -> None:
    openbao.put_key(unique_path, KEY_1)
    agent = make_agent(openbao, unique_path, tmp_path)
    assert not agent.ready
    async with running(agent):
        await wait_for(lambda: agent.ready)
        assert (tmp_path / "api_key").read_text() == KEY_1
        meta = keyfile.read_metadata(tmp_path / "api_key")
        assert meta is not None
        assert meta.version == 1
        assert meta.fingerprint == keyfile.fingerprint(KEY_1)
        assert meta.source == f"secret/{unique_path}#api_key"
        assert agent.status()["version"] == 1


async def test_unchanged_version_reads_no_data(
    audited: tuple[OpenBaoServer, Audit], tmp_path: Path
) -> None:
    bao, audit = audited
    bao.put_key("captchaai/dev", KEY_1)
    data, metadata = "secret/data/captchaai/dev", "secret/metadata/captchaai/dev"
    agent = make_agent(bao, "captchaai/dev", tmp_path)
    assert await agent.refresh_once() is True
    assert (audit.count(data), audit.count(metadata)) == (1, 1)
    inode = (tmp_path / "api_key").stat().st_ino

    for _ in range(5):
        assert await agent.refresh_once() is False
    assert audit.count(metadata) == 6
    assert audit.count(data) == 1  # the version did not change: the key was not read.
    assert (tmp_path / "api_key").stat().st_ino == inode  # and the file not rewritten.

    bao.put_key("captchaai/dev", KEY_2)
    assert await agent.refresh_once() is True
    assert audit.count(data) == 2
    assert (tmp_path / "api_key").read_text() == KEY_2
    assert agent.refresher.held_version == 2


async def test_request_refresh_at_least_skips_the_metadata_read(
    audited: tuple[OpenBaoServer, Audit], tmp_path: Path
) -> None:
    bao, audit = audited
    bao.put_key("captchaai/dev", KEY_1)
    data, metadata = "secret/data/captchaai/dev", "secret/metadata/captchaai/dev"
    agent = make_agent(bao, "captchaai/dev", tmp_path, refresh_interval=3600)
    async with running(agent):
        await wait_for(lambda: agent.ready)
        before = (audit.count(data), audit.count(metadata))
        assert before == (1, 1)
        version = bao.put_key("captchaai/dev", KEY_2)
        agent.request_refresh(at_least=version)
        assert not agent.ready  # a newer version is wanted and not on disk yet.
        await wait_for(lambda: agent.refresher.held_version == version)
        assert agent.ready
        assert (tmp_path / "api_key").read_text() == KEY_2
        assert audit.count(metadata) == 1  # the announced version was trusted.
        assert audit.count(data) == 2


async def test_vault_outage_keeps_the_last_good_key_and_recovers(
    fresh_openbao: OpenBaoServer, tmp_path: Path
) -> None:
    bao = fresh_openbao
    bao.put_key("captchaai/dev", KEY_1)
    agent = make_agent(
        bao, "captchaai/dev", tmp_path, refresh_interval=0.1, backoff=Backoff(base=0.05, cap=0.5)
    )
    key_path = tmp_path / "api_key"
    meta_path = keyfile.metadata_path(key_path)
    async with running(agent) as task:
        await wait_for(lambda: agent.ready)
        good_key, good_meta = key_path.read_bytes(), meta_path.read_bytes()

        await asyncio.to_thread(bao.stop)
        checks = 0
        started = time.monotonic()
        while agent.consecutive_failures < 4 or time.monotonic() - started < 0.5:
            assert key_path.read_bytes() == good_key
            assert meta_path.read_bytes() == good_meta
            checks += 1
            assert time.monotonic() - started < 15, "the agent never recorded failures"
            await asyncio.sleep(0.02)
        assert checks > 10
        assert agent.last_error == "VaultUnreachable"
        assert agent.ready  # the cached key keeps the application going.
        assert not task.done()

        # OpenBao comes back empty (a dev server keeps nothing): restored, then rotated.
        await asyncio.to_thread(bao.start)
        bao.put_key("captchaai/dev", KEY_1)
        bao.put_key("captchaai/dev", KEY_3)
        await wait_for(lambda: agent.refresher.held_version == 2, seconds=15)
        assert key_path.read_text() == KEY_3
        assert agent.consecutive_failures == 0
        assert agent.last_error is None
        assert not task.done()


async def test_health_endpoints(fresh_openbao: OpenBaoServer, tmp_path: Path) -> None:
    bao = fresh_openbao
    agent = make_agent(
        bao, "captchaai/dev", tmp_path, refresh_interval=0.1, backoff=Backoff(base=0.05, cap=0.2)
    )
    port = free_port()
    runner = await serve_health(agent, "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http, running(agent):

            async def get(path: str) -> tuple[int, str]:
                async with http.get(base + path) as response:
                    return response.status, await response.text()

            # No key in Vault yet: alive, not ready, and the reason is given.
            await wait_for(lambda: agent.consecutive_failures > 0)
            assert (await get("/healthz"))[0] == 200
            status, body = await get("/readyz")
            assert status == 503
            assert "SecretNotFound" in body

            bao.put_key("captchaai/dev", KEY_1)
            await wait_for(lambda: agent.ready)
            assert (await get("/readyz"))[0] == 200
            status, body = await get("/status")
            assert status == 200
            report = json.loads(body)
            assert report["version"] == 1
            assert report["fingerprint"] == keyfile.fingerprint(KEY_1)
            assert report["ready"] is True
            assert KEY_1 not in body

            await asyncio.to_thread(bao.stop)
            await wait_for(lambda: agent.last_error == "VaultUnreachable")
            assert (await get("/healthz"))[0] == 200  # an outage must not kill the sidecar.
            assert (await get("/readyz"))[0] == 200  # the cached key is still served.
            status, body = await get("/status")
            error = json.loads(body)["lastError"]
            assert error["reason"] == "VaultUnreachable"
            assert bao.addr in error["message"]
            assert error["since"].endswith("Z")
            assert KEY_1 not in body
    finally:
        await runner.cleanup()
