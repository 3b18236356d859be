"""The ``captchakey agent`` command line, run as a real subprocess against a real OpenBao.

Covers:
- ``--help`` documents every flag the issue lists, each with its environment variable;
- ``--once`` writes the key (mode 0440, metadata beside it) and exits 0, configured by
  flags, and configured by environment variables alone;
- ``--once`` against an unreachable Vault exits non-zero with an actionable message on
  stderr, and leaves the previous key file byte-identical;
- bad ``--mode``, bad ``--file-name`` and a missing ``--path`` are clear usage errors
  that write nothing;
- a running agent refreshes at once on SIGHUP (with a one-hour interval) and stops
  gracefully on SIGTERM with exit code 0; its stderr is one JSON object per line;
- ``captchakey rotate --new-key-stdin`` applies the agents' key rules (agent.keyrules,
  with the binding's spec.key) before storing anything: two lines, a space, the wrong
  format or a key over the binding's maxLength exit 1 with one line naming the Vault
  path and field, never the key; Vault and the binding are left untouched.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent import keyfile
from tests.rig.helpers import free_port, wait_until
from tests.rig.kube import BaoAuth, RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.scenario import Workload

CAPTCHAKEY = str(Path(sys.executable).with_name("captchakey"))

# Every flag the issue requires, with the environment variable that also sets it.
FLAGS = {
    "--vault-addr": "VAULT_ADDR",
    "--auth-method": "CAPTCHAKEY_AUTH_METHOD",
    "--auth-mount": "CAPTCHAKEY_AUTH_MOUNT",
    "--role": "CAPTCHAKEY_ROLE",
    "--kv-mount": "CAPTCHAKEY_KV_MOUNT",
    "--path": "CAPTCHAKEY_PATH",
    "--field": "CAPTCHAKEY_FIELD",
    "--kv-version": "CAPTCHAKEY_KV_VERSION",
    "--out-dir": "CAPTCHAKEY_OUT_DIR",
    "--file-name": "CAPTCHAKEY_FILE_NAME",
    "--mode": "CAPTCHAKEY_FILE_MODE",
    "--refresh-interval": "CAPTCHAKEY_REFRESH_INTERVAL",
    "--once": "CAPTCHAKEY_ONCE",
    "--vault-cacert": "VAULT_CACERT",
    "--vault-namespace": "VAULT_NAMESPACE",
    "--secret-id-file": "VAULT_SECRET_ID_FILE",
    "--backoff-cap": "CAPTCHAKEY_BACKOFF_CAP",
    "--key-max-length": "CAPTCHAKEY_KEY_MAX_LENGTH",
    "--key-format": "CAPTCHAKEY_KEY_FORMAT",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CAPTCHAKEY_"))}
    env.update(extra)
    return env


def run(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAPTCHAKEY, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def once_args(path: str, out: Path, *extra: str) -> list[str]:
    return [
        "agent",
        *("--auth-method", "token"),
        *("--path", path),
        *("--out-dir", str(out)),
        *("--health-addr", ""),
        "--once",
        *extra,
    ]


def test_help_documents_every_flag_and_its_environment_variable() -> None:
    result = run(["agent", "--help"], clean_env())
    assert result.returncode == 0, result.stderr
    # One block per option: its first line starts with "  --flag", the rest is indented.
    blocks: dict[str, str] = {}
    current = None
    for line in result.stdout.splitlines():
        match = re.match(r"^  (--[a-z-]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current and line.startswith("   "):
            blocks[current] += " " + line.strip()
    for flag, env_var in FLAGS.items():
        assert flag in blocks, f"{flag} is not documented"
        text = re.sub(r"\s+", " ", blocks[flag])
        assert env_var in text, f"{flag} does not name its environment variable {env_var}"
        assert len(text) > len(flag) + len(env_var) + 20, f"{flag} has no description"


def test_once_writes_the_key_and_exits_zero(
    openbao: OpenBaoServer, unique_path: str, tmp_path: Path
) -> None:
    openbao.put_key(unique_path, "cli-once-key-0000000000000000000")
    env = clean_env(VAULT_ADDR=openbao.addr, VAULT_TOKEN=openbao.root_token)
    result = run(once_args(unique_path, tmp_path), env)
    assert result.returncode == 0, result.stderr
    key_path = tmp_path / "api_key"
    assert key_path.read_text() == "cli-once-key-0000000000000000000"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o440
    meta = keyfile.read_metadata(key_path)
    assert meta is not None
    assert meta.version == 1


def test_once_configured_by_environment_alone(
    openbao: OpenBaoServer, unique_path: str, tmp_path: Path
) -> None:
    openbao.put_key(unique_path, "env-only-key-0000000000000000000", field="token")
    openbao.put_key(unique_path, "env-only-key-1111111111111111111", field="token")
    env = clean_env(
        VAULT_ADDR=openbao.addr,
        VAULT_TOKEN=openbao.root_token,
        CAPTCHAKEY_AUTH_METHOD="token",
        CAPTCHAKEY_PATH=unique_path,
        CAPTCHAKEY_FIELD="token",
        CAPTCHAKEY_KV_VERSION="1",
        CAPTCHAKEY_OUT_DIR=str(tmp_path),
        CAPTCHAKEY_FILE_NAME="captcha.key",
        CAPTCHAKEY_FILE_MODE="0400",
        CAPTCHAKEY_HEALTH_ADDR="",
        CAPTCHAKEY_ONCE="true",
    )
    result = run(["agent"], env, timeout=20)
    assert result.returncode == 0, result.stderr
    key_path = tmp_path / "captcha.key"
    assert key_path.read_text() == "env-only-key-0000000000000000000"  # the pinned version.
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o400


def test_once_against_unreachable_vault_fails_and_keeps_the_old_file(tmp_path: Path) -> None:
    keyfile.write_key(
        tmp_path,
        "api_key",
        "previous-good-key-00000000000000",
        version=3,
        source="secret/captchaai/dev#api_key",
        fetched_at="t",
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    addr = f"http://127.0.0.1:{free_port()}"
    result = run(once_args("captchaai/dev", tmp_path), clean_env(VAULT_ADDR=addr, VAULT_TOKEN="x"))
    assert result.returncode != 0
    assert addr in result.stderr
    assert "unavailable" in result.stderr
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "999"], "not an octal file mode"),
        (["--mode", "1777"], "outside 0000-0777"),
        (["--file-name", "../x"], "invalid key file name"),
        (["--file-name", "a/b"], "invalid key file name"),
        (["--file-name", "api_key.meta.json"], "invalid key file name"),
    ],
)
def test_bad_mode_and_file_name_are_usage_errors(
    openbao: OpenBaoServer, unique_path: str, tmp_path: Path, extra: list[str], message: str
) -> None:
    openbao.put_key(unique_path, "never-written-key-00000000000000")
    env = clean_env(VAULT_ADDR=openbao.addr, VAULT_TOKEN=openbao.root_token)
    result = run(once_args(unique_path, tmp_path, *extra), env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "x").exists()


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = run(
        ["agent", "--auth-method", "token", "--out-dir", str(tmp_path), "--once"],
        clean_env(VAULT_ADDR="http://127.0.0.1:1"),
    )
    assert result.returncode == 2
    assert "--path" in result.stderr


def test_running_agent_refreshes_on_sighup_and_stops_on_sigterm(
    openbao: OpenBaoServer, unique_path: str, tmp_path: Path
) -> None:
    openbao.put_key(unique_path, "sighup-key-1-000000000000000000")
    key_path = tmp_path / "api_key"
    port = free_port()
    env = clean_env(VAULT_ADDR=openbao.addr, VAULT_TOKEN=openbao.root_token)
    args = [
        "agent",
        *("--auth-method", "token"),
        *("--path", unique_path),
        *("--out-dir", str(tmp_path)),
        *("--refresh-interval", "3600"),
        *("--health-addr", f"127.0.0.1:{port}"),
    ]
    process = subprocess.Popen(
        [CAPTCHAKEY, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: key_path.exists() or process.poll() is not None)
        assert process.poll() is None
        assert key_path.read_text() == "sighup-key-1-000000000000000000"

        openbao.put_key(unique_path, "sighup-key-2-000000000000000000")
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: key_path.read_text() == "sighup-key-2-000000000000000000", timeout=5)

        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    entries = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    messages = [entry["message"] for entry in entries]
    assert "key agent stopped" in messages
    assert sum(message == "key written" for message in messages) == 2
    assert key_path.read_text() == "sighup-key-2-000000000000000000"  # the file stays.


@pytest.mark.parametrize(
    ("stdin", "key_rules", "said"),
    [
        ("first-line-00000000000000000000\nsecond-line\n", {}, "a newline at position 32"),
        ("with space 0000000000000000000\n", {}, "a space at position 5"),
        ("Mistyped-Key-00000000000000000\n", {"format": "captchaai"}, "'captchaai' format"),
        ("0123456789abcdef" * 2 + "\n", {"maxLength": 16}, "more than the maximum of 16"),
    ],
)
async def test_rotate_new_key_stdin_applies_the_agents_key_rules(
    kube: RealisticKubernetes,
    openbao: OpenBaoServer,
    kube_openbao: BaoAuth,
    tmp_path: Path,
    stdin: str,
    key_rules: dict[str, object],
    said: str,
) -> None:
    workload = Workload(kube, openbao, kube_openbao, tmp_path, namespace="rotate-rules")
    workload.put_key("0123456789abcdef" * 2)
    await workload.create_binding("captchaai", key=key_rules)
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "VAULT_ADDR": openbao.addr,
        "VAULT_TOKEN": openbao.root_token,
    }
    command = [
        CAPTCHAKEY,
        "rotate",
        *("--binding", "captchaai"),
        *("-n", workload.namespace),
        "--new-key-stdin",
        *("--timeout", "5"),
    ]
    result = await asyncio.to_thread(
        subprocess.run, command, input=stdin, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"Error: the new key for field 'api_key' of \"secret/data/{workload.path}\""
    )
    assert said in last
    assert "Traceback" not in result.stderr
    assert stdin.split()[0] not in result.stdout + result.stderr
    # Nothing stored, nothing requested: the refusal came before both.
    assert (
        openbao.client().secrets.kv.v2.read_secret_metadata(workload.path)["data"][
            "current_version"
        ]
        == 1
    )
    body = await workload.get_binding("captchaai")
    assert "rotation" not in body["spec"]
