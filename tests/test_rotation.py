"""``captchakey rotate`` as a platform engineer types it: the real CLI.

Most cases run the CLI in-process (click's runner, with the environment and HOME of a
user who has set nothing up); the ones about the process itself (no traceback, the
KUBECONFIG variable the client reads at import) run ``captchakey`` as a subprocess.

Covers, against the rig's API and a real OpenBao:
- every ordinary mistake is one line on stderr and exit 1, never a traceback: no
  kubeconfig at all, a kubeconfig file that does not exist, an unknown ``--context``,
  an API server that refuses connections, a binding that does not exist, no Vault
  token, a Vault token Vault refuses;
- an API server that accepts the connection and never answers is such a line too,
  within ``--request-timeout`` (not a wait without end);
- ``--help`` says where the kubeconfig is looked for and where the Vault token comes from;
- without ``-n`` the namespace is the kubeconfig context's (as kubectl does), and
  ``--context`` picks another context of the same file;
- the Vault token is found as the vault/bao CLIs find it: ``~/.vault-token`` when
  VAULT_TOKEN is unset;
- Vault's address is found as the vault/bao CLIs find it: ``BAO_ADDR`` when VAULT_ADDR
  is unset, and VAULT_ADDR when both are set;
- ``--vault-namespace`` (or VAULT_NAMESPACE, or BAO_NAMESPACE) stores the key in that
  OpenBao namespace (not the root one).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest
from click.testing import CliRunner

from agent.cli import main
from tests.rig.helpers import free_port
from tests.rig.kube import RealisticKubernetes
from tests.rig.scenario import BINDINGS_PATH, Workload

CAPTCHAKEY = str(Path(sys.executable).with_name("captchakey"))
NEW_KEY = "rotated-key-0123456789abcdef0123"


def kubeconfig(path: Path, contexts: dict[str, tuple[str, str, str]], current: str) -> Path:
    """A kubeconfig with one cluster and user per context: name -> (server, token, namespace)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": s}} for n, (s, _, _) in contexts.items()],
        "users": [{"name": n, "user": {"token": t}} for n, (_, t, _) in contexts.items()],
        "contexts": [
            {"name": n, "context": {"cluster": n, "user": n, "namespace": ns}}
            for n, (_, _, ns) in contexts.items()
        ],
        "current-context": current,
    }
    path.write_text(json.dumps(config))
    return path


