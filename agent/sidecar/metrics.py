"""The key agent's Prometheus metrics, served at ``/metrics`` on its health port.

Why these: a platform team sees a fleet of agents only through its monitoring. The
version each pod holds and when it last refreshed answer "did the rotation land?";
failures by reason, write failures and Vault latency answer "why not?"; logins and
renewals show a login storm or a token about to die; build info tells versions apart.

Names follow Prometheus conventions: ``captchakey_agent_`` prefix, base units
(``_seconds``), counters end in ``_total``, one ``_info`` gauge with labels. Labels are
bounded sets (operation, outcome, reason, errno name, result): never a key, a path or
a fingerprint, so the key cannot reach a label or a value.

Why not prometheus_client: every consumer pod runs this agent, and the sidecar image
carries only what the agent needs. The text format (version 0.0.4) of a dozen counters,
gauges and one histogram is a few dozen lines; prometheus_client would add a package
and about 1 MiB of RSS to every pod. Updates come from worker threads (Vault calls),
so each family has a lock.
"""

from __future__ import annotations

import math
import platform
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from agent import __version__
from agent.contract.agentstatus import AgentStatus

__all__ = ["CONTENT_TYPE", "AgentMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PREFIX = "captchakey_agent"
# Vault answers in milliseconds on a LAN; a timeout is 10 s.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[str, ...]


class Counter:
    """A counter family; ``labels(...)`` picks a child, ``inc()`` without labels."""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = ()):
        self.name, self.doc, self.labelnames = f"{_PREFIX}_{name}_total", doc, tuple(labelnames)
        self._values: dict[Labels, float] = {} if labelnames else {(): 0.0}
        self._lock = threading.Lock()

    def labels(self, *values: str) -> _CounterChild:
        assert len(values) == len(self.labelnames), (self.name, values)
        with self._lock:
            self._values.setdefault(values, 0.0)
        return _CounterChild(self, values)

    def inc(self, amount: float = 1.0) -> None:
        self._add((), amount)

    def _add(self, values: Labels, amount: float) -> None:
        with self._lock:
            self._values[values] = self._values.get(values, 0.0) + amount

    def lines(self) -> Iterator[str]:
        yield from _header(self.name, self.doc, "counter")
        with self._lock:
            items = sorted(self._values.items())
        for values, number in items:
            yield f"{self.name}{_labels(self.labelnames, values)} {_number(number)}"


class _CounterChild:
    def __init__(self, family: Counter, values: Labels):
        self._family, self._values = family, values

    def inc(self, amount: float = 1.0) -> None:
        self._family._add(self._values, amount)


class Histogram:
    """A histogram family with fixed buckets, by label values."""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str], buckets: Sequence[float]):
        self.name, self.doc, self.labelnames = f"{_PREFIX}_{name}", doc, tuple(labelnames)
        self.buckets = tuple(buckets)
        self._series: dict[Labels, list[float]] = {}  # bucket counts..., count, sum
        self._lock = threading.Lock()

    def labels(self, *values: str) -> _HistogramChild:
        assert len(values) == len(self.labelnames), (self.name, values)
        return _HistogramChild(self, values)

    def _observe(self, values: Labels, amount: float) -> None:
        with self._lock:
            series = self._series.setdefault(values, [0.0] * (len(self.buckets) + 2))
            for index, bound in enumerate(self.buckets):
                if amount <= bound:
                    series[index] += 1
            series[-2] += 1
            series[-1] += amount

    def lines(self) -> Iterator[str]:
        yield from _header(self.name, self.doc, "histogram")
        with self._lock:
            items = sorted((values, list(series)) for values, series in self._series.items())
        for values, series in items:
            counts = [*series[: len(self.buckets)], series[-2]]  # +Inf holds every sample.
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                le = _labels((*self.labelnames, "le"), (*values, _number(bound)))
                yield f"{self.name}_bucket{le} {_number(count)}"
            plain = _labels(self.labelnames, values)
            yield f"{self.name}_count{plain} {_number(series[-2])}"
            yield f"{self.name}_sum{plain} {_number(series[-1])}"


class _HistogramChild:
    def __init__(self, family: Histogram, values: Labels):
        self._family, self._values = family, values

    def observe(self, amount: float) -> None:
        self._family._observe(self._values, amount)


