"""The agent's Prometheus ``/metrics``, scraped from the running ``captchakey agent`` process.

Covers issue 12 item 8 against a real OpenBao: the version held (before and after a
rotation), the time of the last successful refresh, refreshes by result, failures by
reason (a 403 after the policy is narrowed), Vault request latency by operation,
logins, renewals, key-file write failures and build info; every family parses as
Prometheus text, counters end in ``_total``, durations and times are in seconds, and
the key (a sentinel) is in no label and no value. The binding-driven agent serves the
same families on its port. The exposition itself: label values escaped, histogram
buckets cumulative with +Inf, count and sum, unknown gauges absent rather than 0.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.sidecar.metrics import AgentMetrics
from tests.rig.helpers import free_port, wait_until
from tests.rig.kube import BaoAuth, RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.scenario import Workload, eventually, running_agent
from tests.sidecar.process import agent_env, running
from tests.vault.helpers import create_policy

EXPECTED = {
    "captchakey_agent_build_info": "gauge",
    "captchakey_agent_key_version": "gauge",
    "captchakey_agent_last_success_timestamp_seconds": "gauge",
    "captchakey_agent_refreshes": "counter",
    "captchakey_agent_refresh_failures": "counter",
    "captchakey_agent_key_file_write_failures": "counter",
    "captchakey_agent_vault_request_duration_seconds": "histogram",
    "captchakey_agent_vault_logins": "counter",
    "captchakey_agent_vault_token_renewals": "counter",
    "captchakey_agent_metadata_access_probes": "counter",
    "captchakey_agent_secret_recreations_detected": "counter",
    "captchakey_agent_ready": "gauge",
    "captchakey_agent_consecutive_failures": "gauge",
}


def families(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    parsed = {}
    for family in text_string_to_metric_families(text):
        samples = [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
        parsed[family.name] = (family.type, samples)
    return parsed


def assert_conventions(text: str) -> None:
    parsed = families(text)
    for name, kind in EXPECTED.items():
        assert name in parsed, f"{name} is not exposed"
        assert parsed[name][0] == kind, (name, parsed[name][0])
    for name, (kind, samples) in parsed.items():
        assert name.startswith("captchakey_agent_")
        if kind == "counter":
            assert all(s[0].endswith("_total") for s in samples), name
            assert not any(s[0].endswith("_created") for s in samples), name
    build = parsed["captchakey_agent_build_info"][1]
    assert build[0][1]["version"] == __version__
    assert build[0][2] == 1


def value(text: str, name: str, **labels: str) -> float | None:
    for _, (_, samples) in families(text).items():
        for sample, sample_labels, number in samples:
            if sample == name and all(sample_labels.get(k) == v for k, v in labels.items()):
                return number
    return None


def test_running_agent_exposes_its_metrics_and_never_the_key(
    openbao: OpenBaoServer, unique_path: str, tmp_path: Path
) -> None:
    first, second = f"SENTINEL{uuid.uuid4().hex}", f"SENTINEL{uuid.uuid4().hex}"
    openbao.put_key(unique_path, first)
    policy = create_policy(openbao, unique_path)
    token = openbao.client().auth.token.create(policies=[policy], ttl="1h")["auth"]["client_token"]
    out = tmp_path / "keys"
    out.mkdir()
    env = agent_env(VAULT_ADDR=openbao.addr, VAULT_TOKEN=token)
    arguments = [
        *("--auth-method", "token"),
        *("--path", unique_path),
        *("--out-dir", str(out)),
        *("--refresh-interval", "3600"),
        *("--backoff-cap", "1"),
    ]
    with running(arguments, env, tmp_path / "log") as agent:
        wait_until(lambda: agent.status().get("version") == 1, timeout=20)
        text = agent.scrape()
        assert_conventions(text)
        assert value(text, "captchakey_agent_key_version") == 1
        assert value(text, "captchakey_agent_ready") == 1
        last = value(text, "captchakey_agent_last_success_timestamp_seconds")
        assert last is not None
        assert abs(last - time.time()) < 60
        assert value(text, "captchakey_agent_refreshes_total", result="changed") == 1
        assert value(text, "captchakey_agent_vault_logins_total", result="ok") == 1
        latency = "captchakey_agent_vault_request_duration_seconds_count"
        assert value(text, latency, operation="metadata", outcome="ok") == 1
        assert value(text, latency, operation="read", outcome="ok") == 1

        openbao.put_key(unique_path, second)
        agent.hup()
        wait_until(lambda: agent.status().get("version") == 2, timeout=20)
        assert agent.metric("captchakey_agent_key_version") == 2
        assert agent.metric("captchakey_agent_refreshes_total", result="changed") == 2

        openbao.client().sys.create_or_update_policy(
            policy, 'path "elsewhere" { capabilities = ["read"] }'
        )
        agent.hup()
        wait_until(lambda: agent.reason() == "VaultForbidden", timeout=20)
        text = agent.scrape()
        failures = value(text, "captchakey_agent_refresh_failures_total", reason="VaultForbidden")
        assert failures is not None
        assert failures >= 1
        assert value(text, latency, operation="read", outcome="VaultForbidden") is not None
        assert value(text, "captchakey_agent_consecutive_failures") == failures
        assert value(text, "captchakey_agent_ready") == 1  # the held key still serves.
        assert first not in text
        assert second not in text
        assert "SENTINEL" not in text


async def test_binding_agent_serves_the_same_metrics(
    kube: RealisticKubernetes, openbao: OpenBaoServer, kube_openbao: BaoAuth, tmp_path: Path
) -> None:
    workload = Workload(kube, openbao, kube_openbao, tmp_path, namespace="metrics-ns")
    key = f"SENTINEL{uuid.uuid4().hex}"
    workload.put_key(key)
    await workload.create_binding("captchaai")
    port = free_port()
    out = tmp_path / "keys"
    async with running_agent(workload, "captchaai", out, health=("127.0.0.1", port)):

        def scrape() -> str:
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text

        await eventually(lambda: value(scrape(), "captchakey_agent_key_version") == 1)
        text = scrape()
        assert_conventions(text)
        assert value(text, "captchakey_agent_vault_logins_total", result="ok") == 1
        assert key not in text


def test_exposition_escapes_labels_and_accumulates_buckets() -> None:
    metrics = AgentMetrics()
    metrics.failures.labels('odd "reason"\nwith \\ in it').inc()
    for seconds in (0.001, 0.02, 0.3, 20.0):
        metrics.vault_request("read", seconds, "ok")
    metrics.recreations.inc(2)
    text = metrics.exposition().decode()
    parsed = families(text)
    ((name, labels, count),) = list(parsed["captchakey_agent_refresh_failures"][1])
    assert (name, labels, count) == (
        "captchakey_agent_refresh_failures_total",
        {"reason": 'odd "reason"\nwith \\ in it'},
        1,
    )
    duration = "captchakey_agent_vault_request_duration_seconds"
    assert value(text, f"{duration}_bucket", le="0.005") == 1
    assert value(text, f"{duration}_bucket", le="0.025") == 2
    assert value(text, f"{duration}_bucket", le="10.0") == 3
    assert value(text, f"{duration}_bucket", le="+Inf") == 4
    assert value(text, f"{duration}_count") == 4
    assert value(text, f"{duration}_sum") == 20.321
    assert value(text, "captchakey_agent_secret_recreations_detected_total") == 2
    assert "captchakey_agent_key_version" not in text  # no version held: absent, not 0.
