"""Start-up on someone else's critical path: imports that cost less time.

The injected key agent's start-up is every consumer pod's (the application waits for
its key), so what its imports do beyond defining code is paid a thousand times over.
Thousands of module, class and function objects created at once run dozens of full
cyclic collections that find nothing to free (about 20 ms per phase of the agent's
imports on a small machine): :func:`collection_paused` turns the collector off around
such a phase and freezes what it created (:func:`gc.freeze`) on the way out. Modules
live as long as the process, and later collections skip them.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collection_paused"]


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
