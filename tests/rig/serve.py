"""The rig's API server in a process of its own: ``python -m tests.rig.serve``.

Served from a thread of the measuring process, the rig shares one interpreter (and its
GIL) with whatever runs there, and a figure taken through it mixes the rig's cost with
the product's. Served from a process of its own, its CPU is its own, and it says what
each request cost it: when it received each request and when its answer was ready, and
for each watch event how long after the write it reached the stream. Those are the
figures a real API server would be judged by, and what a bench subtracts.

The runner prints one JSON line once it serves (the API's URL, a control URL, the admin
token and the CA that OpenBao's configuration needs), then serves until SIGTERM or
SIGINT. The control URL answers what plain Kubernetes HTTP has no verb for here:

- ``POST /tokens`` with ``{"namespace", "serviceAccount", "audience", "expiresIn",
  "pod"}``: a service-account token as the kubelet projects it, as ``{"token": ...}``;
- ``GET /timings?since=EPOCH``: the requests received (with their answers' status) and
  the watch events written since then (epoch seconds, comparable with other processes'
  clocks on the machine).

``--for-operator`` also declares what the cluster and the chart give the operator (the
cluster version, the webhook configurations), as :mod:`tests.rig.operator` does for an
operator in a test's process.

:class:`RigProcess` starts the runner and talks to it. It is an
:class:`~tests.rig.client.ApiServer`, so workloads, OpenBao's Kubernetes auth and the
operator's identity are built on it as on the rig in a test's own process.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp.web
import attrs
import kmock
import requests

from tests.rig.client import ApiCalls
from tests.rig.helpers import stop_process
from tests.rig.kube import RealisticKubernetes

__all__ = ["Delivered", "RigProcess", "Served", "TimedKubernetes", "Timings"]

#: What the rig keeps of its timings: enough for the longest bench section, bounded so
#: that a long run does not grow it (the bench asks after each rotation).
KEPT = 200_000
_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Served:
    """One request other than a watch: when it arrived, when its answer was ready, which."""

    method: str
    path: str
    received: float
    answered: float
    status: int


@dataclass(frozen=True)
class Delivered:
    """One watch event: when the rig stored the write, and when the event was written."""

    watch: str
    type: str
    changed: float
    written: float


@dataclass(frozen=True)
class Timings:
    """What the rig served within a window, as the control URL reports it."""

    served: list[Served]
    delivered: list[Delivered]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Timings:
        return cls(
            served=[Served(**entry) for entry in body["served"]],
            delivered=[Delivered(**entry) for entry in body["delivered"]],
        )


class Recorder:
    """The rig's timings, bounded; appended to by the rig's thread, read by the control's."""

    def __init__(self) -> None:
        self.served: deque[Served] = deque(maxlen=KEPT)
        self.delivered: deque[Delivered] = deque(maxlen=KEPT)
        self._changed: dict[str, float] = {}  # resourceVersion -> when it was stored

    def stored(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Note when ``obj``'s version was stored (a no-op write keeps the first moment)."""
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if version and version not in self._changed:
            self._changed[version] = time.time()
            if len(self._changed) > KEPT:
                del self._changed[next(iter(self._changed))]
        return obj

    def written(self, watch: str, started: float, event: dict[str, Any]) -> None:
        """Note an event just written to a watch that began at ``started``.

        Events for writes older than the watch are its replay of what was already there
        (its initial ADDED events, or a resumption): not a change delivered live.
        """
        obj = event.get("object") or {}
        changed = self._changed.get(str((obj.get("metadata") or {}).get("resourceVersion")))
        if changed is not None and changed >= started:
            self.delivered.append(Delivered(watch, str(event.get("type")), changed, time.time()))

    def since(self, moment: float) -> dict[str, Any]:
        served = [s for s in list(self.served) if s.received >= moment]
        delivered = [d for d in list(self.delivered) if d.changed >= moment]
        return {
            "served": [dataclasses.asdict(s) for s in served],
            "delivered": [dataclasses.asdict(d) for d in delivered],
        }


@attrs.define(kw_only=True)
class TimedKubernetes(RealisticKubernetes):
    """The rig, noting when it received and answered each request and wrote each event."""

    recorder: Recorder = attrs.field(factory=Recorder, init=False)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        received = time.time()
        response = await super().__call__(raw_request)
        if raw_request.query.get("watch") not in ("true", "1"):
            answered = time.time()
            served = Served(
                raw_request.method, raw_request.path, received, answered, response.status
            )
            self.recorder.served.append(served)
        return response

    async def _serve_create(self, request: kmock.Request) -> dict[str, Any]:
        return self.recorder.stored(await super()._serve_create(request))

    async def _serve_update(self, request: kmock.Request) -> dict[str, Any]:
        return self.recorder.stored(await super()._serve_update(request))

    async def _serve_replace(self, request: kmock.Request) -> dict[str, Any]:
        return self.recorder.stored(await super()._serve_replace(request))

    async def _serve_delete(self, request: kmock.Request) -> dict[str, Any]:
        return self.recorder.stored(await super()._serve_delete(request))

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        started = time.time()
        async for event in super()._serve_watch(request):
            yield event
            # kmock asks for the next event once it has written this one.
            if isinstance(event, dict):
                self.recorder.written(request.url.path, started, event)


def _control(rig: TimedKubernetes) -> aiohttp.web.Application:
    async def tokens(request: aiohttp.web.Request) -> aiohttp.web.Response:
        asked = await request.json()
        token = rig.issue_token(
            asked["namespace"],
            asked["serviceAccount"],
            audience=asked.get("audience", "vault"),
            expires_in=float(asked.get("expiresIn", 3600)),
            pod=asked.get("pod"),
            uid=asked.get("uid"),
        )
        return aiohttp.web.json_response({"token": token})

    async def timings(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response(rig.recorder.since(float(request.query.get("since", 0))))

    app = aiohttp.web.Application()
    app.router.add_post("/tokens", tokens)
    app.router.add_get("/timings", timings)
    return app


async def _serve_control(rig: TimedKubernetes, port: int) -> None:
    """Serve the control URL, print the line :class:`RigProcess` waits for, then wait."""
    runner = aiohttp.web.AppRunner(_control(rig), access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    bound = runner.addresses[0][1]
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    ready = {
        "api": rig.api_url,
        "control": f"http://127.0.0.1:{bound}",
        "adminToken": rig.admin_token,
        "caPem": rig.ca_pem,
    }
    print(json.dumps(ready), flush=True)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.rig.serve", description="The rig's API server in its own process."
    )
    parser.add_argument("--control-port", type=int, default=0, help="0: any free port")
    parser.add_argument(
        "--for-operator",
        action="store_true",
        help="declare the cluster version and the chart's webhook configurations",
    )
    args = parser.parse_args(argv)
    rig = TimedKubernetes()
    rig.start()
    try:
        if args.for_operator:
            # Imported only here: it brings the operator's packages into the rig's process.
            from tests.rig.operator import webhook_configurations

            asyncio.run(webhook_configurations(rig))
        asyncio.run(_serve_control(rig, args.control_port))
    finally:
        rig.stop()
    if rig.crashes:
        raise SystemExit(f"the rig crashed while serving: {rig.crashes!r}")


class RigProcess(ApiCalls):
    """``python -m tests.rig.serve`` as a child process, and an ApiServer onto it.

    Start it with ``with``: it returns once the rig serves, and stops it (SIGTERM) at
    the end. Its stderr goes to ``log`` (or to this process's).
    """

    def __init__(self, *, for_operator: bool = False, log: Path | None = None) -> None:
        self._command = [sys.executable, "-m", "tests.rig.serve"]
        if for_operator:
            self._command.append("--for-operator")
        self._log = log
        self._ready: dict[str, str] = {}
        self._process: subprocess.Popen[str] | None = None
        self._session = requests.Session()

    def __enter__(self) -> RigProcess:
        path = os.pathsep.join([str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        sink: IO[bytes] | None = self._log.open("ab") if self._log else None
        self._process = subprocess.Popen(
            self._command,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        if sink is not None:
            sink.close()  # the child holds its own copy.
        try:
            self._ready = json.loads(self._first_line(self._process, 30))
        except BaseException:
            stop_process(self._process)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self._session.close()
        if self._process is not None:
            stop_process(self._process)

    @property
    def returncode(self) -> int | None:
        """None while it serves; 0 once stopped cleanly (1: the rig crashed, said on stderr)."""
        return self._process.returncode if self._process is not None else None

    @staticmethod
    def _first_line(process: subprocess.Popen[str], seconds: float) -> str:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], seconds)
        line = process.stdout.readline() if readable else ""
        if not line:
            raise RuntimeError(f"the rig's process did not start (exit code {process.poll()})")
        return line

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def api_url(self) -> str:
        return self._ready["api"]

    @property
    def admin_token(self) -> str:
        return self._ready["adminToken"]

    @property
    def ca_pem(self) -> str:
        return self._ready["caPem"]

    def issue_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audience: str | Sequence[str] = "vault",
        uid: str | None = None,
        expires_in: float = 3600,
        pod: str | None = None,
    ) -> str:
        """A service-account JWT signed by the rig, as :meth:`RealisticKubernetes.issue_token`."""
        asked = {
            "namespace": namespace,
            "serviceAccount": service_account,
            "audience": audience if isinstance(audience, str) else list(audience),
            "expiresIn": expires_in,
            "uid": uid,
            "pod": pod,
        }
        answer = self._session.post(f"{self._ready['control']}/tokens", json=asked, timeout=10)
        answer.raise_for_status()
        return str(answer.json()["token"])

    def timings(self, since: float) -> Timings:
        """The requests and watch events the rig served since ``since`` (epoch seconds)."""
        params = {"since": repr(since)}
        answer = self._session.get(f"{self._ready['control']}/timings", params=params, timeout=30)
        answer.raise_for_status()
        return Timings.from_json(answer.json())


if __name__ == "__main__":
    main()
