"""Start-up on someone else's critical path: imports that cost less time and memory.

The injected key agent's start-up is every consumer pod's (the application waits for
its key), so what its imports do beyond defining code is paid a thousand times over:

- :func:`collection_paused`: thousands of module, class and function objects created
  at once run dozens of full cyclic collections that find nothing to free (about 20 ms
  per phase of the agent's imports on a small machine). The collector is off around
  such a phase, and what it created is frozen (:func:`gc.freeze`) on the way out:
  modules live as long as the process, and later collections skip them.
- :func:`freeze_once_ready`: the operator loads most of what it keeps only while it
  starts (the API client's models, the TLS library, its caches), after its imports.
  Left in the collected generations, each full collection walks them: about 0.1 s
  during which no webhook is answered. Frozen once kopf reports ready, a full
  collection walks only what came later (3-5 ms).
- :func:`no_ca_bundle_preloaded`: aiohttp builds two SSL contexts from the system's CA
  bundle at import, for clients that bring no context of their own: about 2 MiB of
  parsed certificates and 30 ms. kopf always brings its own (the API server's CA), so
  the agent never uses them. With OpenSSL's default CA *file* empty while aiohttp is
  imported, they preload nothing; they would still verify, looking certificates up in
  the CA *directory* by hash, were they ever used.
- :func:`no_charset_detection`: requests imports charset_normalizer (2.5 MiB of RSS, a
  compiled module and its tables) to guess the encoding of answers that name none.
  Vault answers JSON, which requests decodes without guessing, so hvac's requests is
  imported with the detector absent; requests supports that and falls back to UTF-8.
- :func:`aiohttp_pure_python`: aiohttp's compiled parts cost RSS the agent's traffic
  (one watch stream, a few calls, /status answers) does not repay. frozenlist's
  compiled FrozenList links the C++ runtime (1.1 MiB with it), and aiohttp keeps only a
  few signal lists in it, built once; its compiled HTTP parser, writer and websocket
  helpers are 0.6 MiB. The pure-Python builds both ship do the same work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import warnings
from collections.abc import Iterator

__all__ = [
    "aiohttp_pure_python",
    "collection_paused",
    "freeze_once_ready",
    "no_ca_bundle_preloaded",
    "no_charset_detection",
]

_CA_FILE_ENV = "SSL_CERT_FILE"  # read by OpenSSL whenever a context loads its defaults.
_CHARSET_DETECTORS = ("chardet", "charset_normalizer")  # what requests looks for, in order.
# Each read once, when its package is imported.
_PURE_PYTHON_ENV = ("FROZENLIST_NO_EXTENSIONS", "AIOHTTP_NO_EXTENSIONS")


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside; what was created meanwhile is frozen on the way out."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


async def freeze_once_ready(ready: asyncio.Event) -> None:
    """Freeze what exists once ``ready`` is set: run it as a task beside the operator."""
    await ready.wait()
    gc.freeze()


@contextlib.contextmanager
def no_ca_bundle_preloaded() -> Iterator[None]:
    """Contexts made inside load no default CA file; the variable is restored after.

    Contexts made later (kopf's own, for an API server without a CA of its own in the
    kubeconfig) load the system's bundle as usual.
    """
    with _environment_set(_CA_FILE_ENV, os.devnull):
        yield


@contextlib.contextmanager
def no_charset_detection() -> Iterator[None]:
    """requests imported inside finds no charset detector; others may import one later.

    Only a first import of requests is affected (one already loaded keeps its detector),
    and its one warning about the missing detector is not shown: it is expected here.
    """
    hidden = [name for name in _CHARSET_DETECTORS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "not installed", to import.
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unable to find acceptable character detection")
            yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


@contextlib.contextmanager
def aiohttp_pure_python() -> Iterator[None]:
    """aiohttp and frozenlist imported inside are their pure-Python builds; restored after."""
    with contextlib.ExitStack() as stack:
        for name in _PURE_PYTHON_ENV:
            stack.enter_context(_environment_set(name, "1"))
        yield


@contextlib.contextmanager
def _environment_set(name: str, value: str) -> Iterator[None]:
    """``name`` is ``value`` inside, and as it was (or unset) after."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved
