"""Fixtures shared by the whole suite: real servers, started and stopped by the tests.

- ``openbao``: one real OpenBao dev server for the session (KV v2 at ``secret/``).
  If it cannot start, every test that needs it fails with the reason: never a skip.
- ``fresh_openbao``: a server of a test's own, for tests that kill and restart it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.rig.openbao import OpenBaoServer

pytest_plugins = ["tests.rig.fixtures"]


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoServer]:
    server = OpenBaoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_openbao() -> Iterator[OpenBaoServer]:
    server = OpenBaoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def unique_path() -> str:
    """A KV path no other test uses, so tests sharing one server do not interfere."""
    return f"captchaai/test-{uuid.uuid4().hex[:10]}"
