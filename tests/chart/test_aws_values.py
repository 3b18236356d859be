"""The chart's ``aws.*`` values reach the operator: rendered by helm, parsed by the operator.

Covers: ``aws.accounts`` / ``secretPrefix`` / ``endpointUrl`` / ``audiences`` in the operator's
config as ``OperatorConfig.from_mapping`` reads it; by default no AWS account is served
(every AWS binding refused); the schema refuses an account id that is not 12 digits.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from agent.operator.config import AwsConfig, OperatorConfig

CHART = Path(__file__).resolve().parents[2] / "charts" / "captcha-key-agent"


def operator_config(helm: Path, *sets: str) -> OperatorConfig:
    args = ["template", "ckb", str(CHART), "--namespace", "captcha-system", *sets]
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, check=True)
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(result.stdout) if d]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"])
    return OperatorConfig.from_mapping(yaml.safe_load(config_map["data"]["config.yaml"]))


def test_aws_values_reach_the_operator_config(helm: Path) -> None:
    config = operator_config(
        helm,
        *("--set-json", 'aws.accounts=["123456789012"]'),
        *("--set", "aws.secretPrefix=teams/ckb"),
        *("--set", "aws.endpointUrl=https://vpce.example"),
        *("--set-json", 'aws.audiences=["sts.custom"]'),
    )
    assert config.aws == AwsConfig(
        ("123456789012",), "teams/ckb", "https://vpce.example", ("sts.custom",)
    )


def test_by_default_no_aws_account_is_served(helm: Path) -> None:
    assert operator_config(helm).aws == AwsConfig()


def test_schema_refuses_a_malformed_account(helm: Path) -> None:
    args = ["template", "ckb", str(CHART), "--set-json", 'aws.accounts=["12345"]']
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "accounts" in result.stderr
