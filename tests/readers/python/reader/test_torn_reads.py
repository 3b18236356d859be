"""Torn-read torture: readers never see a partial, empty or mixed key.

Covers:
- a separate reader *process* opens and reads the key file in a tight loop (thousands
  of reads) while the real agent (``KeyAgent`` + ``KeyRefresher`` + ``VaultClient``
  against the real OpenBao) rotates the key hundreds of times; every read is one
  complete, valid key, and the reader saw many different versions (the reads really
  overlapped the rotations);
- the in-process reader's watcher never overflowed (other processes' reads do not
  flood its inotify queue, which would drop rotation events);
- every rotation landed: each refresh rewrote the file, and the last version is on disk;
- an in-process ``KeyReader`` during the same torture: every value ``get()`` returned is
  a valid key that the reader announced (or started with), callbacks fire at most once
  per key, in increasing version order, and their count is > 0 and <= the rotations.

Keys are 32 characters made of one 8-digit token repeated four times, one token per
version, so a truncated, empty or two-version read cannot pass validation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent import keyfile
from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
from agent.vault import SecretRef, TokenAuth, VaultClient
from captchakeys import KeyReader
from tests.rig.openbao import OpenBaoServer

ROTATIONS = 300
MIN_PROCESS_READS = 5_000


def key_for(version: int) -> str:
    return f"{version:08d}" * 4


def is_valid(key: str) -> bool:
    return len(key) == 32 and key[:8].isdigit() and key == key[:8] * 4


# The reader process: stdlib only, reads until its stdin closes, then reports as JSON.
READER_PROCESS = r"""
import json, sys, threading
path = sys.argv[1]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
reads, bad, versions = 0, [], set()
print("ready", flush=True)
while not stop.is_set():
    with open(path, "rb") as f:
        data = f.read()
    reads += 1
    text = data.decode("ascii", "replace")
    if len(text) == 32 and text[:8].isdigit() and text == text[:8] * 4:
        versions.add(text[:8])
    elif len(bad) < 10:
        bad.append(text)
    else:
        bad.append("...")
        break
print(json.dumps({"reads": reads, "bad": bad, "versions": len(versions)}), flush=True)
"""


def test_no_torn_reads_across_hundreds_of_rotations(
    openbao: OpenBaoServer, unique_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog")
    # The key version in OpenBao and the token in the key are kept equal.
    assert openbao.put_key(unique_path, key_for(1)) == 1
    client = VaultClient(openbao.addr, TokenAuth(token=openbao.root_token))
    target = KeyTarget(tmp_path)
    agent = KeyAgent(KeyRefresher(client, SecretRef(unique_path), target))
    assert asyncio.run(agent.refresh_once())
    key_path = target.path
    assert key_path.read_text() == key_for(1)

    reader = KeyReader(key_path)
    got: set[str] = set()
    announced: list[str] = []
    reader.on_change(announced.append)
    initial = reader.get()
    stop_get = threading.Event()

    def hammer_get() -> None:
        while not stop_get.is_set():
            got.add(reader.get())
            time.sleep(0.0002)  # sample often, but leave the GIL to the agent.

    getter = threading.Thread(target=hammer_get, daemon=True)
    getter.start()

    process = subprocess.Popen(
        [sys.executable, "-c", READER_PROCESS, str(key_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"

        async def rotate() -> int:
            landed = 0
            for version in range(2, ROTATIONS + 2):
                assert openbao.put_key(unique_path, key_for(version)) == version
                landed += await agent.refresh_once()
            return landed

        landed = asyncio.run(rotate())
        out, _ = process.communicate(timeout=30)  # closes stdin: the reader stops.
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stop_get.set()
        getter.join(timeout=5)

    report = json.loads(out.strip().splitlines()[-1])
    assert process.returncode == 0
    assert report["bad"] == [], f"torn reads seen by the reader process: {report['bad']}"
    assert report["reads"] >= MIN_PROCESS_READS, report
    assert report["versions"] > 10, report  # the reads really overlapped the rotations.

    assert landed == ROTATIONS
    assert key_path.read_text() == key_for(ROTATIONS + 1)
    meta = keyfile.read_metadata(key_path)
    assert meta is not None
    assert meta.version == ROTATIONS + 1
    assert agent.refresher.held_version == ROTATIONS + 1
    assert client.logins == 1

    # The in-process reader: let it see the last key, then check what it handed out.
    deadline = time.monotonic() + 5
    while reader.get() != key_for(ROTATIONS + 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    reader.close()
    assert reader.get() == key_for(ROTATIONS + 1)
    assert all(is_valid(key) for key in got | set(announced)), sorted(got)[:5]
    assert got <= {initial, *announced}
    assert len(announced) == len(set(announced))  # at most one callback per key.
    versions = [int(key[:8]) for key in announced]
    assert versions == sorted(versions)
    assert 0 < len(announced) <= ROTATIONS
    assert announced[-1] == key_for(ROTATIONS + 1)
    # The reader process's opens must not flood the watcher: an overflowing inotify
    # queue drops events, rotations included.
    overflows = [r for r in caplog.records if "overflow" in r.getMessage().lower()]
    assert overflows == []
