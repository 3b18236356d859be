"""What one list or watch asks for: a namespace, a name, label and field selectors.

Only equality-based selectors (``a=b``, ``c!=d``, and ``k``/``!k`` for labels) and the
field labels metadata.name/namespace are understood; anything else answers 400 instead of
being silently ignored, so a client that relies on more fails loudly in a test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kmock

from tests.rig.errors import api_error

__all__ = ["Scope", "parse_selector"]

# (key, operator, value): operator is "=", "!=", "exists" or "!exists".
Requirement = tuple[str, str, str | None]

_EQUALITY = re.compile(r"([^=!\s()]+)\s*(==|=|!=)\s*([^=!\s()]*)")
_EXISTENCE = re.compile(r"!?[^=!\s(),]+")
_FIELD_LABELS = ("metadata.name", "metadata.namespace")


def _requirement(term: str, *, fields: bool) -> Requirement:
    match = _EQUALITY.fullmatch(term)
    if match:
        key, op, value = match.groups()
        return key, "!=" if op == "!=" else "=", value
    if not fields and _EXISTENCE.fullmatch(term):
        return term.lstrip("!"), "!exists" if term[0] == "!" else "exists", None
    raise api_error(400, "BadRequest", f"unsupported selector term: {term!r}")


def parse_selector(text: str, *, fields: bool) -> list[Requirement]:
    """The requirements of a ``labelSelector`` (or, with ``fields``, a ``fieldSelector``)."""
    requirements: list[Requirement] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        requirement = _requirement(term, fields=fields)
        if fields and requirement[0] not in _FIELD_LABELS:
            raise api_error(400, "BadRequest", f"field label not supported: {requirement[0]}")
        requirements.append(requirement)
    return requirements


def _holds(values: Mapping[str, str], requirement: Requirement) -> bool:
    key, op, value = requirement
    if op == "=":
        return values.get(key) == value
    if op == "!=":
        return values.get(key) != value
    return (key in values) == (op == "exists")


def _satisfies(values: Mapping[str, str], requirements: Iterable[Requirement]) -> bool:
    return all(_holds(values, requirement) for requirement in requirements)


@dataclass(frozen=True)
class Scope:
    """The objects one list or watch request selects."""

    namespace: str | None
    name: str | None
    labels: list[Requirement]
    fields: list[Requirement]

    @classmethod
    def of(cls, request: kmock.Request) -> Scope:
        """The scope of a request; a selector the rig does not understand answers 400."""
        return cls(
            namespace=request.namespace,
            name=request.name,
            labels=parse_selector(request.params.get("labelSelector", ""), fields=False),
            fields=parse_selector(request.params.get("fieldSelector", ""), fields=True),
        )

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        field_values = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
        }
        return (
            (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
            and _satisfies(meta.get("labels") or {}, self.labels)
            and _satisfies({k: v for k, v in field_values.items() if v is not None}, self.fields)
        )
