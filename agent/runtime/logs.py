"""Structured logs: one JSON object per line, and a last line of defence for the key.

JSON lines are made by python-json-logger (kopf depends on it already), so every field
is real JSON: numbers stay numbers, ``None`` is ``null`` and nested extras (kopf's
object reference) are objects, not Python reprs. The field names are a contract with
the platform team's log pipeline, documented in docs/logging.md: ``time`` (RFC 3339,
UTC, milliseconds), ``level``, ``logger``, ``message``, ``exception`` when there is one,
``namespace``/``name``/``kind`` (and ``binding`` for a CaptchaKeyBinding) on kopf's
per-object lines, and the extras each call passes (``version``, ``reason``, ...).

The code never passes the key to a logger; that is the real guarantee, and the tests
check it with a sentinel key. :func:`redact` adds a second one: once a process holds
a key it registers it here, and the formatter replaces any occurrence in the final
line (message, arguments, exception text, extras) with ``[REDACTED]``. A mistake in a
future log call, or a library that logs a URL with the key in it, then still leaks
nothing.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import threading
from collections import deque
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

__all__ = ["LogFormat", "configure", "redact"]

LogFormat = Literal["json", "text"]

_REDACTED = "[REDACTED]"
_secrets: deque[str] = deque(maxlen=8)  # the current key and a few predecessors.
_secrets_lock = threading.Lock()

# kopf's own record attributes: k8s_ref becomes the fields below, the others are internal.
_KOPF_ATTRS = ("k8s_ref", "k8s_skip", "settings")


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


def _scrubbed_json(data: object, **kwargs: Any) -> str:
    return _scrub(json.dumps(data, **kwargs))


class _JsonFormatter(JsonFormatter):
    """The documented fields first, then the call's extras, all as JSON values."""

    def __init__(self) -> None:
        super().__init__(
            reserved_attrs=[*RESERVED_ATTRS, *_KOPF_ATTRS],
            rename_fields={"exc_info": "exception", "stack_info": "stack"},
            json_default=str,  # anything JSON cannot encode is written as its str().
            json_serializer=_scrubbed_json,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data.update(
            time=datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            level=record.levelname.lower(),
            logger=record.name,
            message=record.getMessage(),
        )
        extras: dict[str, Any] = {}
        super().add_fields(extras, record, message_dict)
        extras.pop("message", None)
        log_data.update((k, v) for k, v in extras.items() if k not in log_data)
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            log_data.update(_object_fields(ref))


def _object_fields(ref: dict[str, Any]) -> dict[str, Any]:
    """kopf's per-object reference, as flat fields a log query can filter on."""
    fields = {key: ref[key] for key in ("kind", "namespace", "name") if ref.get(key)}
    if ref.get("kind") == "CaptchaKeyBinding" and "name" in fields:
        fields["binding"] = fields["name"]
    return fields


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
