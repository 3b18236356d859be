"""The key never shows: not in logs, URLs, exception text, tracebacks or reprs.

Covers, blocking and asyncio alike, with a sentinel key and every logger at DEBUG
(httpx and httpcore included): a successful solve, a rejected key with no rotation, a
non-JSON answer that echoes the key back (quoted with the key redacted), a timeout and a
refused connection. Each time the sentinel is checked to have really been sent in the
POST body, so the absence checks cannot pass by the key never being used.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.keyfile import write_key
from captchakeys import KeyReader
from captchakeys.captchaai import CaptchaAIError, RecaptchaV2, Timing
from tests.readers.python.captchaai.conftest import TASK_PAGEURL, TASK_SITEKEY, MakeSolver
from tests.readers.python.captchaai.fake_service import FakeCaptchaAI

SENTINEL = "SENTINEL-do-not-leak-5e1f0c9a7b3d"
TASK = RecaptchaV2(sitekey=TASK_SITEKEY, pageurl=TASK_PAGEURL)
FAST = Timing(initial_wait=0, poll_interval=0.01, max_polls=3, key_rotation_wait=0.05)


@pytest.fixture
def sentinel_reader(tmp_path: Path) -> Iterator[KeyReader]:
    write_key(tmp_path, "api_key", SENTINEL, version=1, source="test", fetched_at="now")
    with KeyReader(tmp_path / "api_key") as reader:
        yield reader


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def arrange(scenario: str, service: FakeCaptchaAI) -> str | None:
    """Set the service up for ``scenario``; return a base URL to use instead, if any."""
    service.valid_keys = {SENTINEL}
    if scenario == "rejected":
        service.valid_keys = set()
    elif scenario == "echoed":
        service.raw["in.php"] = (200, b"<html>unknown key {key}, go away</html>")
    elif scenario == "timeout":
        service.polls_until_ready = 10
    elif scenario == "refused":
        return f"http://127.0.0.1:{closed_port()}"
    return None


@pytest.mark.parametrize("scenario", ["solved", "rejected", "echoed", "timeout", "refused"])
def test_sentinel_key_never_leaks(
    make_solver: MakeSolver,
    service: FakeCaptchaAI,
    sentinel_reader: KeyReader,
    caplog: pytest.LogCaptureFixture,
    scenario: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    base_url = arrange(scenario, service)
    solver = make_solver(FAST, base_url=base_url, keys=sentinel_reader)

    error: CaptchaAIError | None = None
    try:
        solver.solve(TASK)
    except CaptchaAIError as exc:
        error = exc

    assert (error is None) == (scenario == "solved")
    if scenario != "refused":
        assert service.requests[0].params["key"] == SENTINEL
    assert "HTTP Request: POST" in caplog.text or scenario == "refused"
    assert SENTINEL not in caplog.text
    assert SENTINEL not in repr(solver.client)
    assert all(SENTINEL not in seen.target for seen in service.requests)
    if error is not None:
        shown = "".join(traceback.format_exception(error)) + repr(error) + str(error)
        assert SENTINEL not in shown


def test_echoed_body_is_quoted_with_the_key_redacted(
    make_solver: MakeSolver, service: FakeCaptchaAI, sentinel_reader: KeyReader
) -> None:
    arrange("echoed", service)

    with pytest.raises(CaptchaAIError) as caught:
        make_solver(FAST, keys=sentinel_reader).solve(TASK)

    assert "unknown key [REDACTED], go away" in str(caught.value)
