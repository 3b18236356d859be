"""The chart README, generated from values.yaml's ``# --`` comments (scripts/chart_readme.py).

Covers:
- the committed README is exactly what the generator makes now (drift fails, with the
  command that fixes it); every value of values.yaml has a row with its type (from the
  schema), default and description;
- the check really catches drift: a changed default, and a value without a description,
  in a copy of the chart;
- the README's install command, run literally with helm (``--dry-run=client``), renders.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, load_script, run_helm

README = CHART / "README.md"


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            keys += leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_readme_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/chart_readme.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_value_has_a_row() -> None:
    text = README.read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", text, re.M))
    for key in leaf_keys(yaml.safe_load((CHART / "values.yaml").read_text())):
        parts = key.split(".")
        assert any(".".join(parts[:n]) in rows for n in range(1, len(parts) + 1)), key
    assert rows["image.pullPolicy"].startswith("string (")  # the schema's enum, not a guess.
    assert rows["webhook.timeoutSeconds"] == "integer"


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    return copy


def test_a_changed_default_is_drift(chart_copy: Path) -> None:
    generator = load_script("chart_readme")
    values = chart_copy / "values.yaml"
    values.write_text(values.read_text().replace("timeoutSeconds: 10", "timeoutSeconds: 12", 1))
    assert generator.render(chart_copy) != README.read_text()
    assert "| `webhook.timeoutSeconds` | integer | `12` |" in generator.render(chart_copy)


def test_a_value_without_description_is_refused(chart_copy: Path) -> None:
    generator = load_script("chart_readme")
    values = chart_copy / "values.yaml"
    values.write_text(values.read_text() + "undocumented: 1\n")
    with pytest.raises(SystemExit, match="no `# --` description for undocumented"):
        generator.render(chart_copy)


def test_install_command_runs_as_written(helm: Path) -> None:
    block = README.read_text().split("## Install", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    install = block.replace("\\\n", " ").strip().splitlines()[0]
    args = shlex.split(install)
    assert args[:2] == ["helm", "install"]
    result = run_helm(helm, *args[1:], "--dry-run=client")
    assert result.returncode == 0, result.stderr
    assert "kind: MutatingWebhookConfiguration" in result.stdout
