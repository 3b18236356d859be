"""Read the current CaptchaAI key in the application, and hear of rotations in-process.

This is all an application needs of ``captchakeys``, and it needs nothing but ``watchdog``::

    from captchakeys import KeyReader

    reader = KeyReader()            # $CAPTCHAAI_KEY_FILE or /var/run/captchaai/api_key
    key = reader.wait(timeout=30)   # blocks until the key agent has written a key
    reader.on_change(lambda key: log.info("CaptchaAI key rotated"))
    ...
    params = {"key": reader.get()}  # from memory: no file I/O per request

Why a watcher and not "read the file every time": requests to CaptchaAI are frequent,
and a file read per request is wasted I/O; a cached key without a watcher goes stale
on rotation. The reader keeps the key in memory and reloads it when the directory
changes, which covers both the key agent's atomic rename and the kubelet's
``..data`` symlink swap used by projected and Secret volumes. If inotify cannot be
used (watch limits, exotic filesystems), it falls back to polling ``stat()``, which is
cheap and still never exposes a torn key, because the file is only ever replaced
whole.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from captchakeys._closing import Closing
from captchakeys.keyfile import (
    ENV_VAR,
    Version,
    fingerprint,
    key_path,
    metadata_path,
    read_key,
    read_version,
)

__all__ = ["ChangeCallback", "KeyReader", "KeyUnavailableError", "get_key"]

ChangeCallback = Callable[[str], object]

_log = logging.getLogger(__name__)

# Only events that can change what the key path resolves to. Opens and reads are left
# out on purpose: processes reading the key file in a loop would otherwise flood the
# inotify queue, and when it overflows the kernel drops events, rotations included.
_WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


class KeyUnavailableError(RuntimeError):
    """No key has been delivered to the key file yet (or it was never readable)."""


class KeyReader(Closing):
    """The current key from the key file, kept in memory and reloaded on change.

    Thread-safe. Callbacks registered with :meth:`on_change` run in the watcher thread,
    once per new key, with the new key as their only argument; an exception in one is
    logged (without the key) and does not stop the others.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, poll_interval: float = 1.0):
        self._path = key_path(path)
        self._poll_interval = poll_interval
        self._changed = threading.Condition()
        self._key: str | None = None
        self._version: Version | None = None
        self._callbacks: list[ChangeCallback] = []
        self._closed = threading.Event()
        self._observer: Any = None
        self._poller: threading.Thread | None = None
        self._reload()
        self._start_watching()

    @property
    def path(self) -> Path:
        """The key file this reader follows."""
        return self._path

    @property
    def version(self) -> Version | None:
        """The key's version (a Vault number, an AWS version id) when its metadata agrees."""
        return self._version

    @property
    def fingerprint(self) -> str | None:
        """A short SHA-256 fingerprint of the key in memory: safe to log and compare."""
        key = self._key
        return None if key is None else fingerprint(key)

    def get(self) -> str:
        """The current key, from memory. Raises :class:`KeyUnavailableError` if none yet."""
        key = self._key
        if key is None:
            raise KeyUnavailableError(
                f"no CaptchaAI key at {self._path} yet: is the key agent running and "
                f"ready in this pod? (set {ENV_VAR} if the key file lives elsewhere)"
            )
        return key

    def wait(self, timeout: float | None = None) -> str:
        """Block until a key is available and return it (at most ``timeout`` seconds)."""
        with self._changed:
            self._changed.wait_for(lambda: self._key is not None, timeout=timeout)
        return self.get()

    def on_change(self, callback: ChangeCallback) -> ChangeCallback:
        """Call ``callback(new_key)`` after each rotation. Usable as a decorator."""
        with self._changed:
            self._callbacks.append(callback)
        return callback

    def close(self) -> None:
        """Stop watching. The last key stays readable through :meth:`get`."""
        self._closed.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._poller is not None:
            self._poller.join(timeout=5)

    def __repr__(self) -> str:
        return (
            f"KeyReader(path={str(self._path)!r}, version={self._version!r}, "
            f"fingerprint={self.fingerprint!r})"
        )

    def _reload(self) -> None:
        key = read_key(self._path)
        if key is None:
            return  # not there yet, or mid-swap: the key in memory stays.
        version = read_version(self._path, key)
        with self._changed:
            changed = key != self._key
            self._key, self._version = key, version
            callbacks = list(self._callbacks) if changed else []
            self._changed.notify_all()
        for callback in callbacks:
            try:
                callback(key)
            except Exception as exc:  # a broken callback must not stop the watcher.
                _log.error("key change callback %r failed: %s", callback, type(exc).__name__)

    def _start_watching(self) -> None:
        handler = _DirectoryHandler(self, {self._path.name, metadata_path(self._path).name})
        try:
            observer = Observer()
            observer.daemon = True
            observer.schedule(
                handler, str(self._path.parent), recursive=False, event_filter=_WATCHED_EVENTS
            )
            observer.start()
        except OSError as exc:
            _log.warning("cannot watch %s (%s); polling it instead", self._path.parent, exc)
            self._poller = threading.Thread(target=self._poll, name="key-reader-poll", daemon=True)
            self._poller.start()
        else:
            self._observer = observer

    def _poll(self) -> None:
        last: tuple[int, ...] | None = None
        while not self._closed.wait(self._poll_interval):
            current = _stat_signature(self._path)
            if current != last:
                last = current
                self._reload()


class _DirectoryHandler(FileSystemEventHandler):
    """Reload on any change that can affect the key: its file, its metadata, ``..data``."""

    def __init__(self, reader: KeyReader, names: set[str]):
        self._reader = reader
        self._names = names | {"..data"}

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = (event.src_path, getattr(event, "dest_path", ""))
        if any(os.path.basename(os.fsdecode(p)) in self._names for p in paths if p):
            self._reader._reload()


def _stat_signature(path: Path) -> tuple[int, ...]:
    sigs: list[int] = []
    for candidate in (path, metadata_path(path)):
        try:
            st = candidate.stat()
        except OSError:
            sigs += [0, 0, 0]
        else:
            sigs += [st.st_ino, st.st_mtime_ns, st.st_size]
    return tuple(sigs)


_default_readers: dict[Path, KeyReader] = {}
_default_lock = threading.Lock()


def get_key(path: str | os.PathLike[str] | None = None, *, timeout: float | None = 30.0) -> str:
    """The current key, through a process-wide reader per path (created on first use).

    The simplest use: ``requests.get(url, params={"key": get_key()})``. Waits up to
    ``timeout`` seconds for the first key, then answers from memory.
    """
    resolved = key_path(path)
    with _default_lock:
        reader = _default_readers.get(resolved)
        if reader is None:
            reader = _default_readers[resolved] = KeyReader(resolved)
    return reader.wait(timeout)
