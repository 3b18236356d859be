"""The example workload in docs/examples/solver-deployment.yaml is right, and its script runs.

Covers: the pod template opts in (label captchakeys.io/inject, annotation
captchakeys.io/binding) and runs the ConfigMap's script from where the ConfigMap is
mounted; that script, run for real against the local service with a key file, solves,
follows a rotation of the key file without a restart, and never logs the key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.keyfile import fingerprint
from tests.readers.python.captchaai.conftest import KEY_A, KEY_B, Rotate
from tests.readers.python.captchaai.fake_service import FakeCaptchaAI

EXAMPLE = Path(__file__).parents[4] / "docs" / "examples" / "solver-deployment.yaml"


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(EXAMPLE.read_text())}


def test_pod_template_opts_in_and_runs_the_configmap_script(
    manifests: dict[str, dict[str, Any]],
) -> None:
    template = manifests["Deployment"]["spec"]["template"]
    assert template["metadata"]["labels"]["captchakeys.io/inject"] == "true"
    assert template["metadata"]["annotations"]["captchakeys.io/binding"] == "captchaai-dev"
    (container,) = template["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    script = Path(container["command"][-1])
    assert volumes["app"]["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert script.parent == Path(mounts["app"])
    assert script.name in manifests["ConfigMap"]["data"]


@pytest.fixture
def run_script(
    manifests: dict[str, dict[str, Any]], service: FakeCaptchaAI, key_file: Path, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    script = tmp_path / "solver.py"
    script.write_text(manifests["ConfigMap"]["data"]["solver.py"])
    env = os.environ | {
        "CAPTCHAAI_KEY_FILE": str(key_file),
        "CAPTCHAAI_BASE_URL": service.base_url,
        "INITIAL_WAIT_SECONDS": "0",
        "POLL_INTERVAL_SECONDS": "0.01",
        "SOLVE_EVERY_SECONDS": "0.05",
    }
    processes: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        processes.append(
            subprocess.Popen(
                [sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True
            )
        )
        return processes[-1]

    yield start
    for process in processes:
        process.kill()
        process.wait()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_script_solves_and_follows_a_rotation(
    run_script: Callable[[], subprocess.Popen[str]], service: FakeCaptchaAI, rotate: Rotate
) -> None:
    service.valid_keys = {KEY_A, KEY_B}
    process = run_script()
    wait_until(lambda: len(service.submits()) >= 2, "two solves with the first key")
    rotate(KEY_B)
    wait_until(
        lambda: any(s.params["key"] == KEY_B for s in service.submits()), "a solve with the new"
    )
    time.sleep(0.2)
    process.terminate()
    _, logs = process.communicate(timeout=10)

    assert "solved: token" in logs
    assert f"key rotated to {fingerprint(KEY_B)}" in logs
    assert KEY_A not in logs
    assert KEY_B not in logs
    assert service.rejections == 0
