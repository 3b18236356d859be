"""Both readers read what the key agent writes, alike: docs/keyfile-format.md, held.

Covers:
- the real writer (``agent.keyfile.write_key``) rotating a key several times, with Vault
  version numbers under the default file name and with AWS version ids under another
  name: the Python reader (``captchakeys.KeyReader``, in-process) and the Node.js reader
  (``readers/node``, run by ``node`` in a subprocess) settle on the writer's fingerprint
  and version after each write, and report the same rotations, once each: none for the
  key they started with, none for the same key under a new version (only the version
  changes); the Node reader's output never contains a key;
- each reading rule of the specification on files made by hand, since the writer cannot
  make them: what is stripped around the key (spaces, tabs, CR, LF and nothing else);
  blank, empty, absent and non-UTF-8 key files; metadata absent, not JSON, not an object,
  with a byte-order mark, not UTF-8, of the previous key, with only the fields a version
  needs, and versions that are ids, empty, booleans, null, absent, fractions, integral
  floats, at and beyond 2^53 - 1: both readers give the specification's answer;
- node >= 18 is required: without it these tests fail, saying so; they never skip.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from agent.keyfile import write_key
from captchakeys import KeyReader, Version

ROOT = Path(__file__).resolve().parents[2]
NODE_READER = (ROOT / "readers" / "node" / "src" / "index.js").as_uri()

# The specification's example key and its fingerprint, written out rather than computed
# by the code under test.
KEY = "0123456789abcdef" * 2
FP = "3eb1bd439947"

State = tuple[str | None, Version | None]  # (fingerprint, version), as a reader reports it.

# One reader per path, each reporting what it holds right after it started.
SNAPSHOT = """
const [readerUrl, ...paths] = process.argv.slice(1);
const { KeyReader } = await import(readerUrl);
for (const path of paths) {
  const reader = new KeyReader({ path });
  console.log(JSON.stringify([reader.fingerprint, reader.version]));
  reader.close();
}
"""

# One reader following one path: a line per rotation, and one per line read on stdin.
FOLLOW = """
import readline from 'node:readline';
const [readerUrl, path] = process.argv.slice(1);
const { KeyReader } = await import(readerUrl);
const reader = new KeyReader({ path });
const report = (event) =>
  console.log(JSON.stringify({ event, state: [reader.fingerprint, reader.version] }));
reader.on('change', () => report('change'));
report('ready');
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', () => report('state'));
lines.on('close', () => reader.close());
"""


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node >= 18 is required to test the Node.js reader against the Python one")
    version = subprocess.run(
        [found, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.fail(f"node >= 18 is required to test the Node.js reader, found {version}")
    return found


def sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def state_of(reader: KeyReader) -> State:
    return reader.fingerprint, reader.version


def parsed_state(reported: list[Any]) -> State:
    fingerprint, version = reported
    return fingerprint, version


def python_state(path: Path) -> State:
    with KeyReader(path) as reader:
        return state_of(reader)


def node_states(node: str, paths: list[Path]) -> list[State]:
    result = subprocess.run(
        [node, "--input-type=module", "-e", SNAPSHOT, NODE_READER, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [parsed_state(json.loads(line)) for line in result.stdout.splitlines()]


# --- rotations by the real writer ---------------------------------------------------------


class NodeFollower:
    """The Node.js reader following a key file in a ``node`` subprocess."""

    def __init__(self, node: str, path: Path):
        self._process = subprocess.Popen(
            [node, "--input-type=module", "-e", FOLLOW, NODE_READER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output: list[str] = []
        self.rotations: list[str | None] = []
        self._states: queue.Queue[State] = queue.Queue()
        self._reading = threading.Thread(target=self._read, daemon=True)
        self._reading.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.output.append(line)
            report = json.loads(line)
            state = parsed_state(report["state"])
            if report["event"] == "change":
                self.rotations.append(state[0])
            else:
                self._states.put(state)

    def started(self) -> State:
        return self._states.get(timeout=30)

    def state(self) -> State:
        """What the reader holds now: asked for on stdin, answered on stdout."""
        assert self._process.stdin is not None
        self._process.stdin.write("state\n")
        self._process.stdin.flush()
        return self._states.get(timeout=30)

    def __enter__(self) -> NodeFollower:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Let the reader stop (its stdin closed); kill it if it does not."""
        assert self._process.stdin is not None
        assert self._process.stderr is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reading.join(timeout=30)
        self.output.append(self._process.stderr.read())
        if exc is None:
            assert self._process.returncode == 0, self.output[-1]


def settle(which: str, held: Callable[[], State], expected: State) -> None:
    """Wait until a reader holds ``expected``; fail naming the reader and what it holds."""
    deadline = time.monotonic() + 20
    while (now := held()) != expected:
        assert time.monotonic() < deadline, f"the {which} reader holds {now}, not {expected}"
        time.sleep(0.02)


@dataclass(frozen=True)
class Write:
    key: str
    version: Version


VAULT_WRITES = [
    Write("a1" * 16, 1),
    Write("b2" * 16, 2),
    Write("b2" * 16, 3),  # the same key stored again in Vault: a new version, no rotation.
    Write("c3" * 16, 4),
    Write("d4" * 16, 5),
]
AWS_WRITES = [
    Write("e5" * 16, "0d9a9c1e-6a41-4f4e-9f53-3c1b2f6f0a11"),
    Write("f6" * 16, "5b7f4a2c-0c8e-4d0b-8a6e-2e4f1d9c7b22"),
    Write("a7" * 16, "9e2d6b10-3f5a-4c7e-b1d4-6a8c0e2f4b33"),
]


