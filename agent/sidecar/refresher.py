"""Keep the key file equal to the wanted version in Vault, touching Vault as little as possible.

One refresh asks Vault's *metadata* for the current version first (cheap, and no key
crosses the wire) and reads the data only when that version differs from the one on
disk. A pinned version skips the metadata and is read only when it differs. Every
failure leaves the file as it was: the last good key stays in place.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from agent import keyfile, logs
from agent.keysource import FetchedKey, KeySource, SourceRef
from agent.vault import PermissionDeniedError
from agent.versions import Version

__all__ = ["KeyRefresher", "KeyTarget"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyTarget:
    """Where the key is written: directory (an in-memory volume), file name, file mode."""

    directory: Path = keyfile.DEFAULT_DIR
    name: str = keyfile.DEFAULT_FILE_NAME
    mode: int = keyfile.DEFAULT_MODE

    @property
    def path(self) -> Path:
        return self.directory / keyfile.validate_file_name(self.name)


class KeyRefresher:
    """Brings the key file up to date with one :class:`SecretRef` in Vault."""

    def __init__(self, client: KeySource, ref: SourceRef, target: KeyTarget):
        keyfile.validate_file_name(target.name)
        self.client = client
        self.ref = ref
        self.target = target
        meta = keyfile.read_metadata(target.path)
        # After a container restart the emptyDir still holds the last key: remember it.
        self.held_version: Version | None = meta.version if meta else None
        self.fingerprint: str | None = meta.fingerprint if meta else None
        self._metadata_allowed = True

    def retarget(self, ref: SourceRef, target: KeyTarget) -> None:
        """Follow a changed binding (new path, field, pin or file) from the next refresh."""
        if (ref, target) != (self.ref, self.target):
            keyfile.validate_file_name(target.name)
            self.ref, self.target = ref, target
            self.held_version = None  # a different source: rewrite whatever it holds.

    async def refresh(self, *, at_least: Version | None = None, force: bool = False) -> bool:
        """Rewrite the file if Vault has a different wanted version; return whether it did.

        ``at_least`` is a version the caller already knows exists (the operator
        published it): then the metadata round trip is skipped.
        """
        ref = self.ref
        if not force and ref.version is not None and ref.version == self.held_version:
            return False
        if not force and ref.version is None:
            wanted = at_least if at_least and at_least != self.held_version else None
            if wanted is None:
                wanted = await self._current_version(ref)
            if wanted is not None and wanted == self.held_version:
                return False
        key = await asyncio.to_thread(self.client.read_key, ref)
        await self._write(key)
        return True

    async def _current_version(self, ref: SourceRef) -> Version | None:
        """The latest version from metadata, or ``None`` if the policy lacks metadata read."""
        if not self._metadata_allowed:
            return None
        try:
            meta = await asyncio.to_thread(self.client.metadata, ref)
        except PermissionDeniedError:
            self._metadata_allowed = False
            _log.warning(
                "no read access to %s: reading the data path on every refresh instead "
                "(grant read on the metadata path to make refreshes cheaper)",
                ref.metadata_path,
            )
            return None
        return meta.current_version

    async def _write(self, key: FetchedKey) -> None:
        logs.redact(key.value)
        if key.version == self.held_version and keyfile.fingerprint(key.value) == self.fingerprint:
            return
        target = self.target
        # Written from the event loop itself, not a worker thread: the new key, its
        # metadata and the version this refresher says it holds then change in one step,
        # so /readyz and /status (served by this loop) always agree with the files. The
        # write is a few hundred bytes to tmpfs.
        meta = keyfile.write_key(
            target.directory,
            target.name,
            key.value,
            version=key.version,
            source=key.ref.source,
            fetched_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            mode=target.mode,
        )
        previous, self.held_version, self.fingerprint = (
            self.held_version,
            meta.version,
            meta.fingerprint,
        )
        _log.info(
            "key written",
            extra={
                "version": meta.version,
                "previous_version": previous,
                "fingerprint": meta.fingerprint,
                "path": str(target.path),
            },
        )
