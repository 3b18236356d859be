"""agent.contract.bindingstatus: the binding ``status`` the operator writes and others read.

Covers: a status built by the operator turns into the JSON the CRD documents (camelCase
keys, conditions and the rollout nested, a failing consumer's ``since`` left out when its
agent did not say) and parses back to the same status; a merge patch says only what it
knows (an unset key is left out, never ``null``); what an older or newer operator wrote
reads without error: missing keys are "not said", unknown keys are ignored, malformed
values (a negative spread, a string count, a boolean version) read as not said; every key
of the JSON is one the CRD's status schema declares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from agent.contract import bindingstatus
from agent.contract.bindingstatus import (
    BindingStatus,
    Condition,
    FailingConsumer,
    RolloutStatus,
    find,
    parse,
    patch_of,
)

CRD = Path(__file__).parents[2] / "manifests" / "crds" / "captchakeys.io_captchakeybindings.yaml"

STATUS = BindingStatus(
    observed_generation=4,
    vault_path="secret/captchaai/dev",
    last_rotation_request="2026-12-01T21:45:00.000000+00:00",
    current_version=3,
    rotation_spread_seconds=1.5,
    conditions=(
        Condition(bindingstatus.READY, bindingstatus.TRUE, "VersionPublished", "ok", 4, "T1"),
        Condition(bindingstatus.ROLLOUT_COMPLETE, bindingstatus.FALSE, "RolloutInProgress", "1/2"),
    ),
    rollout=RolloutStatus(
        consumers=2,
        up_to_date=1,
        versions={"2": 1, "3": 1},
        stragglers=("solver-b",),
        safe_to_revoke=(),
        failing=(
            FailingConsumer("solver-b", "VaultForbidden", "403 on secret/data/captchaai/dev", "T0"),
        ),
    ),
)


def test_the_json_is_what_the_crd_documents_and_parses_back() -> None:
    body = json.loads(json.dumps(patch_of(STATUS)))
    assert body == {
        "observedGeneration": 4,
        "vaultPath": "secret/captchaai/dev",
        "lastRotationRequest": "2026-12-01T21:45:00.000000+00:00",
        "currentVersion": 3,
        "rotationSpreadSeconds": 1.5,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "VersionPublished",
                "message": "ok",
                "observedGeneration": 4,
                "lastTransitionTime": "T1",
            },
            {
                "type": "RolloutComplete",
                "status": "False",
                "reason": "RolloutInProgress",
                "message": "1/2",
            },
        ],
        "rollout": {
            "consumers": 2,
            "upToDate": 1,
            "versions": {"2": 1, "3": 1},
            "stragglers": ["solver-b"],
            "safeToRevoke": [],
            "failing": [
                {
                    "pod": "solver-b",
                    "reason": "VaultForbidden",
                    "message": "403 on secret/data/captchaai/dev",
                    "since": "T0",
                }
            ],
        },
    }
    assert parse(body) == STATUS


def test_an_aws_binding_round_trips_its_version_ids() -> None:
    status = BindingStatus(
        aws_secret="eu-west-1:captchaai/dev",
        current_version="a1b2c3d4-2222",
        rollout=RolloutStatus(consumers=1, up_to_date=1, safe_to_revoke=("a1b2c3d4-1111",)),
    )
    body = patch_of(status)
    assert body["awsSecret"] == "eu-west-1:captchaai/dev"
    assert body["rollout"]["safeToRevoke"] == ["a1b2c3d4-1111"]
    assert parse(body) == status


def test_a_patch_leaves_out_what_it_does_not_say() -> None:
    assert patch_of(BindingStatus(current_version=2)) == {"currentVersion": 2}
    assert patch_of(BindingStatus()) == {}
    consumer = FailingConsumer("solver-a", "AgentUnreachable", "no answer")
    assert patch_of(BindingStatus(rollout=RolloutStatus(failing=(consumer,)))) == {
        "rollout": {
            "consumers": 0,
            "upToDate": 0,
            "versions": {},
            "stragglers": [],
            "safeToRevoke": [],
            "failing": [{"pod": "solver-a", "reason": "AgentUnreachable", "message": "no answer"}],
        }
    }


def test_a_status_an_older_operator_wrote_reads_as_not_said() -> None:
    # Before rotationSpreadSeconds, rollout.failing and conditions were published.
    old = parse({"currentVersion": 2, "rollout": {"consumers": 3, "upToDate": 3}})
    assert old.current_version == 2
    assert old.rotation_spread_seconds is None
    assert old.conditions is None
    assert old.last_rotation_request is None
    assert old.rollout == RolloutStatus(consumers=3, up_to_date=3)
    assert old.rollout.complete
    assert parse(None) == BindingStatus()
    assert parse({}) == BindingStatus()
    assert parse("not an object") == BindingStatus()


def test_unknown_keys_are_ignored_and_malformed_values_are_not_said() -> None:
    status = parse(
        {
            "currentVersion": True,
            "rotationSpreadSeconds": -1,
            "observedGeneration": "4",
            "vaultPath": 7,
            "somethingNewer": {"x": 1},
            "conditions": [{"type": "Ready", "status": "True", "extra": 1}, "junk"],
            "rollout": {
                "consumers": "2",
                "versions": {"1": 1, "2": "one"},
                "stragglers": ["a", 3],
                "safeToRevoke": [1, False, None, "id"],
                "failing": "nobody",
            },
        }
    )
    assert status.current_version is None
    assert status.rotation_spread_seconds is None
    assert status.observed_generation is None
    assert status.vault_path is None
    assert status.conditions == (Condition("Ready", "True"),)
    assert status.rollout == RolloutStatus(
        versions={"1": 1}, stragglers=("a",), safe_to_revoke=(1, "id")
    )


def test_a_spread_of_zero_is_said() -> None:
    assert parse({"rotationSpreadSeconds": 0}).rotation_spread_seconds == 0.0
    assert parse({"rotationSpreadSeconds": 2}).rotation_spread_seconds == 2.0


def test_find_a_condition_by_type() -> None:
    assert STATUS.conditions is not None
    ready = find(STATUS.conditions, bindingstatus.READY)
    assert ready is not None
    assert ready.status == bindingstatus.TRUE
    assert find(STATUS.conditions, bindingstatus.SAFE_TO_REVOKE) is None
    assert find(None, bindingstatus.READY) is None


def test_every_key_is_one_the_crd_declares() -> None:
    schema = _status_schema()
    body = patch_of(STATUS)
    assert set(body) <= set(schema["properties"])
    condition = schema["properties"]["conditions"]["items"]["properties"]
    assert {key for c in body["conditions"] for key in c} <= set(condition)
    rollout = schema["properties"]["rollout"]["properties"]
    assert set(body["rollout"]) <= set(rollout)
    failing = rollout["failing"]["items"]["properties"]
    assert {key for f in body["rollout"]["failing"] for key in f} <= set(failing)
    aws = patch_of(BindingStatus(aws_secret="r:s"))
    assert set(aws) <= set(schema["properties"])


def _status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema
