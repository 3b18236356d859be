"""The key agent's heart: refresh at an interval, on demand, and back off while anything fails.

Scheduling rules, and why:

- *Interval with ±10% jitter*: a thousand pods started by one rollout would otherwise
  poll Vault in lock-step forever.
- *On demand* (:meth:`KeyAgent.request_refresh`): the binding's status says a newer
  version exists (a rotation), or SIGHUP: refresh now, not at the next tick.
- *Exponential backoff with full jitter* on failure (AWS architecture blog's "full
  jitter": a uniform delay in ``[0, min(cap, base·2ⁿ)]``): the fastest way for a
  fleet to get back in without a thundering herd when Vault returns. While Vault is
  unreachable or sealed, or the key file cannot be written, the cap is short (20 s by
  default) so the agent is back within 30 s of Vault; problems a person has to fix (a
  policy, a role, a bad key) are retried under a six times longer cap (2 min).
- *The token on its own schedule*: a keeper task renews the Vault token at two thirds
  of its TTL and logs in afresh before the max TTL, whatever the refresh interval.
- Nothing kills the loop: a Vault error, a refused key or a write fault (full,
  read-only or vanished volume) is reported in ``/status`` ``lastError``, logged in
  one line (repeated at most every ten minutes while it lasts), counted, and retried.
  The file is never touched on failure, and liveness never depends on Vault: the
  cached key keeps the application working through an outage (the guide's FAQ).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from agent import keyfile, keyrules, versions
from agent.contract import agentstatus
from agent.runtime.backoff import Backoff, jittered
from agent.sidecar.metrics import AgentMetrics
from agent.sidecar.refresher import KeyRefresher
from agent.vault import VaultClient, VaultError, VaultUnavailableError

__all__ = ["KeyAgent"]

_log = logging.getLogger(__name__)

_REPEAT_LOG_SECONDS = 600.0
_TOKEN_CHECK_MAX = 60.0  # the keeper looks at least this often (the client may be swapped).

# Everything a refresh may fail with that must not stop the agent.
RefreshFailure = VaultError | keyfile.KeyFileUnwritableError | keyrules.KeyRejectedError
_FAILURES = (VaultError, keyfile.KeyFileUnwritableError, keyrules.KeyRejectedError)
# Failures that heal without anyone's help: retried under the short cap.
_TRANSIENT = (VaultUnavailableError, keyfile.KeyFileUnwritableError)


class KeyAgent:
    """Runs a :class:`KeyRefresher` until stopped, and reports on it for probes."""

    def __init__(
        self,
        refresher: KeyRefresher,
        *,
        refresh_interval: float = 3600.0,
        backoff: Backoff | None = None,
        metrics: AgentMetrics | None = None,
    ):
        self.refresher = refresher
        self.refresh_interval = refresh_interval
        self.backoff = backoff or Backoff()
        self.metrics = metrics or refresher.metrics
        refresher.metrics = self.metrics
        refresher.client = refresher.client  # reports to this agent's metrics.
        self.metrics.follow(self.report)
        self.desired_version: versions.Version | None = None
        self.consecutive_failures = 0
        self.error: agentstatus.LastError | None = None
        self.last_success: float | None = None
        self._failing_since: float | None = None
        self._unreachable: tuple[int, float] | None = None  # (attempts, since) Vault is away.
        self._last_logged: tuple[str, float] | None = None  # (message, when)
        self._wake = asyncio.Event()
        self._force = False
        self._stopping = asyncio.Event()
        # Set once the first refresh is over, whatever its outcome: the injected agent
        # waits for it before it loads the watch (agent.sidecar.firstkey).
        self.attempted = asyncio.Event()

    @property
    def last_error(self) -> str | None:
        """The reason of the last failure (``None`` after a success)."""
        return self.error.reason if self.error else None

    @property
    def ready(self) -> bool:
        """A key is on disk and it is at least the version known to be wanted."""
        held = self.refresher.held_version
        if held is None or not self.refresher.target.path.exists():
            return False
        return self.desired_version is None or versions.is_current(held, self.desired_version)

    def report(self) -> agentstatus.AgentStatus:
        """What ``/status`` shows (and the state gauges): versions and health, never the key."""
        return agentstatus.AgentStatus(
            version=self.refresher.held_version,
            fingerprint=self.refresher.fingerprint,
            desired_version=self.desired_version,
            ready=self.ready,
            last_success=self.last_success,
            last_error=self.error,
            consecutive_failures=self.consecutive_failures,
            metadata_access=self.refresher.metadata_allowed,
            source=str(self.refresher.ref),
        )

    def status(self) -> dict[str, object]:
        """The ``/status`` JSON."""
        return agentstatus.payload(self.report())

    def request_refresh(
        self, *, at_least: versions.Version | None = None, force: bool = False
    ) -> None:
        """Refresh as soon as possible; ``at_least`` is a version known to exist now."""
        if at_least is not None:
            desired = self.desired_version
            newer = isinstance(desired, int) and isinstance(at_least, int) and desired > at_least
            self.desired_version = desired if newer else at_least
        self._force = self._force or force
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def refresh_once(self) -> bool:
        """One attempt; raises the :data:`RefreshFailure` on failure (for ``--once``)."""
        force, self._force = self._force, False
        wanted = self.desired_version if self.refresher.ref.version is None else None
        changed = await self.refresher.refresh(at_least=wanted, force=force)
        self.metrics.refreshes.labels("changed" if changed else "unchanged").inc()
        self._record_success()
        return changed

    async def run(self) -> None:
        """Refresh now, then on every tick or request, until :meth:`stop`."""
        keeper: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self.refresh_once()
                    delay = jittered(self.refresh_interval)
                except _FAILURES as exc:
                    delay = self._record_failure(exc)
                finally:
                    self.attempted.set()
                if keeper is None:
                    keeper = asyncio.create_task(self._keep_token_alive(), name="vault-token")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)

    async def _keep_token_alive(self) -> None:
        """Renew or replace the Vault token when it is due, independent of refreshes."""
        failures = 0
        while True:
            client = self.refresher.client  # looked up each time: a binding may swap it.
            if not isinstance(client, VaultClient):  # other sources renew their own credentials.
                await asyncio.sleep(_TOKEN_CHECK_MAX)
                continue
            try:
                due = await asyncio.to_thread(client.maintain_token)
            except VaultError as exc:
                due = None
                failures += 1
                _log.debug("could not renew the Vault token yet: %s", exc)
            else:
                failures = failures + 1 if due is not None and due < 1 else 0
            if failures:
                # Not renewable any more (or Vault away): the next refresh says why.
                due = self.backoff.delay(failures, transient=False) + 1
            await asyncio.sleep(min(due if due is not None else _TOKEN_CHECK_MAX, _TOKEN_CHECK_MAX))

    def _record_success(self) -> None:
        self._vault_answers()
        if self.consecutive_failures and self._failing_since is not None:
            was = self.error.reason if self.error else "failure"
            elapsed = time.time() - self._failing_since
            _log.info(
                "refreshing works again after %d failed attempts over %.1f s (last: %s); the "
                "key is current",
                self.consecutive_failures,
                elapsed,
                was,
                extra={"failures": self.consecutive_failures, "outage_seconds": round(elapsed, 1)},
            )
        self.consecutive_failures, self.error, self._failing_since = 0, None, None
        self._last_logged = None
        self.last_success = time.time()

    def _vault_answers(self) -> None:
        """After a run of unreachable/sealed answers, say once that Vault answers again."""
        if self._unreachable is None:
            return
        attempts, since = self._unreachable
        self._unreachable = None
        client = self.refresher.client
        who = f"Vault at {client.addr}" if isinstance(client, VaultClient) else "the key source"
        elapsed = time.time() - since
        _log.info(
            "%s answers again after %d failed attempts over %.1f s",
            who,
            attempts,
            elapsed,
            extra={"failures": attempts, "outage_seconds": round(elapsed, 1)},
        )

    def _record_failure(self, exc: RefreshFailure) -> float:
        now = time.time()
        if isinstance(exc, VaultUnavailableError):
            attempts, since = self._unreachable or (0, now)
            self._unreachable = (attempts + 1, since)
        else:
            self._vault_answers()  # Vault answered, if only with another problem.
        self.consecutive_failures += 1
        self._failing_since = self._failing_since or now
        message = str(exc)
        self.error = agentstatus.last_error(exc.reason, message, self._failing_since)
        self.metrics.failures.labels(exc.reason).inc()
        transient = isinstance(exc, _TRANSIENT)
        delay = self.backoff.delay(self.consecutive_failures, transient=transient)
        repeated = self._last_logged is not None and self._last_logged[0] == message
        if repeated and self._last_logged and now - self._last_logged[1] < _REPEAT_LOG_SECONDS:
            level = logging.DEBUG
        else:
            level = logging.WARNING if isinstance(exc, VaultUnavailableError) else logging.ERROR
            self._last_logged = (message, now)
        _log.log(
            level,
            "key refresh failed; the last good key stays in place: %s",
            message,
            extra={
                "reason": exc.reason,
                "failures": self.consecutive_failures,
                "retry_in": round(delay, 2),
            },
        )
        return delay
