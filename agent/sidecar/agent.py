"""The key agent's heart: refresh at an interval, on demand, and back off while Vault fails.

Scheduling rules, and why:

- *Interval with ±10% jitter*: a thousand pods started by one rollout would otherwise
  poll Vault in lock-step forever.
- *On demand* (:meth:`KeyAgent.request_refresh`): the binding's status says a newer
  version exists (a rotation), or SIGHUP: refresh now, not at the next tick.
- *Exponential backoff with full jitter* on failure (AWS architecture blog's "full
  jitter": a uniform delay in ``[0, min(cap, base·2ⁿ)]``): the fastest way for a
  fleet to get back in without a thundering herd when Vault returns.
- The file is never touched on failure, and liveness never depends on Vault: the
  cached key keeps the application working through an outage (the guide's FAQ).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

from agent import versions
from agent.sidecar.refresher import KeyRefresher
from agent.vault import VaultError, VaultUnavailableError

__all__ = ["Backoff", "KeyAgent"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: ``uniform(0, min(cap, base * 2**attempt))``."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 32)))  # noqa: S311


def jittered(interval: float, spread: float = 0.1) -> float:
    return interval * random.uniform(1 - spread, 1 + spread)  # noqa: S311


class KeyAgent:
    """Runs a :class:`KeyRefresher` until stopped, and reports on it for probes."""

    def __init__(
        self,
        refresher: KeyRefresher,
        *,
        refresh_interval: float = 3600.0,
        backoff: Backoff | None = None,
    ):
        self.refresher = refresher
        self.refresh_interval = refresh_interval
        self.backoff = backoff or Backoff()
        self.desired_version: versions.Version | None = None
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._wake = asyncio.Event()
        self._force = False
        self._stopping = asyncio.Event()

    @property
    def ready(self) -> bool:
        """A key is on disk and it is at least the version known to be wanted."""
        held = self.refresher.held_version
        if held is None or not self.refresher.target.path.exists():
            return False
        return self.desired_version is None or versions.is_current(held, self.desired_version)

    def status(self) -> dict[str, object]:
        """What ``/status`` shows: versions and health, never the key."""
        return {
            "version": self.refresher.held_version,
            "fingerprint": self.refresher.fingerprint,
            "desiredVersion": self.desired_version,
            "ready": self.ready,
            "lastSuccess": self.last_success,
            "lastError": self.last_error,
            "consecutiveFailures": self.consecutive_failures,
            "source": str(self.refresher.ref),
        }

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
        """One attempt; raises the :class:`VaultError` on failure (for ``--once``)."""
        force, self._force = self._force, False
        wanted = self.desired_version if self.refresher.ref.version is None else None
        changed = await self.refresher.refresh(at_least=wanted, force=force)
        self.consecutive_failures, self.last_error = 0, None
        self.last_success = time.time()
        return changed

    async def run(self) -> None:
        """Refresh now, then on every tick or request, until :meth:`stop`."""
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self.refresh_once()
                delay = jittered(self.refresh_interval)
            except VaultError as exc:
                delay = self._record_failure(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _record_failure(self, exc: VaultError) -> float:
        self.consecutive_failures += 1
        self.last_error = exc.reason
        delay = self.backoff.delay(self.consecutive_failures)
        level = logging.WARNING if isinstance(exc, VaultUnavailableError) else logging.ERROR
        _log.log(
            level,
            "key refresh failed; the last good key stays in place: %s",
            exc,
            extra={
                "reason": exc.reason,
                "failures": self.consecutive_failures,
                "retry_in": round(delay, 2),
            },
        )
        return delay
