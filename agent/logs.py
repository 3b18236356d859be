"""Structured logs: one JSON object per line, and a last line of defence for the key.

The code never passes the key to a logger; that is the real guarantee, and the tests
check it with a sentinel key. :func:`redact` adds a second one: once a process holds
a key it registers it here, and the formatter replaces any occurrence in the final
line (message, arguments, exception text) with ``[REDACTED]``. A mistake in a future
log call, or a library that logs a URL with the key in it, then still leaks nothing.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import threading
from collections import deque
from typing import Literal

__all__ = ["LogFormat", "configure", "redact"]

LogFormat = Literal["json", "text"]

_REDACTED = "[REDACTED]"
_secrets: deque[str] = deque(maxlen=8)  # the current key and a few predecessors.
_secrets_lock = threading.Lock()

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(secret: str) -> None:
    """Never print ``secret``, whatever a log call passes along."""
    if len(secret) < 4:  # redacting very short strings would mangle ordinary words.
        return
    with _secrets_lock:
        if secret not in _secrets:
            _secrets.append(secret)


def _scrub(text: str) -> str:
    with _secrets_lock:
        secrets = tuple(_secrets)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                entry[name] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _scrub(json.dumps(entry, default=str))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _scrub(super().format(record))


def configure(level: str = "info", fmt: LogFormat = "json") -> None:
    """Send every logger (ours, kopf's, hvac's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 logs full request lines at debug level; keep it quiet even then.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
