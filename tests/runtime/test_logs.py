"""JSON log lines as a log pipeline parses them (agent.runtime.logs, docs/logging.md).

Covers:
- every line is one JSON object with ``time`` (RFC 3339 UTC, ms), ``level``, ``logger``
  and ``message``; extras keep their JSON types (int, null, nested objects and lists);
  a value JSON cannot encode becomes its string; ``exception`` holds the traceback;
- an extra cannot overwrite a documented field;
- kopf's per-object reference becomes flat ``kind``/``namespace``/``name`` (and
  ``binding``) fields, and kopf's internal record attributes are not written;
- every field the code logs is in docs/logging.md's table.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.runtime import logs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_lines() -> Iterator[None]:
    """JSON logs to stderr for the test (configured inside it, where capsys captures)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def read(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


@pytest.mark.usefixtures("json_lines")
def test_fields_are_json_values(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("debug", "json")
    logging.getLogger("tests.logs").info(
        "key written %s",
        "now",
        extra={
            "version": 3,
            "previous_version": None,
            "nested": {"a": [1, 2.5]},
            "odd": Path("/x"),
        },
    )
    (entry,) = read(capsys)
    assert entry["level"] == "info"
    assert entry["logger"] == "tests.logs"
    assert entry["message"] == "key written now"
    when = datetime.datetime.fromisoformat(str(entry["time"]))
    assert when.utcoffset() == datetime.timedelta(0)
    assert re.search(r"T\d\d:\d\d:\d\d\.\d{3}\+00:00$", str(entry["time"]))
    assert entry["version"] == 3
    assert entry["previous_version"] is None
    assert entry["nested"] == {"a": [1, 2.5]}
    assert entry["odd"] == "/x"


@pytest.mark.usefixtures("json_lines")
def test_exception_and_protected_field_names(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("debug", "json")
    log = logging.getLogger("tests.logs")
    try:
        raise ValueError("bad thing")
    except ValueError:
        log.exception("failed", extra={"level": "spoofed", "time": "spoofed"})
    (entry,) = read(capsys)
    assert entry["level"] == "error"
    assert entry["time"] != "spoofed"
    assert "ValueError: bad thing" in str(entry["exception"])


@pytest.mark.usefixtures("json_lines")
def test_kopf_object_reference_becomes_flat_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("debug", "json")
    ref = {
        "apiVersion": "captchakeys.io/v1alpha1",
        "kind": "CaptchaKeyBinding",
        "name": "captchaai-dev",
        "namespace": "solver",
        "uid": "1234",
    }
    adapter = logging.LoggerAdapter(
        logging.getLogger("kopf.objects"), {"k8s_ref": ref, "k8s_skip": False}
    )
    adapter.warning("status patched")
    (entry,) = read(capsys)
    assert entry["kind"] == "CaptchaKeyBinding"
    assert entry["namespace"] == "solver"
    assert entry["binding"] == entry["name"] == "captchaai-dev"
    assert "k8s_ref" not in entry
    assert "k8s_skip" not in entry


def test_every_logged_field_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)`", (ROOT / "docs/logging.md").read_text(), re.M))
    documented |= {"kind", "namespace", "name"}  # one row for the three.
    logged: set[str] = set()
    for source in (ROOT / "agent").rglob("*.py"):
        for block in re.findall(r"extra=\{(.*?)\}", source.read_text(), re.S):
            logged |= set(re.findall(r'"([a-z_]+)":', block))
    assert logged, "no extra= fields found: the scan is broken"
    assert logged <= documented, logged - documented
    for core in ("time", "level", "logger", "message", "exception", "binding"):
        assert core in documented
