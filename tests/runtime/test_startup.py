"""Imports on the agent's critical path: ``agent.runtime.startup``.

Covers: inside :func:`collection_paused` the cyclic collector is off, and what was
created meanwhile is frozen on the way out, with the collector back on (or left off
when it was off before); :func:`freeze_once_ready` freezes nothing until its event is
set, then what exists; inside :func:`no_ca_bundle_preloaded` a default SSL context
holds no CA certificate, and afterwards ``SSL_CERT_FILE`` is as it was and a default
context loads the system's bundle again; inside :func:`no_charset_detection` a first
import of requests finds no charset detector, warns nothing, still decodes Vault's JSON,
and afterwards the detector imports again; inside :func:`aiohttp_pure_python` a first
import of aiohttp and frozenlist is their pure-Python builds (the HTTP parser, the
FrozenList), and both variables are restored after.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.runtime.startup import collection_paused, freeze_once_ready, no_ca_bundle_preloaded


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


@pytest.mark.usefixtures("unfrozen")
def test_what_exists_is_frozen_once_ready_and_not_before() -> None:
    async def scenario() -> tuple[int, int, int]:
        ready = asyncio.Event()
        freezer = asyncio.create_task(freeze_once_ready(ready))
        before = gc.get_freeze_count()
        made = [[] for _ in range(1000)]  # lists: objects the collector tracks.
        await asyncio.sleep(0.05)
        waiting = gc.get_freeze_count()
        ready.set()
        await freezer
        return before, waiting, gc.get_freeze_count() - len(made)

    before, waiting, after = asyncio.run(scenario())
    assert waiting == before
    assert after >= before


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


# Run in a fresh interpreter: this test process has long imported requests and frozenlist.
CHARSET_PROGRAM = """
import json, sys, warnings
warnings.simplefilter("error")
from agent.runtime.startup import no_charset_detection
with no_charset_detection():
    import requests
    import requests.compat
from requests.models import Response
answer = Response()
answer._content = '{"data": {"key": "caf\\u00e9"}}'.encode()
answer.headers["Content-Type"] = "application/json"
loaded_inside = "charset_normalizer" in sys.modules
import charset_normalizer
print(json.dumps([requests.compat.chardet is None, loaded_inside, answer.json()["data"]["key"]]))
"""

PURE_PYTHON_PROGRAM = """
import json, os
from agent.runtime.startup import aiohttp_pure_python
with aiohttp_pure_python():
    import aiohttp.http_parser, frozenlist
restored = not {"FROZENLIST_NO_EXTENSIONS", "AIOHTTP_NO_EXTENSIONS"} & set(os.environ)
parser = aiohttp.http_parser.HttpResponseParser.__module__
print(json.dumps([frozenlist.FrozenList.__module__, parser, restored]))
"""


def _run(program: str) -> list[object]:
    unset = ("FROZENLIST_NO_EXTENSIONS", "AIOHTTP_NO_EXTENSIONS")
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, env=environment
    )
    assert done.stderr == ""
    result: list[object] = json.loads(done.stdout)
    return result


def test_requests_imported_without_a_charset_detector_decodes_json_and_warns_nothing() -> None:
    assert _run(CHARSET_PROGRAM) == [True, False, "caf\u00e9"]


def test_aiohttp_and_frozenlist_imported_inside_are_the_pure_python_builds() -> None:
    assert _run(PURE_PYTHON_PROGRAM) == ["frozenlist", "aiohttp.http_parser", True]
