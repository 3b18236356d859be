"""Conditions: a binding's status conditions, updated Kubernetes-style.

Aspects covered:
- a new condition type is added with type, status ("True"/"False"), reason, message,
  observedGeneration and a lastTransitionTime of now (RFC 3339, UTC, "Z");
- setting the same status again keeps lastTransitionTime (reason and message update);
- flipping the status moves lastTransitionTime to now;
- setting a type that exists replaces it (never a duplicate); other types are kept;
- observedGeneration records the generation given (also None), replacing an old one;
- the conditions passed in are not mutated;
- the status patch (``status_patch``): applied to what the server holds it gives the
  desired status, also when kopf's view of the body is stale (it does not show the
  keeper's last write yet): a version no consumer holds any more is still deleted.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from typing import Any

from agent.contract.bindingstatus import Condition
from agent.operator.status import Conditions, status_patch
from tests.rig.kube import merge_patch  # RFC 7386, as the rig's API server applies it

OLD = "2020-01-01T00:00:00Z"


def condition(type_: str, status: str, **extra: Any) -> Condition:
    old = Condition(type_, status, "Old", "old message", 1, OLD)
    return dataclasses.replace(old, **extra)


def by_type(conditions: Conditions, type_: str) -> Condition:
    (found,) = [c for c in conditions.items if c.type == type_]
    return found


def test_new_condition_is_added_with_every_field() -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    conditions = Conditions([], generation=3)
    conditions.set("Ready", True, "KeyPublished", "version 2 is current")
    after = datetime.datetime.now(datetime.UTC)
    (ready,) = conditions.items
    assert ready == Condition(
        type="Ready",
        status="True",
        reason="KeyPublished",
        message="version 2 is current",
        observed_generation=3,
        last_transition_time=ready.last_transition_time,
    )
    assert ready.last_transition_time is not None
    stamp = datetime.datetime.strptime(ready.last_transition_time, "%Y-%m-%dT%H:%M:%SZ")
    assert before <= stamp.replace(tzinfo=datetime.UTC) <= after


def test_same_status_keeps_the_transition_time_and_updates_the_rest() -> None:
    conditions = Conditions([condition("Ready", "True")], generation=2)
    conditions.set("Ready", True, "KeyPublished", "version 3 is current")
    ready = by_type(conditions, "Ready")
    assert ready.last_transition_time == OLD
    assert (ready.reason, ready.message) == ("KeyPublished", "version 3 is current")
    assert ready.observed_generation == 2


def test_flipped_status_moves_the_transition_time() -> None:
    conditions = Conditions([condition("Ready", "True")], generation=1)
    conditions.set("Ready", False, "VaultUnavailable", "connection refused")
    ready = by_type(conditions, "Ready")
    assert ready.status == "False"
    assert ready.last_transition_time != OLD
    assert ready.last_transition_time == conditions.now
    # and back again: moves once more (to this round's time, not the old one)
    conditions.set("Ready", True, "KeyPublished", "ok")
    assert by_type(conditions, "Ready").last_transition_time == conditions.now


def test_condition_without_a_transition_time_gets_one() -> None:
    previous = condition("Ready", "True", last_transition_time=None)
    conditions = Conditions([previous], generation=1)
    conditions.set("Ready", True, "KeyPublished", "ok")
    assert by_type(conditions, "Ready").last_transition_time == conditions.now


def test_set_replaces_a_type_and_keeps_the_others() -> None:
    current = [condition("Ready", "True"), condition("VaultReachable", "True")]
    snapshot = copy.deepcopy(current)
    conditions = Conditions(current, generation=5)
    conditions.set("VaultReachable", False, "PermissionDenied", "403 on metadata")
    conditions.set("VaultReachable", False, "PermissionDenied", "403 again")
    conditions.set("Ready", False, "PermissionDenied", "403 again")
    assert sorted(c.type for c in conditions.items) == ["Ready", "VaultReachable"]
    assert by_type(conditions, "VaultReachable").message == "403 again"
    assert current == snapshot  # the body's conditions are not mutated


def test_untouched_condition_is_kept_as_it_was() -> None:
    other = condition("Progressing", "True")
    conditions = Conditions([other], generation=9)
    conditions.set("Ready", True, "KeyPublished", "ok")
    assert by_type(conditions, "Progressing") == other


def test_observed_generation_is_recorded() -> None:
    conditions = Conditions([condition("Ready", "True", observed_generation=1)], generation=7)
    conditions.set("Ready", True, "KeyPublished", "ok")
    assert by_type(conditions, "Ready").observed_generation == 7
    assert conditions.generation == 7
    unknown = Conditions([], generation=None)
    unknown.set("Ready", False, "InvalidBinding", "bad")
    assert unknown.items[0].observed_generation is None


def test_status_patch_deletes_what_a_stale_view_does_not_show() -> None:
    server = {"currentVersion": 2, "rollout": {"consumers": 1, "versions": {"1": 1}}}
    stale: dict[str, Any] = {"currentVersion": 1}  # the watch has not delivered our write
    desired = {"currentVersion": 2, "rollout": {"consumers": 1, "versions": {"2": 1}}}
    without_memory = status_patch(stale, None, desired)
    assert merge_patch(server, without_memory)["rollout"]["versions"] == {"1": 1, "2": 1}
    patch = status_patch(stale, server, desired)
    assert merge_patch(server, patch) == desired


def test_status_patch_is_empty_when_both_views_agree() -> None:
    status = {"currentVersion": 2, "rollout": {"versions": {"2": 3}}}
    assert status_patch(status, copy.deepcopy(status), copy.deepcopy(status)) == {}
    assert status_patch(status, None, copy.deepcopy(status)) == {}
