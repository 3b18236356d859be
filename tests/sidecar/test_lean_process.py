"""The in-pod agent stays lean: its process never imports the official Kubernetes client.

Covers: ``captchakey agent --binding`` runs with kopf loaded and the ``kubernetes`` package
installed (the image has it for ``captchakey rotate``), yet loads none of it. The evidence
is the agent's own ``sys.modules``, reported at exit of the real CLI process after a
graceful SIGTERM. The saving is measured by ``make bench`` (docs/benchmarks.md). Nor
does it load prometheus_client (installed for the operator), which the sidecar image
lacks: its ``/metrics`` are written by ``agent.sidecar.metrics`` itself. Nor, though
both are installed, requests' charset detector or frozenlist's compiled (C++) build:
the Vault client and aiohttp work without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.rig.helpers import free_port, wait_until
from tests.rig.kube import RealisticKubernetes

# Runs the real CLI entry point; at exit, reports which modules the process had loaded.
PROGRAM = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(
    [name for name, module in sys.modules.items() if module is not None]), file=sys.stderr))
from agent.cli import main
main()
"""


def test_agent_process_never_imports_the_kubernetes_client(
    kube: RealisticKubernetes, tmp_path: Path
) -> None:
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PROGRAM,
            "agent",
            "--binding",
            "captchaai",
            "--namespace",
            "solver-dev",
            "--out-dir",
            str(tmp_path),
            "--health-addr",
            f"127.0.0.1:{port}",
            "--log-level",
            "error",
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The agent is up once kopf has listed bindings in its namespace.
        wait_until(lambda: any(r.path.endswith("/captchakeybindings") for r in kube.api_requests()))
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    loaded = json.loads(stderr.strip().splitlines()[-1])
    assert "kopf" in loaded, "the agent did not get as far as kopf: the test would prove nothing"
    assert [m for m in loaded if m == "kubernetes" or m.startswith("kubernetes.")] == []
    # The sidecar image has no prometheus_client: the agent writes its metrics itself.
    assert [m for m in loaded if m.split(".")[0] == "prometheus_client"] == []
    assert {"requests", "frozenlist"} <= set(loaded), "nothing to trim from: proves nothing"
    trimmed = {"charset_normalizer", "chardet", "frozenlist._frozenlist"}
    assert [m for m in loaded if m.split(".")[0] in trimmed or m in trimmed] == []
