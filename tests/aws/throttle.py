"""A loopback proxy in front of moto that can answer as a throttled AWS endpoint does.

moto never throttles. AWS answers an over-limit call with HTTP 400 and the JSON body
``{"__type": "ThrottlingException", ...}``; this proxy sends exactly that while
``throttling`` is set, and forwards every other request to moto unchanged. The
client under test (botocore) sees AWS's real wire format either way.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

import requests

from tests.rig.helpers import free_port

__all__ = ["ThrottlingProxy"]


class ThrottlingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.throttling = False
        self.throttled = 0  # how many requests got a ThrottlingException.
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.throttling:
                    proxy.throttled += 1
                    self._answer(
                        400,
                        {"content-type": "application/x-amz-json-1.1"},
                        json.dumps(
                            {"__type": "ThrottlingException", "message": "Rate exceeded"}
                        ).encode(),
                    )
                    return
                forwarded = requests.post(
                    proxy.upstream + self.path, data=body, headers=dict(self.headers), timeout=10
                )
                self._answer(forwarded.status_code, dict(forwarded.headers), forwarded.content)

            def _answer(self, code: int, headers: dict[str, Any], body: bytes) -> None:
                self.send_response(code)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
