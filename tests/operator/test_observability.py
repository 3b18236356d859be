"""The operator's probes and metrics, as the kubelet and Prometheus see them.

Covers: ``/healthz`` answers; ``/readyz`` answers once the webhook server accepts
connections; ``/metrics`` counts admissions by webhook and outcome, and publishes each
binding's current version and consumers; no metric ever carries a key.
"""

from __future__ import annotations

import asyncio

import requests

from tests.operator.conftest import RunningOperator
from tests.operator.test_webhooks import mutate, pod
from tests.rig.scenario import Workload, eventually


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=5)


async def test_probes(operator: RunningOperator) -> None:
    health = await asyncio.to_thread(get, f"{operator.probes_url}/healthz")
    ready = await asyncio.to_thread(get, f"{operator.probes_url}/readyz")
    assert health.status_code == 200
    assert ready.status_code == 200


async def test_metrics_count_admissions_and_publish_versions(
    operator: RunningOperator, workload: Workload
) -> None:
    sentinel = "metrics-sentinel-key-0123456789ab"
    workload.put_key(sentinel)
    await workload.create_binding("captchaai")
    await mutate(operator, pod(workload))
    await mutate(operator, pod(workload, **{"captchakeys.io/binding": "missing"}))
    text = ""

    def published() -> bool:
        nonlocal text
        text = get(operator.metrics_url).text
        return f'binding="captchaai",namespace="{workload.namespace}"' in text

    await eventually(published)
    assert 'captchakey_admission_requests_total{allowed="true",webhook="mutate-pods"} 1.0' in text
    assert 'captchakey_admission_requests_total{allowed="false",webhook="mutate-pods"} 1.0' in text
    assert "captchakey_admission_duration_seconds_count" in text
    version_line = next(
        line for line in text.splitlines() if line.startswith("captchakey_binding_current_version{")
    )
    assert version_line.endswith(" 1.0")
    assert sentinel not in text
