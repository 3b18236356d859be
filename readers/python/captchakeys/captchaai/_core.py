"""The CaptchaAI protocol, written once for both the sync and the asyncio client.

Why a generator: a solve is a conversation (submit, wait, poll until ready, maybe wait
for a rotated key and ask again) whose only differences between sync and asyncio code
are *how* to send a POST and *how* to sleep. So the conversation is a generator that
yields those two actions (:class:`Post`, :class:`Sleep`) and receives each POST's
:class:`Reply`; the two clients are small loops that perform the actions with
``httpx.Client`` + ``time.sleep`` or ``httpx.AsyncClient`` + ``asyncio.sleep``. Parsing,
error mapping, polling limits and the key-rotation retry live here and nowhere else.

The key is read from the key source for every request (it is in memory), travels only
in POST form bodies (never in a URL that a proxy or httpx's own logging would print),
and is scrubbed from any response text quoted in an exception.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from captchakeys.captchaai.errors import (
    KeyRejectedError,
    ProtocolError,
    SolveTimeoutError,
    TransportError,
    error_for_code,
)
from captchakeys.captchaai.tasks import Task
from captchakeys.keyfile import fingerprint

__all__ = ["DEFAULT_BASE_URL", "Flow", "KeySource", "Post", "Reply", "Sleep", "Solve", "Timing"]

DEFAULT_BASE_URL = "https://ocr.captchaai.com"
SUBMIT, RESULT = "in.php", "res.php"
NOT_READY = "CAPCHA_NOT_READY"  # sic: the service's spelling.

# How often to look at the key source while waiting for a rotated key. It answers from
# memory, so this only bounds how late after a rotation the retry starts.
_KEY_CHECK_INTERVAL = 0.05
_SNIPPET_LENGTH = 120
_CODE = re.compile(r"[A-Z][A-Z0-9_]{2,63}")
_REDACTED = "[REDACTED]"

_log = logging.getLogger("captchakeys.captchaai")

T = TypeVar("T")


class KeySource(Protocol):
    """Where the client gets the key for each request: :class:`captchakeys.KeyReader`."""

    def get(self) -> str:
        """The current key, from memory."""
        ...


@dataclass(frozen=True)
class Timing:
    """How long to wait, and for how long. Defaults are the guide's (15 s, 5 s, 25 polls).

    ``key_rotation_wait`` bounds the wait for a newer key after the service rejects the
    current one: long enough for the key agent to deliver a rotation that is under way,
    short enough that a plainly wrong key fails fast.
    """

    initial_wait: float = 15.0
    poll_interval: float = 5.0
    max_polls: int = 25
    key_rotation_wait: float = 10.0

    def __post_init__(self) -> None:
        if min(self.initial_wait, self.poll_interval, self.key_rotation_wait) < 0:
            raise ValueError(f"waits must not be negative: {self}")
        if self.max_polls < 1:
            raise ValueError(f"max_polls must be at least 1: {self}")


@dataclass(frozen=True)
class Post:
    """Send ``form`` to ``url`` and answer with a :class:`Reply`."""

    url: str
    endpoint: str
    task_id: str | None
    form: dict[str, str] = field(repr=False)  # holds the key.

    def failed(self, exc: Exception) -> TransportError:
        """The error to raise when the POST itself failed (connection, timeout ...)."""
        detail = _redact(f"{type(exc).__name__}: {exc}", self.form["key"])
        return TransportError(f"{self.endpoint}: {detail}", task_id=self.task_id)


@dataclass(frozen=True)
class Sleep:
    """Pause for ``seconds`` (and answer with nothing)."""

    seconds: float


@dataclass(frozen=True)
class Reply:
    """What came back for a :class:`Post`."""

    status_code: int
    body: bytes


Flow = Generator[Post | Sleep, Reply | None, T]


class Solve:
    """One solve of one task, as a flow for a client to drive.

    Each solve has its own single key retry, so concurrent solves never share or
    exhaust each other's budget, and no solve can loop on a rejected key.
    """

    def __init__(self, task: Task, keys: KeySource, base_url: str, timing: Timing):
        self._task = task
        self._keys = keys
        self._base_url = base_url.rstrip("/")
        self._timing = timing
        self._may_retry_key = True

    def run(self) -> Flow[str]:
        """Submit, wait, poll until the token is ready; the flow's return value is the token."""
        task_id = yield from self._ask(SUBMIT, self._task.submit_params(), None)
        if task_id is None:
            raise ProtocolError(f"{SUBMIT} answered {NOT_READY} instead of a task id")
        _log.debug("CaptchaAI task %s submitted", task_id)
        yield Sleep(self._timing.initial_wait)
        for poll in range(1, self._timing.max_polls + 1):
            token = yield from self._ask(RESULT, {"action": "get", "id": task_id}, task_id)
            if token is not None:
                _log.debug("CaptchaAI task %s solved after %d polls", task_id, poll)
                return token
            if poll < self._timing.max_polls:
                yield Sleep(self._timing.poll_interval)
        raise SolveTimeoutError(
            f"CaptchaAI task {task_id} not solved after {self._timing.max_polls} polls",
            task_id=task_id,
        )

    def _ask(self, endpoint: str, params: dict[str, str], task_id: str | None) -> Flow[str | None]:
        """One request; on a rejected key, one more with a rotated key (at most once)."""
        key = self._keys.get()
        reply = yield self._post(endpoint, params, task_id, key)
        try:
            return parse_answer(reply, endpoint, key, task_id)
        except KeyRejectedError as exc:
            if not self._may_retry_key:
                raise
            self._may_retry_key = False
            rejected = exc
        key = yield from self._rotated_key(key, rejected)
        reply = yield self._post(endpoint, params, task_id, key)
        return parse_answer(reply, endpoint, key, task_id)

    def _rotated_key(self, rejected_key: str, rejected: KeyRejectedError) -> Flow[str]:
        """A key other than ``rejected_key`` from the source, or ``rejected`` re-raised."""
        wait = self._timing.key_rotation_wait
        _log.warning(
            "CaptchaAI rejected key %s (%s); waiting up to %gs for a rotated key",
            fingerprint(rejected_key),
            rejected.code,
            wait,
        )
        deadline = time.monotonic() + wait
        while (key := self._keys.get()) == rejected_key:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                rejected.add_note(f"no rotated key was delivered within {wait:g}s")
                raise rejected
            yield Sleep(min(_KEY_CHECK_INTERVAL, remaining))
        _log.info("retrying CaptchaAI request with rotated key %s", fingerprint(key))
        return key

    def _post(self, endpoint: str, params: dict[str, str], task_id: str | None, key: str) -> Post:
        form = {**params, "key": key, "json": "1"}
        return Post(f"{self._base_url}/{endpoint}", endpoint, task_id, form)


