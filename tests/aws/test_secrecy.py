"""The key never leaks on the AWS path, even with every logger at DEBUG.

Covers:
- the real CLI (``--aws-secret-id``, ``--log-level debug``, JSON logs): a first read, a
  rotation, and a missing field whose sibling field holds a sentinel; no sentinel on
  stderr. botocore logs whole response bodies at DEBUG, so this fails unless its loggers
  are held back (agent.aws.secrets does);
- in-process, pytest capturing every record at DEBUG: the same sequence through a
  KeyAgent; no sentinel in any record (message, args, exception text), in the errors, in
  the reprs of SecretsManagerSource / AwsKeyVersion / KeyRefresher / KeyAgent, in the
  metadata file, or in the agent's status.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import keyfile
from agent.aws import AwsSecretRef, WebIdentity
from agent.aws.secrets import SecretsManagerSource
from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
from agent.vault import VaultError
from tests.rig.moto import REGION, MotoServer

SENTINEL_1 = "5e171ee1" * 4
SENTINEL_2 = "5e171ee2" * 4
SENTINEL_3 = "5e171ee3" * 4


def test_cli_at_debug_level_never_prints_the_key(moto: MotoServer, tmp_path: Path) -> None:
    name, _, _ = moto.create_secret(json.dumps({"api_key": SENTINEL_1}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULT_"))}
    env.update(AWS_ACCESS_KEY_ID="instance-role", AWS_SECRET_ACCESS_KEY="x")

    def run(field: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                *("-c", "from agent.cli import main; main()"),
                "agent",
                "--once",
                *("--out-dir", str(tmp_path)),
                *("--health-addr", ""),
                *("--aws-region", REGION),
                *("--aws-endpoint-url", moto.url),
                *("--aws-secret-id", name),
                *("--aws-field", field),
                *("--log-level", "debug"),
                *("--log-format", "json"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    first = run("api_key")
    assert first.returncode == 0, first.stderr
    assert '"level": "debug"' in first.stderr, "debug logging was off: this would prove nothing"
    moto.put_value(name, json.dumps({"api_key": SENTINEL_2}))
    rotated = run("api_key")
    moto.put_value(name, json.dumps({"other": SENTINEL_3}))
    missing = run("api_key")
    assert missing.returncode == 1
    assert "has no field 'api_key'" in missing.stderr
    for result in (first, rotated, missing):
        for sentinel in (SENTINEL_1, SENTINEL_2, SENTINEL_3):
            assert sentinel not in result.stderr
            assert sentinel not in result.stdout


async def test_in_process_records_errors_and_reprs(
    moto: MotoServer, web_identity: WebIdentity, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every other logger at DEBUG.
    # botocore would log GetSecretValue's response body at DEBUG: the source holds it back.
    assert logging.getLogger("botocore.parsers").getEffectiveLevel() == logging.WARNING
    name, _, _ = moto.create_secret(json.dumps({"api_key": SENTINEL_1}))
    client = SecretsManagerSource(REGION, web_identity, endpoint_url=moto.url)
    ref = AwsSecretRef(name, REGION, field="api_key")
    refresher = KeyRefresher(client, ref, KeyTarget(tmp_path))
    agent = KeyAgent(refresher)
    errors: list[str] = []
    await agent.refresh_once()
    moto.put_value(name, json.dumps({"api_key": SENTINEL_2}))
    await agent.refresh_once()
    moto.put_value(name, json.dumps({"other": SENTINEL_3}))
    with pytest.raises(VaultError) as caught:
        await agent.refresh_once()
    errors.append(str(caught.value))
    key = client.read_key(AwsSecretRef(name, REGION, stage="AWSPREVIOUS", field="api_key"))
    texts = [
        *errors,
        caplog.text,
        *(str(r.args) for r in caplog.records),
        repr(client),
        repr(key),
        repr(refresher),
        repr(agent),
        json.dumps(agent.status(), default=str),
        keyfile.metadata_path(tmp_path / "api_key").read_text(),
    ]
    assert key.value == SENTINEL_2
    for text in texts:
        for sentinel in (SENTINEL_1, SENTINEL_2, SENTINEL_3):
            assert sentinel not in text
