"""A running operator for integration tests: the rig's API, HTTPS webhooks, real OpenBao.

The operator runs as :mod:`tests.rig.operator` starts it (the bench starts it the same
way); tests that need a consumer run key agents beside it
(``tests.rig.scenario.running_agent``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.operator.config import OperatorConfig, TLSConfig
from tests.rig.helpers import free_port
from tests.rig.kube import RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.openbao_auth import BaoAuth
from tests.rig.operator import (
    SERVING_SECRET,
    RunningOperator,
    operator_on_loopback,
    operator_vault,
)
from tests.rig.scenario import Workload


@pytest.fixture
def operator(
    kube: RealisticKubernetes,
    openbao: OpenBaoServer,
    kube_openbao: BaoAuth,
    workload: Workload,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[RunningOperator]:
    """The operator in a thread of its own with its own loop, as another process would be.

    A test's ``@pytest.mark.operator_config(name=value)`` sets more of its settings.
    """
    marker = request.node.get_closest_marker("operator_config")
    config = OperatorConfig(
        vault=operator_vault(kube, openbao, kube_openbao, tmp_path),
        environments=(workload.environment, "prod"),
        status_poll_seconds=30,
        peering_name=None,
        webhook_port=free_port(),
        tls=TLSConfig(secret_name=SERVING_SECRET),
        **(marker.kwargs if marker else {}),
    )
    with operator_on_loopback(kube, config, tmp_path) as running:
        yield running
