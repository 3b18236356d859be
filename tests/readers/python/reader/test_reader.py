"""The application-side reader: ``captchakeys.KeyReader`` (``captchakeys.reader``).

Covers:
- ``get()`` before any key exists raises ``KeyUnavailableError`` naming the path;
- ``wait(timeout)`` times out (with that error) when nothing comes, and returns as
  soon as a key is written by another thread;
- ``on_change`` fires exactly once per rotation, in order, with the new key, and not
  for a rewrite that leaves the key unchanged; a failing callback does not stop others;
- ``get()`` does no file I/O: an audit hook records zero ``open`` events on the key
  path during many ``get()`` calls (and does record the reader's reload, as a control);
- ``version`` / ``fingerprint`` follow the metadata; ``version`` is ``None`` while the
  metadata's fingerprint disagrees with the key in memory;
- the kubelet's ``..data`` symlink-swap layout (projected / Secret volumes) is followed;
- polling fallback when the directory cannot be watched (it does not exist yet);
- the path comes from ``CAPTCHAAI_KEY_FILE`` when none is given;
- ``repr``/``str`` never contain the key; close() / context manager keep the last key;
- module-level ``get_key()``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import keyfile
from captchakeys import ENV_VAR, KeyReader, KeyUnavailableError, get_key
from tests.rig.helpers import wait_until


# One 32-character key per version, easy to tell apart: "k" + "00001" repeated...
def key_for(version: int) -> str:
    return (f"v{version:05d}" * 6)[:32]


def write(directory: Path, version: int, *, name: str = "api_key") -> str:
    key = key_for(version)
    keyfile.write_key(
        directory,
        name,
        key,
        version=version,
        source="secret/captchaai/dev#api_key",
        fetched_at="2026-01-01T00:00:00+00:00",
    )
    return key


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[KeyReader]:
    with KeyReader(tmp_path / "api_key") as r:
        yield r


def test_get_before_any_key_raises_a_clear_error(reader: KeyReader, tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailableError) as info:
        reader.get()
    assert str(tmp_path / "api_key") in str(info.value)
    assert ENV_VAR in str(info.value)
    assert reader.version is None
    assert reader.fingerprint is None


def test_wait_times_out_when_no_key_comes(reader: KeyReader) -> None:
    started = time.monotonic()
    with pytest.raises(KeyUnavailableError):
        reader.wait(timeout=0.2)
    assert 0.15 <= time.monotonic() - started < 2


def test_wait_returns_once_a_key_is_written(reader: KeyReader, tmp_path: Path) -> None:
    timer = threading.Timer(0.1, write, args=(tmp_path, 1))
    timer.start()
    try:
        started = time.monotonic()
        assert reader.wait(timeout=5) == key_for(1)
        assert time.monotonic() - started < 4
    finally:
        timer.join()
    assert reader.get() == key_for(1)


def test_key_present_at_start_is_read_immediately(tmp_path: Path) -> None:
    write(tmp_path, 3)
    with KeyReader(tmp_path / "api_key") as r:
        assert r.get() == key_for(3)
        assert r.version == 3
        assert r.fingerprint == keyfile.fingerprint(key_for(3))


def test_on_change_fires_exactly_once_per_rotation(reader: KeyReader, tmp_path: Path) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    @reader.on_change
    def record(key: str) -> None:
        with lock:
            seen.append(key)

    rotations = 20
    for version in range(1, rotations + 1):
        write(tmp_path, version)
        wait_until(lambda n=version: len(seen) >= n)  # type: ignore[misc]
    # The same key rewritten under another version is not a rotation of the key.
    keyfile.write_key(
        tmp_path, "api_key", key_for(rotations), version=999, source="s", fetched_at="t"
    )
    # A final marker: events are delivered in order, so once it arrived every earlier
    # event has been handled and any duplicate callback would be in `seen` by now.
    write(tmp_path, 10_000)
    wait_until(lambda: len(seen) >= rotations + 1)
    with lock:
        assert seen == [key_for(v) for v in range(1, rotations + 1)] + [key_for(10_000)]
    assert reader.get() == key_for(10_000)


def test_a_failing_callback_does_not_stop_the_others(reader: KeyReader, tmp_path: Path) -> None:
    seen: list[str] = []

    def broken(_key: str) -> None:
        raise RuntimeError("boom")

    reader.on_change(broken)
    reader.on_change(seen.append)
    write(tmp_path, 1)
    wait_until(lambda: seen == [key_for(1)])
    write(tmp_path, 2)
    wait_until(lambda: seen == [key_for(1), key_for(2)])


# Audit hooks cannot be removed: one hook for the module, switched on by a test.
_audit_target: list[str] = []
_audit_opens: list[tuple[int, str]] = []  # (thread id, path)


def _audit(event: str, args: tuple[object, ...]) -> None:
    if (
        event == "open"
        and _audit_target
        and args
        and isinstance(args[0], str | bytes | Path)
        and os.fsdecode(args[0]) in _audit_target
    ):
        _audit_opens.append((threading.get_ident(), os.fsdecode(args[0])))


sys.addaudithook(_audit)


def test_get_does_no_file_io(reader: KeyReader, tmp_path: Path) -> None:
    key_path = tmp_path / "api_key"
    write(tmp_path, 1)
    assert reader.wait(timeout=5) == key_for(1)
    wait_until(lambda: reader.version == 1)  # the metadata's reload is done too.
    _audit_target[:] = [str(key_path), str(keyfile.metadata_path(key_path))]
    try:
        _audit_opens.clear()
        for _ in range(50_000):
            assert reader.get() == key_for(1)
        # Only this thread's opens count: get() runs here; the watcher has its own thread.
        opens_during_get = [path for tid, path in _audit_opens if tid == threading.get_ident()]
        # Control: the hook does see the reader opening the file when it reloads.
        write(tmp_path, 2)
        wait_until(lambda: reader.get() == key_for(2))
        opens_on_reload = [path for _, path in _audit_opens]
    finally:
        _audit_target.clear()
    assert opens_during_get == []
    assert str(key_path) in opens_on_reload


def test_version_and_fingerprint_follow_the_metadata(reader: KeyReader, tmp_path: Path) -> None:
    write(tmp_path, 4)
    wait_until(lambda: reader.version == 4)
    assert reader.fingerprint == keyfile.fingerprint(key_for(4))
    write(tmp_path, 5)
    wait_until(lambda: reader.version == 5)
    assert reader.fingerprint == keyfile.fingerprint(key_for(5))


def test_version_is_none_while_metadata_disagrees_with_the_key(
    reader: KeyReader, tmp_path: Path
) -> None:
    key_path = tmp_path / "api_key"
    write(tmp_path, 1)
    wait_until(lambda: reader.version == 1)
    # Only the key is replaced (as if caught between the two renames of a rewrite).
    other = tmp_path / "staged"
    other.write_text(key_for(2))
    os.replace(other, key_path)
    wait_until(lambda: reader.get() == key_for(2))
    assert reader.version is None
    assert reader.fingerprint == keyfile.fingerprint(key_for(2))
    # The metadata catches up: the version is known again.
    write(tmp_path, 2)
    wait_until(lambda: reader.version == 2)


def _kubelet_publish(directory: Path, version: int, stamp: int) -> None:
    """Write one payload the way the kubelet's AtomicWriter does, and swap ``..data``."""
    payload = directory / f"..2026_01_01_00_00_{stamp:02d}.{version}"
    payload.mkdir()
    keyfile.write_key(
        payload, "api_key", key_for(version), version=version, source="s", fetched_at="t"
    )
    tmp_link = directory / "..data_tmp"
    tmp_link.symlink_to(payload.name)
    os.replace(tmp_link, directory / "..data")
    for name in ("api_key", "api_key.meta.json"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


def test_kubelet_symlink_swap_layout_is_followed(tmp_path: Path) -> None:
    _kubelet_publish(tmp_path, 1, 1)
    assert os.readlink(tmp_path / "api_key") == "..data/api_key"
    with KeyReader(tmp_path / "api_key") as r:
        assert r.get() == key_for(1)
        assert r.version == 1
        seen: list[str] = []
        r.on_change(seen.append)
        for stamp, version in enumerate(range(2, 6), start=2):
            _kubelet_publish(tmp_path, version, stamp)
            wait_until(lambda v=version: r.version == v)  # type: ignore[misc]
        assert seen == [key_for(v) for v in range(2, 6)]
        assert r.get() == key_for(5)


def test_polling_fallback_when_the_directory_cannot_be_watched(tmp_path: Path) -> None:
    directory = tmp_path / "not-yet"
    with KeyReader(directory / "api_key", poll_interval=0.02) as r:
        with pytest.raises(KeyUnavailableError):
            r.get()
        directory.mkdir()
        write(directory, 1)
        assert r.wait(timeout=5) == key_for(1)
        wait_until(lambda: r.version == 1)
        seen: list[str] = []
        r.on_change(seen.append)
        write(directory, 2)
        wait_until(lambda: r.version == 2)
        assert r.get() == key_for(2)
        assert seen == [key_for(2)]


def test_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, 1, name="custom")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "custom"))
    with KeyReader() as r:
        assert r.path == tmp_path / "custom"
        assert r.get() == key_for(1)


def test_repr_and_str_never_contain_the_key(reader: KeyReader, tmp_path: Path) -> None:
    write(tmp_path, 1)
    key = reader.wait(timeout=5)
    for text in (repr(reader), str(reader), f"{reader}", f"{reader!r}"):
        assert key not in text
        assert key[:12] not in text
    assert keyfile.fingerprint(key) in repr(reader)


def test_close_stops_watching_and_keeps_the_last_key(tmp_path: Path) -> None:
    write(tmp_path, 1)
    r = KeyReader(tmp_path / "api_key")
    r.close()
    write(tmp_path, 2)
    assert r.get() == key_for(1)


def test_module_level_get_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "by-path"
    directory.mkdir()
    with pytest.raises(KeyUnavailableError):
        get_key(directory / "api_key", timeout=0.05)
    threading.Timer(0.05, write, args=(directory, 1)).start()
    assert get_key(directory / "api_key", timeout=5) == key_for(1)
    write(directory, 2)
    wait_until(lambda: get_key(directory / "api_key") == key_for(2))

    env_dir = tmp_path / "by-env"
    env_dir.mkdir()
    write(env_dir, 7)
    monkeypatch.setenv(ENV_VAR, str(env_dir / "api_key"))
    assert get_key() == key_for(7)
