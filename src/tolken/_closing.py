"""``with obj:`` for the objects that own something to close (clients, store).

One mixin instead of the same ``__enter__``/``__exit__`` pair in every class
that has a ``close()``. It imports nothing of tolken, so every layer may use it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["Closeable"]


class Closeable(ABC):
    """Closes itself at the end of a ``with`` block, also when the block raises."""

    @abstractmethod
    def close(self) -> None:
        """Release what this object holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
