"""JSON objects as frozen dataclasses: each key of a contract is spelled once, as a field.

On the wire a field's name is in camelCase (``desired_version`` is ``desiredVersion``), as
Kubernetes and ``/status`` spell their keys, so the dataclass *is* the definition of the
JSON, and no reader or writer can spell a key its own way. Each field's annotation also
names its reader (``Annotated[str | None, text]``): the peer that wrote the JSON may run
an older or newer version of this code, so a value is checked, and a key that is missing
or malformed leaves the field at its default instead of failing the whole object; keys
this version does not know are ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from agent import versions

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "counts",
    "dump",
    "flag",
    "integer",
    "load",
    "many",
    "nested",
    "number",
    "text",
    "version",
    "wire_name",
]

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")
Reader = Callable[[object], T | None]


def wire_name(name: str) -> str:
    """A field's key on the wire: its name in camelCase."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def dump(value: object, *, nulls: bool) -> Any:
    """``value`` as JSON: a dataclass becomes an object keyed by :func:`wire_name`.

    ``nulls`` says whether a field that is ``None`` is sent as ``null`` (a payload with
    the same keys every time) or left out (a merge patch that only says what it knows).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _object(value, nulls=nulls)
    if isinstance(value, list | tuple):
        return [dump(item, nulls=nulls) for item in value]
    if isinstance(value, Mapping):
        return {str(key): dump(item, nulls=nulls) for key, item in value.items()}
    return value


def _object(value: DataclassInstance, *, nulls: bool) -> dict[str, Any]:
    pairs = ((each.name, getattr(value, each.name)) for each in dataclasses.fields(value))
    return {
        wire_name(name): dump(item, nulls=nulls)
        for name, item in pairs
        if nulls or item is not None
    }


def load(cls: type[D], value: object) -> D:
    """An instance of ``cls`` from what a peer sent: every field read by its own reader."""
    body: Mapping[Any, object] = value if isinstance(value, Mapping) else {}
    found = {}
    for name, key, read in _fields(cls):
        item = read(body.get(key))
        if item is not None:
            found[name] = item
    return cls(**found)


@functools.cache
def _fields(cls: type[DataclassInstance]) -> tuple[tuple[str, str, Reader[Any]], ...]:
    """Each field's name, key and reader (the first ``Annotated`` extra of its type)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(
        (each.name, wire_name(each.name), hints[each.name].__metadata__[0])
        for each in dataclasses.fields(cls)
    )


def nested(cls: type[D]) -> Reader[D]:
    """A reader of an object inside the object: ``None`` unless it is one."""
    return lambda value: load(cls, value) if isinstance(value, Mapping) else None


def many(read: Reader[T]) -> Reader[tuple[T, ...]]:
    """A reader of a list: the items ``read`` accepts, in order (``None``: not a list)."""

    def items(value: object) -> tuple[T, ...] | None:
        if not isinstance(value, list):
            return None
        found = (read(item) for item in value)
        return tuple(item for item in found if item is not None)

    return items


def text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def number(value: object) -> float | None:
    """A JSON number that is not negative (seconds, Unix times), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def version(value: object) -> versions.Version | None:
    return versions.parse(value)


def counts(value: object) -> dict[str, int] | None:
    """An object of counts (version -> consumers): the entries that are counts."""
    if not isinstance(value, Mapping):
        return None
    found = {str(key): integer(count) for key, count in value.items()}
    return {key: count for key, count in found.items() if count is not None}
