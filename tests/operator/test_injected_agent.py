"""The agent as the webhook injects it: the real CLI, run with the injected args and env.

Covers the chart value ``sidecar.refreshIntervalSeconds`` from end to end, one real link
at a time: the chart renders it into the operator's config file, the config gives it to
the injection, the webhook injects it as ``CAPTCHAKEY_REFRESH_INTERVAL``, and the real
``captchakey agent`` process started with exactly the injected arguments and
environment resyncs at that interval when its binding sets no
``spec.refreshIntervalSeconds`` (a new Vault version that nobody announces reaches the
file), while a binding's own interval wins over it (its agent does not resync meanwhile).
The injected environment includes ``PYTHONOPTIMIZE=2``: these agents run without
docstrings and asserts, as in the sidecar image.
Only what a pod would get from elsewhere is replaced: the namespace (downward API), the
Vault address, token and key directory (volumes), and the API credentials (kubeconfig).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from agent import keyfile
from agent.contract.pod import AGENT_CONTAINER
from agent.operator.admission import parse_pod
from agent.operator.config import InjectionConfig, OperatorConfig
from agent.operator.injection import plan_injection
from tests.chart.conftest import helm, run_helm, template_args
from tests.rig.helpers import free_port
from tests.rig.scenario import Workload, eventually


def injected_agent(
    config: InjectionConfig, workload: Workload, binding: dict[str, Any]
) -> dict[str, Any]:
    pod = {
        "metadata": {
            "namespace": workload.namespace,
            "labels": {"captchakeys.io/inject": "true"},
            "annotations": {"captchakeys.io/binding": binding["metadata"]["name"]},
        },
        "spec": {"containers": [{"name": "app", "image": "solver:1"}]},
    }
    request = parse_pod(pod, config)
    assert request is not None
    plan = plan_injection(request, binding, config, vault_addr="https://vault.invalid:8200")
    assert plan is not None
    agent: dict[str, Any] = next(c for c in plan["initContainers"] if c["name"] == AGENT_CONTAINER)
    return agent


@contextlib.contextmanager
def run_agent(
    agent: dict[str, Any], workload: Workload, out: Path, tmp: Path
) -> Iterator[subprocess.Popen[str]]:
    """The real ``captchakey`` with the container's args and env, as its pod would run it."""
    out.mkdir()
    env = {e["name"]: e["value"] for e in agent["env"] if "value" in e}
    env.update(
        POD_NAMESPACE=workload.namespace,
        VAULT_ADDR=workload.openbao.addr,
        CAPTCHAKEY_OUT_DIR=str(out),
        CAPTCHAKEY_TOKEN_FILE=str(workload.token_file),
        CAPTCHAKEY_HEALTH_ADDR=f"127.0.0.1:{free_port()}",
    )
    kubeconfig = workload.kube.kubeconfig(
        tmp / f"kubeconfig-{out.name}", token=workload.api_token(), namespace=workload.namespace
    )
    command = [str(Path(sys.executable).with_name("captchakey")), *agent["args"]]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "KUBECONFIG": str(kubeconfig)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=15)


def held(out: Path) -> int | None:
    meta = keyfile.read_metadata(out / "api_key")
    return meta.version if meta else None


__all__ = ["helm"]  # the chart tests' fixture: the real helm binary.


def test_the_chart_value_reaches_the_injected_agent(helm: Path) -> None:
    rendered = run_helm(helm, *template_args(sets=("sidecar.refreshIntervalSeconds=42",)))
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    config_map = next(
        d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in (d.get("data") or {})
    )
    config = OperatorConfig.from_mapping(yaml.safe_load(config_map["data"]["config.yaml"]))
    assert config.injection.refresh_interval_seconds == 42
    binding = {"metadata": {"name": "captchaai"}, "spec": {}}
    pod = {
        "metadata": {
            "labels": {"captchakeys.io/inject": "true"},
            "annotations": {"captchakeys.io/binding": "captchaai"},
        },
        "spec": {"containers": [{"name": "app", "image": "solver:1"}]},
    }
    request = parse_pod(pod, config.injection)
    assert request is not None
    plan = plan_injection(request, binding, config.injection, vault_addr="https://vault:8200")
    assert plan is not None
    (agent,) = plan["initContainers"]
    assert {"name": "CAPTCHAKEY_REFRESH_INTERVAL", "value": "42"} in agent["env"]


def test_injected_default_resync_applies_unless_the_binding_sets_its_own(
    workload: Workload, tmp_path: Path
) -> None:
    workload.put_key("resync-key-version-1-0000000000")
    follows_default = asyncio.run(workload.create_binding("captchaai"))
    own_interval = asyncio.run(workload.create_binding("own", refreshIntervalSeconds=3600))
    # The config's parser allows >= 10 s; the injection carries whatever it holds.
    config = dataclasses.replace(InjectionConfig(), refresh_interval_seconds=1)
    default_agent = injected_agent(config, workload, follows_default)
    own_agent = injected_agent(config, workload, own_interval)
    with (
        run_agent(default_agent, workload, tmp_path / "default", tmp_path),
        run_agent(own_agent, workload, tmp_path / "own", tmp_path),
    ):
        asyncio.run(
            eventually(lambda: held(tmp_path / "default") == held(tmp_path / "own") == 1, 30)
        )
        workload.put_key("resync-key-version-2-0000000000")  # no rotation is announced
        asyncio.run(eventually(lambda: held(tmp_path / "default") == 2, 30))
        settled = time.monotonic()
        # Three of the default's intervals (jitter is ±10%): the binding's own hour holds.
        while time.monotonic() - settled < 3:
            assert held(tmp_path / "own") == 1, "the binding's own interval must win"
            time.sleep(0.1)
