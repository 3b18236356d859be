"""Fixtures for the Kubernetes rig, imported by ``tests/conftest.py`` via ``pytest_plugins``.

- ``kube``: a fresh :class:`~tests.rig.kube.RealisticKubernetes` per test, serving on
  127.0.0.1 with our CRD declared. A test fails at teardown if the rig itself crashed
  (an exception other than a deliberate 4xx answer): a rig bug must not pass silently.
- ``kube_openbao``: ``kube`` plus Kubernetes auth on the session's OpenBao under a mount
  of the test's own, so tests sharing one OpenBao do not see each other's roles.
- ``kube_jwt_openbao``: the same with OpenBao's JWT auth (offline signature checks).
- ``workload``: a :class:`~tests.rig.scenario.Workload` in namespace ``solver-dev``
  (service account ``solver``) with its own environment, Vault role and tokens, logging
  in through ``kube_openbao``. A test that needs another namespace or the JWT auth makes
  its own ``Workload``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig.kube import RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.openbao_auth import BaoAuth, configure_jwt_auth, configure_kubernetes_auth
from tests.rig.scenario import Workload


@pytest.fixture
def kube() -> Iterator[RealisticKubernetes]:
    rig = RealisticKubernetes()
    rig.start()
    try:
        yield rig
    finally:
        rig.stop()
    if rig.crashes:
        pytest.fail(f"the Kubernetes rig crashed while serving: {rig.crashes!r}")


@pytest.fixture
def kube_openbao(kube: RealisticKubernetes, openbao: OpenBaoServer) -> Iterator[BaoAuth]:
    auth = configure_kubernetes_auth(openbao, kube, mount=f"k8s-{uuid.uuid4().hex[:10]}")
    yield auth
    auth.disable()


@pytest.fixture
def kube_jwt_openbao(kube: RealisticKubernetes, openbao: OpenBaoServer) -> Iterator[BaoAuth]:
    auth = configure_jwt_auth(openbao, kube, mount=f"jwt-{uuid.uuid4().hex[:10]}")
    yield auth
    auth.disable()


@pytest.fixture
def workload(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_openbao: BaoAuth, tmp_path: Path
) -> Workload:
    return Workload(kube, openbao, kube_openbao, tmp_path, namespace="solver-dev")
