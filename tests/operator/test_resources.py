"""qos_class and parse_quantity: the kubelet's QoS rule, on plain container dicts.

Aspects covered:
- BestEffort: nothing requested or limited (no containers, no resources, only zeros, only
  ephemeral-storage, which the rule does not look at);
- Guaranteed: every container limits cpu and memory and the summed requests equal the
  summed limits, whatever the spelling of the quantities; any iterable of containers;
- Burstable: a container without a memory limit, requests below limits, a container with
  no resources beside sized ones, limits missing on one container though the sums match;
- quantities in the Kubernetes spellings parse to their value; anything else is refused.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from agent.operator.resources import ResourcesError, parse_quantity, qos_class


def sized(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> Any:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": "c", "resources": resources}


BOTH = {"cpu": "500m", "memory": "256Mi"}


@pytest.mark.parametrize(
    "containers",
    [
        [],
        [{"name": "c"}, sized()],
        [sized({"cpu": "0", "memory": "0"}, {"cpu": "0"})],
        [sized({"ephemeral-storage": "1Gi"})],
    ],
    ids=["none", "unset", "zero", "storage-only"],
)
def test_best_effort(containers: list[dict[str, Any]]) -> None:
    assert qos_class(containers) == "BestEffort"


@pytest.mark.parametrize(
    "containers",
    [
        [sized(BOTH, BOTH), sized(BOTH, BOTH)],
        [sized({"cpu": "0.5", "memory": "268435456"}, BOTH)],
        iter([sized(BOTH, BOTH)]),
    ],
    ids=["two", "spellings", "an-iterator"],
)
def test_guaranteed(containers: list[dict[str, Any]]) -> None:
    assert qos_class(containers) == "Guaranteed"


@pytest.mark.parametrize(
    "containers",
    [
        [sized(BOTH, BOTH), sized({"cpu": "1"}, {"cpu": "1"})],
        [sized({"cpu": "100m", "memory": "256Mi"}, BOTH)],
        [sized(BOTH, BOTH), {"name": "plain"}],
        [sized(None, BOTH), sized(BOTH, None)],
    ],
    ids=["no-memory-limit", "requests-below-limits", "one-unsized", "limits-on-one"],
)
def test_burstable(containers: list[dict[str, Any]]) -> None:
    assert qos_class(containers) == "Burstable"


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", Decimal("0.5")), ("96Mi", Decimal(96 * 2**20)), ("1e3", Decimal(1000)), (2, 2)],
)
def test_quantities(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["lots", "", True, None, "1Q"])
def test_not_a_quantity(text: object) -> None:
    with pytest.raises(ResourcesError, match="is not a Kubernetes quantity"):
        parse_quantity(text)
