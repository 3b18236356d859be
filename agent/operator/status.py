"""The binding's status: which Vault version is current, and whether all is well.

One keeper per binding (a kopf daemon) reads Vault *metadata* only, with the
operator's own role that has no data capability, so the operator can publish the
current version without ever holding a key. It polls at a jittered interval, at once
when the binding changes or a rotation is requested, and backs off while Vault fails;
a failure changes conditions but never ``currentVersion``: consumers keep their key.

Conditions follow Kubernetes conventions (``lastTransitionTime`` moves only when the
status flips), with reasons from the guide's troubleshooting table.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import kopf

from agent.aws.refs import AwsSecretRef
from agent.binding.model import BindingSpec, InvalidBindingError
from agent.contract import bindingstatus as bs
from agent.contract.bindingstatus import BindingStatus, Condition
from agent.keysource import KeySource, SourceMetadata
from agent.kube import KubeApi
from agent.operator.config import OperatorConfig
from agent.operator.observability import Metrics
from agent.operator.rollout import Consumer, Rollout, read_reports, summarize
from agent.operator.validation import validate_binding
from agent.runtime.backoff import Backoff, jittered
from agent.vault import (
    VaultClient,
    VaultError,
    VaultUnavailableError,
    auth_from_settings,
)
from agent.versions import Version

__all__ = ["Conditions", "Outcome", "StatusKeeper", "merge_patch", "status_patch"]

Outcome = Literal["settled", "rolling", "failed"]

_log = logging.getLogger(__name__)


class Conditions:
    """A binding's conditions being updated in one round, Kubernetes-style.

    ``lastTransitionTime`` moves only when a condition's status flips, so it tells
    how long a binding has been (un)ready, not how long ago the last poll ran.
    """

    def __init__(self, current: Iterable[Condition] | None, generation: int | None):
        self.items: list[Condition] = list(current or ())
        self.generation = generation
        self.now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def set(self, type_: str, status: bool, reason: str, message: str) -> None:
        value = bs.TRUE if status else bs.FALSE
        previous = bs.find(self.items, type_)
        kept = previous.last_transition_time if previous and previous.status == value else None
        self.items = [c for c in self.items if c.type != type_]
        self.items.append(
            Condition(type_, value, reason, message, self.generation, kept or self.now)
        )

    def wait_for_every_consumer(self) -> None:
        """Nothing is safe to revoke while a consumer may still hold an older version."""
        self.set(
            bs.SAFE_TO_REVOKE,
            False,
            bs.ROLLOUT_IN_PROGRESS,
            "wait until every consumer holds the current version",
        )


@dataclass
class _Round:
    """One check of one binding: the status as seen, and the status being built."""

    key: tuple[str, str]
    body: kopf.Body
    consumers: Callable[[], Iterable[Consumer]]
    seen: Mapping[str, Any]  # the status in kopf's view of the body, as JSON.
    before: BindingStatus  # the same, parsed.
    conditions: Conditions
    status: BindingStatus  # what this round publishes, as far as it has got.

    @classmethod
    def start(
        cls, key: tuple[str, str], body: kopf.Body, consumers: Callable[[], Iterable[Consumer]]
    ) -> _Round:
        seen: Mapping[str, Any] = body.get("status") or {}
        before = bs.parse(seen)
        generation = body.metadata.get("generation")
        conditions = Conditions(before.conditions, generation)
        return cls(key, body, consumers, seen, before, conditions, BindingStatus(generation))

    @property
    def where(self) -> str:
        """Where the key lives, for messages: the KV path, or the AWS secret."""
        return self.status.vault_path or self.status.aws_secret or ""

    def desired(self) -> BindingStatus:
        """The status to write now: what the round has built, with its conditions."""
        return replace(self.status, conditions=tuple(self.conditions.items))


def merge_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ``current`` into ``desired`` for the given keys.

    Maps are merged key by key on the server, so a key that disappears (a version no
    consumer holds any more) must be sent as ``null``; equal values are left out, and
    an empty result means there is nothing to write.
    """
    changes: dict[str, Any] = {}
    for key, wanted in desired.items():
        have = current.get(key)
        if isinstance(wanted, Mapping) and isinstance(have, Mapping):
            nested = merge_patch(have, wanted)
            nested.update({k: None for k in have if k not in wanted})
            if nested:
                changes[key] = nested
        elif have != wanted:
            changes[key] = wanted
    return changes


