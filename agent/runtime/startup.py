"""Start-up on someone else's critical path: imports that cost less time and memory.

The injected key agent's start-up is every consumer pod's (the application waits for
its key), so what its imports do beyond defining code is paid a thousand times over:

- :func:`collection_paused`: thousands of module, class and function objects created
  at once run dozens of full cyclic collections that find nothing to free (about 20 ms
  per phase of the agent's imports on a small machine). The collector is off around
  such a phase, and what it created is frozen (:func:`gc.freeze`) on the way out:
  modules live as long as the process, and later collections skip them.
- :func:`no_ca_bundle_preloaded`: aiohttp builds two SSL contexts from the system's CA
  bundle at import, for clients that bring no context of their own: about 2 MiB of
  parsed certificates and 30 ms. kopf always brings its own (the API server's CA), so
  the agent never uses them. With OpenSSL's default CA *file* empty while aiohttp is
  imported, they preload nothing; they would still verify, looking certificates up in
  the CA *directory* by hash, were they ever used.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator

__all__ = ["collection_paused", "no_ca_bundle_preloaded"]

_CA_FILE_ENV = "SSL_CERT_FILE"  # read by OpenSSL whenever a context loads its defaults.


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


@contextlib.contextmanager
def no_ca_bundle_preloaded() -> Iterator[None]:
    """Contexts made inside load no default CA file; the variable is restored after.

    Contexts made later (kopf's own, for an API server without a CA of its own in the
    kubeconfig) load the system's bundle as usual.
    """
    saved = os.environ.get(_CA_FILE_ENV)
    os.environ[_CA_FILE_ENV] = os.devnull
    try:
        yield
    finally:
        if saved is None:
            del os.environ[_CA_FILE_ENV]
        else:
            os.environ[_CA_FILE_ENV] = saved
