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

``memory://`` uses a small in-process store of our own instead of limits' MemoryStorage: per
client one record holding the counts of its latest bucket and of the one before (the only two
a reading looks at), so a request costs one dict lookup and a few additions instead of a
dozen counter keys. Its size is counted in the keys the shared layout would use (one per client
and bucket, plus one per distinct-path slot), at most ``max_memory_keys``; the clients seen
first are dropped first. Any other URI goes
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
_SLOT_MEMO_SIZE: Final = 4096  # path -> distinct-path slot; cleared when full
_SIGNAL_IDS: Final = frozenset((913140, 913141, 913142, 913143))

# Clocks as module attributes so tests can move time.
_wall = time.time
_monotonic = time.monotonic


class _Counters(Protocol):
    async def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...
    async def get(self, key: str) -> int: ...
    async def clear(self, key: str) -> None: ...


class _Window:
    """One client's counts in one bucket (memory storage); the fields are the shared layout's
    ``r``, ``e``, ``t`` and ``d``, and ``slots`` its distinct-path markers."""

    __slots__ = ("d", "e", "r", "slots", "t")

    def __init__(self) -> None:
        self.r = 0
        self.e = 0
        self.t = 0
        self.d = 0
        self.slots: set[int] = set()

    @property
    def keys(self) -> int:
        return 1 + len(self.slots)


class _Client:
    """One client's windows in the memory store: ``current`` counts bucket ``bucket``,
    ``previous`` (if any) bucket ``bucket - 1``. Older buckets are never read again.

    ``quiet``: even counted in full (the sliding window weighs the previous bucket by at most
    1), these counts trip no behaviour signal, so a reading can answer () without the clock or
    any arithmetic. Most clients stay quiet. ``quiet_until``: the most requests ``current`` may
    count and stay quiet while the other counts stay as they are (-1: not quiet at all).
    `BehaviourTracker.observe_local` keeps both true.

    ``signals``, read at ``signals_at``: the last reading of a client that is not quiet, given
    again for up to ``sync_s`` while only its request count moves (see
    `BehaviourTracker._noisy_signals`); any other count moving sets ``signals_at`` to -inf."""

    __slots__ = ("bucket", "current", "previous", "quiet", "quiet_until", "signals", "signals_at")

    def __init__(self, bucket: int) -> None:
        self.bucket = bucket
        self.current = _Window()
        self.previous: _Window | None = None
        self.quiet = True
        self.quiet_until = 0
        self.signals: tuple[Signal, ...] = ()
        self.signals_at = -math.inf


class _MemoryClients:
    """Per-client windows in this process, bounded by ``max_keys`` (see the module docs)."""

    def __init__(self, max_keys: int) -> None:
        self.clients: OrderedDict[str, _Client] = OrderedDict()
        self.max_keys = max_keys
        self.keys = 0

    def window_for_write(self, client: str, bucket: int) -> tuple[_Client, _Window]:
        record = self.clients.get(client)
        if record is None:
            record = self.clients[client] = _Client(bucket)
            self.keys += 1
            return record, record.current
        if bucket == record.bucket:
            return record, record.current
        if bucket == record.bucket - 1:  # the wall clock stepped back a little
            if record.previous is None:
                record.previous = _Window()
                self.keys += 1
            return record, record.previous
        # A later bucket (or a clock that jumped back by more than one): a fresh window; the
        # latest one is kept as `previous` only when it is the bucket just before.
        if record.previous is not None:
            self.keys -= record.previous.keys
        if bucket == record.bucket + 1:
            record.previous = record.current
        else:
            self.keys -= record.current.keys
            record.previous = None
        record.bucket = bucket
        record.current = _Window()
        self.keys += 1
        return record, record.current

    def trim(self) -> None:
        """Drop the clients seen first until the store is within its bound."""
        clients = self.clients
        while self.keys > self.max_keys and clients:
            _, record = clients.popitem(last=False)
            self.keys -= record.current.keys
            if record.previous is not None:
                self.keys -= record.previous.keys

    def pop(self, client: str) -> None:
        record = self.clients.pop(client, None)
        if record is not None:
            self.keys -= record.current.keys
            if record.previous is not None:
                self.keys -= record.previous.keys


_EMPTY: Final = _Window()  # a bucket nobody counted in; never written to
# How far below the threshold a bucket's 4xx share must be for _share_below: a reading
# divides weighted floats, which may round a share equal to a bucket's up by an ulp or so.
_SHARE_MARGIN: Final = 1e-9


