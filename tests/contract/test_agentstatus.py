"""agent.contract.agentstatus: the ``/status`` contract between the agent and the operator.

Covers building ``lastError`` (one line, RFC 3339 UTC ``since``, a known reason) and
parsing it back from a body as the operator does: the object form, the bare-string
form of older agents, ``null`` and malformed values; and reading the held version.
"""

from __future__ import annotations

import datetime

from agent.contract import agentstatus
from agent.contract.agentstatus import last_error, parse_last_error, parse_version


def test_last_error_is_one_line_with_a_utc_timestamp() -> None:
    moment = datetime.datetime(2026, 12, 1, 21, 45, 7, tzinfo=datetime.UTC).timestamp()
    error = last_error(agentstatus.KEY_FILE_UNWRITABLE, "cannot write\n  /var/run/x", moment)
    assert error == {
        "reason": "KeyFileUnwritable",
        "message": "cannot write /var/run/x",
        "since": "2026-12-01T21:45:07Z",
    }
    assert error["reason"] in agentstatus.REASONS


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


def test_parse_last_error_round_trips_and_tolerates_old_and_bad_bodies() -> None:
    error = last_error(agentstatus.VAULT_SEALED, "Vault is sealed", 0)
    assert parse_last_error({"lastError": error}) == error
    assert parse_last_error({"lastError": None}) is None
    assert parse_last_error({}) is None
    assert parse_last_error({"lastError": {"message": "no reason"}}) is None
    assert parse_last_error({"lastError": 3}) is None
    assert parse_last_error({"lastError": "VaultUnavailable"}) == {
        "reason": "VaultUnavailable",
        "message": "VaultUnavailable",
        "since": "",
    }
    assert parse_last_error({"lastError": {"reason": "KeyRejected", "since": 5}}) == {
        "reason": "KeyRejected",
        "message": "",
        "since": "",
    }


def test_parse_version() -> None:
    assert parse_version({"version": 3}) == 3
    assert parse_version({"version": None}) is None
    assert parse_version({"version": True}) is None
    # A string is an AWS Secrets Manager version id (spec.source: aws): opaque, kept as is.
    version_id = "a1b2c3d4-1111-2222-3333-444455556666"
    assert parse_version({"version": version_id}) == version_id
    assert parse_version({"version": ""}) is None
    assert parse_version({"version": 3.5}) is None
