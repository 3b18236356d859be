"""Failures become typed exceptions, blocking and asyncio alike, and none is retried blindly.

Covers: service error codes from in.php and res.php mapped to their exception types
(zero balance, no slot, IP not allowed, bad sitekey, unsolvable, an unknown code) with
the code and task id kept; no retry for errors that are not about the key; malformed
JSON and JSON of the wrong shape (ProtocolError); HTTP 5xx on submit and on poll, and a
refused connection (TransportError with the status code, or none).
"""

from __future__ import annotations

import socket

import pytest

from captchakeys.captchaai import (
    AccessDeniedError,
    BadTaskError,
    ProtocolError,
    RecaptchaV2,
    ServiceBusyError,
    ServiceError,
    TransportError,
    UnsolvableError,
    ZeroBalanceError,
)
from tests.readers.python.captchaai.conftest import TASK_PAGEURL, TASK_SITEKEY, MakeSolver
from tests.readers.python.captchaai.fake_service import FakeCaptchaAI

TASK = RecaptchaV2(sitekey=TASK_SITEKEY, pageurl=TASK_PAGEURL)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ERROR_ZERO_BALANCE", ZeroBalanceError),
        ("ERROR_NO_SLOT_AVAILABLE", ServiceBusyError),
        ("ERROR_IP_NOT_ALLOWED", AccessDeniedError),
        ("ERROR_GOOGLEKEY", BadTaskError),
        ("ERROR_SOMETHING_NEW", ServiceError),
    ],
)
def test_submit_error_codes_raise_their_type(
    make_solver: MakeSolver, service: FakeCaptchaAI, code: str, expected: type[ServiceError]
) -> None:
    service.submit_error = code

    with pytest.raises(ServiceError) as caught:
        make_solver().solve(TASK)

    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.task_id is None
    assert len(service.requests) == 1, "only a rejected key is worth a second request"


def test_unsolvable_while_polling_keeps_the_task_id(
    make_solver: MakeSolver, service: FakeCaptchaAI
) -> None:
    service.poll_error = "ERROR_CAPTCHA_UNSOLVABLE"

    with pytest.raises(UnsolvableError) as caught:
        make_solver().solve(TASK)

    assert caught.value.code == "ERROR_CAPTCHA_UNSOLVABLE"
    assert caught.value.task_id == service.polls()[0].params["id"]
    assert len(service.polls()) == 1


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("in.php", b"<html>502 Bad Gateway</html>"),
        ("in.php", b'{"status": 1, "request": '),
        ("in.php", b"[1, 2]"),
        ("res.php", b'{"status": 1}'),
        ("res.php", b'{"status": 0, "request": "not a code"}'),
    ],
)
def test_malformed_answers_raise_protocol_error(
    make_solver: MakeSolver, service: FakeCaptchaAI, endpoint: str, body: bytes
) -> None:
    service.raw[endpoint] = (200, body)

    with pytest.raises(ProtocolError, match=endpoint):
        make_solver().solve(TASK)


@pytest.mark.parametrize(("endpoint", "status"), [("in.php", 503), ("res.php", 500)])
def test_http_errors_raise_transport_error(
    make_solver: MakeSolver, service: FakeCaptchaAI, endpoint: str, status: int
) -> None:
    service.raw[endpoint] = (status, b'{"status": 1, "request": "7000001"}')

    with pytest.raises(TransportError) as caught:
        make_solver().solve(TASK)

    assert caught.value.status_code == status
    assert f"HTTP {status}" in str(caught.value)


def test_refused_connection_raises_transport_error(make_solver: MakeSolver) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    with pytest.raises(TransportError) as caught:
        make_solver(base_url=f"http://127.0.0.1:{closed_port}").solve(TASK)

    assert caught.value.status_code is None
    assert "in.php" in str(caught.value)
