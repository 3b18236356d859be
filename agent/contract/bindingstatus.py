"""A CaptchaKeyBinding's ``status``: the one definition the operator writes and others read.

The operator's status keeper writes it; the key agents watch it (``currentVersion``
announces a rotation, ``rotationSpreadSeconds`` spreads the fleet's reads over time);
the rotate client follows it until the old version is safe to revoke. All three use
:class:`BindingStatus` (each key is a field's name in camelCase): the operator sends
:func:`patch_of` a status, the others :func:`parse` what the API server holds. The CRD's
``status`` schema documents the same keys; nothing here ever holds the key.

An operator older or newer than a reader may have written the status: a key the reader
does not know is ignored, and one that is missing or malformed reads as "not said"
(``None``, or an empty rollout), never as an error.

Conditions follow Kubernetes conventions: the types and reasons below, ``status`` is
``"True"`` or ``"False"``, and ``lastTransitionTime`` moves only when the status flips.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from agent.contract import _wire
from agent.contract.agentstatus import VERSION_UNAVAILABLE
from agent.versions import Version

__all__ = [
    "ALL_CONSUMERS_CURRENT",
    "CONSUMERS_HEALTHY",
    "CONSUMER_ERRORS",
    "FALSE",
    "METADATA_READ",
    "NOTHING_TO_REVOKE",
    "NO_CONSUMER_ERRORS",
    "OLD_VERSIONS_UNUSED",
    "READY",
    "ROLLOUT_COMPLETE",
    "ROLLOUT_IN_PROGRESS",
    "SAFE_TO_REVOKE",
    "TRUE",
    "VAULT_REACHABLE",
    "VERSION_PUBLISHED",
    "VERSION_UNAVAILABLE",
    "BindingStatus",
    "Condition",
    "FailingConsumer",
    "RolloutStatus",
    "find",
    "parse",
    "patch_of",
]

TRUE: Final = "True"
FALSE: Final = "False"

# Condition types, and the reasons the operator gives them (besides the CamelCase
# reasons of its errors: InvalidBinding, VaultUnreachable, ...).
READY: Final = "Ready"  # the binding is valid and its key readable.
VERSION_PUBLISHED: Final = "VersionPublished"
# VERSION_UNAVAILABLE (Ready False): a pinned version deleted or destroyed.
VAULT_REACHABLE: Final = "VaultReachable"  # the key's store answered (AWS too).
METADATA_READ: Final = "MetadataRead"
ROLLOUT_COMPLETE: Final = "RolloutComplete"  # every live consumer holds the current version.
ROLLOUT_IN_PROGRESS: Final = "RolloutInProgress"  # also SafeToRevoke's, meanwhile.
ALL_CONSUMERS_CURRENT: Final = "AllConsumersCurrent"
SAFE_TO_REVOKE: Final = "SafeToRevoke"  # an older version no live consumer holds.
OLD_VERSIONS_UNUSED: Final = "OldVersionsUnused"
NOTHING_TO_REVOKE: Final = "NothingToRevoke"
CONSUMERS_HEALTHY: Final = "ConsumersHealthy"  # no consumer's agent reports an error.
NO_CONSUMER_ERRORS: Final = "NoConsumerErrors"
CONSUMER_ERRORS: Final = "ConsumerErrors"  # failing for more than one reason.


@dataclass(frozen=True)
class Condition:
    """One condition, Kubernetes-style."""

    type: Annotated[str, _wire.text] = ""
    status: Annotated[str, _wire.text] = ""  # TRUE or FALSE.
    reason: Annotated[str, _wire.text] = ""
    message: Annotated[str, _wire.text] = ""
    observed_generation: Annotated[int | None, _wire.integer] = None
    last_transition_time: Annotated[str | None, _wire.text] = None  # RFC 3339, UTC.


_CONDITION = _wire.nested(Condition)


@dataclass(frozen=True)
class FailingConsumer:
    """A consumer pod whose agent reports an error: its ``/status`` ``lastError``."""

    pod: Annotated[str, _wire.text] = ""
    reason: Annotated[str, _wire.text] = ""
    message: Annotated[str, _wire.text] = ""
    since: Annotated[str | None, _wire.text] = None  # left out when the agent did not say.


_FAILING = _wire.nested(FailingConsumer)


@dataclass(frozen=True)
class RolloutStatus:
    """How far the current version has reached the consumer pods."""

    consumers: Annotated[int, _wire.integer] = 0  # live pods that consume the binding.
    up_to_date: Annotated[int, _wire.integer] = 0  # those that hold the current version.
    # Version -> consumers holding it ("unknown": no answer).
    versions: Annotated[Mapping[str, int], _wire.counts] = field(default_factory=dict)
    stragglers: Annotated[tuple[str, ...], _wire.many(_wire.text)] = ()
    safe_to_revoke: Annotated[tuple[Version, ...], _wire.many(_wire.version)] = ()
    # The first ten by name.
    failing: Annotated[tuple[FailingConsumer, ...], _wire.many(_FAILING)] = ()

    @property
    def complete(self) -> bool:
        return self.up_to_date == self.consumers


@dataclass(frozen=True)
class BindingStatus:
    """The binding's ``status``; ``None``: not said (a patch leaves that key alone)."""

    observed_generation: Annotated[int | None, _wire.integer] = None
    vault_path: Annotated[str | None, _wire.text] = None  # mount/path of a Vault binding.
    aws_secret: Annotated[str | None, _wire.text] = None  # region:secretId of an AWS one.
    # The spec.rotation.requestedAt the operator last acted on.
    last_rotation_request: Annotated[str | None, _wire.text] = None
    current_version: Annotated[Version | None, _wire.version] = None
    # Sent with each new version: the seconds the consumers spread their reads over.
    rotation_spread_seconds: Annotated[float | None, _wire.number] = None
    conditions: Annotated[tuple[Condition, ...] | None, _wire.many(_CONDITION)] = None
    rollout: Annotated[RolloutStatus | None, _wire.nested(RolloutStatus)] = None


def parse(status: object) -> BindingStatus:
    """The binding's ``status`` as the API server holds it (any object; ``None``: none)."""
    return _wire.load(BindingStatus, status)


def patch_of(status: BindingStatus) -> dict[str, Any]:
    """``status`` as JSON for a merge patch: only the keys it says something about."""
    body: dict[str, Any] = _wire.dump(status, nulls=False)
    return body


def find(conditions: Iterable[Condition] | None, type_: str) -> Condition | None:
    """The condition of that type, if there is one."""
    return next((c for c in conditions or () if c.type == type_), None)
