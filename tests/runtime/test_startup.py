"""Imports on the agent's critical path: ``agent.runtime.startup``.

Covers: inside :func:`collection_paused` the cyclic collector is off, and what was
created meanwhile is frozen on the way out, with the collector back on (or left off
when it was off before); inside :func:`no_ca_bundle_preloaded` a default SSL context
holds no CA certificate, and afterwards ``SSL_CERT_FILE`` is as it was and a default
context loads the system's bundle again.
"""

from __future__ import annotations

import gc
import os
import ssl
from collections.abc import Iterator

import pytest

from agent.runtime.startup import collection_paused, no_ca_bundle_preloaded


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process's objects back to the collector's generations.


@pytest.mark.usefixtures("unfrozen")
def test_collection_is_paused_inside_and_what_was_made_is_frozen() -> None:
    frozen = gc.get_freeze_count()
    with collection_paused():
        assert not gc.isenabled()
        made = [object() for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)


@pytest.mark.usefixtures("unfrozen")
def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("before", [None, "/etc/ssl/certs/ca-certificates.crt"])
def test_default_contexts_preload_no_bundle_inside_and_the_variable_is_restored(
    before: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if before is None:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    else:
        monkeypatch.setenv("SSL_CERT_FILE", before)
    with no_ca_bundle_preloaded():
        inside = ssl.create_default_context()
    assert inside.cert_store_stats()["x509_ca"] == 0
    assert os.environ.get("SSL_CERT_FILE") == before
    system = ssl.get_default_verify_paths()
    if system.cafile is None:
        pytest.skip("this machine has no system CA bundle: nothing to compare with")
    assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 0
