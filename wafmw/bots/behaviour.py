"""Per-client behaviour counters in shared storage (any ``limits`` storage URI).

Counters live in fixed buckets of ``window_s`` seconds (the bucket number is part of the key,
so every worker and host counts into the same one); a reading weights the previous bucket by
how much of it still lies inside the sliding window, like limits' sliding-window-counter.
Per client and bucket:

- ``r``  requests answered,
- ``e``  4xx answers,
- ``t``  requests to trap paths,
- ``d``  distinct paths, counted through one marker key per (path hash mod 4096): the first
  increment of a marker adds one to ``d``. Bounded: at most 4096 markers per client and bucket.

Every storage call is bounded by ``timeout_ms``; a failure opens a circuit for
``retry_interval_s`` (calls return at once) and is logged at most once per 30 seconds.
Reading while storage is down gives None: UNKNOWN, not zero.

``memory://`` uses a small in-process store of our own (a dict with expiry, at most
``max_memory_keys`` keys, oldest dropped first) instead of limits' MemoryStorage: it costs
microseconds instead of hundreds of them, and its memory is bounded. Any other URI goes
through ``limits.aio`` storage, and a process may lag it by up to ``sync_s`` (default 1 s; the
window is minutes long, so a second changes nothing): a client's signals are read from storage
at most once per ``sync_s``, and its counts are added up locally and written in one batch when
they are ``sync_s`` old or 20 requests large (a trap-path hit is written at once). Reads add
this process's unwritten counts. ``sync_s: 0`` writes and reads through on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol
from urllib.parse import urlsplit

from ..ratelimit import open_limits_storage, redact_uri
from .config import BehaviourConfig
from .model import Signal

__all__ = ["BehaviourTracker"]

logger = logging.getLogger("wafmw")

_LOG_INTERVAL: Final = 30.0
_PATH_BUCKETS: Final = 4096
_CACHE_SIZE: Final = 10_000  # clients with cached reads / unwritten counts per process
_BATCH_REQUESTS: Final = 20
_GATHER: Final = 16  # storage calls in flight at once for one client
_MAX_MEMORY_KEYS: Final = 200_000
_KINDS: Final = ("r", "e", "t", "d")

# Clocks as module attributes so tests can move time.
_wall = time.time
_monotonic = time.monotonic


class _Counters(Protocol):
    async def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...
    async def get(self, key: str) -> int: ...
    async def clear(self, key: str) -> None: ...


class _MemoryCounters:
    """Expiring counters in this process, at most ``max_keys`` of them (oldest dropped)."""

    def __init__(self, max_keys: int) -> None:
        self._data: OrderedDict[str, list[float]] = OrderedDict()  # key -> [value, expires]
        self._max_keys = max_keys

    def incr_now(self, key: str, expiry: int, amount: int = 1) -> int:
        now = _monotonic()
        entry = self._data.get(key)
        if entry is None or entry[1] <= now:
            entry = [0.0, now + expiry]
            self._data[key] = entry
            if len(self._data) > self._max_keys:
                self._data.popitem(last=False)
        entry[0] += amount
        return int(entry[0])

    def get_now(self, key: str) -> int:
        entry = self._data.get(key)
        if entry is None or entry[1] <= _monotonic():
            return 0
        return int(entry[0])

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.incr_now(key, expiry, amount)

    async def get(self, key: str) -> int:
        return self.get_now(key)

    async def clear(self, key: str) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


def _open_storage(uri: str, timeout: float) -> _Counters:
    storage: _Counters = open_limits_storage(uri, timeout, "storage")
    return storage


class _Pending:
    """Counts of one client not yet written to shared storage."""

    __slots__ = ("bucket", "e", "r", "since", "slots", "t")

    def __init__(self, bucket: int, since: float) -> None:
        self.bucket = bucket
        self.since = since
        self.r = 0
        self.e = 0
        self.t = 0
        self.slots: set[int] = set()


class BehaviourTracker:
    """Records answers per client and turns them into behaviour signals."""

    def __init__(
        self,
        config: BehaviourConfig,
        storage_uri: str,
        weights: dict[int, int],
        disabled: frozenset[int],
        *,
        key_prefix: str = "wafmw:bot",
        max_memory_keys: int = _MAX_MEMORY_KEYS,
    ) -> None:
        self.config = config
        self._timeout = config.timeout_ms / 1000.0
        scheme = urlsplit(storage_uri).scheme.lower()
        self._memory: _MemoryCounters | None = None
        self._storage: _Counters
        if scheme in ("memory", "async+memory"):
            self._memory = _MemoryCounters(max_memory_keys)
            self._storage = self._memory
        else:
            self._storage = _open_storage(storage_uri, self._timeout)
        self._where = redact_uri(storage_uri)
        self._prefix = key_prefix
        self._weights = weights
        self._disabled = disabled
        self._sync_s = config.sync_s
        self._read_cache: OrderedDict[str, tuple[float, tuple[Signal, ...]]] = OrderedDict()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._next_sweep = 0.0
        self._down_until = 0.0
        self._failing = False
        self._last_log = -math.inf
        self._suppressed = 0

    # -- health ---------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return _monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        now = _monotonic()
        self._down_until = now + self.config.retry_interval_s
        self._failing = True
        if now - self._last_log >= _LOG_INTERVAL:
            logger.warning(
                "bot behaviour storage %s unavailable: %s: %s (%d similar failures since the "
                "last message; behaviour signals are UNKNOWN until it answers)",
                self._where,
                type(exc).__name__,
                exc,
                self._suppressed,
            )
            self._last_log = now
            self._suppressed = 0
        else:
            self._suppressed += 1

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            self._last_log = -math.inf
            logger.warning("bot behaviour storage %s is available again", self._where)

    # -- keys -----------------------------------------------------------------------------------

    def _bucket(self) -> tuple[int, float]:
        """The current bucket number and how far into it we are (0..1)."""
        now = _wall()
        window = self.config.window_s
        return int(now // window), (now % window) / window

    def _key(self, kind: str, client: str, bucket: int) -> str:
        return f"{self._prefix}:{kind}:{client}:{bucket}"

    @staticmethod
    def _slot(path: str) -> int:
        digest = hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        return int.from_bytes(digest, "big") % _PATH_BUCKETS

    # -- writing --------------------------------------------------------------------------------

    async def observe(self, client: str, path: str, status: int, trap: bool) -> None:
        memory = self._memory
        if memory is not None:  # no I/O: nothing to time out, nothing to fail
            bucket, _ = self._bucket()
            expiry = 2 * self.config.window_s + 1
            memory.incr_now(self._key("r", client, bucket), expiry)
            if memory.incr_now(self._key(f"p{self._slot(path)}", client, bucket), expiry) == 1:
                memory.incr_now(self._key("d", client, bucket), expiry)
            if 400 <= status < 500:
                memory.incr_now(self._key("e", client, bucket), expiry)
            if trap:
                memory.incr_now(self._key("t", client, bucket), expiry)
            return
        now = _monotonic()
        if now < self._down_until:
            return
        bucket, _ = self._bucket()
        if self._sync_s <= 0:
            single = _Pending(bucket, now)
            self._add(single, path, status, trap)
            await self._flush(client, single)
            return
        batch: _Pending | None = self._pending.get(client)
        if batch is not None and batch.bucket != bucket:
            del self._pending[client]
            await self._flush(client, batch)
            batch = None
        if batch is None:
            batch = self._pending[client] = _Pending(bucket, now)
        self._add(batch, path, status, trap)
        if trap or batch.r >= _BATCH_REQUESTS or now - batch.since >= self._sync_s:
            del self._pending[client]
            await self._flush(client, batch)
        elif len(self._pending) > _CACHE_SIZE:
            old_client, old_batch = self._pending.popitem(last=False)
            await self._flush(old_client, old_batch)
        if now >= self._next_sweep:
            self._next_sweep = now + self._sync_s
            await self.flush(older_than=self._sync_s)

    @staticmethod
    def _add(batch: _Pending, path: str, status: int, trap: bool) -> None:
        batch.r += 1
        if 400 <= status < 500:
            batch.e += 1
        if trap:
            batch.t += 1
        if len(batch.slots) < _PATH_BUCKETS:
            batch.slots.add(BehaviourTracker._slot(path))

    async def flush(self, older_than: float = 0.0) -> None:
        """Write unwritten counts (those at least ``older_than`` seconds old) to storage."""
        if self._memory is not None:
            return
        now = _monotonic()
        due = [c for c, b in self._pending.items() if now - b.since >= older_than]
        for client in due:
            batch = self._pending.pop(client)
            if now < self._down_until:
                continue  # storage is down: drop, the counts are approximate anyway
            await self._flush(client, batch)

    async def _flush(self, client: str, batch: _Pending) -> None:
        try:
            await asyncio.wait_for(self._write(client, batch), self._timeout)
        except (Exception, asyncio.TimeoutError) as exc:
            self._failed(exc)
            return
        self._recovered()

    async def _write(self, client: str, batch: _Pending) -> None:
        storage = self._storage
        bucket = batch.bucket
        expiry = 2 * self.config.window_s + 1
        calls = [storage.incr(self._key("r", client, bucket), expiry, batch.r)]
        if batch.e:
            calls.append(storage.incr(self._key("e", client, bucket), expiry, batch.e))
        if batch.t:
            calls.append(storage.incr(self._key("t", client, bucket), expiry, batch.t))
        await asyncio.gather(*calls)
        slots = sorted(batch.slots)
        new_paths = 0
        for start in range(0, len(slots), _GATHER):
            markers = [
                storage.incr(self._key(f"p{slot}", client, bucket), expiry)
                for slot in slots[start : start + _GATHER]
            ]
            new_paths += sum(1 for value in await asyncio.gather(*markers) if value == 1)
        if new_paths:
            await storage.incr(self._key("d", client, bucket), expiry, new_paths)

    # -- reading --------------------------------------------------------------------------------

    async def signals(self, client: str) -> tuple[Signal, ...] | None:
        """Behaviour signals of a client; None when storage cannot answer (UNKNOWN)."""
        memory = self._memory
        if memory is not None:
            return self._judge(self._counts(client, memory.get_now))
        now = _monotonic()
        cached = self._read_cache.get(client)
        if cached is not None and cached[0] > now:
            return cached[1]
        if now < self._down_until:
            return None
        try:
            counts = await asyncio.wait_for(self._read(client), self._timeout)
        except (Exception, asyncio.TimeoutError) as exc:
            self._failed(exc)
            return None
        self._recovered()
        batch = self._pending.get(client)
        if batch is not None and batch.bucket == self._bucket()[0]:
            for kind, value in (("r", batch.r), ("e", batch.e), ("t", batch.t)):
                counts[kind] += value  # this process's counts not written yet
                counts[kind + "_any"] += value
        found = self._judge(counts)
        if self._sync_s > 0:
            self._read_cache[client] = (now + self._sync_s, found)
            self._read_cache.move_to_end(client)
            if len(self._read_cache) > _CACHE_SIZE:
                self._read_cache.popitem(last=False)
        return found

    def _counts(self, client: str, get: Callable[[str], int]) -> dict[str, float]:
        bucket, elapsed = self._bucket()
        values = [get(self._key(k, client, b)) for k in _KINDS for b in (bucket, bucket - 1)]
        return self._weigh(values, elapsed)

    async def _read(self, client: str) -> dict[str, float]:
        bucket, elapsed = self._bucket()
        gets = [
            self._storage.get(self._key(k, client, b)) for k in _KINDS for b in (bucket, bucket - 1)
        ]
        return self._weigh(list(await asyncio.gather(*gets)), elapsed)

    @staticmethod
    def _weigh(values: list[int], elapsed: float) -> dict[str, float]:
        carry = 1.0 - elapsed  # share of the previous bucket still inside the window
        out: dict[str, float] = {}
        for index, kind in enumerate(_KINDS):
            current, previous = values[2 * index], values[2 * index + 1]
            out[kind] = current + previous * carry
            out[kind + "_any"] = current + previous
        return out

    def _signal(self, sid: int, name: str, detail: str) -> Signal | None:
        if sid in self._disabled:
            return None
        return Signal(sid, name, self._weights[sid], detail)

    def _judge(self, counts: dict[str, float]) -> tuple[Signal, ...]:
        cfg = self.config
        out: list[Signal | None] = []
        requests = counts["r"]
        window = f"in the last {cfg.window_s}s"
        if requests > cfg.max_requests:
            out.append(
                self._signal(
                    913140,
                    "behaviour-request-rate",
                    f"{requests:.0f} requests {window} (> {cfg.max_requests})",
                )
            )
        if requests >= cfg.min_requests:
            share = min(1.0, counts["e"] / requests)
            if share >= cfg.max_4xx_share:
                out.append(
                    self._signal(
                        913141,
                        "behaviour-4xx-share",
                        f"{share:.0%} of {requests:.0f} answers {window} were 4xx "
                        f"(>= {cfg.max_4xx_share:.0%})",
                    )
                )
        if counts["d"] > cfg.max_distinct_paths:
            out.append(
                self._signal(
                    913142,
                    "behaviour-distinct-paths",
                    f"about {counts['d']:.0f} distinct paths {window} (> {cfg.max_distinct_paths})",
                )
            )
        if counts["t_any"] >= 1:
            out.append(
                self._signal(
                    913143,
                    "behaviour-trap-paths",
                    f"{counts['t_any']:.0f} trap-path requests {window}",
                )
            )
        return tuple(s for s in out if s is not None)

    @property
    def local_keys(self) -> int:
        """Keys held in this process (the memory store), bounded by max_memory_keys."""
        return len(self._memory) if self._memory is not None else 0

    async def clear(self, client: str) -> None:
        """Forget a client's current counters (tests, an operator's unblock)."""
        bucket, _ = self._bucket()
        for b in (bucket, bucket - 1):
            for kind in _KINDS:
                await self._storage.clear(self._key(kind, client, b))
        self._read_cache.pop(client, None)

    async def close(self) -> None:
        await self.flush()
