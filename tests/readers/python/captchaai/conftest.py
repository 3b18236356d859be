"""Fixtures for the CaptchaAI client tests: a real local service, a real key file and reader.

- ``service``: a :class:`FakeCaptchaAI` on a free 127.0.0.1 port, accepting ``KEY_A``.
- ``key_file`` / ``reader``: a key file written with :func:`agent.keyfile.write_key` and a
  real :class:`captchakeys.KeyReader` following it; ``rotate`` replaces the key the way
  the key agent does.
- ``make_solver``: builds a blocking or an asyncio client (the fixture is parametrized,
  so every test using it runs against both faces) behind one blocking ``solve``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.keyfile import fingerprint, write_key
from captchakeys import KeyReader
from captchakeys.captchaai import AsyncCaptchaAIClient, CaptchaAIClient, KeySource, Task, Timing
from tests.readers.python.captchaai.fake_service import FakeCaptchaAI

KEY_A = "a1" * 16
KEY_B = "b2" * 16
KEY_C = "c3" * 16
FAST = Timing(initial_wait=0, poll_interval=0.01, max_polls=25, key_rotation_wait=2.0)
TASK_SITEKEY = "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-"
TASK_PAGEURL = "https://www.google.com/recaptcha/api2/demo"

Rotate = Callable[[str], None]


class Solver:
    """One client of either face, used through a blocking ``solve``."""

    def __init__(self, kind: str, keys: KeySource, base_url: str, timing: Timing):
        self.kind = kind
        self.client: CaptchaAIClient | AsyncCaptchaAIClient
        if kind == "sync":
            self.client = CaptchaAIClient(keys, base_url=base_url, timing=timing)
        else:
            self._runner = asyncio.Runner()
            self.client = AsyncCaptchaAIClient(keys, base_url=base_url, timing=timing)

    def solve(self, task: Task) -> str:
        if isinstance(self.client, CaptchaAIClient):
            return self.client.solve(task)
        return self._runner.run(self.client.solve(task))

    def close(self) -> None:
        if isinstance(self.client, CaptchaAIClient):
            self.client.close()
        else:
            self._runner.run(self.client.aclose())
            self._runner.close()


MakeSolver = Callable[..., Solver]


@pytest.fixture
def service() -> Iterator[FakeCaptchaAI]:
    fake = FakeCaptchaAI(valid_keys={KEY_A})
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    write_key(tmp_path, "api_key", KEY_A, version=1, source="test", fetched_at="2024-01-01T00:00Z")
    return tmp_path / "api_key"


@pytest.fixture
def reader(key_file: Path) -> Iterator[KeyReader]:
    with KeyReader(key_file, poll_interval=0.02) as key_reader:
        yield key_reader


@pytest.fixture
def rotate(key_file: Path, reader: KeyReader) -> Rotate:
    """Replace the key file's key; returns once the reader holds the new key."""
    versions = iter(range(2, 1000))

    def rotate_to(key: str) -> None:
        write_key(
            key_file.parent,
            key_file.name,
            key,
            version=next(versions),
            source="test",
            fetched_at="2024-01-01T00:00Z",
        )
        deadline = time.monotonic() + 5
        while reader.fingerprint != fingerprint(key):
            assert time.monotonic() < deadline, "the reader never saw the rotated key"
            time.sleep(0.005)

    return rotate_to


@pytest.fixture(params=["sync", "async"])
def make_solver(
    request: pytest.FixtureRequest, service: FakeCaptchaAI, reader: KeyReader
) -> Iterator[MakeSolver]:
    solvers: list[Solver] = []

    def make(
        timing: Timing = FAST, base_url: str | None = None, keys: KeySource | None = None
    ) -> Solver:
        solver = Solver(request.param, keys or reader, base_url or service.base_url, timing)
        solvers.append(solver)
        return solver

    yield make
    for solver in solvers:
        solver.close()
