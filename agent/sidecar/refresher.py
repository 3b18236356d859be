"""Keep the key file equal to the wanted version in Vault, touching Vault as little as possible.

One refresh asks Vault's *metadata* for the current version first (cheap, and no key
crosses the wire) and reads the data only when that version differs from the one on
disk. A pinned version skips the metadata and is read only when it differs. Every
failure leaves the file as it was: the last good key stays in place.

What "the same version" means: the version number *and* Vault's creation time of that
version. A secret deleted and written again (metadata delete, a restore into a fresh
Vault, a dev server restart) starts again at version 1, so comparing numbers alone
would keep a key that no longer exists in Vault and call it current.

Three things are remembered between refreshes so that a fault does not multiply reads:

- a key read but not written (a write fault): written again without re-reading while
  Vault still has that version;
- a key refused for its content (:mod:`agent.keyrules`): not read again until Vault has
  another version;
- a 403 on the metadata path: the data path is read instead, and metadata access is
  re-checked after 2, 4, then every 8 refreshes, so a restored policy brings back the
  cheap path without a restart and a missing one costs at most one extra request per
  eight refreshes.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from agent import keyfile, keyrules
from agent.keysource import FetchedKey, KeySource, SourceRef
from agent.runtime import logs
from agent.sidecar.metrics import AgentMetrics
from agent.vault import PermissionDeniedError, VaultClient
from agent.versions import Version

__all__ = ["KeyRefresher", "KeyTarget"]

_log = logging.getLogger(__name__)

# Refreshes to wait before re-checking metadata access after a 403: doubles up to this.
_METADATA_REPROBE_MAX = 8

Identity = tuple[Version, str | None]  # (version, Vault's created_time of it; None: unknown)


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
    """Brings the key file up to date with one key in a :class:`KeySource` (Vault, AWS)."""

    def __init__(
        self,
        client: KeySource,
        ref: SourceRef,
        target: KeyTarget,
        *,
        rules: keyrules.KeyRules | None = None,
        metrics: AgentMetrics | None = None,
    ):
        keyfile.validate_file_name(target.name)
        self.metrics = metrics or AgentMetrics()
        self.client = client
        self.ref = ref
        self.target = target
        self.rules = rules or keyrules.KeyRules()
        meta = keyfile.read_metadata(target.path)
        # After a container restart the emptyDir still holds the last key: remember it.
        self.held_version: Version | None = meta.version if meta else None
        self.fingerprint: str | None = meta.fingerprint if meta else None
        self.held_created: str | None = meta.created_time if meta else None
        self._pending: FetchedKey | None = None
        self._rejected: tuple[Identity, keyrules.KeyRejectedError] | None = None
        self._reprobe_after = 0  # 0: metadata allowed; else refreshes between re-checks.
        self._since_probe = 0

    @property
    def client(self) -> KeySource:
        return self._client

    @client.setter
    def client(self, client: KeySource) -> None:
        if isinstance(client, VaultClient):  # Vault's requests, logins, renewals: metrics.
            client.observer = self.metrics
        self._client = client

    @property
    def metadata_allowed(self) -> bool:
        return self._reprobe_after == 0

    def retarget(
        self, ref: SourceRef, target: KeyTarget, rules: keyrules.KeyRules | None = None
    ) -> None:
        """Follow a changed binding (path, field, pin, file, key rules) from the next refresh."""
        rules = rules or keyrules.KeyRules()
        if (ref, target, rules) != (self.ref, self.target, self.rules):
            keyfile.validate_file_name(target.name)
            self.ref, self.target, self.rules = ref, target, rules
            self.held_version = None  # a different source: rewrite whatever it holds.
            self._pending, self._rejected, self._reprobe_after = None, None, 0

    async def refresh(self, *, at_least: Version | None = None, force: bool = False) -> bool:
        """Rewrite the file if Vault has a different wanted version; return whether it did.

        ``at_least`` is a version the caller already knows exists (the operator
        published it): then the metadata round trip is skipped.
        """
        ref = self.ref  # one source for the whole refresh, whatever a retarget does meanwhile.
        if force:
            return await self._write(await self._read(ref, None))
        if ref.version is not None and ref.version == self.held_version:
            return False  # the pinned version is on disk: nothing can have changed.
        current = await self._current_unless_known(ref, at_least)
        if current is not None:
            if self._holds(current):
                return False
            if self._rejected is not None and self._rejected[0] == current:
                raise self._rejected[1]  # the same refused key: not worth reading again.
        key = self._pending
        if key is None or current is None or _identity(key) != current:
            key = await self._read(ref, current)
        return await self._write(key)

    async def _current_unless_known(
        self, ref: SourceRef, at_least: Version | None
    ) -> Identity | None:
        """Vault's current version, asked only when the answer is not known already.

        Not asked for a pinned version (it is the one wanted), nor when the operator
        announced a version other than the one on disk (that one exists: read it).
        """
        if ref.version is not None or (at_least and at_least != self.held_version):
            return None
        return await self._current(ref)

    async def _read(self, ref: SourceRef, current: Identity | None) -> FetchedKey:
        self._pending = None
        try:
            key = await asyncio.to_thread(self._read_checked, ref)
        except keyrules.KeyRejectedError as exc:
            if current is not None:
                self._rejected = (current, exc)
            raise
        _log.debug("version %s read from %s", key.version, ref, extra={"hop": "key-read"})
        return key

    def _read_checked(self, ref: SourceRef) -> FetchedKey:
        """Read the key and apply the binding's key rules, whatever the source."""
        client = self.client
        if isinstance(client, VaultClient):  # names the field and path in its refusals.
            return client.read_key(ref, self.rules)  # type: ignore[arg-type]
        key = client.read_key(ref)
        if keyrules.check_key(key.value, f"the key from {ref.source}", self.rules) != key.value:
            raise keyrules.KeyRejectedError(
                f"the key from {ref.source} is refused: it ends in a newline. Store the key "
                "alone; the last good key stays in place"
            )
        return key

    def _holds(self, current: Identity) -> bool:
        """Whether the key on disk is Vault's ``current`` (version, creation time)."""
        version, created = current
        if version != self.held_version:
            return False
        # Unknown on disk (written by an older agent): read once to learn it.
        return created is None or created == self.held_created

    async def _current(self, ref: SourceRef) -> Identity | None:
        """Vault's current (version, created_time), or ``None`` while metadata is denied."""
        if self._reprobe_after:
            self._since_probe += 1
            if self._since_probe < self._reprobe_after:
                return None
        try:
            meta = await asyncio.to_thread(self.client.metadata, ref)
        except PermissionDeniedError as exc:
            self._metadata_denied(ref, exc)
            return None
        if self._reprobe_after:
            self._reprobe_after = 0
            self.metrics.metadata_probes.labels("allowed").inc()
            _log.info(
                "read access to %s is back: polling the metadata only again",
                ref.metadata_path,
            )
        # Vault's metadata carries creation times; a source without them (AWS: its version
        # ids are never reused) answers with the version alone.
        created = getattr(meta, "current_created_time", None)
        return meta.current_version, created if isinstance(created, str) else None

    def _metadata_denied(self, ref: SourceRef, exc: PermissionDeniedError) -> None:
        first = self._reprobe_after == 0
        self._reprobe_after = min(max(2, self._reprobe_after * 2), _METADATA_REPROBE_MAX)
        self._since_probe = 0
        self.metrics.metadata_probes.labels("denied").inc()
        if first:
            _log.warning(
                "%s Reading the data path on every refresh instead, and re-checking "
                "metadata access every %d refreshes at most",
                exc,
                _METADATA_REPROBE_MAX,
            )

    def _note_recreation(self, key: FetchedKey) -> None:
        """Say so when Vault's version N is not the version N on disk (created anew)."""
        held, created = self.held_created, _identity(key)[1]
        if key.version != self.held_version or None in (created, held) or created == held:
            return
        self.metrics.recreations.inc()
        _log.warning(
            "the secret at %s was re-created: Vault's version %s was created at %s, the key "
            "held as version %s at %s; writing Vault's",
            self.ref.metadata_path,
            key.version,
            created,
            key.version,
            held,
        )

    async def _write(self, key: FetchedKey) -> bool:
        """Write ``key`` unless it is exactly what is on disk; return whether it wrote."""
        logs.redact(key.value)
        identity = _identity(key)
        held = (self.held_version, self.held_created)
        if identity == held and keyfile.fingerprint(key.value) == self.fingerprint:
            return False
        self._note_recreation(key)
        target = self.target
        # Written from the event loop itself, not a worker thread: the new key, its
        # metadata and the version this refresher says it holds then change in one step,
        # so /readyz and /status (served by this loop) always agree with the files. The
        # write is a few hundred bytes to tmpfs.
        try:
            meta = keyfile.write_key(
                target.directory,
                target.name,
                key.value,
                version=key.version,
                source=key.ref.source,
                fetched_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                mode=target.mode,
                created_time=identity[1],
            )
        except keyfile.KeyFileUnwritableError as exc:
            self._pending = key
            self.metrics.write_failures.labels(exc.errno_name).inc()
            raise
        self._pending = self._rejected = None
        previous = self.held_version
        self.held_version, self.fingerprint = meta.version, meta.fingerprint
        self.held_created = meta.created_time
        _log.info(
            "key written",
            extra={
                "version": meta.version,
                "previous_version": previous,
                "fingerprint": meta.fingerprint,
                "path": str(target.path),
            },
        )
        return True


def _identity(key: FetchedKey) -> Identity:
    """A fetched key's (version, creation time): Vault's keys carry one, others none."""
    created = getattr(key, "created_time", None)
    return key.version, created if isinstance(created, str) else None
