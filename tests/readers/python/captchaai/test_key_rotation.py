"""A key CaptchaAI rejects is replaced by the rotated one, once, and never in a loop.

Covers, blocking and asyncio alike: both wrong-key codes followed by a rotation of the
key file (agent.keyfile.write_key): the request is repeated once with the new key and
succeeds; a rotation that already happened needs no wait; a key revoked while polling
(the poll is repeated with the new key, the task is not resubmitted); no rotation: the
KeyRejectedError comes after one wait, with one request; a rotation to another rejected
key: exactly two requests, then the error; one retry per solve, not per request (a
second rejection later in the same solve is raised at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from captchakeys.captchaai import KeyRejectedError, RecaptchaV2, Timing
from tests.readers.python.captchaai.conftest import (
    KEY_A,
    KEY_B,
    KEY_C,
    TASK_PAGEURL,
    TASK_SITEKEY,
    MakeSolver,
    Rotate,
)
from tests.readers.python.captchaai.fake_service import FakeCaptchaAI

TASK = RecaptchaV2(sitekey=TASK_SITEKEY, pageurl=TASK_PAGEURL)


RotateLater = Callable[[str], None]


@pytest.fixture
def rotate_later(rotate: Rotate) -> Iterator[RotateLater]:
    """Deliver a key 0.2 s from now, as the key agent would; joined before the test ends."""
    timers: list[threading.Timer] = []

    def schedule(key: str) -> None:
        timers.append(threading.Timer(0.2, rotate, (key,)))
        timers[-1].start()

    yield schedule
    for timer in timers:
        timer.join()


@pytest.mark.parametrize("code", ["ERROR_WRONG_USER_KEY", "ERROR_KEY_DOES_NOT_EXIST"])
def test_rejected_key_then_rotation_retries_once_and_succeeds(
    make_solver: MakeSolver, service: FakeCaptchaAI, rotate_later: RotateLater, code: str
) -> None:
    service.valid_keys = {KEY_B}
    service.reject_code = code
    service.on_key_rejected = lambda: rotate_later(KEY_B)

    assert make_solver().solve(TASK) == service.token
    assert [seen.params["key"] for seen in service.submits()] == [KEY_A, KEY_B]
    assert {seen.params["key"] for seen in service.polls()} == {KEY_B}


def test_rotation_already_delivered_is_used_without_waiting(
    make_solver: MakeSolver, service: FakeCaptchaAI, rotate: Rotate
) -> None:
    service.valid_keys = {KEY_B}
    service.on_key_rejected = lambda: rotate(KEY_B)  # delivered before the answer leaves.
    solver = make_solver(Timing(initial_wait=0, poll_interval=0.01, key_rotation_wait=5))

    started = time.monotonic()
    assert solver.solve(TASK) == service.token
    assert time.monotonic() - started < 2
    assert [seen.params["key"] for seen in service.submits()] == [KEY_A, KEY_B]


def test_key_revoked_while_polling_repeats_the_poll_not_the_submit(
    make_solver: MakeSolver, service: FakeCaptchaAI, rotate_later: RotateLater
) -> None:
    service.valid_keys = {KEY_A, KEY_B}
    service.polls_until_ready = 2
    service.revoke_after_submit = True
    service.on_key_rejected = lambda: rotate_later(KEY_B)

    assert make_solver().solve(TASK) == service.token
    assert len(service.submits()) == 1
    assert [seen.params["key"] for seen in service.polls()] == [KEY_A, KEY_B, KEY_B, KEY_B]
    assert len({seen.params["id"] for seen in service.polls()}) == 1


def test_rejected_key_without_rotation_fails_after_one_wait(
    make_solver: MakeSolver, service: FakeCaptchaAI
) -> None:
    service.valid_keys = set()
    solver = make_solver(Timing(initial_wait=0, poll_interval=0.01, key_rotation_wait=0.4))

    started = time.monotonic()
    with pytest.raises(KeyRejectedError) as caught:
        solver.solve(TASK)
    elapsed = time.monotonic() - started

    assert caught.value.code == "ERROR_WRONG_USER_KEY"
    assert 0.4 <= elapsed < 2
    assert len(service.requests) == 1
    assert any("no rotated key" in note for note in caught.value.__notes__)


def test_rotation_to_another_rejected_key_is_not_retried_again(
    make_solver: MakeSolver, service: FakeCaptchaAI, rotate_later: RotateLater
) -> None:
    service.valid_keys = set()
    pending = [KEY_B, KEY_C]  # every rejection brings a rotation: a loop would use them all.

    def next_rotation() -> None:
        if pending:
            rotate_later(pending.pop(0))

    service.on_key_rejected = next_rotation
    solver = make_solver(Timing(initial_wait=0, poll_interval=0.01, key_rotation_wait=1))

    with pytest.raises(KeyRejectedError):
        solver.solve(TASK)

    assert [seen.params["key"] for seen in service.submits()] == [KEY_A, KEY_B]


def test_one_retry_per_solve_even_across_submit_and_poll(
    make_solver: MakeSolver, service: FakeCaptchaAI, rotate_later: RotateLater
) -> None:
    service.valid_keys = {KEY_B}
    service.revoke_after_submit = True  # B is accepted for the submit, then revoked.
    pending = [KEY_B, KEY_C]

    def next_rotation() -> None:
        if pending:
            rotate_later(pending.pop(0))

    service.on_key_rejected = next_rotation
    solver = make_solver(Timing(initial_wait=0, poll_interval=0.01, key_rotation_wait=1))

    with pytest.raises(KeyRejectedError) as caught:
        solver.solve(TASK)

    assert [seen.params["key"] for seen in service.submits()] == [KEY_A, KEY_B]
    assert [seen.params["key"] for seen in service.polls()] == [KEY_B]
    assert caught.value.task_id == service.polls()[0].params["id"]