def parse_answer(reply: Reply | None, endpoint: str, key: str, task_id: str | None) -> str | None:
    """The ``request`` value of a successful answer, ``None`` if not ready, else raise."""
    assert reply is not None, "a Post must be answered with a Reply"
    if not 200 <= reply.status_code < 300:
        raise TransportError(
            f"{endpoint} answered HTTP {reply.status_code}",
            status_code=reply.status_code,
            task_id=task_id,
        )
    try:
        answer = json.loads(reply.body)
    except ValueError:
        raise ProtocolError(
            f"{endpoint} answered with something that is not JSON: {_snippet(reply.body, key)}",
            task_id=task_id,
        ) from None
    status = answer.get("status") if isinstance(answer, dict) else None
    request = answer.get("request") if isinstance(answer, dict) else None
    if status == 1 and isinstance(request, str) and request:
        return request
    if status == 0 and request == NOT_READY:
        return None
    if status == 0 and isinstance(request, str) and _CODE.fullmatch(request):
        raise error_for_code(request, task_id=task_id)
    raise ProtocolError(
        f"{endpoint} answered JSON without a usable status and request: "
        f"{_snippet(reply.body, key)}",
        task_id=task_id,
    )


def _snippet(body: bytes, key: str) -> str:
    """The start of a response body for an error message, with the key cut out first."""
    text = _redact(body.decode("utf-8", "replace"), key)
    return repr(text[:_SNIPPET_LENGTH] + ("..." if len(text) > _SNIPPET_LENGTH else ""))


def _redact(text: str, key: str) -> str:
    return text.replace(key, _REDACTED) if key else text