def _share_below(window: _Window, threshold: float) -> bool:
    """Whether the window's 4xx share is clearly below the threshold (no 4xx: always)."""
    if not window.e:
        return threshold > 0
    return window.r > 0 and window.e / window.r < threshold - _SHARE_MARGIN


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
        self._memory: _MemoryClients | None = None
        self._storage: _Counters | None = None  # None with memory storage
        if scheme in ("memory", "async+memory"):
            self._memory = _MemoryClients(max_memory_keys)
        else:
            self._storage = _open_storage(storage_uri, self._timeout)
        # Counting in this process (``memory://``): `observe_local` and `local_signals` do the
        # work without I/O, and the storage can never be unavailable. An attribute, not a
        # property: it is read on every request.
        self.local = self._memory is not None
        self._window = config.window_s
        self._slot_memo: dict[str, int] = {}
        self._where = redact_uri(storage_uri)
        self._prefix = key_prefix
        self._weights = weights
        self._enabled = frozenset(_SIGNAL_IDS - disabled)
        self._window_text = f"in the last {config.window_s}s"
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

    def _memo_slot(self, path: str) -> int:
        """`_slot`, memoised: hashing costs more than the rest of an observation, and the same
        paths recur all day."""
        memo = self._slot_memo
        slot = memo.get(path)
        if slot is None:
            slot = self._slot(path)
            if len(memo) >= _SLOT_MEMO_SIZE:
                memo.clear()
            memo[path] = slot
        return slot

    # -- writing --------------------------------------------------------------------------------

    def observe_local(self, client: str, path: str, status: int, trap: bool) -> None:
        """`observe` for memory storage: no I/O, nothing to time out, nothing to fail."""
        memory = self._memory
        assert memory is not None  # callers check `local`
        bucket = int(_wall() // self._window)
        record = memory.clients.get(client)
        if record is not None and record.bucket == bucket:  # the usual case
            window = record.current
            changed = False
        else:
            record, window = memory.window_for_write(client, bucket)
            changed = True
        window.r += 1
        slot = self._slot_memo.get(path)
        if slot is None:
            slot = self._memo_slot(path)
        slots = window.slots
        if slot not in slots:  # the shared layout's marker key going from 0 to 1
            slots.add(slot)
            window.d += 1
            memory.keys += 1
            changed = True
        if 400 <= status < 500:
            window.e += 1
            changed = True
        if trap:
            window.t += 1
            changed = True
        if changed:  # more than `current.r` moved
            record.quiet_until = self._quiet_until(record)
            record.signals_at = -math.inf
            if memory.keys > memory.max_keys:
                memory.trim()
        record.quiet = record.current.r <= record.quiet_until

    def _quiet_until(self, record: _Client) -> int:
        """`_Client.quiet_until`: upper bounds of what `_judge` can be given from these counts
        at any time (the previous bucket counted in full), against the same thresholds.

        The 4xx share a reading sees weighs the two buckets' counts, so it lies between the
        share of the one and of the other; more requests in the current bucket only lower it.
        While each bucket's own share is below the threshold (as for a browser with the odd
        404), no reading reaches it: only a new 4xx answer, which recomputes this, can. Else
        the client is quiet only while too few requests for the signal are counted."""
        cfg = self.config
        current, previous = record.current, record.previous or _EMPTY
        if current.t + previous.t or current.d + previous.d > cfg.max_distinct_paths:
            return -1
        limit = cfg.max_requests - previous.r  # total requests <= max_requests
        share = cfg.max_4xx_share
        if not (_share_below(current, share) and _share_below(previous, share)):
            limit = min(limit, cfg.min_requests - 1 - previous.r)  # total < min_requests
        return limit

    async def observe(self, client: str, path: str, status: int, trap: bool) -> None:
        if self._memory is not None:
            self.observe_local(client, path, status, trap)
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

    def _add(self, batch: _Pending, path: str, status: int, trap: bool) -> None:
        batch.r += 1
        if 400 <= status < 500:
            batch.e += 1
        if trap:
            batch.t += 1
        if len(batch.slots) < _PATH_BUCKETS:
            batch.slots.add(self._memo_slot(path))

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
        assert storage is not None  # memory storage never writes
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
        if self._memory is not None:
            return self.local_signals(client)
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
        found = self._judge(counts["r"], counts["e"], counts["d"], counts["t_any"])
        if self._sync_s > 0:
            self._read_cache[client] = (now + self._sync_s, found)
            self._read_cache.move_to_end(client)
            if len(self._read_cache) > _CACHE_SIZE:
                self._read_cache.popitem(last=False)
        return found

    def local_signals(self, client: str) -> tuple[Signal, ...]:
        """`signals` for memory storage: the same sliding-window arithmetic as `_weigh`, on the
        client's record."""
        memory = self._memory
        assert memory is not None  # callers check `local`
        record = memory.clients.get(client)
        if record is None or record.quiet:
            return ()
        return self._noisy_signals(record)

    def arrive_local(self, client: str, path: str, trap: bool) -> tuple[Signal, ...]:
        """`local_signals`, then count the request (memory storage): what `observe_local`
        counts once it is answered, but for a 4xx, which `note_client_error_local` adds then.
        The signals do not include this request, as when it is counted once answered."""
        memory = self._memory
        assert memory is not None  # callers check `local`
        record = memory.clients.get(client)
        if record is None:
            self.observe_local(client, path, 0, trap)
            return ()
        found = () if record.quiet else self._noisy_signals(record)
        # observe_local's usual case, inlined, as this runs on every request: the same bucket,
        # a path the bucket has counted, not a trap. Only the request count moves.
        window = record.current
        if not trap and record.bucket == int(_wall() // self._window):
            slot = self._slot_memo.get(path)
            if slot is not None and slot in window.slots:
                window.r += 1
                record.quiet = window.r <= record.quiet_until
                return found
        self.observe_local(client, path, 0, trap)  # 0: no answer yet, so no 4xx to count
        return found

    def note_client_error_local(self, client: str) -> None:
        """Count a 4xx answer to a request of `client` that `arrive_local` counted, into the
        bucket of now (an answer a bucket boundary after its request counts in the next)."""
        memory = self._memory
        assert memory is not None  # callers check `local`
        record, window = memory.window_for_write(client, int(_wall() // self._window))
        window.e += 1
        record.quiet_until = self._quiet_until(record)
        record.signals_at = -math.inf
        record.quiet = record.current.r <= record.quiet_until
        if memory.keys > memory.max_keys:
            memory.trim()

    def _noisy_signals(self, record: _Client) -> tuple[Signal, ...]:
        """`_record_signals` of a client that is not quiet, given again (the same tuple) for
        up to ``sync_s`` while only its request count moves: the lag a process may have on
        shared storage, here too. A client tripping the request-rate signal at thousands of
        requests a second would otherwise have new signals, details and a verdict built for
        every request (their counts move by one), about 5 µs each. A new 4xx answer, trap
        path, distinct path or bucket reads afresh at once; ``sync_s: 0`` reads every time."""
        now = _wall()
        if 0.0 <= now - record.signals_at < self._sync_s:
            return record.signals
        found = self._record_signals(record, now)
        record.signals = found
        record.signals_at = now
        return found

    def _record_signals(self, record: _Client, now: float | None = None) -> tuple[Signal, ...]:
        if now is None:
            now = _wall()
        size = self._window
        bucket = int(now // size)
        if bucket == record.bucket:  # the windows of `bucket` and `bucket - 1`
            current, previous = record.current, record.previous or _EMPTY
        elif bucket == record.bucket + 1:
            current, previous = _EMPTY, record.current
        elif bucket == record.bucket - 1:
            current, previous = record.previous or _EMPTY, _EMPTY
        else:
            return ()  # nothing counted in either bucket
        carry = 1.0 - (now % size) / size  # share of the previous bucket still in the window
        return self._judge(
            current.r + previous.r * carry,
            current.e + previous.e * carry,
            current.d + previous.d * carry,
            current.t + previous.t,
        )

    async def _read(self, client: str) -> dict[str, float]:
        storage = self._storage
        assert storage is not None  # memory storage reads through local_signals
        bucket, elapsed = self._bucket()
        gets = [storage.get(self._key(k, client, b)) for k in _KINDS for b in (bucket, bucket - 1)]
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

    def _judge(
        self, requests: float, errors: float, paths: float, traps: float
    ) -> tuple[Signal, ...]:
        """The behaviour signals of a client's weighted counts: requests, 4xx answers and
        distinct paths in the sliding window, trap-path requests in both buckets."""
        cfg = self.config
        # Most clients trip nothing: answer without building a single string.
        if (
            requests <= cfg.max_requests
            and requests < cfg.min_requests
            and paths <= cfg.max_distinct_paths
            and traps < 1
        ):
            return ()
        out: list[Signal] = []
        enabled = self._enabled
        weights = self._weights
        window = self._window_text
        if requests > cfg.max_requests and 913140 in enabled:
            detail = f"{requests:.0f} requests {window} (> {cfg.max_requests})"
            out.append(Signal(913140, "behaviour-request-rate", weights[913140], detail))
        if requests >= cfg.min_requests and 913141 in enabled:
            share = min(1.0, errors / requests)
            if share >= cfg.max_4xx_share:
                detail = (
                    f"{share:.0%} of {requests:.0f} answers {window} were 4xx "
                    f"(>= {cfg.max_4xx_share:.0%})"
                )
                out.append(Signal(913141, "behaviour-4xx-share", weights[913141], detail))
        if paths > cfg.max_distinct_paths and 913142 in enabled:
            detail = f"about {paths:.0f} distinct paths {window} (> {cfg.max_distinct_paths})"
            out.append(Signal(913142, "behaviour-distinct-paths", weights[913142], detail))
        if traps >= 1 and 913143 in enabled:
            detail = f"{traps:.0f} trap-path requests {window}"
            out.append(Signal(913143, "behaviour-trap-paths", weights[913143], detail))
        return tuple(out)

    @property
    def local_keys(self) -> int:
        """Keys held in this process (the memory store, counted as the shared layout would
        hold them), bounded by max_memory_keys."""
        return self._memory.keys if self._memory is not None else 0

    async def clear(self, client: str) -> None:
        """Forget a client's current counters (tests, an operator's unblock)."""
        if self._memory is not None:
            self._memory.pop(client)
            return
        storage = self._storage
        assert storage is not None
        bucket, _ = self._bucket()
        for b in (bucket, bucket - 1):
            for kind in _KINDS:
                await storage.clear(self._key(kind, client, b))
        self._read_cache.pop(client, None)

    async def close(self) -> None:
        await self.flush()
