"""The real ``captchakey agent`` as a subprocess, and the real OS faults the tests put under it.

- :class:`AgentProcess`: starts the console script (the worktree's package through
  PYTHONPATH), reads its ``/status`` and ``/metrics``, its JSON log lines, and stops it
  with SIGTERM, failing the test if it had died on its own.
- :func:`small_tmpfs`: a real tmpfs of a few pages (as root, ``mount -t tmpfs``), for a
  full volume (ENOSPC) and a read-only remount (EROFS); skips with the OS's reason when
  mounting is refused.
- :func:`fill` writes into a file until the file system says ENOSPC.
- :class:`Listener`: a TCP port that counts who connects (an address the agent must
  never send the pod's token to).
- :data:`WITHOUT_ROOT_POWERS`: a command prefix that runs the agent as root but without
  the capabilities that bypass file permissions and quotas, as a pod with
  ``capabilities: drop: [ALL]`` would; file modes then apply to it (EACCES).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.rig.helpers import free_port

CAPTCHAKEY = str(Path(sys.executable).with_name("captchakey"))
WITHOUT_ROOT_POWERS = ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-sys_resource")


def agent_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CAPTCHAKEY_"))}
    env.update(extra)
    return env


class AgentProcess:
    """One running ``captchakey agent`` with its health port on loopback."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str],
        log: Path,
        *,
        prefix: Sequence[str] = (),
    ):
        self.port = free_port()
        self.log = log
        command = [
            *prefix,
            CAPTCHAKEY,
            "agent",
            *args,
            *("--health-addr", f"127.0.0.1:{self.port}"),
            *("--log-format", "json"),
        ]
        with log.open("w") as stderr:
            self.process = subprocess.Popen(command, env=env, stderr=stderr)

    def alive(self) -> bool:
        return self.process.poll() is None

    def status(self) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = requests.get(
                f"http://127.0.0.1:{self.port}/status", timeout=2
            ).json()
        except (requests.RequestException, ValueError):
            return {}
        return answer

    def scrape(self) -> str:
        response = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2)
        response.raise_for_status()
        return response.text

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample (``name`` as exposed, e.g. with ``_total``), or None."""
        for family in text_string_to_metric_families(self.scrape()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def reason(self) -> str | None:
        error = self.status().get("lastError")
        return error.get("reason") if isinstance(error, dict) else None

    def lines(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries

    def logged(self, text: str, *, level: str | None = None) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.lines()
            if text in str(entry.get("message", "")) and (level is None or entry["level"] == level)
        ]

    def hup(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        """SIGTERM; the exit code (0 for a graceful stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def running(
    args: Sequence[str], env: dict[str, str], log: Path, **kw: Any
) -> Iterator[AgentProcess]:
    agent = AgentProcess(args, env, log, **kw)
    try:
        yield agent
    finally:
        code = agent.stop()
    assert code == 0, f"the agent exited with {code}:\n{log.read_text()[-3000:]}"


@contextlib.contextmanager
def small_tmpfs(pages: int = 16, **mount_options: str) -> Iterator[Path]:
    """A real tmpfs of ``pages`` 4 KiB pages; skips when the OS refuses the mount."""
    directory = Path(tempfile.mkdtemp(prefix="captchakey-tmpfs-"))
    options = ",".join([f"size={pages * 4}k", *(f"{k}={v}" for k, v in mount_options.items())])
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        directory.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): needs root")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
        directory.rmdir()


def remount(directory: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until the file system is full (ENOSPC), keeping what was written."""
    chunk = b"\0" * 4096
    with path.open("ab", buffering=0) as filler:
        while True:
            try:
                filler.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


class Listener:
    """A TCP port that counts who connects: the address a binding tries to redirect to."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()
