"""A stand-in for CaptchaAI that speaks the in.php / res.php protocol over real HTTP.

It runs in a thread on a free 127.0.0.1 port, so both the blocking and the asyncio
client talk to it through their real HTTP stacks. Tests set its behaviour through
plain attributes and read back every request it received.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Seen:
    """One request as the service received it."""

    method: str
    target: str  # the request line's target: path and query string, as a proxy would log it.
    endpoint: str
    params: dict[str, str]
    at: float


@dataclass
class FakeCaptchaAI:
    valid_keys: set[str] = field(default_factory=set)
    reject_code: str = "ERROR_WRONG_USER_KEY"
    polls_until_ready: int = 0
    token: str = "03AGdBq25-solved-token"
    submit_error: str | None = None
    poll_error: str | None = None
    # endpoint -> (HTTP status, body); b"{key}" in the body is replaced by the sent key.
    raw: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    revoke_after_submit: bool = False
    on_key_rejected: Callable[[], None] | None = None
    requests: list[Seen] = field(default_factory=list)
    rejections: int = 0
    _polls: dict[str, int] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(7000001))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(self.rfile.read(length).decode())

            def do_GET(self) -> None:
                self._answer("")

            def _answer(self, body: str) -> None:
                status, payload = service.handle(self.command, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server = self._server
        threading.Thread(target=lambda: server.serve_forever(0.01), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(self, method: str, target: str, body: str) -> tuple[int, bytes]:
        url = urlsplit(target)
        params = dict(parse_qsl(url.query)) | dict(parse_qsl(body))
        endpoint = url.path.rsplit("/", 1)[-1]
        with self._lock:
            self.requests.append(Seen(method, target, endpoint, params, time.monotonic()))
        key = params.get("key", "")
        if endpoint in self.raw:
            status, payload = self.raw[endpoint]
            return status, payload.replace(b"{key}", key.encode())
        if key not in self.valid_keys:
            return self._reject_key()
        if endpoint == "in.php":
            return self._submit(params)
        if endpoint == "res.php":
            return self._poll(params)
        return 404, b"not found"

    def submits(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.endpoint == "in.php"]

    def polls(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.endpoint == "res.php"]

    def _reject_key(self) -> tuple[int, bytes]:
        with self._lock:
            self.rejections += 1
        if self.on_key_rejected is not None:
            self.on_key_rejected()
        return _json(0, self.reject_code)

    def _submit(self, params: dict[str, str]) -> tuple[int, bytes]:
        wanted = ("method", "googlekey", "pageurl")
        if params.get("json") != "1" or params.get("method") != "userrecaptcha":
            return _json(0, "ERROR_BAD_PARAMETERS")
        if not all(params.get(name) for name in wanted):
            return _json(0, "ERROR_BAD_PARAMETERS")
        if self.submit_error is not None:
            return _json(0, self.submit_error)
        task_id = str(next(self._ids))
        with self._lock:
            self._polls[task_id] = 0
            if self.revoke_after_submit:
                self.valid_keys.discard(params["key"])
        return _json(1, task_id)

    def _poll(self, params: dict[str, str]) -> tuple[int, bytes]:
        if params.get("action") != "get" or params.get("json") != "1":
            return _json(0, "ERROR_EMPTY_ACTION")
        task_id = params.get("id", "")
        with self._lock:
            if task_id not in self._polls:
                return _json(0, "ERROR_WRONG_CAPTCHA_ID")
            self._polls[task_id] += 1
            polls = self._polls[task_id]
        if self.poll_error is not None:
            return _json(0, self.poll_error)
        if polls <= self.polls_until_ready:
            return _json(0, "CAPCHA_NOT_READY")
        return _json(1, self.token)


def _json(status: int, request: str) -> tuple[int, bytes]:
    return 200, json.dumps({"status": status, "request": request}).encode()
