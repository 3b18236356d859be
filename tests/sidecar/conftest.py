"""Fixtures of the key agent's tests: ``elsewhere``, an address that counts connections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sidecar.process import Listener


@pytest.fixture
def elsewhere() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()
