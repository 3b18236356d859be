"""An application can import the client without the agent's or operator's dependencies.

Covers: ``import agent.captchaai`` in a fresh interpreter where kopf, hvac, kubernetes
and requests cannot be imported, and that it pulls in none of agent.vault,
agent.sidecar or agent.operator.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
for blocked in ("kopf", "hvac", "kubernetes", "requests"):
    sys.modules[blocked] = None  # makes any import of it fail.
import agent.captchaai
heavy = sorted(m for m in sys.modules if m.split(".")[:2] in (
    ["agent", "vault"], ["agent", "sidecar"], ["agent", "operator"]))
print(heavy)
"""


def test_imports_without_agent_or_operator_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