def write(directory: Path, name: str, step: Write) -> State:
    """One write by the key agent's own writer; what a reader should then hold."""
    meta = write_key(
        directory,
        name,
        step.key,
        version=step.version,
        source="secret/captchaai/dev#api_key",
        fetched_at="2026-01-02T03:04:05+00:00",
        created_time="2026-01-02T03:00:00.000000Z" if isinstance(step.version, int) else None,
    )
    return meta.fingerprint, meta.version


@pytest.mark.parametrize(
    ("name", "writes"),
    [("api_key", VAULT_WRITES), ("captchaai.key", AWS_WRITES)],
    ids=["vault-versions", "aws-version-ids"],
)
def test_both_readers_follow_the_writers_rotations_alike(
    node: str, tmp_path: Path, name: str, writes: list[Write]
) -> None:
    path = tmp_path / name
    first = write(tmp_path, name, writes[0])
    python_rotations: list[str] = []
    with NodeFollower(node, path) as follower, KeyReader(path) as reader:
        reader.on_change(lambda key: python_rotations.append(sha12(key)))
        assert follower.started() == state_of(reader) == first
        for step in writes[1:]:
            expected = write(tmp_path, name, step)
            settle("Python", lambda: state_of(reader), expected)
            settle("Node.js", follower.state, expected)

    rotated = [sha12(w.key) for previous, w in itertools.pairwise(writes) if w.key != previous.key]
    assert python_rotations == rotated
    assert follower.rotations == rotated
    assert not any(w.key in line for w in writes for line in follower.output)


# --- the reading rules, on files made by hand ----------------------------------------------

K = KEY.encode()


def meta(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


WRITTEN = meta(version=3, fingerprint=FP, fetched_at="2026-01-02T03:04:05+00:00", source="s")
NBSP, BOM = "\u00a0", "\ufeff"


@dataclass(frozen=True)
class Case:
    key: bytes | None  # None: no key file.
    meta: bytes | None  # None: no metadata file.
    expected: State


CASES = {
    "as written": Case(K, WRITTEN, (FP, 3)),
    "trailing newline": Case(K + b"\n", WRITTEN, (FP, 3)),
    "spaces, tabs, CR, LF around": Case(b" \t" + K + b"\r\n", WRITTEN, (FP, 3)),
    "no-break space is content": Case((NBSP + KEY).encode(), WRITTEN, (sha12(NBSP + KEY), None)),
    "byte-order mark is content": Case((BOM + KEY).encode(), WRITTEN, (sha12(BOM + KEY), None)),
    "blank key file": Case(b" \r\n\t", WRITTEN, (None, None)),
    "empty key file": Case(b"", WRITTEN, (None, None)),
    "key file not UTF-8": Case(b"\xff" + K, WRITTEN, (None, None)),
    "no key file": Case(None, WRITTEN, (None, None)),
    "no metadata": Case(K, None, (FP, None)),
    "metadata not JSON": Case(K, b'{"version": 3,', (FP, None)),
    "metadata an array": Case(K, b"[3]", (FP, None)),
    "metadata null": Case(K, b"null", (FP, None)),
    "metadata with a byte-order mark": Case(K, b"\xef\xbb\xbf" + WRITTEN, (FP, None)),
    "metadata not UTF-8": Case(K, WRITTEN.replace(b'"s"', b'"\xff"'), (FP, None)),
    "metadata of the previous key": Case(K, meta(version=3, fingerprint=sha12("old")), (FP, None)),
    "fingerprint not a string": Case(K, meta(version=3, fingerprint=3), (FP, None)),
    "only fingerprint and version": Case(K, meta(version=3, fingerprint=FP), (FP, 3)),
    "unknown fields": Case(K, meta(version=3, fingerprint=FP, later={"a": 1}), (FP, 3)),
    "version id": Case(K, meta(version="3f2a-id", fingerprint=FP), (FP, "3f2a-id")),
    "version empty id": Case(K, meta(version="", fingerprint=FP), (FP, None)),
    "version boolean": Case(K, meta(version=True, fingerprint=FP), (FP, None)),
    "version null": Case(K, meta(version=None, fingerprint=FP), (FP, None)),
    "version absent": Case(K, meta(fingerprint=FP), (FP, None)),
    "version a fraction": Case(K, meta(version=1.5, fingerprint=FP), (FP, None)),
    "version integral float": Case(K, meta(version=3.0, fingerprint=FP), (FP, 3)),
    "version in exponent form": Case(K, WRITTEN.replace(b": 3", b": 1e3"), (FP, 1000)),
    "version 2^53 - 1": Case(K, meta(version=2**53 - 1, fingerprint=FP), (FP, 2**53 - 1)),
    "version 2^53": Case(K, meta(version=2**53, fingerprint=FP), (FP, None)),
}


def make_files(directory: Path, case: Case) -> Path:
    """The case's files in ``directory``; the key file's path."""
    directory.mkdir()
    if case.key is not None:
        (directory / "api_key").write_bytes(case.key)
    if case.meta is not None:
        (directory / "api_key.meta.json").write_bytes(case.meta)
    return directory / "api_key"


def test_both_readers_give_the_specifications_answer_in_every_case(
    node: str, tmp_path: Path
) -> None:
    paths = {
        name: make_files(tmp_path / str(n), case) for n, (name, case) in enumerate(CASES.items())
    }
    expected = {name: case.expected for name, case in CASES.items()}

    python = {name: python_state(path) for name, path in paths.items()}
    nodejs = dict(zip(paths, node_states(node, list(paths.values())), strict=True))

    assert python == expected
    assert nodejs == expected
