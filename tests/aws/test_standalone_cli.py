"""``captchakey agent --aws-secret-id``: a worker outside Kubernetes reading Secrets Manager.

Covers, with the real CLI in a process of its own against moto: the machine's default
AWS credentials (as an instance role's would be found), or ``--aws-role-arn`` with a
token file (AssumeRoleWithWebIdentity); ``--aws-field``, ``--aws-version-stage`` and
``--aws-version-id`` select what is written; ``--aws-region`` is checked; a missing
secret is a one-line error naming it, non-zero exit, no traceback, no key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent import keyfile
from tests.aws.conftest import AGENT_ACTIONS, TOKEN, TRUST
from tests.rig.moto import REGION, MotoServer

KEY_1 = "0123456789abcdef0123456789abcdef"
KEY_2 = "fedcba9876543210fedcba9876543210"


def agent(moto: MotoServer, out: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULT_"))}
    return subprocess.run(
        [
            sys.executable,
            *("-c", "from agent.cli import main; main()"),
            "agent",
            "--once",
            *("--out-dir", str(out)),
            *("--health-addr", ""),
            *("--aws-region", REGION),
            *("--aws-endpoint-url", moto.url),
            *("--log-level", "error"),
            *args,
        ],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def held(out: Path) -> tuple[str, str | int | None]:
    meta = keyfile.read_metadata(out / "api_key")
    return (out / "api_key").read_text(), meta.version if meta else None


def test_default_credentials_json_field_and_labels(moto: MotoServer, tmp_path: Path) -> None:
    name, _, first = moto.create_secret(json.dumps({"api_key": KEY_1}))
    second = moto.put_value(name, json.dumps({"api_key": KEY_2}))
    creds = {"AWS_ACCESS_KEY_ID": "instance-role", "AWS_SECRET_ACCESS_KEY": "x"}
    result = agent(moto, tmp_path, "--aws-secret-id", name, "--aws-field", "api_key", **creds)
    assert result.returncode == 0, result.stderr
    assert held(tmp_path) == (KEY_2, second)
    previous = ["--aws-version-stage", "AWSPREVIOUS"]
    result = agent(
        moto, tmp_path, "--aws-secret-id", name, "--aws-field", "api_key", *previous, **creds
    )
    assert result.returncode == 0, result.stderr
    assert held(tmp_path) == (KEY_1, first)
    pinned = ["--aws-version-id", second]
    result = agent(
        moto, tmp_path, "--aws-secret-id", name, "--aws-field", "api_key", *pinned, **creds
    )
    assert held(tmp_path) == (KEY_2, second)


def test_role_from_a_token_file_and_a_plain_string(moto: MotoServer, tmp_path: Path) -> None:
    role = moto.create_role([{"Action": AGENT_ACTIONS, "Resource": "*"}], TRUST)
    (tmp_path / "token").write_text(TOKEN)
    name, _, version = moto.create_secret(KEY_1)
    out = tmp_path / "keys"
    out.mkdir()
    result = agent(
        moto,
        out,
        *("--aws-secret-id", name),
        *("--aws-role-arn", role),
        *("--aws-token-file", str(tmp_path / "token")),
    )
    assert result.returncode == 0, result.stderr
    assert held(out) == (KEY_1, version)


def test_missing_secret_and_bad_region_are_one_line_errors(
    moto: MotoServer, tmp_path: Path
) -> None:
    creds = {"AWS_ACCESS_KEY_ID": "instance-role", "AWS_SECRET_ACCESS_KEY": "x"}
    result = agent(moto, tmp_path, "--aws-secret-id", "captchaai/absent", **creds)
    assert result.returncode == 1
    assert 'no secret "captchaai/absent"' in result.stderr
    assert "Traceback" not in result.stderr
    result = agent(moto, tmp_path, "--aws-secret-id", "x", "--aws-region", "Europe", **creds)
    assert result.returncode == 2
    assert "'Europe' is not an AWS region" in result.stderr
