"""Shutdown: the operator leaves kopf nothing to wait for when it stops.

kopf waits up to 5 s for tasks it did not stop itself ("hung tasks") before cancelling
them, so a task of ours left running delays every SIGTERM (a rolling update, a node
drain) by that long. Aspects covered:
- with the webhook certificate renewer running and a binding whose status loop starts
  as the stop is requested, kopf finds no hung task at exit.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.operator.config import OperatorConfig, VaultConfig
from tests.rig.helpers import free_port
from tests.rig.kube import RealisticKubernetes
from tests.rig.operator import operator_on_loopback
from tests.rig.scenario import Workload

REACTOR = "kopf._core.reactor.running"
# What kopf 1.45's reactor logs at exit when nothing of ours is still running.
NOTHING_HUNG = "Hung tasks stopping is skipped: no tasks given."


def test_stopping_leaves_no_hung_task(
    kube: RealisticKubernetes,
    workload: Workload,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=REACTOR)
    workload.put_key("k" * 32)
    config = OperatorConfig(
        vault=VaultConfig(address=workload.openbao.addr),
        environments=(workload.environment,),
        peering_name=None,
        webhook_port=free_port(),
    )
    with operator_on_loopback(kube, config, tmp_path):
        asyncio.run(workload.create_binding("captchaai"))  # its status loop starts now.
    exit_log = [r.getMessage() for r in caplog.records if r.name == REACTOR]
    assert NOTHING_HUNG in exit_log, exit_log
