"""``captchakey demo``: the whole key path end to end, as a user runs it.

Covers: ``captchakey demo --rotations 2`` exits 0 within 60 s, reports every rotation
as propagated, and prints the latency of each and their summary, what the latency
measures and which figures depend on the demo's own poll interval.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_propagates_rotations_and_prints_latency() -> None:
    captchakey = str(Path(sys.executable).with_name("captchakey"))
    result = subprocess.run(
        [captchakey, "demo", "--rotations", "2"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "rotations propagated : 2/2" in out
    assert re.search(r"latency p50 / max\s+: \d+ ms / \d+ ms", out), out
    assert len(re.findall(r"rotation \d: version \d+, fingerprint [0-9a-f]{12}, \d+ ms", out)) == 2
    assert "from the Vault write returning to the application's KeyReader" in out
    assert "set by this demo's --interval (0.2 s): the latencies" in out
