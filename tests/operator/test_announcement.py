"""The announcement of a new version: published first, then the rollout is tracked.

Covers (the real operator, the rig's API, real OpenBao; consumers are stand-ins that
answer ``/status`` as agents do and note what the binding's status said when the
operator asked them):
- a new version is in ``status.currentVersion`` before the operator asks any consumer
  what it holds: the announcement never waits for the fleet's ``/status`` answers;
- the spread published with it, ``status.rotationSpreadSeconds``, is sized from the
  fleet and the allowed Vault read rate (``vaultReadsPerSecond``): 0 for one consumer,
  (consumers - 1) / rate for more.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.rig.helpers import free_port
from tests.rig.operator import RunningOperator
from tests.rig.scenario import Workload, create_consumer_pod, wait_status


class StandIn:
    """A consumer's agent on loopback: answers /status with ``held`` and notes, for each
    request, the binding's ``status.currentVersion`` at the moment the request arrived."""

    def __init__(self, workload: Workload, held: int):
        self.held = held
        self.seen: list[Any] = []
        binding = (
            f"{workload.kube.api_url}/apis/captchakeys.io/v1alpha1/namespaces/"
            f"{workload.namespace}/captchakeybindings/captchaai"
        )
        token = workload.kube.admin_token
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = requests.get(
                    binding, headers={"Authorization": f"Bearer {token}"}, timeout=5
                ).json()
                stand_in.seen.append((body.get("status") or {}).get("currentVersion"))
                answer = json.dumps({"version": stand_in.held, "ready": True, "lastError": None})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *_: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @contextlib.contextmanager
    def serving(self) -> Iterator[StandIn]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def settled_on(version: int, consumers: int) -> Any:
    def check(status: dict[str, Any]) -> bool:
        rollout = status.get("rollout") or {}
        return (
            status.get("currentVersion") == version
            and rollout.get("consumers") == consumers
            and rollout.get("upToDate") == consumers
        )

    return check


async def rotate(workload: Workload) -> int:
    version = workload.put_key("b" * 32)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    await workload.patch_binding("captchaai", {"spec": {"rotation": {"requestedAt": stamp}}})
    return version


@pytest.mark.usefixtures("operator")
async def test_the_new_version_is_published_before_any_consumer_is_asked(
    workload: Workload,
) -> None:
    workload.put_key("a" * 32)
    await workload.create_binding("captchaai")
    with StandIn(workload, held=1).serving() as consumer:
        await create_consumer_pod(workload, "solver-0", consumer.port, "captchaai")
        await wait_status(workload, settled_on(1, 1))  # settled: no round in flight now.
        asked_before = len(consumer.seen)
        version = await rotate(workload)
        status = await wait_status(workload, lambda s: len(consumer.seen) > asked_before)
        # The first question about the rotation came after the announcement, not before.
        assert consumer.seen[asked_before] == version, consumer.seen
        assert status["currentVersion"] == version
        assert status["rotationSpreadSeconds"] == 0  # a lone consumer reads at once.


async def test_the_spread_grows_with_the_fleet_at_the_allowed_read_rate(
    workload: Workload, operator: RunningOperator
) -> None:
    workload.put_key("a" * 32)
    await workload.create_binding("captchaai")
    fleet = 3
    with contextlib.ExitStack() as stack:
        for number in range(fleet):
            consumer = stack.enter_context(StandIn(workload, held=1).serving())
            await create_consumer_pod(workload, f"solver-{number}", consumer.port, "captchaai")
        await wait_status(workload, settled_on(1, fleet))
        version = await rotate(workload)
        status = await wait_status(workload, lambda s: s.get("currentVersion") == version)
    rate = operator.config.vault_reads_per_second
    assert status["rotationSpreadSeconds"] == pytest.approx((fleet - 1) / rate, abs=0.001)