class AgentMetrics:
    """Counters the agent bumps as things happen, and gauges read from its state on scrape.

    Implements :class:`agent.vault.VaultObserver`, so a Vault client reports to it.
    """

    def __init__(self) -> None:
        self.refreshes = Counter(
            "refreshes",
            "Refreshes that succeeded, by result (changed: a new key was written).",
            ["result"],
        )
        self.failures = Counter(
            "refresh_failures",
            "Refreshes that failed, by reason (the /status lastError reason).",
            ["reason"],
        )
        self.write_failures = Counter(
            "key_file_write_failures",
            "Key file writes that failed (nothing was replaced), by errno name.",
            ["errno"],
        )
        self.vault_requests = Histogram(
            "vault_request_duration_seconds",
            "Duration of requests to Vault, by operation and outcome (ok or a reason).",
            ["operation", "outcome"],
            _LATENCY_BUCKETS,
        )
        self.logins = Counter(
            "vault_logins", "Vault login attempts, by result (ok, failed).", ["result"]
        )
        self.renewals = Counter(
            "vault_token_renewals",
            "Vault token renewal attempts, by result (ok, failed).",
            ["result"],
        )
        self.metadata_probes = Counter(
            "metadata_access_probes",
            "Checks of read access to the secret's metadata after a 403, by result "
            "(denied, allowed: back to metadata-only polling).",
            ["result"],
        )
        self.recreations = Counter(
            "secret_recreations_detected",
            "Times Vault's current version had the number held but another creation "
            "time (the secret was deleted and written again): the key was re-read.",
        )
        for result in ("changed", "unchanged"):
            self.refreshes.labels(result)
        for result in ("ok", "failed"):
            self.logins.labels(result)
            self.renewals.labels(result)
        self._families: tuple[Counter | Histogram, ...] = (
            self.refreshes,
            self.failures,
            self.write_failures,
            self.vault_requests,
            self.logins,
            self.renewals,
            self.metadata_probes,
            self.recreations,
        )
        self._report: Callable[[], AgentStatus] | None = None

    def follow(self, report: Callable[[], AgentStatus]) -> None:
        """Read the state gauges (version held, last success, ...) from ``report()``."""
        self._report = report

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        lines = list(_build_info())
        lines += _state(self._report() if self._report else AgentStatus())
        for family in self._families:
            lines += family.lines()
        return ("\n".join(lines) + "\n").encode()

    # VaultObserver
    def vault_request(self, operation: str, seconds: float, outcome: str) -> None:
        self.vault_requests.labels(operation, outcome).observe(seconds)

    def vault_login(self, ok: bool) -> None:
        self.logins.labels("ok" if ok else "failed").inc()

    def vault_renewal(self, ok: bool) -> None:
        self.renewals.labels("ok" if ok else "failed").inc()


def _build_info() -> Iterator[str]:
    name = f"{_PREFIX}_build_info"
    yield from _header(name, "Build of the running key agent (always 1).", "gauge")
    yield f"{name}{_labels(('version', 'python'), (__version__, platform.python_version()))} 1.0"


_STATE_GAUGES: tuple[tuple[str, str, Callable[[AgentStatus], object]], ...] = (
    ("key_version", "KV version of the key held on disk.", lambda s: s.version),
    (
        "desired_key_version",
        "KV version the binding's status announces (absent: none announced).",
        lambda s: s.desired_version,
    ),
    (
        "last_success_timestamp_seconds",
        "Unix time of the last successful refresh.",
        lambda s: s.last_success,
    ),
    (
        "consecutive_failures",
        "Failed refreshes since the last success.",
        lambda s: s.consecutive_failures,
    ),
    ("ready", "1 when the key on disk is the wanted version.", lambda s: s.ready),
    (
        "metadata_access",
        "1 while metadata-only polling is allowed by policy.",
        lambda s: s.metadata_access,
    ),
)


def _state(status: AgentStatus) -> Iterator[str]:
    """Gauges computed at scrape time from the agent's ``/status`` view; absent if unknown."""
    for name, doc, read in _STATE_GAUGES:
        value = read(status)
        if isinstance(value, int | float):  # a bool too: 1 or 0.
            yield from _header(f"{_PREFIX}_{name}", doc, "gauge")
            yield f"{_PREFIX}_{name} {_number(float(value))}"


def _header(name: str, doc: str, kind: str) -> Iterator[str]:
    yield f"# HELP {name} {doc}"
    yield f"# TYPE {name} {kind}"


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