class StatusKeeper:
    """Keeps every binding's status current; one :meth:`keep` loop per binding."""

    rollout_poll_seconds = 0.5  # while consumers are catching up, look often.
    failure_event_seconds = 60.0  # at most one ConsumerFailing Event per binding per minute.

    def __init__(self, config: OperatorConfig, kube: KubeApi, metrics: Metrics):
        self.config = config
        self.kube = kube
        self.metrics = metrics
        self.backoff = Backoff(base=2.0, cap=300.0)
        self._clients: dict[tuple[str, str | None], VaultClient] = {}
        self._aws_clients: dict[str, KeySource] = {}
        self._wakeups: dict[tuple[str, str], asyncio.Event] = {}
        self._closed = False
        self._loops: set[asyncio.Task[Any]] = set()  # the tasks running keep(), to cancel.
        # Per binding: the status as this keeper last wrote it.
        self._written: dict[tuple[str, str], dict[str, Any]] = {}
        # Per binding: the failing consumers last announced, and when (monotonic).
        self._failure_events: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], float]] = {}

    def close(self) -> None:
        """The operator is exiting: end every loop now, and any that starts from here on.

        kopf stops the daemons it knows of, but a binding event that lands while the
        operator stops can still start one after that; kopf then waits 5 s for it.
        """
        self._closed = True
        for loop in self._loops:
            loop.cancel()  # also one in the middle of a Vault or API call.

    def wake(self, namespace: str, name: str) -> None:
        """Check this binding now: its spec changed, or a rotation was requested."""
        self._wakeups.setdefault((namespace, name), asyncio.Event()).set()

    def wake_if_asked(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """Check now if the spec changed since the last status, or a rotation is new."""
        status = bs.parse(body.get("status"))
        rotation = ((body.get("spec") or {}).get("rotation") or {}).get("requestedAt")
        stale = (body.get("metadata") or {}).get("generation") != status.observed_generation
        if stale or (rotation and rotation != status.last_rotation_request):
            _log.debug(
                "binding %s/%s: change or rotation request %s seen",
                namespace,
                name,
                rotation,
                extra={"hop": "request-seen"},
            )
            self.wake(namespace, name)

    async def keep(
        self,
        namespace: str,
        name: str,
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        consumers: Callable[[], Iterable[Consumer]],
    ) -> None:
        wake = self._wakeups.setdefault((namespace, name), asyncio.Event())
        failures = 0
        task = asyncio.current_task()
        if task is not None:
            self._loops.add(task)
        try:
            while not stopped and not self._closed:
                wake.clear()
                outcome = await self.check(namespace, name, body, consumers)
                failures = 0 if outcome != "failed" else failures + 1
                if outcome == "failed":
                    delay = self.backoff.delay(failures)
                elif outcome == "rolling":
                    delay = self.rollout_poll_seconds
                else:
                    delay = jittered(self.config.status_poll_seconds)
                await _sleep(delay, until=wake, or_stopped=stopped)
        finally:
            self._wakeups.pop((namespace, name), None)
            self._written.pop((namespace, name), None)
            self._loops.discard(task)

    async def check(
        self,
        namespace: str,
        name: str,
        body: kopf.Body,
        consumers: Callable[[], Iterable[Consumer]],
    ) -> Outcome:
        """One round: read metadata, count consumers, publish the status if it changed."""
        round_ = _Round.start((namespace, name), body, consumers)
        outcome = await self._observe(round_)
        _announce_transitions(round_)
        await self._patch(round_.key, round_.seen, round_.desired())
        return outcome

    async def _observe(self, round_: _Round) -> Outcome:
        """Where the key is, its current version, and how far it has reached the consumers."""
        try:
            spec = validate_binding(round_.body, self.config)
        except InvalidBindingError as exc:
            round_.conditions.set(bs.READY, False, exc.reason, str(exc))
            return "settled"
        round_.status = _located(round_.status, spec)
        self._note_rotation_request(round_, spec)
        try:
            meta = await self._metadata(spec, round_.where)
        except VaultError as exc:
            return self._unreadable(round_, exc)
        store = "AWS Secrets Manager" if spec.source == "aws" else "Vault"
        # The condition keeps its name for AWS bindings: "the key's store answered".
        round_.conditions.set(bs.VAULT_REACHABLE, True, bs.METADATA_READ, f"{store} answered")
        self._publish(round_, spec, meta)
        return await self._roll_out(round_, meta)

    @staticmethod
    def _note_rotation_request(round_: _Round, spec: BindingSpec) -> None:
        """Record the rotation request acted on; a new one is an Event on the binding."""
        request = spec.rotation_request
        if not request:
            return
        round_.status = replace(round_.status, last_rotation_request=request)
        if request != round_.before.last_rotation_request:
            _normal(
                round_.body,
                "RotationRequested",
                f"rotation requested at {request}: checking {spec.source.capitalize()} for a "
                f"new version of {round_.where}",
            )

    async def _metadata(self, spec: BindingSpec, where: str) -> SourceMetadata:
        meta = await asyncio.to_thread(self._client(spec).metadata, spec.ref)
        _log.debug(
            "metadata of %s read: current version %s",
            where,
            meta.current_version,
            extra={"hop": "metadata-read"},
        )
        return meta

    def _unreadable(self, round_: _Round, exc: VaultError) -> Outcome:
        """The store refused or did not answer: say why; back off only if it did not answer."""
        self.metrics.vault_errors.labels(exc.reason).inc()
        reachable = not isinstance(exc, VaultUnavailableError)
        round_.conditions.set(bs.VAULT_REACHABLE, reachable, exc.reason, str(exc))
        round_.conditions.set(bs.READY, False, exc.reason, str(exc))
        return "settled" if reachable else "failed"

    async def _roll_out(self, round_: _Round, meta: SourceMetadata) -> Outcome:
        """Announce a version the agents have not been told of, then follow its rollout."""
        current = round_.status.current_version
        if current is None:  # a pinned version that is gone: the last one's rollout goes on.
            current = round_.before.current_version
        if current is None:
            return "settled"
        written = self._written.get(round_.key) or round_.seen
        if current != bs.parse(written).current_version:
            await self._announce(round_, current)
        rollout = await self._follow_rollout(round_, current, meta)
        round_.status = replace(round_.status, rollout=rollout.as_status())
        return "settled" if rollout.complete else "rolling"

    async def _patch(
        self, key: tuple[str, str], seen: Mapping[str, Any], desired: BindingStatus
    ) -> None:
        """Send what ``desired`` changes, against kopf's view and this keeper's last write."""
        written = self._written.get(key)
        changes = status_patch(seen, written, bs.patch_of(desired))
        if changes:
            await self.kube.patch_binding_status(*key, changes)
            self._written[key] = _applied(written if written is not None else seen, changes)

    async def _announce(self, round_: _Round, current: Version) -> None:
        """Publish a new version at once, in a patch of its own, before the rollout round.

        The agents act on ``currentVersion`` alone, so it must not wait for the round that
        follows: that reads every consumer's ``/status``, which takes longer the larger the
        fleet. The spread sent with it is sized from the fleet the index already counts.
        Until that round says otherwise, the rollout of the new version is in progress.
        """
        fleet = sum(1 for _ in round_.consumers())
        spread = round(max(0, fleet - 1) / self.config.vault_reads_per_second, 3)
        round_.status = replace(round_.status, rotation_spread_seconds=spread)
        if fleet and round_.before.current_version is not None:
            waiting = f"version {current} published to {fleet} consumers"
            round_.conditions.set(bs.ROLLOUT_COMPLETE, False, bs.ROLLOUT_IN_PROGRESS, waiting)
            round_.conditions.wait_for_every_consumer()
        await self._patch(round_.key, round_.seen, round_.desired())  # no rollout yet.
        _log.debug(
            "version %s published in status (spread %.3f s over %d consumers)",
            current,
            spread,
            fleet,
            extra={"hop": "status-patched"},
        )

    async def _follow_rollout(
        self, round_: _Round, current: Version, meta: SourceMetadata
    ) -> Rollout:
        """Ask every consumer what it holds and why it fails; conditions, events, metrics."""
        reports = await read_reports(round_.consumers())
        rollout = summarize(
            {pod: report.version for pod, report in reports.items()},
            current,
            meta.live_versions,
            {pod: report.error for pod, report in reports.items()},
        )
        self._measure(*round_.key, current, rollout)
        _report_rollout(round_, rollout, current)
        self._report_failing(round_, rollout)
        return rollout

    def _measure(self, namespace: str, name: str, current: Version, rollout: Rollout) -> None:
        if isinstance(current, int):  # an AWS version id is no number: no gauge value.
            self.metrics.current_version.labels(namespace, name).set(current)
        self.metrics.set_consumers(namespace, name, rollout.consumers, rollout.up_to_date)

    def _report_failing(self, round_: _Round, rollout: Rollout) -> None:
        """Name the consumers whose agents fail, with their reasons: condition and Event."""
        if not rollout.failing:
            message = f"no consumer agent reports an error ({rollout.consumers} consumers)"
            round_.conditions.set(bs.CONSUMERS_HEALTHY, True, bs.NO_CONSUMER_ERRORS, message)
            self._healthy(round_.key)
            return
        reason, message = _failing_summary(rollout)
        round_.conditions.set(bs.CONSUMERS_HEALTHY, False, reason, message)
        self._warn_failing(round_, rollout, message)

    def _healthy(self, key: tuple[str, str]) -> None:
        """No consumer fails now; the last Event's time is kept, so a flapping one stays quiet."""
        if key in self._failure_events:
            self._failure_events[key] = ((), self._failure_events[key][1])

    def _warn_failing(self, round_: _Round, rollout: Rollout, message: str) -> None:
        """The Warning Event, rate-limited per binding.

        Posted when the set of failing consumers or their reasons changes, at most once per
        ``failure_event_seconds``; a change inside that window is posted when it ends, if
        it still holds.
        """
        signature = tuple(sorted((pod, e.reason) for pod, e in rollout.failing.items()))
        last = self._failure_events.get(round_.key)
        now = time.monotonic()
        if last is None or (last[0] != signature and now - last[1] >= self.failure_event_seconds):
            kopf.warn(round_.body, reason="ConsumerFailing", message=message)
            self._failure_events[round_.key] = (signature, now)

    @staticmethod
    def _publish(round_: _Round, spec: BindingSpec, meta: SourceMetadata) -> None:
        """Publish the version consumers should hold: the pinned one, else the latest."""
        pinned = spec.ref.version
        if pinned is not None and pinned not in meta.live_versions:
            state = meta.version_states.get(pinned, "not present")
            message = (
                f"pinned version {pinned} is {state} in Vault (current: {meta.current_version}); "
                "consumers keep the key they hold. Pin an existing version or remove the pin."
            )
            round_.conditions.set(bs.READY, False, bs.VERSION_UNAVAILABLE, message)
            return
        wanted = pinned or meta.current_version
        previous = round_.before.current_version
        round_.status = replace(round_.status, current_version=wanted)
        if previous != wanted:
            change = f"version {previous} -> {wanted}" if previous else f"version {wanted}"
            _normal(round_.body, "VersionChanged", f"{change} of {round_.where} published")
        what = f"pinned version {wanted}" if pinned else f"latest version {wanted}"
        round_.conditions.set(bs.READY, True, bs.VERSION_PUBLISHED, f"consumers follow the {what}")

    def _client(self, spec: BindingSpec) -> KeySource:
        if isinstance(spec.ref, AwsSecretRef):
            return self._aws_client(spec.ref.region)
        vault = self.config.vault
        assert spec.vault is not None  # not AWS: a Vault binding.
        address = spec.vault.address or vault.address
        key = (address, spec.vault.namespace or vault.namespace)
        if key not in self._clients:
            auth = auth_from_settings(
                vault.auth_method,
                role=vault.auth_role,
                mount=vault.auth_mount,
                token_file=vault.token_file,
            )
            self._clients[key] = VaultClient(
                address, auth, ca_cert=vault.ca_cert_file, namespace=key[1]
            )
        return self._clients[key]

    def _aws_client(self, region: str) -> KeySource:
        """The operator's own AWS identity (its IRSA role): DescribeSecret, never the value."""
        if region not in self._aws_clients:
            from agent.aws.secrets import SecretsManagerSource  # only when AWS is used.

            self._aws_clients[region] = SecretsManagerSource(
                region, endpoint_url=self.config.aws.endpoint_url
            )
        return self._aws_clients[region]


def _located(status: BindingStatus, spec: BindingSpec) -> BindingStatus:
    """``status`` saying where the key lives: the KV path, or the AWS secret."""
    if isinstance(spec.ref, AwsSecretRef):
        return replace(status, aws_secret=f"{spec.ref.region}:{spec.ref.secret_id}")
    return replace(status, vault_path=f"{spec.ref.mount}/{spec.ref.path}")


def _report_rollout(round_: _Round, rollout: Rollout, current: Version) -> None:
    """RolloutComplete, and SafeToRevoke once it is: which old versions can go."""
    conditions = round_.conditions
    if not rollout.complete:
        conditions.set(
            bs.ROLLOUT_COMPLETE, False, bs.ROLLOUT_IN_PROGRESS, _waiting(rollout, current)
        )
        conditions.wait_for_every_consumer()
        return
    message = f"all {rollout.consumers} consumers hold version {current}"
    conditions.set(bs.ROLLOUT_COMPLETE, True, bs.ALL_CONSUMERS_CURRENT, message)
    if not rollout.safe_to_revoke:
        conditions.set(bs.SAFE_TO_REVOKE, False, bs.NOTHING_TO_REVOKE, "no older version in Vault")
        return
    revocable = ", ".join(str(v) for v in rollout.safe_to_revoke)
    message = (
        f"no live consumer holds version(s) {revocable}: their keys can be revoked in the "
        "CaptchaAI dashboard"
    )
    conditions.set(bs.SAFE_TO_REVOKE, True, bs.OLD_VERSIONS_UNUSED, message)
    before = round_.before.rollout.safe_to_revoke if round_.before.rollout else ()
    if before != tuple(rollout.safe_to_revoke):
        _normal(round_.body, "SafeToRevoke", message)


def _waiting(rollout: Rollout, current: Version) -> str:
    """How far the rollout is, naming the first ten consumers it waits for."""
    waiting = ", ".join(rollout.stragglers[:10])
    more = len(rollout.stragglers) - 10
    return (
        f"{rollout.up_to_date}/{rollout.consumers} consumers hold version {current}; "
        f"waiting for {waiting}" + (f" and {more} more" if more > 0 else "")
    )


def _failing_summary(rollout: Rollout) -> tuple[str, str]:
    """The reason (the one they share, else ConsumerErrors) and message for failing consumers."""
    reasons = sorted({error.reason for error in rollout.failing.values()})
    reason = reasons[0] if len(reasons) == 1 else bs.CONSUMER_ERRORS
    named = rollout.failing_status()
    listed = "; ".join(f"{c.pod}: {c.reason}: {_shortened(c.message)}" for c in named)
    more = len(rollout.failing) - len(named)
    message = f"{len(rollout.failing)}/{rollout.consumers} consumer(s) fail: {listed}"
    return reason, message + (f" and {more} more" if more else "")


def _announce_transitions(round_: _Round) -> None:
    """Events for what a platform team watches: Ready lost (Warning), rollout done."""
    before, after = round_.before.conditions, round_.conditions.items
    ready = bs.find(after, bs.READY)
    if ready is not None and _newly_false(ready, bs.find(before, bs.READY)):
        kopf.warn(round_.body, reason=ready.reason, message=ready.message)
    done = bs.find(after, bs.ROLLOUT_COMPLETE)
    was_done = bs.find(before, bs.ROLLOUT_COMPLETE)
    if done is not None and done.status == bs.TRUE and was_done and was_done.status == bs.FALSE:
        _normal(round_.body, "RolloutComplete", done.message)


def _newly_false(now: Condition, before: Condition | None) -> bool:
    """False now, and it was not, or was for another reason: news worth a Warning."""
    if now.status != bs.FALSE:
        return False
    return before is None or before.status != bs.FALSE or before.reason != now.reason


def _normal(body: kopf.Body, reason: str, message: str) -> None:
    """A Normal Event on the binding (``kubectl describe ckb``, ``kubectl get events``).

    ``kopf.info`` would be dropped: the operator's posting level is WARNING so that kopf's
    own INFO log lines do not become Events; ``kopf.event`` posts regardless of it.
    """
    kopf.event(body, type="Normal", reason=reason, message=message)


def status_patch(
    seen: Mapping[str, Any], written: Mapping[str, Any] | None, desired: Mapping[str, Any]
) -> dict[str, Any]:
    """The merge patch to send: what differs from the status as seen, or as last written.

    kopf's body may not show the keeper's last write yet (the watch lags, more so under
    load); a patch computed against it alone would miss deletions, and a version no
    consumer holds any more would stay in ``rollout.versions``. Deleting a key the server
    no longer has is harmless, so the patch covers both views.
    """
    changes = merge_patch(seen, desired)
    if written is not None:
        changes = _union(changes, merge_patch(written, desired))
    return changes


def _union(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two merge patches towards the same desired status, as one (deletions of both kept)."""
    union = dict(first)
    for key, value in second.items():
        have = union.get(key)
        if isinstance(have, Mapping) and isinstance(value, Mapping):
            union[key] = _union(have, value)
        elif key not in union or value is None:
            union[key] = value
    return union


def _applied(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` after the RFC 7386 merge ``patch``: what the server now holds."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            have = result.get(key)
            result[key] = _applied(have if isinstance(have, Mapping) else {}, value)
        else:
            result[key] = value
    return result


def _shortened(message: str, limit: int = 200) -> str:
    """One consumer's message in a summary of ten: the full text is in rollout.failing."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


async def _sleep(seconds: float, *, until: asyncio.Event, or_stopped: kopf.DaemonStopped) -> None:
    """Wait ``seconds``, less if woken or stopped: kopf cancels a daemon 5 s after stopping it."""
    waits = [asyncio.ensure_future(until.wait()), asyncio.ensure_future(or_stopped.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
