"""Watch streams: every change is kept in order, so a watch resumes where it left off.

A watch from ``?resourceVersion=N`` gets every change after N, nothing lost and nothing
repeated; a watch without one (or with "0") first gets the current objects as ADDED. A
watch with a selector sees the transitions the real API sends: an object that starts to
match is ADDED, one that stops matching is DELETED, whatever the write was.

Watches wait on one event that every change sets and replaces, and find what is new by
their position in the change list; closing the log ends every stream (clients see EOF).
"""

from __future__ import annotations

import asyncio
import bisect
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import kmock

from tests.rig.errors import api_error
from tests.rig.selectors import Scope

__all__ = ["Change", "ChangeLog", "starts_fresh"]


def starts_fresh(since: str) -> bool:
    """A watch from no resourceVersion (or "0") starts with the objects there are now."""
    return since in ("", "0")


@dataclass(frozen=True)
class Change:
    """One write, as watchers see it: ``old`` is None for creations."""

    resource_version: int
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None

    def event_for(self, scope: Scope) -> dict[str, Any] | None:
        """The event a watch on ``scope`` gets for this change, if any."""
        now = self.type != "DELETED" and scope.matches(self.obj)
        was = self.old is not None and scope.matches(self.old)
        if not (now or was):
            return None
        kind = "MODIFIED" if now and was else "ADDED" if now else "DELETED"
        return {"type": kind, "object": self.obj}


class ChangeLog:
    """Every change of every resource, in resourceVersion order, for the watches to follow."""

    def __init__(self) -> None:
        self._changes: dict[kmock.resource, list[Change]] = {}
        self._tick = asyncio.Event()
        self._closed = False

    def record(
        self,
        resource: kmock.resource,
        resource_version: int,
        type_: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> None:
        """Keep a change (copies: the store goes on to change its own objects) and wake."""
        change = Change(resource_version, type_, copy.deepcopy(obj), copy.deepcopy(old))
        self._changes.setdefault(resource, []).append(change)
        self._notify()

    def close(self) -> None:
        """End every watch stream once it has sent what it has."""
        self._closed = True
        self._notify()

    def cursor(self, resource: kmock.resource, since: str) -> int:
        """Where a watch from ``since`` starts following: after every change it has seen.

        Take it with no await between it and a snapshot of the objects: every change then
        lands either in the snapshot or after the cursor, never both.
        """
        changes = self._changes.setdefault(resource, [])
        if starts_fresh(since):
            return len(changes)
        if not since.isdigit():
            raise api_error(400, "BadRequest", f"invalid resourceVersion: {since!r}")
        return bisect.bisect_right(changes, int(since), key=lambda c: c.resource_version)

    async def follow(
        self, resource: kmock.resource, scope: Scope, cursor: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of ``scope`` from ``cursor`` on, until the log is closed."""
        changes = self._changes.setdefault(resource, [])
        while True:
            while cursor < len(changes):
                event = changes[cursor].event_for(scope)
                cursor += 1
                if event is not None:
                    yield event
            if self._closed:
                return
            await self._tick.wait()

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()
