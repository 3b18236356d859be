"""Vault users pay nothing for AWS: a real Vault-mode agent process never loads the AWS SDK.

Covers: ``captchakey agent --binding`` following a Vault binding, with boto3 and botocore
installed (as in the dev environment and an image built with the aws extra), logs in to
a real OpenBao, writes the key and then, at a graceful SIGTERM, reports its own
``sys.modules``: neither boto3 nor botocore nor ``agent.aws.secrets`` is among them.
The RSS figures before/after this feature are in docs/aws.md (measured, not asserted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent import keyfile
from tests.rig.helpers import wait_until
from tests.rig.kube import RealisticKubernetes
from tests.rig.scenario import Workload

# The real CLI entry point; at exit it reports which modules the process had loaded.
PROGRAM = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(
    [name for name, module in sys.modules.items() if module is not None]), file=sys.stderr))
from agent.cli import main
main()
"""


async def test_vault_mode_agent_never_imports_the_aws_sdk(
    kube: RealisticKubernetes, workload: Workload, tmp_path: Path
) -> None:
    import boto3  # noqa: F401 - installed here, so "not loaded" is a real finding.

    workload.put_key("lean-vault-key-00000000000000001")
    await workload.create_binding("captchaai")
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", token=workload.api_token())
    out = tmp_path / "keys"
    out.mkdir()
    process = subprocess.Popen(  # noqa: ASYNC220 - one process, waited on below.
        [
            sys.executable,
            *("-c", PROGRAM),
            "agent",
            *("--binding", "captchaai"),
            *("--namespace", workload.namespace),
            *("--vault-addr", workload.openbao.addr),
            *("--token-file", str(workload.token_file)),
            *("--out-dir", str(out)),
            *("--health-addr", ""),
            *("--log-level", "error"),
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        meta = lambda: keyfile.read_metadata(out / "api_key")  # noqa: E731
        wait_until(lambda: (m := meta()) is not None and m.version == 1, timeout=60)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    loaded = json.loads(stderr.strip().splitlines()[-1])
    assert "agent.vault.client" in loaded, "the agent did not read Vault: this proves nothing"
    aws = [
        m for m in loaded if m.split(".")[0] in ("boto3", "botocore") or m == "agent.aws.secrets"
    ]
    assert aws == []
