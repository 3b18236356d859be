"""Every request the rig served, in arrival order and by the token that sent it.

kmock keeps each request it serves and scans them all to match the next one to a
reaction, so a request would cost more the longer a test runs. The rig hands kmock only
the requests in flight and keeps this log instead: appending costs the same however
long the log is, and what one identity sent is found without a scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp.web

__all__ = ["ApiRequest", "RequestLog"]


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, None for any other."""
    return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None


@dataclass(frozen=True)
class ApiRequest:
    """One request as the API server saw it, with the bearer token that identified it."""

    method: str
    path: str
    query: dict[str, str]
    watch: bool
    token: str | None
    content_type: str = ""
    body: bytes = b""


class RequestLog:
    """The requests served so far, whole, and indexed by token."""

    def __init__(self) -> None:
        self._all: list[ApiRequest] = []
        self._by_token: dict[str | None, list[ApiRequest]] = {}

    async def record(self, raw_request: aiohttp.web.BaseRequest) -> None:
        """Log a request as it arrives (its body buffered: kmock reads the same bytes again)."""
        request = ApiRequest(
            method=raw_request.method,
            path=raw_request.path,
            query=dict(raw_request.query),
            watch=raw_request.query.get("watch") in ("true", "1"),
            token=bearer_token(raw_request.headers.get("Authorization", "")),
            content_type=raw_request.headers.get("Content-Type", ""),
            body=await raw_request.read(),
        )
        self._all.append(request)
        self._by_token.setdefault(request.token, []).append(request)

    def all(self) -> list[ApiRequest]:
        """Every request so far, in arrival order (a copy)."""
        return list(self._all)

    def by(self, token: str) -> list[ApiRequest]:
        """The requests one token sent, in arrival order (a copy)."""
        return list(self._by_token.get(token, ()))