UNSET = (
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    *("VAULT_TOKEN", "VAULT_ADDR", "VAULT_CACERT", "VAULT_NAMESPACE"),
    *("BAO_TOKEN", "BAO_ADDR", "BAO_CACERT", "BAO_NAMESPACE"),
)


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def captchakey(*args: str, home: Path, stdin: str = "", **env: str) -> Ran:
    """The CLI in-process, as a user with nothing set up runs it (no kubeconfig, no token)."""
    environment: dict[str, str | None] = dict.fromkeys(UNSET)
    result = CliRunner().invoke(
        main, ["rotate", *args], input=stdin, env={**environment, "HOME": str(home), **env}
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback the user would have seen.
    return Ran(result.exit_code, result.stdout, result.stderr)


def captchakey_process(*args: str, home: Path, **env: str) -> Ran:
    """The CLI as its own process, with the same clean environment."""
    clean = {k: v for k, v in os.environ.items() if k not in UNSET}
    done = subprocess.run(
        [CAPTCHAKEY, "rotate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "HOME": str(home), **env},
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def one_line_error(result: Ran) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def test_no_kubeconfig_is_one_line(home: Path) -> None:
    line = one_line_error(captchakey_process("--binding", "captchaai", home=home))
    assert "no kubeconfig" in line
    assert "KUBECONFIG is unset" in line
    assert f"{home}/.kube/config does not exist" in line
    assert "--kubeconfig" in line


def test_missing_kubeconfig_file_is_one_line(home: Path) -> None:
    missing = home / "nope.yaml"
    line = one_line_error(captchakey("--binding", "b", "--kubeconfig", str(missing), home=home))
    assert f"cannot use the kubeconfig {missing}" in line


def test_unreachable_api_server_is_one_line(home: Path, kube: RealisticKubernetes) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = kubeconfig(home / "config", {"dead": (dead, "token", "solver-dev")}, "dead")
    line = one_line_error(
        captchakey_process("--binding", "b", "--kubeconfig", str(config), home=home)
    )
    assert f"cannot reach the Kubernetes API at {dead} (context 'dead')" in line
    assert "Connection refused" in line


def test_a_silent_api_server_is_one_line_within_the_request_timeout(
    home: Path, kube: RealisticKubernetes
) -> None:
    """The rig's API accepts the request for the binding and never answers it."""
    released = threading.Event()
    path = f"{BINDINGS_PATH.format(ns='solver-dev')}/captchaai"
    kube[f"get {path}"] << (lambda: asyncio.to_thread(released.wait, 60))
    config = kubeconfig(
        home / "config", {"rig": (kube.api_url, kube.admin_token, "solver-dev")}, "rig"
    )
    args = ("--binding", "captchaai", "--kubeconfig", str(config), "--request-timeout", "1")
    started = time.monotonic()
    try:
        line = one_line_error(captchakey(*args, home=home))
    finally:
        released.set()
    assert time.monotonic() - started < 10  # the default would wait 30 s, no timeout forever.
    assert f"cannot reach the Kubernetes API at {kube.api_url} (context 'rig')" in line
    assert "no answer within 1 s (--request-timeout)" in line


def test_refused_credentials_are_one_line(home: Path, kube: RealisticKubernetes) -> None:
    config = kubeconfig(home / "config", {"rig": (kube.api_url, "forged", "x")}, "rig")
    line = one_line_error(captchakey("--binding", "b", "--kubeconfig", str(config), home=home))
    assert f"the Kubernetes API at {kube.api_url} answered 401" in line
    assert "log in again" in line


def test_namespace_and_context_come_from_the_kubeconfig(
    home: Path, kube: RealisticKubernetes
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    contexts = {
        "staging": (dead, "token", "elsewhere"),
        "rig": (kube.api_url, kube.admin_token, "solver-dev"),
    }
    (home / ".kube").mkdir()
    config = kubeconfig(home / ".kube" / "config", contexts, "rig")
    # ~/.kube/config, no -n: the current context's namespace.
    line = one_line_error(captchakey("--binding", "missing", home=home))
    assert line.endswith("no CaptchaKeyBinding 'missing' in namespace 'solver-dev'"), line
    # -n wins over the context's namespace.
    line = one_line_error(captchakey("--binding", "missing", "-n", "other", home=home))
    assert line.endswith("no CaptchaKeyBinding 'missing' in namespace 'other'"), line
    # --context picks another context of the same file (this one's API is down).
    line = one_line_error(captchakey("--binding", "b", "--context", "staging", home=home))
    assert f"cannot reach the Kubernetes API at {dead} (context 'staging')" in line
    line = one_line_error(captchakey("--binding", "b", "--context", "prod", home=home))
    assert "no context 'prod' in the kubeconfig" in line
    assert "it has: staging, rig" in line
    # KUBECONFIG is honoured as kubectl honours it.
    moved = config.rename(home / "elsewhere.yaml")
    line = one_line_error(
        captchakey_process("--binding", "missing", home=home, KUBECONFIG=str(moved))
    )
    assert line.endswith("in namespace 'solver-dev'"), line


def test_help_says_where_it_looks(home: Path) -> None:
    result = captchakey("--help", home=home)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "$KUBECONFIG, else ~/.kube/config" in text
    assert "the kubeconfig context's namespace" in text
    assert (
        "VAULT_TOKEN (or BAO_TOKEN), else the token `vault login` or `bao login` saved in" in text
    )
    assert "~/.vault-token" in text
    assert "--vault-namespace" in text


@pytest.fixture
def rig_config(home: Path, workload: Workload) -> Path:
    token = workload.kube.admin_token
    contexts = {"rig": (workload.kube.api_url, token, workload.namespace)}
    return kubeconfig(home / "config", contexts, "rig")


def test_vault_mistakes_are_one_line(home: Path, workload: Workload, rig_config: Path) -> None:
    asyncio.run(workload.create_binding("captchaai"))
    args = ("--binding", "captchaai", "--kubeconfig", str(rig_config), "--new-key-stdin")
    vault = {"VAULT_ADDR": workload.openbao.addr}
    line = one_line_error(captchakey(*args, home=home, stdin=NEW_KEY, **vault))
    assert "token auth needs a token: set VAULT_TOKEN" in line
    line = one_line_error(captchakey(*args, home=home, stdin=NEW_KEY, VAULT_TOKEN="s.bad", **vault))
    assert "Vault" in line
    assert NEW_KEY not in line
    dead = {"VAULT_ADDR": f"http://127.0.0.1:{free_port()}", "VAULT_TOKEN": "root"}
    line = one_line_error(captchakey(*args, home=home, stdin=NEW_KEY, **dead))
    assert "unavailable" in line
    assert NEW_KEY not in line


def test_vault_token_file_like_the_vault_cli(
    home: Path, workload: Workload, rig_config: Path
) -> None:
    workload.put_key("first-key-0123456789abcdef012345")
    asyncio.run(workload.create_binding("captchaai"))
    (home / ".vault-token").write_text(workload.openbao.root_token + "\n")
    result = captchakey(
        *("--binding", "captchaai"),
        *("--kubeconfig", str(rig_config)),
        "--new-key-stdin",
        *("--timeout", "1"),
        home=home,
        stdin=NEW_KEY,
        VAULT_ADDR=workload.openbao.addr,
    )
    assert f"stored a new key at secret/{workload.path} as version 2" in result.stdout, (
        result.stdout + result.stderr
    )
    assert result.returncode == 1  # no operator runs here: the rollout cannot complete.
    assert "timed out after 1s" in result.stdout
    assert _read(workload.openbao.client(), workload.path) == NEW_KEY


def test_the_vault_address_is_found_as_the_vault_and_bao_clis_find_it(
    home: Path, workload: Workload, rig_config: Path
) -> None:
    workload.put_key("first-key-0123456789abcdef012345")
    asyncio.run(workload.create_binding("captchaai"))
    args = ("--binding", "captchaai", "--kubeconfig", str(rig_config), "--new-key-stdin")
    token = {"VAULT_TOKEN": workload.openbao.root_token}
    dead = f"http://127.0.0.1:{free_port()}"
    # VAULT_ADDR wins when both are set, as with the vault CLI beside the bao one.
    both = {"VAULT_ADDR": dead, "BAO_ADDR": workload.openbao.addr, **token}
    line = one_line_error(captchakey(*args, home=home, stdin=NEW_KEY, **both))
    assert f"Vault at {dead} is unavailable" in line
    # BAO_ADDR alone: an OpenBao user's environment.
    result = captchakey(
        *args, "--timeout", "1", home=home, stdin=NEW_KEY, BAO_ADDR=workload.openbao.addr, **token
    )
    assert f"stored a new key at secret/{workload.path} as version 2" in result.stdout, (
        result.stdout + result.stderr
    )
    assert _read(workload.openbao.client(), workload.path) == NEW_KEY


@pytest.mark.parametrize("given", ["--vault-namespace", "VAULT_NAMESPACE", "BAO_NAMESPACE"])
def test_vault_namespace_receives_the_key(
    home: Path, workload: Workload, rig_config: Path, given: str
) -> None:
    namespace = f"team-{uuid.uuid4().hex[:6]}"
    root = workload.openbao.client()
    root.adapter.post(f"/v1/sys/namespaces/{namespace}")
    inside = hvac.Client(url=workload.openbao.addr, token=root.token, namespace=namespace)
    inside.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    asyncio.run(workload.create_binding("captchaai"))
    flag = ("--vault-namespace", namespace) if given.startswith("--") else ()
    result = captchakey(
        *("--binding", "captchaai"),
        *("--kubeconfig", str(rig_config)),
        "--new-key-stdin",
        *flag,
        *("--timeout", "1"),
        home=home,
        stdin=NEW_KEY,
        VAULT_ADDR=workload.openbao.addr,
        VAULT_TOKEN=workload.openbao.root_token,
        **({} if flag else {given: namespace}),
    )
    assert "as version 1" in result.stdout, result.stdout + result.stderr
    assert _read(inside, workload.path) == NEW_KEY
    with pytest.raises(hvac.exceptions.InvalidPath):
        _read(root, workload.path)  # nothing in the root namespace.


def _read(client: hvac.Client, path: str) -> Any:
    secret = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    return secret["data"]["data"]["api_key"]
