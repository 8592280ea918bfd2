"""Admission to the memories of whole request heads: a head is remembered once seen twice.

A memory of heads (the engine's clean heads, the bot detector's verdicts) pays off when a
client repeats a request: a page reloaded, an API polled, a health check. Most heads in real
traffic are seen once, as each carries its own path, query, cookie or forwarded address;
remembering every one of them costs more than it saves: the head's size is summed, the entry
is written, the memory fills and is cleared every few thousand requests, and the stored
tuples keep the collector busy (about 5 µs per request, `benchmarks/inprocess.py --varied`).
The doorkeeper keeps only the hashes of heads seen once, and admits a head to its memory when
it comes again. Hashes that collide admit a head early: harmless, as the memory itself
compares whole keys.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["Doorkeeper"]


class Doorkeeper:
    """The hashes of keys seen once, at most `size` of them (forgotten wholesale when full)."""

    __slots__ = ("_seen", "_size")

    def __init__(self, size: int) -> None:
        self._seen: set[int] = set()
        self._size = size

    def admits(self, key: Hashable) -> bool:
        """Whether the key was seen before (then it is admitted); else note it and refuse.
        Raises TypeError for an unhashable key, as the memory would."""
        digest = hash(key)
        seen = self._seen
        if digest in seen:
            seen.discard(digest)  # its memory holds it now
            return True
        if len(seen) >= self._size:
            seen.clear()
        seen.add(digest)
        return False

    def clear(self) -> None:
        self._seen.clear()
