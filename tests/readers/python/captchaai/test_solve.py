"""Solving a reCAPTCHA v2 task end to end, blocking and asyncio alike.

Covers: the token after N not-ready polls; the exact in.php / res.php parameters
(method, googlekey, pageurl, action, id, json=1); POST bodies only, nothing in query
strings; a configurable base URL with a path prefix; the initial wait and the poll
interval being honoured; max polls exhausted (SolveTimeoutError with the task id and no
extra polls); the key read per request, so a rotation between solves needs no restart.
"""

from __future__ import annotations

import itertools

import pytest

from captchakeys.captchaai import RecaptchaV2, SolveTimeoutError, Timing
from tests.readers.python.captchaai.conftest import (
    FAST,
    KEY_A,
    KEY_B,
    TASK_PAGEURL,
    TASK_SITEKEY,
    MakeSolver,
    Rotate,
)
from tests.readers.python.captchaai.fake_service import FakeCaptchaAI

TASK = RecaptchaV2(sitekey=TASK_SITEKEY, pageurl=TASK_PAGEURL)


@pytest.mark.parametrize("not_ready", [0, 3])
def test_token_after_n_not_ready_polls(
    make_solver: MakeSolver, service: FakeCaptchaAI, not_ready: int
) -> None:
    service.polls_until_ready = not_ready

    assert make_solver().solve(TASK) == service.token
    assert len(service.submits()) == 1
    assert len(service.polls()) == not_ready + 1


def test_sends_the_guides_parameters_in_post_bodies(
    make_solver: MakeSolver, service: FakeCaptchaAI
) -> None:
    service.polls_until_ready = 1

    make_solver().solve(TASK)

    submit, *polls = service.requests
    assert submit.params == {
        "method": "userrecaptcha",
        "googlekey": TASK_SITEKEY,
        "pageurl": TASK_PAGEURL,
        "key": KEY_A,
        "json": "1",
    }
    task_id = polls[0].params["id"]
    assert all(
        poll.params == {"action": "get", "id": task_id, "key": KEY_A, "json": "1"} for poll in polls
    )
    assert {(seen.method, seen.target) for seen in service.requests} == {
        ("POST", "/in.php"),
        ("POST", "/res.php"),
    }


def test_base_url_is_configurable(make_solver: MakeSolver, service: FakeCaptchaAI) -> None:
    make_solver(base_url=f"{service.base_url}/captchaai/").solve(TASK)

    assert [seen.target for seen in service.requests] == ["/captchaai/in.php", "/captchaai/res.php"]


def test_waits_initially_and_between_polls(make_solver: MakeSolver, service: FakeCaptchaAI) -> None:
    service.polls_until_ready = 3
    timing = Timing(initial_wait=0.3, poll_interval=0.1, max_polls=10)

    make_solver(timing).solve(TASK)

    times = [seen.at for seen in service.requests]
    assert times[1] - times[0] >= 0.3
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[1:])]
    assert len(gaps) == 3
    assert min(gaps) >= 0.1


def test_gives_up_after_max_polls(make_solver: MakeSolver, service: FakeCaptchaAI) -> None:
    service.polls_until_ready = 100
    timing = Timing(initial_wait=0, poll_interval=0.01, max_polls=4)

    with pytest.raises(SolveTimeoutError) as caught:
        make_solver(timing).solve(TASK)

    polls = service.polls()
    assert len(polls) == 4
    assert caught.value.task_id == polls[0].params["id"]
    assert "4 polls" in str(caught.value)


def test_reads_the_key_per_request(
    make_solver: MakeSolver, service: FakeCaptchaAI, rotate: Rotate
) -> None:
    solver = make_solver(FAST)
    solver.solve(TASK)
    service.valid_keys = {KEY_B}
    rotate(KEY_B)

    assert solver.solve(TASK) == service.token
    assert [seen.params["key"] for seen in service.submits()] == [KEY_A, KEY_B]
    assert service.rejections == 0
