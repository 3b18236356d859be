"""``captchakey demo``: the whole key path end to end, as a user runs it.

Covers: ``captchakey demo --rotations 2`` exits 0 within 60 s, reports every rotation
as propagated, and prints the latency of each and their summary, what the latency
measures and which figures depend on the demo's own poll interval; the latency comes from
the announced rotation, not the poll: with a 60 s poll interval every rotation still
arrives (each is given 10 s); killed with SIGTERM
mid-run, it stops its ``bao server -dev`` and removes its temporary directories (the key
file with them), as on Ctrl-C, and exits 143.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.rig.helpers import wait_until


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
    assert "set by this demo's --interval (0.2 s): only the agent's fallback" in out
    assert "the latencies are not bounded by it" in out


def test_rotations_arrive_without_waiting_for_the_poll_interval() -> None:
    captchakey = str(Path(sys.executable).with_name("captchakey"))
    result = subprocess.run(
        [captchakey, "demo", "--rotations", "2", "--interval", "60"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rotations propagated : 2/2" in result.stdout


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def test_sigterm_stops_the_bao_server_and_removes_the_temporary_files(tmp_path: Path) -> None:
    captchakey = str(Path(sys.executable).with_name("captchakey"))
    process = subprocess.Popen(
        [captchakey, "demo", "--rotations", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        address = re.search(r"http://127\.0\.0\.1:(\d+)", lines[0])
        assert address, lines
        port = int(address.group(1))
        assert "agent wrote" in lines[2], lines  # the key file exists under TMPDIR now.
        assert any(p.name.startswith("captchaai-") for p in tmp_path.iterdir())
        (bao,) = children(process.pid)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr, stderr
    wait_until(lambda: not Path(f"/proc/{bao}").exists(), timeout=10)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the bao server still listens"
    assert list(tmp_path.iterdir()) == [], "temporary files left behind"
