"""The operator's probes and metrics, as the kubelet and Prometheus see them.

Covers: ``/healthz`` answers; ``/readyz`` answers once the webhook server accepts
connections; ``/metrics`` counts admissions by webhook and outcome, and publishes each
binding's current version and consumers; no metric ever carries a key. The consumers'
states are disjoint and sum to all consumers (no ``state="all"``); build-info and
process metrics are served; prometheus_client's handler serves OpenMetrics on request;
every metric the operator registers is in docs/metrics.md's table, with its type and
labels, and the table names nothing the operator does not register; the same for the key
agent's metrics and the doc's agent table.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import requests
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from agent.contract.agentstatus import AgentStatus
from agent.operator.observability import CONSUMER_STATES, Metrics
from agent.sidecar.metrics import AgentMetrics
from tests.operator.test_webhooks import mutate, pod
from tests.rig.operator import RunningOperator
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


def consumer_samples(text: str) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return {s.labels["state"]: s.value for s in families["captchakey_binding_consumers"].samples}


def test_consumer_states_are_disjoint_and_sum_to_all() -> None:
    metrics = Metrics()
    metrics.set_consumers("solver", "captchaai", total=5, up_to_date=3)
    states = consumer_samples(generate_latest(metrics.registry).decode())
    assert set(states) == set(CONSUMER_STATES)
    assert states == {"up_to_date": 3.0, "outdated": 2.0}
    assert sum(states.values()) == 5
    metrics.set_consumers("solver", "captchaai", total=5, up_to_date=5)
    assert consumer_samples(generate_latest(metrics.registry).decode())["outdated"] == 0


async def test_served_metrics_have_build_info_process_and_disjoint_states(
    operator: RunningOperator, workload: Workload
) -> None:
    workload.put_key("0123456789abcdef0123456789abcdef")
    await workload.create_binding("captchaai")
    text = ""

    def published() -> bool:
        nonlocal text
        text = get(operator.metrics_url).text
        return "captchakey_binding_consumers{" in text

    await eventually(published)
    assert 'state="all"' not in text
    assert consumer_samples(text) == {"up_to_date": 0.0, "outdated": 0.0}
    assert re.search(
        r'^captchakey_build_info\{python="[0-9.]+",version="[^"]+"\} 1\.0$', text, re.M
    )
    assert re.search(r"^process_resident_memory_bytes [0-9.e+]+$", text, re.M)
    assert re.search(r"^process_open_fds [0-9.e+]+$", text, re.M)


async def test_openmetrics_on_request(operator: RunningOperator) -> None:
    response = await asyncio.to_thread(
        requests.get,
        operator.metrics_url,
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=5,
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def documented_metrics(heading: str = "Operator") -> dict[str, tuple[str, str]]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\w+) \|([^|]*)\|", section, re.M)
    return {name: (kind, labels) for name, kind, labels in rows}


def test_every_metric_is_documented_with_type_and_labels() -> None:
    documented = documented_metrics()
    metrics = Metrics()
    registered = {family.name: family for family in metrics.registry.collect()}
    assert set(documented) == set(registered)
    for name, family in registered.items():
        assert documented[name][0] == family.type, name
    # Label names as declared (a labelled metric has no samples until first used).
    declared = {
        str(metric._name): tuple(metric._labelnames)
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    declared |= {
        name: tuple(sorted({k for sample in family.samples for k in sample.labels}))
        for name, family in registered.items()
        if name not in declared
    }
    for name, labels in declared.items():
        cell = documented[name][1]
        assert all(f"`{label}`" in cell for label in labels), (name, labels, cell)


def test_every_agent_metric_is_documented_with_type_and_labels() -> None:
    """The agent's own exposition (every family present) against the doc's agent table."""
    metrics = AgentMetrics()
    state = AgentStatus(
        version=3,
        desired_version=3,
        last_success=1.0,
        consecutive_failures=0,
        ready=True,
        metadata_access=True,
    )
    metrics.follow(lambda: state)
    metrics.failures.labels("VaultUnavailable").inc()
    metrics.write_failures.labels("ENOSPC").inc()
    metrics.vault_request("read", 0.01, "ok")
    metrics.metadata_probes.labels("denied").inc()
    metrics.recreations.inc()
    families = list(text_string_to_metric_families(metrics.exposition().decode()))
    documented = documented_metrics("Key agent")
    assert {family.name for family in families} == set(documented)
    for family in families:
        kind, cell = documented[family.name]
        assert kind == family.type, family.name
        labels = {k for sample in family.samples for k in sample.labels} - {"le"}
        assert all(f"`{label}`" in cell for label in labels), (family.name, labels, cell)
