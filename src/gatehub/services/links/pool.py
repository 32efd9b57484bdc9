"""The pool of device-link ports.

Ports are handed out least recently used first: the lowest ports at the start, and a port a
closed link gave back goes to the end of the line, so that a client still holding an old link's
port does not land on a new link at once. A port some other program holds is skipped (the bind
fails) and tried again later. ``0-0`` means: no pool, the system picks any free port (tests).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


class PortPool:
    def __init__(self, low: int, high: int) -> None:
        self.any_port = low == 0 and high == 0
        self._free: deque[int] = deque(() if self.any_port else range(low, high + 1))
        self.used: set[int] = set()
        self.size = 0 if self.any_port else high - low + 1

    def candidates(self) -> Iterator[int]:
        """Free ports in the order they should be tried (a snapshot; ``take`` the one that bound)."""
        if self.any_port:
            yield 0
            return
        yield from list(self._free)

    def take(self, port: int) -> None:
        self.used.add(port)
        if not self.any_port:
            try:
                self._free.remove(port)
            except ValueError:
                pass

    def release(self, port: int) -> None:
        if port in self.used:
            self.used.discard(port)
            if not self.any_port:
                self._free.append(port)

    @property
    def free(self) -> int:
        return len(self._free)
