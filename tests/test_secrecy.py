"""The key never leaks: sentinel keys driven through writes, rotations and failures.

Covers:
- in-process: a KeyAgent goes through a first write, a rotation, a missing field
  (whose other field holds a sentinel), permission denied and Vault down; no sentinel
  appears in any captured log record (message, args, extras, exception text: pytest's
  capture, which does not go through our redaction), in exception messages or reprs,
  in the reprs of VaultClient / KeyVersion / KeyRefresher / KeyAgent / KeyReader, in
  the metadata file, or in the /status JSON served by ``serve_health``;
- the CLI subprocess with JSON logs at debug level, through the same sequence (the
  rotation and each failure pushed with SIGHUP): no sentinel on its stderr;
- ``agent.runtime.logs`` redaction: a registered secret is scrubbed from a formatted line, from
  message args and from exception text, in JSON and text formats.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from agent import keyfile
from agent.runtime import logs
from agent.runtime.backoff import Backoff
from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
from agent.sidecar.health import serve_health
from agent.vault import SecretRef, TokenAuth, VaultClient, VaultError
from captchakeys import KeyReader
from tests.rig.helpers import free_port, wait_until
from tests.rig.openbao import OpenBaoServer
from tests.vault.helpers import create_policy, worker_policy


def sentinel() -> str:
    return f"SENTINEL{uuid.uuid4().hex}"


def leaks(texts: list[str], secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if any(secret in text for text in texts)]


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    texts = []
    for record in records:
        texts += [record.getMessage(), repr(record.args), repr(vars(record))]
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


class Worker:
    """A token whose policy can be narrowed later (to provoke a 403)."""

    def __init__(self, bao: OpenBaoServer, path: str):
        self.bao = bao
        self.policy = create_policy(bao, path)
        self.token = bao.client().auth.token.create(policies=[self.policy])["auth"]["client_token"]

    def lose_access(self) -> None:
        self.bao.client().sys.create_or_update_policy(self.policy, worker_policy("elsewhere"))


async def test_no_sentinel_in_logs_errors_reprs_metadata_or_status(
    fresh_openbao: OpenBaoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bao = fresh_openbao
    first, second, other = sentinel(), sentinel(), sentinel()
    texts: list[str] = []
    failures: list[VaultError] = []

    bao.put_key("captchaai/dev", first)
    worker = Worker(bao, "captchaai/dev")
    client = VaultClient(bao.addr, TokenAuth(token=worker.token))
    ref = SecretRef("captchaai/dev")
    agent = KeyAgent(KeyRefresher(client, ref, KeyTarget(tmp_path)), backoff=Backoff(0.05, 0.5))

    async def expect_failure(reason: str) -> None:
        with pytest.raises(VaultError) as info:
            await agent.refresh_once()
        assert info.value.reason == reason
        failures.append(info.value)

    port = free_port()
    runner = await serve_health(agent, "127.0.0.1", port)
    try:
        assert await agent.refresh_once()  # the first write
        with KeyReader(tmp_path / "api_key") as reader:
            assert reader.get() == first  # the sentinel really went through.
            key = client.read_key(ref)
            texts += [repr(key), str(key), repr(reader), str(reader)]

            bao.put_key("captchaai/dev", second)
            assert await agent.refresh_once()  # a rotation
            assert (tmp_path / "api_key").read_text() == second
            texts.append(keyfile.metadata_path(tmp_path / "api_key").read_text())

            bao.client().secrets.kv.v2.create_or_update_secret("captchaai/dev", {"other": other})
            await expect_failure("FieldMissing")
            worker.lose_access()
            await expect_failure("VaultForbidden")
            bao.stop()
            await expect_failure("VaultUnreachable")

            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/status") as response,
            ):
                status = await response.text()
            assert json.loads(status)["version"] == 2
            texts += [status, repr(reader), repr(client), repr(agent.refresher), repr(agent)]
    finally:
        await runner.cleanup()

    for exc in failures:
        texts += [str(exc), repr(exc)]
    texts += record_texts(caplog.records)
    texts.append(caplog.text)
    assert any("key written" in r.getMessage() for r in caplog.records)
    assert leaks(texts, [first, second, other]) == []
    assert (tmp_path / "api_key").read_text() == second  # kept through every failure.


def test_no_sentinel_on_the_cli_stderr(fresh_openbao: OpenBaoServer, tmp_path: Path) -> None:
    bao = fresh_openbao
    first, second, other = sentinel(), sentinel(), sentinel()
    bao.put_key("captchaai/dev", first)
    worker = Worker(bao, "captchaai/dev")
    out, log = tmp_path / "out", tmp_path / "stderr.log"
    out.mkdir()
    args = [
        "agent",
        *("--vault-addr", bao.addr),
        *("--auth-method", "token"),
        *("--path", "captchaai/dev"),
        *("--out-dir", str(out)),
        *("--refresh-interval", "3600"),
        *("--backoff-cap", "3600"),
        *("--health-addr", ""),
        *("--log-level", "debug"),
        *("--log-format", "json"),
    ]
    # PYTHONPATH passes through so that the worktree's agent package is the one run.
    env = {
        "PATH": "/usr/bin:/bin",
        "VAULT_TOKEN": worker.token,
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    captchakey = str(Path(sys.executable).with_name("captchakey"))

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def logged(reason: str) -> Callable[[], bool]:
        return lambda: any(entry.get("reason") == reason for entry in lines())

    with log.open("w") as stderr:
        process = subprocess.Popen([captchakey, *args], env=env, stderr=stderr)
    try:
        wait_until(lambda: (out / "api_key").exists())
        bao.put_key("captchaai/dev", second)
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: (out / "api_key").read_text() == second)
        bao.client().secrets.kv.v2.create_or_update_secret("captchaai/dev", {"other": other})
        process.send_signal(signal.SIGHUP)
        wait_until(logged("FieldMissing"))
        worker.lose_access()
        process.send_signal(signal.SIGHUP)
        wait_until(logged("VaultForbidden"))
        bao.stop()
        process.send_signal(signal.SIGHUP)
        wait_until(logged("VaultUnreachable"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert sum(entry.get("message") == "key written" for entry in lines()) == 2
    assert any(entry.get("level") == "debug" for entry in lines())
    assert leaks([text], [first, second, other]) == []


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_redaction_scrubs_a_registered_secret(
    fmt: logs.LogFormat, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = sentinel()
    logs.configure("debug", fmt)
    logs.redact(secret)
    log = logging.getLogger("tests.secrecy")
    log.info("calling https://ocr.captchaai.com/in.php?key=%s&json=1", secret)
    log.warning("extra field", extra={"url": f"https://x/?key={secret}"})
    try:
        raise RuntimeError(f"request failed for key {secret}")
    except RuntimeError:
        log.exception("unexpected: %s", "see exception")
    err = capsys.readouterr().err
    assert secret not in err
    # Message args and exception text in both formats; extras are printed only in JSON.
    assert err.count("[REDACTED]") >= (3 if fmt == "json" else 2)
    assert "https://ocr.captchaai.com/in.php?key=[REDACTED]&json=1" in err
    if fmt == "json":
        entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert len(entries) == 3
        assert "[REDACTED]" in entries[2]["exception"]


@pytest.mark.usefixtures("root_logging")
def test_redaction_ignores_strings_too_short_to_be_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info", "text")
    logs.redact("ab")
    logging.getLogger("tests.secrecy").info("about a tab")
    assert "about a tab" in capsys.readouterr().err
