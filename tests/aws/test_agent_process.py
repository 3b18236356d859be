"""The real ``captchakey agent --binding`` process for an AWS binding, configured as injected.

Covers: with exactly the environment the webhook gives an AWS binding's agent
(CAPTCHAKEY_AWS_TOKEN_FILE, CAPTCHAKEY_AWS_ENDPOINT_URL, no VAULT_ADDR, no Vault token),
the process exchanges the token with STS, writes the key with its version id and
reports that id on /status; the AWS SDK is loaded in this process (and only in this
mode: see test_vault_users_stay_lean). Its RSS is printed for docs/aws.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import requests

from tests.aws.conftest import AGENT_ACTIONS, TOKEN, TRUST
from tests.rig.helpers import free_port, wait_until
from tests.rig.kube import API_AUDIENCE, RealisticKubernetes
from tests.rig.moto import REGION, MotoServer
from tests.rig.scenario import BINDINGS_PATH

PROGRAM = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(
    [name for name, module in sys.modules.items() if module is not None]), file=sys.stderr))
from agent.cli import main
main()
"""
KEY = "0123456789abcdef0123456789abcdef"


def status(port: int) -> dict[str, object]:
    try:
        return dict(requests.get(f"http://127.0.0.1:{port}/status", timeout=1).json())
    except (requests.RequestException, ValueError):
        return {}


async def test_injected_environment_runs_an_aws_binding(
    kube: RealisticKubernetes, moto: MotoServer, tmp_path: Path
) -> None:
    role = moto.create_role([{"Action": AGENT_ACTIONS, "Resource": "*"}], TRUST)
    name, _, version = moto.create_secret(json.dumps({"api_key": KEY}), name="captchaai/proc")
    await kube.call(
        "POST",
        BINDINGS_PATH.format(ns="solver-dev"),
        {
            "apiVersion": "captchakeys.io/v1alpha1",
            "kind": "CaptchaKeyBinding",
            "metadata": {"name": "captchaai", "namespace": "solver-dev"},
            "spec": {
                "environment": "proc",
                "source": "aws",
                "aws": {"secretId": name, "region": REGION, "roleArn": role, "field": "api_key"},
            },
        },
    )
    (tmp_path / "aws-token").write_text(TOKEN)
    token = kube.issue_token("solver-dev", "solver", audience=API_AUDIENCE)
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", token=token)
    out, port = tmp_path / "keys", free_port()
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULT_"))}
    env.update(
        KUBECONFIG=str(kubeconfig),
        POD_NAMESPACE="solver-dev",
        CAPTCHAKEY_OUT_DIR=str(out),
        CAPTCHAKEY_HEALTH_ADDR=f"127.0.0.1:{port}",
        CAPTCHAKEY_AWS_TOKEN_FILE=str(tmp_path / "aws-token"),
        CAPTCHAKEY_AWS_ENDPOINT_URL=moto.url,
        CAPTCHAKEY_LOG_LEVEL="error",
    )
    process = subprocess.Popen(  # noqa: ASYNC220 - one process, waited on below.
        [sys.executable, "-c", PROGRAM, "agent", "--binding", "captchaai"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: status(port).get("version") == version, timeout=60)
        assert (out / "api_key").read_text() == KEY
        proc = Path(f"/proc/{process.pid}/status").read_text()
        rss, peak = (int(proc.split(f"{f}:")[1].split()[0]) / 1024 for f in ("VmRSS", "VmHWM"))
        print(f"AWS-mode agent RSS: {rss:.1f} MiB, peak {peak:.1f} MiB")  # for docs/aws.md
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    loaded = json.loads(stderr.strip().splitlines()[-1])
    assert "botocore" in loaded
    assert "agent.aws.secrets" in loaded
    assert KEY not in stderr
