"""agent.contract.agentstatus: the ``/status`` contract between the agent and the operator.

Covers building ``lastError`` (one line, RFC 3339 UTC ``since``, a known reason); the
payload an agent serves (camelCase keys, every key present, ``null`` where there is
nothing to say, plain JSON); parsing it back as the operator does: a round trip, the
bare-string ``lastError`` and the ``problem`` key of older agents, ``null``, missing,
unknown and malformed values; and reading the held version (Vault number, AWS id).
"""

from __future__ import annotations

import datetime
import json

from agent.contract import agentstatus
from agent.contract.agentstatus import AgentStatus, LastError, last_error, parse, payload


def test_last_error_is_one_line_with_a_utc_timestamp() -> None:
    moment = datetime.datetime(2026, 12, 1, 21, 45, 7, tzinfo=datetime.UTC).timestamp()
    error = last_error(agentstatus.KEY_FILE_UNWRITABLE, "cannot write\n  /var/run/x", moment)
    assert error == LastError(
        "KeyFileUnwritable", "cannot write /var/run/x", "2026-12-01T21:45:07Z"
    )
    assert error.reason in agentstatus.REASONS


def test_the_reasons_named_in_the_contract_exist() -> None:
    for reason in (
        "KeyFileUnwritable",
        "VaultForbidden",
        "LoginRefused",
        "VaultSealed",
        "VaultUnreachable",
        "KeyRejected",
    ):
        assert reason in agentstatus.REASONS


def test_the_payload_has_every_key_in_camel_case() -> None:
    status = AgentStatus(
        version=3,
        fingerprint="sha256:ab",
        desired_version=4,
        ready=True,
        last_success=1.5,
        last_error=last_error(agentstatus.VAULT_SEALED, "Vault is sealed", 0),
        consecutive_failures=2,
        metadata_access=False,
        source="secret/captchaai/dev#api_key",
        binding="captchaai",
        problem=None,
    )
    body = payload(status)
    assert json.loads(json.dumps(body)) == {
        "version": 3,
        "fingerprint": "sha256:ab",
        "desiredVersion": 4,
        "ready": True,
        "lastSuccess": 1.5,
        "lastError": {
            "reason": "VaultSealed",
            "message": "Vault is sealed",
            "since": "1970-01-01T00:00:00Z",
        },
        "consecutiveFailures": 2,
        "metadataAccess": False,
        "source": "secret/captchaai/dev#api_key",
        "binding": "captchaai",
        "problem": None,
    }
    assert parse(body) == status


def test_an_agent_that_has_not_started_says_null_not_zero() -> None:
    body = payload(AgentStatus())
    assert body["version"] is None
    assert body["lastError"] is None
    assert body["consecutiveFailures"] is None
    assert body["ready"] is False


def test_parse_last_error_tolerates_old_and_bad_bodies() -> None:
    error = last_error(agentstatus.VAULT_SEALED, "Vault is sealed", 0)
    assert parse(payload(AgentStatus(last_error=error))).last_error == error
    assert parse({"lastError": None}).last_error is None
    assert parse({}).last_error is None
    assert parse({"lastError": {"message": "no reason"}}).last_error is None
    assert parse({"lastError": 3}).last_error is None
    # Agents before the lastError object named the reason alone.
    assert parse({"lastError": "VaultUnavailable"}).last_error == LastError(
        "VaultUnavailable", "VaultUnavailable", ""
    )
    assert parse({"problem": "InvalidBinding"}).last_error == LastError(
        "InvalidBinding", "InvalidBinding", ""
    )
    assert parse({"lastError": {"reason": "KeyRejected", "since": 5}}).last_error == LastError(
        "KeyRejected", "", ""
    )


def test_parse_ignores_what_it_does_not_know_and_what_is_malformed() -> None:
    status = parse({"version": 2, "ready": "yes", "lastSuccess": -1, "futureKey": {"a": 1}})
    assert status == AgentStatus(version=2)
    assert parse(["not", "an", "object"]) == AgentStatus()
    assert parse(None) == AgentStatus()


def test_parse_version() -> None:
    assert parse({"version": 3}).version == 3
    assert parse({"version": None}).version is None
    assert parse({"version": True}).version is None
    # A string is an AWS Secrets Manager version id (spec.source: aws): opaque, kept as is.
    version_id = "a1b2c3d4-1111-2222-3333-444455556666"
    assert parse({"version": version_id}).version == version_id
    assert parse({"version": ""}).version is None
    assert parse({"version": 3.5}).version is None
