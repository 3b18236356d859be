"""Retry delays shared by the operator and the key agent.

Both processes poll and retry against the same kinds of servers (Vault, the agents'
``/status``, the API server), and a fleet that retries in lock-step after an outage is a
thundering herd. Full jitter (the AWS architecture blog's "full jitter": a uniform delay
in ``[0, min(cap, base·2ⁿ)]``) spreads the retries; :func:`jittered` spreads intervals.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["DEFAULT_BACKOFF_CAP", "Backoff", "jittered"]

DEFAULT_BACKOFF_CAP = 20.0  # + a request timeout (10 s): back within 30 s of Vault.
_SLOW_FACTOR = 6.0


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: ``uniform(0, min(cap, base * 2**attempt))``.

    ``cap`` bounds transient failures (Vault away or sealed, a write fault); those that
    need a person (a policy, a role, a bad key) wait up to six times as long (2 min at
    the default cap): a fleet with a broken policy should not hammer Vault.
    """

    base: float = 1.0
    cap: float = DEFAULT_BACKOFF_CAP

    def delay(self, attempt: int, *, transient: bool = True) -> float:
        cap = self.cap if transient else self.cap * _SLOW_FACTOR
        return random.uniform(0, min(cap, self.base * 2 ** min(attempt, 32)))  # noqa: S311


def jittered(interval: float, spread: float = 0.1) -> float:
    return interval * random.uniform(1 - spread, 1 + spread)  # noqa: S311
