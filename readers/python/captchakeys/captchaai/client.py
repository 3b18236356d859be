"""The two faces of the client: blocking and asyncio, both driving :mod:`._core`'s flow.

Each face only knows how to POST and how to sleep in its own world; if a behaviour
differs between them, it is a bug here, because there is nothing else here to differ.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Generic, Self, TypeVar, cast

try:
    import httpx
except ModuleNotFoundError as missing:
    if missing.name != "httpx":
        raise
    # Said here, where httpx is needed: the reader itself must not pull it in.
    raise ModuleNotFoundError(
        "captchakeys.captchaai needs httpx, which the reader alone does not install: "
        "pip install 'captchakeys-reader[client]'",
        name="httpx",
    ) from None

from captchakeys._closing import Closing
from captchakeys.captchaai._core import (
    DEFAULT_BASE_URL,
    Flow,
    KeySource,
    Post,
    Reply,
    Solve,
    Timing,
)
from captchakeys.captchaai.tasks import Task

__all__ = ["AsyncCaptchaAIClient", "CaptchaAIClient"]

DEFAULT_HTTP_TIMEOUT = 30.0

_Http = TypeVar("_Http", httpx.Client, httpx.AsyncClient)


class _Face(Generic[_Http]):
    """What both faces share: settings, a fresh flow per solve, a key-free repr.

    Each face names its httpx client class in ``_http_class``; the connection pool is
    made here, with the timeout, so the two constructors cannot drift apart.
    """

    _http_class: type[_Http]

    def __init__(
        self,
        keys: KeySource,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timing: Timing = Timing(),  # noqa: B008 - frozen, so sharing the default is safe.
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
    ):
        self._keys = keys
        self._base_url = base_url
        self._timing = timing
        self._http: _Http = self._http_class(timeout=http_timeout)

    def _flow(self, task: Task) -> Flow[str]:
        return Solve(task, self._keys, self._base_url, self._timing).run()

    def __repr__(self) -> str:
        # The key source's own repr is left out: a user's source may print its key.
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, timing={self._timing!r}, "
            f"keys={type(self._keys).__name__})"
        )


class CaptchaAIClient(_Face[httpx.Client], Closing):
    """Solve CAPTCHAs with CaptchaAI, blocking. Thread-safe; reuse one per process."""

    _http_class = httpx.Client

    def solve(self, task: Task) -> str:
        """The solution token for ``task``; raises a :class:`CaptchaAIError` subclass."""
        flow = self._flow(task)
        reply: Reply | None = None
        while True:
            try:
                action = flow.send(reply)
            except StopIteration as done:
                return cast(str, done.value)
            if isinstance(action, Post):
                reply = self._post(action)
            else:
                time.sleep(action.seconds)
                reply = None

    def _post(self, post: Post) -> Reply:
        try:
            response = self._http.post(post.url, data=post.form)
        except httpx.HTTPError as exc:
            raise post.failed(exc) from exc
        return Reply(response.status_code, response.content)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class AsyncCaptchaAIClient(_Face[httpx.AsyncClient]):
    """Solve CAPTCHAs with CaptchaAI from asyncio; waits never block the event loop."""

    _http_class = httpx.AsyncClient

    async def solve(self, task: Task) -> str:
        """The solution token for ``task``; raises a :class:`CaptchaAIError` subclass."""
        flow = self._flow(task)
        reply: Reply | None = None
        while True:
            try:
                action = flow.send(reply)
            except StopIteration as done:
                return cast(str, done.value)
            if isinstance(action, Post):
                reply = await self._post(action)
            else:
                await asyncio.sleep(action.seconds)
                reply = None

    async def _post(self, post: Post) -> Reply:
        try:
            response = await self._http.post(post.url, data=post.form)
        except httpx.HTTPError as exc:
            raise post.failed(exc) from exc
        return Reply(response.status_code, response.content)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
