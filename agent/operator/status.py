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
import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import kopf

from agent import versions
from agent.aws.refs import AwsSecretRef
from agent.binding.model import BindingSpec, InvalidBindingError
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

__all__ = ["Conditions", "Outcome", "StatusKeeper", "merge_patch", "status_patch"]

Outcome = Literal["settled", "rolling", "failed"]

_log = logging.getLogger(__name__)

# What the first patch of a round with a new version carries: all the agents need.
_ANNOUNCED = (
    "observedGeneration",
    "vaultPath",
    "awsSecret",
    "lastRotationRequest",
    "currentVersion",
    "rotationSpreadSeconds",
    "conditions",
)


class Conditions:
    """A binding's conditions being updated in one round, Kubernetes-style.

    ``lastTransitionTime`` moves only when a condition's status flips, so it tells
    how long a binding has been (un)ready, not how long ago the last poll ran.
    """

    def __init__(self, current: Sequence[Mapping[str, Any]], generation: int | None):
        self.items: list[dict[str, Any]] = [dict(c) for c in current]
        self.generation = generation
        self.now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def set(self, type_: str, status: bool, reason: str, message: str) -> None:
        value = "True" if status else "False"
        previous = next((c for c in self.items if c.get("type") == type_), None)
        unchanged = previous is not None and previous.get("status") == value
        since = previous.get("lastTransitionTime", self.now) if previous and unchanged else self.now
        self.items = [c for c in self.items if c.get("type") != type_]
        self.items.append({
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "observedGeneration": self.generation,
            "lastTransitionTime": since,
        })  # fmt: skip


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
        status = body.get("status") or {}
        rotation = ((body.get("spec") or {}).get("rotation") or {}).get("requestedAt")
        stale = (body.get("metadata") or {}).get("generation") != status.get("observedGeneration")
        if stale or (rotation and rotation != status.get("lastRotationRequest")):
            _log.debug("binding %s/%s: change or rotation request %s seen", namespace, name,
                       rotation, extra={"hop": "request-seen"})  # fmt: skip
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=delay)
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
        status: Mapping[str, Any] = body.get("status") or {}
        conditions = Conditions(status.get("conditions") or [], body.metadata.get("generation"))
        patch: dict[str, Any] = {"observedGeneration": conditions.generation}
        outcome: Outcome = "settled"
        try:
            spec = validate_binding(body, self.config)
        except InvalidBindingError as exc:
            conditions.set("Ready", False, exc.reason, str(exc))
        else:
            where = _where(spec)
            patch.update(where)
            if spec.rotation_request:
                patch["lastRotationRequest"] = spec.rotation_request
                if spec.rotation_request != status.get("lastRotationRequest"):
                    _normal(body, "RotationRequested",
                            f"rotation requested at {spec.rotation_request}: checking "
                            f"{spec.source.capitalize()} for a new version of "
                            f"{next(iter(where.values()))}")  # fmt: skip
            try:
                meta = await asyncio.to_thread(self._client(spec).metadata, spec.ref)
                _log.debug("metadata of %s read: current version %s", next(iter(where.values())),
                           meta.current_version, extra={"hop": "metadata-read"})  # fmt: skip
            except VaultError as exc:
                self.metrics.vault_errors.labels(exc.reason).inc()
                reachable = not isinstance(exc, VaultUnavailableError)
                outcome = "settled" if reachable else "failed"
                conditions.set("VaultReachable", reachable, exc.reason, str(exc))
                conditions.set("Ready", False, exc.reason, str(exc))
            else:
                # The condition keeps its name for AWS bindings: "the key's store answered".
                answered = "AWS Secrets Manager" if spec.source == "aws" else "Vault"
                conditions.set("VaultReachable", True, "MetadataRead", f"{answered} answered")
                self._publish(body, spec, meta, patch, conditions)
                current = versions.parse(patch.get("currentVersion", status.get("currentVersion")))
                published = (self._written.get((namespace, name)) or status).get("currentVersion")
                if current is not None and current != versions.parse(published):
                    await self._announce((namespace, name), status, patch, consumers, conditions)
                if current is not None:
                    rollout = await self._follow_rollout(
                        (namespace, name), body, current, meta, consumers, conditions
                    )
                    patch["rollout"] = rollout.as_status()
                    outcome = "settled" if rollout.complete else "rolling"
        patch["conditions"] = conditions.items
        self._announce_transitions(body, status.get("conditions") or [], conditions)
        await self._patch((namespace, name), status, patch)
        return outcome

    async def _patch(
        self, key: tuple[str, str], seen: Mapping[str, Any], desired: Mapping[str, Any]
    ) -> None:
        """Send what ``desired`` changes, against kopf's view and this keeper's last write."""
        written = self._written.get(key)
        changes = status_patch(seen, written, desired)
        if changes:
            await self.kube.patch_binding_status(*key, changes)
            self._written[key] = _applied(written if written is not None else seen, changes)

    async def _announce(
        self,
        key: tuple[str, str],
        seen: Mapping[str, Any],
        patch: dict[str, Any],
        consumers: Callable[[], Iterable[Consumer]],
        conditions: Conditions,
    ) -> None:
        """Publish a new version at once, in a patch of its own, before the rollout round.

        The agents act on ``currentVersion`` alone, so it must not wait for the round that
        follows: that reads every consumer's ``/status``, which takes longer the larger the
        fleet. The spread sent with it is sized from the fleet the index already counts.
        Until that round says otherwise, the rollout of the new version is in progress.
        """
        fleet = sum(1 for _ in consumers())
        patch["rotationSpreadSeconds"] = round(
            max(0, fleet - 1) / self.config.vault_reads_per_second, 3
        )
        if fleet and seen.get("currentVersion") is not None:
            waiting = f"version {patch['currentVersion']} published to {fleet} consumers"
            conditions.set("RolloutComplete", False, "RolloutInProgress", waiting)
            conditions.set("SafeToRevoke", False, "RolloutInProgress",
                           "wait until every consumer holds the current version")  # fmt: skip
        patch["conditions"] = [dict(c) for c in conditions.items]
        await self._patch(key, seen, {k: patch[k] for k in _ANNOUNCED if k in patch})
        _log.debug("version %s published in status (spread %.3f s over %d consumers)",
                   patch["currentVersion"], patch["rotationSpreadSeconds"], fleet,
                   extra={"hop": "status-patched"})  # fmt: skip

    async def _follow_rollout(
        self,
        key: tuple[str, str],
        body: kopf.Body,
        current: versions.Version,
        meta: SourceMetadata,
        consumers: Callable[[], Iterable[Consumer]],
        conditions: Conditions,
    ) -> Rollout:
        """Ask every consumer what it holds and why it fails; conditions, events, metrics."""
        reports = await read_reports(consumers())
        rollout = summarize(
            {pod: report.version for pod, report in reports.items()},
            current,
            meta.live_versions,
            {pod: report.error for pod, report in reports.items()},
        )
        self._measure(*key, current, rollout)
        self._report_rollout(body, rollout, current, conditions)
        self._report_failing(body, key, rollout, conditions)
        return rollout

    def _measure(
        self, namespace: str, name: str, current: versions.Version, rollout: Rollout
    ) -> None:
        if isinstance(current, int):  # an AWS version id is no number: no gauge value.
            self.metrics.current_version.labels(namespace, name).set(current)
        self.metrics.set_consumers(namespace, name, rollout.consumers, rollout.up_to_date)

    def _report_rollout(
        self, body: kopf.Body, rollout: Rollout, current: versions.Version, conditions: Conditions
    ) -> None:
        if not rollout.complete:
            waiting = ", ".join(rollout.stragglers[:10])
            more = (
                f" and {len(rollout.stragglers) - 10} more" if len(rollout.stragglers) > 10 else ""
            )
            conditions.set("RolloutComplete", False, "RolloutInProgress",
                           f"{rollout.up_to_date}/{rollout.consumers} consumers hold version "
                           f"{current}; waiting for {waiting}{more}")  # fmt: skip
            conditions.set("SafeToRevoke", False, "RolloutInProgress",
                           "wait until every consumer holds the current version")  # fmt: skip
            return
        before = (body.get("status") or {}).get("rollout") or {}
        conditions.set("RolloutComplete", True, "AllConsumersCurrent",
                       f"all {rollout.consumers} consumers hold version {current}")  # fmt: skip
        if rollout.safe_to_revoke:
            revocable = ", ".join(str(v) for v in rollout.safe_to_revoke)
            message = (f"no live consumer holds version(s) {revocable}: their keys can be "
                       "revoked in the CaptchaAI dashboard")  # fmt: skip
            conditions.set("SafeToRevoke", True, "OldVersionsUnused", message)
            if before.get("safeToRevoke") != rollout.safe_to_revoke:
                _normal(body, "SafeToRevoke", message)
        else:
            conditions.set("SafeToRevoke", False, "NothingToRevoke", "no older version in Vault")

    def _report_failing(
        self,
        body: kopf.Body,
        key: tuple[str, str],
        rollout: Rollout,
        conditions: Conditions,
    ) -> None:
        """Name the consumers whose agents fail, with their reasons: condition and Event.

        The Warning Event is rate-limited per binding: posted when the set of failing
        consumers or their reasons changes, at most once per ``failure_event_seconds``;
        a change inside that window is posted when it ends, if it still holds.
        """
        if not rollout.failing:
            message = f"no consumer agent reports an error ({rollout.consumers} consumers)"
            conditions.set("ConsumersHealthy", True, "NoConsumerErrors", message)
            if key in self._failure_events:  # keep the time: a flapping consumer stays quiet.
                self._failure_events[key] = ((), self._failure_events[key][1])
            return
        reasons = sorted({error.reason for error in rollout.failing.values()})
        reason = reasons[0] if len(reasons) == 1 else "ConsumerErrors"
        named = "; ".join(
            f"{entry['pod']}: {entry['reason']}: {_shortened(entry['message'])}"
            for entry in rollout.failing_status()
        )
        more = len(rollout.failing) - len(rollout.failing_status())
        message = (f"{len(rollout.failing)}/{rollout.consumers} consumer(s) fail: {named}"
                   + (f" and {more} more" if more else ""))  # fmt: skip
        conditions.set("ConsumersHealthy", False, reason, message)
        signature = tuple(sorted((pod, e.reason) for pod, e in rollout.failing.items()))
        last = self._failure_events.get(key)
        now = time.monotonic()
        if last is None or (last[0] != signature and now - last[1] >= self.failure_event_seconds):
            kopf.warn(body, reason="ConsumerFailing", message=message)
            self._failure_events[key] = (signature, now)

    @staticmethod
    def _announce_transitions(
        body: kopf.Body, before: Sequence[Mapping[str, Any]], after: Conditions
    ) -> None:
        """Events for what a platform team watches: Ready lost (Warning), rollout done."""
        old = {c.get("type"): c for c in before}
        new = {c["type"]: c for c in after.items}
        ready, was_ready = new.get("Ready"), old.get("Ready") or {}
        if (
            ready
            and ready["status"] == "False"
            and (was_ready.get("status") != "False" or was_ready.get("reason") != ready["reason"])
        ):
            kopf.warn(body, reason=ready["reason"], message=ready["message"])
        done, was_done = new.get("RolloutComplete"), old.get("RolloutComplete") or {}
        if done and done["status"] == "True" and was_done.get("status") == "False":
            _normal(body, "RolloutComplete", done["message"])

    def _publish(
        self,
        body: kopf.Body,
        spec: BindingSpec,
        meta: SourceMetadata,
        patch: dict[str, Any],
        conditions: Conditions,
    ) -> None:
        pinned = spec.ref.version
        if pinned is not None and pinned not in meta.live_versions:
            state = meta.version_states.get(pinned, "not present")
            message = (
                f"pinned version {pinned} is {state} in Vault (current: {meta.current_version}); "
                "consumers keep the key they hold. Pin an existing version or remove the pin."
            )
            conditions.set("Ready", False, "VersionUnavailable", message)
            return
        wanted = pinned or meta.current_version
        previous = (body.get("status") or {}).get("currentVersion")
        patch["currentVersion"] = wanted
        if previous != wanted:
            change = f"version {previous} -> {wanted}" if previous else f"version {wanted}"
            where = patch.get("vaultPath") or patch.get("awsSecret")
            _normal(body, "VersionChanged", f"{change} of {where} published")
        what = f"pinned version {wanted}" if pinned else f"latest version {wanted}"
        conditions.set("Ready", True, "VersionPublished", f"consumers follow the {what}")

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


def _where(spec: BindingSpec) -> dict[str, str]:
    """Where the key lives, for ``status``: the KV path, or the AWS secret."""
    if isinstance(spec.ref, AwsSecretRef):
        return {"awsSecret": f"{spec.ref.region}:{spec.ref.secret_id}"}
    return {"vaultPath": f"{spec.ref.mount}/{spec.ref.path}"}


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
