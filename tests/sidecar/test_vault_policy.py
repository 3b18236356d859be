"""The agent refuses a binding that would send the pod's token where the platform did not allow.

Covers, with the real ``captchakey agent --binding`` process configured exactly as the
webhook injects it (``VaultPolicy.as_env()``), a real OpenBao and the rig's API server
(which, like a cluster without the validating webhook, stores any binding):

- a binding edited after admission to another Vault address (one not on the allow-list)
  is refused: the agent logs the field, the value and the chart value to change, /status
  names the problem and carries the same message in lastError, the last good key stays
  in place, and the other address never
  receives a single connection (so never the token);
- a binding edited to the API server's audience is refused the same way;
- a binding that names the allowed address is followed again (the refusal is not sticky).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from agent.binding.policy import VaultPolicy
from tests.rig.helpers import free_port, wait_until
from tests.rig.kube import BaoAuth, RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.scenario import Workload
from tests.sidecar.process import Listener

KEY, NEXT_KEY = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"


def status(port: int) -> dict[str, object]:
    """The agent's /status; ``{}`` until its health server listens (after the first key)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            loaded: dict[str, object] = json.load(response)
            return loaded
    except urllib.error.URLError:
        return {}


def test_an_edited_binding_cannot_redirect_the_token(
    kube: RealisticKubernetes,
    openbao: OpenBaoServer,
    kube_openbao: BaoAuth,
    tmp_path: Path,
    elsewhere: Listener,
) -> None:
    workload = Workload(kube, openbao, kube_openbao, tmp_path, namespace="solver-dev")
    workload.put_key(KEY)
    asyncio.run(workload.create_binding("captchaai"))
    # What the webhook injects for a development OpenBao on plain http.
    policy = VaultPolicy(addresses=(openbao.addr,), audiences=("vault",), allow_http=True)
    env = {
        **os.environ,
        "KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig", token=workload.api_token())),
        "VAULT_ADDR": openbao.addr,
        **{e["name"]: e["value"] for e in policy.as_env()},
    }
    out, port = tmp_path / "out", free_port()
    out.mkdir()
    args = ["agent", "--binding", "captchaai", "--namespace", workload.namespace]
    args += ["--out-dir", str(out), "--health-addr", f"127.0.0.1:{port}"]
    args += ["--token-file", str(workload.token_file), "--log-format", "text"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from agent.cli import main; main()", *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    key_file = out / "api_key"
    try:
        wait_until(lambda: key_file.is_file() and key_file.read_text() == KEY, timeout=20)

        redirect = f"http://127.0.0.1:{elsewhere.port}"
        workload.put_key(NEXT_KEY)  # a reason to go to Vault, if the agent still would.
        asyncio.run(workload.patch_binding("captchaai", {"spec": {"vault": {"address": redirect}}}))
        wait_until(lambda: status(port).get("problem") == "InvalidBinding", timeout=20)
        assert key_file.read_text() == KEY  # the last good key stays in place
        last_error = status(port)["lastError"]
        assert isinstance(last_error, dict)
        assert last_error["reason"] == "InvalidBinding"
        assert f"spec.vault.address {redirect!r} is not allowed" in last_error["message"]

        audience = {"auth": {"audience": "https://kubernetes.default.svc.cluster.local"}}
        asyncio.run(
            workload.patch_binding("captchaai", {"spec": {"vault": {"address": "", **audience}}})
        )
        wait_until(lambda: status(port).get("problem") == "InvalidBinding", timeout=20)

        asyncio.run(
            workload.patch_binding(
                "captchaai",
                {"spec": {"vault": {"address": openbao.addr, "auth": {"audience": "vault"}}}},
            )
        )
        wait_until(lambda: key_file.read_text() == NEXT_KEY, timeout=20)
        assert status(port).get("problem") is None
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert elsewhere.connections == 0, "the agent connected to the address it should refuse"
    assert (
        f"spec.vault.address {redirect!r} is not allowed: the platform team allows "
        f"{openbao.addr} (the chart's vault.allowedAddresses)" in stderr
    )
    assert "the last good key stays in place" in stderr
    assert (
        "spec.vault.auth.audience: 'https://kubernetes.default.svc.cluster.local' is not "
        "allowed: printable ASCII without spaces, e.g. vault, and never the Kubernetes API "
        "server's own audience" in stderr
    )
    assert KEY not in stderr
    assert NEXT_KEY not in stderr
