"""The key agent in a pod, driven by its ``CaptchaKeyBinding``: each event applied to a KeyAgent.

:class:`BindingAgent` turns the binding's events into what the key agent does; where the
events come from is not its business. Usually that is kopf's watch
(:mod:`agent.sidecar.watch`); the very first one, at start, is a plain read of the
binding (:mod:`agent.sidecar.firstkey`), so that the key is on disk before kopf is even
imported. Nothing here imports kopf or aiohttp, for that reason.

Flow: the first event for the binding configures and starts the :class:`KeyAgent`;
spec changes re-target it (path, field, pin, file, Vault identity); a
``status.currentVersion`` newer than what is on disk (the operator announcing a
rotation) triggers a refresh after a random wait within ``status.rotationSpreadSeconds``
(sized by the operator from the fleet and the Vault read rate allowed, 0 for a lone
consumer), so a binding with hundreds of consumers does not hit Vault in one instant.
The wait is drawn once per announced version: the operator's later status updates
(rollout progress) never restart it. The same event delivered twice changes nothing. A
deleted or invalid binding stops nothing but refreshes: the last good key stays in
place, and a clear line is logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent import versions
from agent.binding.model import (
    BindingSpec,
    InvalidBindingError,
    VaultPolicy,
)
from agent.contract import agentstatus, bindingstatus
from agent.keysource import KeySource
from agent.runtime.backoff import Backoff
from agent.sidecar.loop import KeyAgent
from agent.sidecar.metrics import AgentMetrics
from agent.sidecar.refresher import KeyRefresher, KeyTarget
from agent.vault import VaultClient, VaultError, auth_from_settings

__all__ = ["AgentDefaults", "BindingAgent"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentDefaults:
    """What the webhook injects into the sidecar, and the binding does not say."""

    vault_addr: str
    out_dir: Path
    token_file: Path | None = None
    vault_cacert: str | None = None
    vault_namespace: str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    # Seconds over which a fleet spreads a rotation's reads when the binding's status
    # carries no rotationSpreadSeconds (an operator from before it published one).
    rotation_spread: float = 0.5
    # The slow resync when the binding sets no spec.refreshIntervalSeconds: the webhook
    # injects the chart's sidecar.refreshIntervalSeconds (CAPTCHAKEY_REFRESH_INTERVAL).
    refresh_seconds: float = 3600.0
    aws_token_file: Path | None = None  # the projected token for STS (spec.source: aws).
    aws_endpoint_url: str | None = None  # a private endpoint (VPC, FIPS); None: AWS's own.
    # Where the binding may send this pod's token (from the operator, at injection):
    # ``None`` only outside a pod, e.g. in tests that run an agent by hand.
    policy: VaultPolicy | None = None


class BindingAgent:
    """Follows one binding and owns the :class:`KeyAgent` that it configures."""

    def __init__(self, name: str, defaults: AgentDefaults, metrics: AgentMetrics | None = None):
        self.name = name
        self.defaults = defaults
        self.metrics = metrics or AgentMetrics()
        self.metrics.follow(self.report)
        self.agent: KeyAgent | None = None
        self.spec: BindingSpec | None = None
        self.problem: str | None = None
        self._problem_error: agentstatus.LastError | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._pending_version: versions.Version | None = None  # what the timer is for.

    @property
    def ready(self) -> bool:
        return self.agent is not None and self.agent.ready

    @property
    def last_error(self) -> str | None:
        return self.problem or (self.agent.last_error if self.agent else "binding not seen yet")

    def report(self) -> agentstatus.AgentStatus:
        # Not seen yet is a start-up state, not a failure: lastError stays null (an RBAC
        # problem shows in kopf's own log lines and keeps /readyz at 503).
        held = self.agent.report() if self.agent is not None else agentstatus.AgentStatus()
        return replace(
            held,
            binding=self.name,
            problem=self.problem,
            last_error=self._problem_error or held.last_error,
        )

    def status(self) -> dict[str, object]:
        """The ``/status`` JSON."""
        return agentstatus.payload(self.report())

    def _set_problem(self, reason: str | None, message: str = "") -> None:
        self.problem = reason
        self._problem_error = (
            agentstatus.last_error(reason, message, time.time()) if reason else None
        )

    def on_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Apply one watch event of the binding (``None`` is the initial listing)."""
        if event_type == "DELETED":
            self._stop_refreshing()
            # Said before it shows in /status: whoever sees the problem finds it in the log.
            _log.warning(
                "CaptchaKeyBinding %r was deleted: refreshes stop and the last good key stays "
                "in place; re-create the binding to resume",
                self.name,
            )
            self._set_problem(
                agentstatus.BINDING_DELETED,
                f"CaptchaKeyBinding {self.name!r} was deleted: refreshes stopped; re-create it "
                "to resume (the last good key stays in place)",
            )
            return
        try:
            spec = BindingSpec.from_body(body, self.defaults.policy)
        except InvalidBindingError as exc:
            self._set_problem(exc.reason, str(exc))
            _log.error("%s; the last good key stays in place", exc)
            return
        except VaultError as exc:
            self._set_problem(exc.reason, str(exc))
            _log.error("%s", exc)
            return
        self._set_problem(None)
        try:
            self._apply(spec)
        except VaultError as exc:  # no client for this backend (say, the AWS SDK missing).
            self._set_problem(exc.reason, str(exc))
            _log.error("%s; the last good key stays in place", exc)
            return
        status = bindingstatus.parse(body.get("status"))
        if status.current_version is not None and spec.ref.version is None:
            spread = status.rotation_spread_seconds
            fallback = self.defaults.rotation_spread
            self._announce(status.current_version, fallback if spread is None else spread)

    async def close(self) -> None:
        self._stop_refreshing()
        if self._task is not None:
            # kopf may already have cancelled it on shutdown: that is an ending, not an error.
            await asyncio.gather(self._task, return_exceptions=True)

    def _apply(self, spec: BindingSpec) -> None:
        # A rotation request is the operator's business: it reads Vault's metadata and
        # announces the version in status, which every agent follows with a spread.
        # Reacting to the request itself would send the whole fleet to Vault at once.
        spec = replace(spec, rotation_request=None)
        target = KeyTarget(self.defaults.out_dir, spec.file_name, spec.file_mode)
        if self.agent is None or self._task is None or self._task.done():
            refresher = KeyRefresher(
                self._client(spec),
                spec.ref,
                target,
                rules=spec.key_rules,
                metrics=self.metrics,
            )
            self.agent = KeyAgent(
                refresher,
                refresh_interval=self._resync(spec),
                backoff=self.defaults.backoff,
                metrics=self.metrics,
            )
            self.metrics.follow(self.report)
            self._pending_version = None  # a new agent learns the announced version afresh.
            self._task = asyncio.create_task(self.agent.run(), name=f"key-agent:{self.name}")
        elif spec != self.spec:
            if self.spec is None or _identity(spec) != _identity(self.spec):
                self.agent.refresher.client = self._client(spec)
            self.agent.refresher.retarget(spec.ref, target, spec.key_rules)
            self.agent.refresh_interval = self._resync(spec)
            self.agent.request_refresh()
        self.spec = spec

    def _resync(self, spec: BindingSpec) -> float:
        return spec.refresh_seconds or self.defaults.refresh_seconds

    def _announce(self, version: versions.Version, spread: float) -> None:
        agent = self.agent
        if agent is None or version == agent.refresher.held_version:
            return
        if version == self._pending_version:
            return  # the wait for this version is drawn already: a status update keeps it.
        agent.desired_version = version  # not ready until it lands, even before the spread.
        if self._pending is not None:
            self._pending.cancel()
        self._pending_version = version
        if spread <= 0:
            self._pending = None
            _log.debug("version %s announced: refreshing now", version)
            agent.request_refresh(at_least=version)
            return
        delay = random.uniform(0, spread)  # noqa: S311
        _log.debug(
            "version %s announced: refreshing in %.3f s (spread %.3f s)", version, delay, spread
        )
        loop = asyncio.get_running_loop()
        self._pending = loop.call_later(delay, lambda: agent.request_refresh(at_least=version))

    def _client(self, spec: BindingSpec) -> KeySource:
        if spec.aws is not None:
            return self._aws_client(spec)
        vault = spec.vault
        assert vault is not None  # a binding without spec.aws is a Vault binding.
        auth = auth_from_settings(
            vault.method,
            role=vault.role,
            mount=vault.mount,
            token_file=self.defaults.token_file,
        )
        return VaultClient(
            vault.address or self.defaults.vault_addr,
            auth,
            ca_cert=self.defaults.vault_cacert,
            namespace=vault.namespace or self.defaults.vault_namespace,
            observer=self.metrics,
        )

    def _aws_client(self, spec: BindingSpec) -> KeySource:
        # Imported here, not at the top: Vault users never load the AWS SDK.
        from agent.aws import DEFAULT_TOKEN_FILE, AwsError, AwsSecretRef, WebIdentity

        try:
            from agent.aws.secrets import SecretsManagerSource, session_name
        except ModuleNotFoundError as exc:
            raise AwsError(
                f"CaptchaKeyBinding {self.name!r} reads AWS Secrets Manager, but this agent "
                f"lacks the {exc.name!r} package: use the image with the aws extra "
                "(pip install 'captcha-key-agent[aws]')"
            ) from None

        assert spec.aws is not None
        assert isinstance(spec.ref, AwsSecretRef)
        identity = WebIdentity(
            role_arn=spec.aws.role_arn,
            token_file=self.defaults.aws_token_file or DEFAULT_TOKEN_FILE,
            session_name=session_name(),
        )
        return SecretsManagerSource(
            spec.ref.region, identity, endpoint_url=self.defaults.aws_endpoint_url
        )

    def _stop_refreshing(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self._pending, self._pending_version = None, None
        if self.agent is not None:
            self.agent.stop()


def _identity(spec: BindingSpec) -> object:
    """What a backend client depends on: a change of it needs a new client (a new login)."""
    region = getattr(spec.ref, "region", None)
    return (spec.vault, spec.aws, region)
