"""``with`` for the package's objects that hold something to let go of.

The reader holds a watcher thread, the blocking CaptchaAI client a connection pool: both
are closed by ``close()``, and a ``with`` block closes them the same way, once, here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Closing(ABC):
    """``with obj:`` returns ``obj`` and calls ``obj.close()`` however the block ends."""

    @abstractmethod
    def close(self) -> None:
        """Let go of what the object holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
