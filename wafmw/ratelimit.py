"""Rate limits: rules, counting windows, bans and their storage.

Three storage paths, chosen by the storage URI:

``memory://``
    Counting in this process with our own lean windows (a dict of small
    per-key states, LRU-bounded by ``max_memory_keys``). Exact.

``redis://``, ``rediss://``, ``redis+unix://``
    One Lua script per rule and request: the ban check, every limit of the
    rule and the new ban are decided atomically on the server, with the
    server's clock, in one round trip. ``redis://`` and ``redis+unix://`` go
    through a small pipelined RESP client of our own (_RespRunner), ``rediss://``
    through redis-py's asyncio client. Two local shortcuts keep most requests
    off the network:

    * a refusal is remembered until the moment Redis said the key frees up
      (exact: nothing another worker does can free a key earlier);
    * for large limits (``amount * batch_fraction >= 2``) a worker admits up
      to ``K = floor(min_amount * batch_fraction)`` units locally between
      round trips (and for at most ``batch_max_age`` seconds), then sends them
      with the next round trip. At most K extra units per key per worker per
      window can be admitted. Smaller limits are exact.

anything else ``limits`` knows (``redis+sentinel://``, ``redis+cluster://``,
``memcached://``, ``mongodb://``, ``valkey://`` …)
    The ``limits`` async strategies, one storage call per limit and request.

See docs/rate-limits.md for the user-facing description.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import limits
from limits import RateLimitItem

from .globs import GlobMatcher, compile_globs

if TYPE_CHECKING:
    from limits.aio.storage import Storage as LimitsStorage
    from limits.aio.strategies import RateLimiter as LimitsStrategy

__all__ = [
    "KEY_PARTS",
    "STRATEGIES",
    "RateLimitResult",
    "RateLimitRule",
    "RateLimiter",
    "RequestLike",
    "StorageUnavailable",
    "parse_rate_limit_rule",
]

logger = logging.getLogger("wafmw")

STRATEGIES: Final = ("fixed-window", "moving-window", "sliding-window-counter")
KEY_PARTS: Final = ("client_ip", "path", "method", "header:", "cookie:", "query:")
_STRATEGY_CODE: Final = {"fixed-window": 1, "moving-window": 2, "sliding-window-counter": 3}
_FIXED, _MOVING, _SLIDING = 1, 2, 3

_MAX_LIMITS_PER_RULE = 8
_MAX_BAN_SECONDS = 30 * 86400
_MAX_COST = 1_000_000
_MAX_KEY_CHARS = 200  # longer storage keys are hashed
_MIN_CONNECT_TIMEOUT = 0.25  # seconds
_LOG_INTERVAL = 30.0  # seconds between two "storage unavailable" log lines

# The one clock of local state; a module attribute so tests can move time.
_monotonic = time.monotonic


class StorageUnavailable(Exception):
    """The rate-limit storage failed or did not answer in time.

    The core turns this into the rate-limit group's ``on_error`` outcome.
    """


class RequestLike(Protocol):
    """What RateLimiter needs from a request (the core's RequestView provides it)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def client_ip(self) -> str | None: ...
    def header(self, name: str) -> str | None: ...  # lowercase name
    def cookie(self, name: str) -> str | None: ...
    def arg(self, name: str) -> str | None: ...  # first query arg value


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    id: int
    msg: str
    limits: tuple[RateLimitItem, ...]
    strategy: Literal["fixed-window", "moving-window", "sliding-window-counter"]
    key: tuple[str, ...] = ("client_ip",)
    paths: tuple[str, ...] = ()  # globs; empty = every path
    methods: frozenset[str] = frozenset()  # upper case; empty = every method
    hosts: tuple[str, ...] = ()  # globs, lower case, without port; empty = every host
    cost: int = 1
    ban_seconds: int = 0
    mode: Literal["enforce", "detect"] | None = None
    on_error: Literal["open", "closed"] | None = None
    paranoia: int = 1
    tags: tuple[str, ...] = ()
    # Compiled forms, filled by parse_rate_limit_rule.
    path_glob: GlobMatcher | None = None
    host_glob: GlobMatcher | None = None
    key_parts: tuple[tuple[str, str], ...] = (("client_ip", ""),)
    policy_names: tuple[str, ...] = ()
    policy_header: bytes = b""
    # Any further condition (e.g. a compiled filter condition from the rule file's
    # engine), checked after path, methods and hosts: set it with
    # dataclasses.replace(rule, condition=...). Its exceptions propagate.
    condition: Callable[[Any], bool] | None = None

    def matches(self, request: RequestLike) -> bool:
        methods = self.methods
        if methods and request.method not in methods and request.method.upper() not in methods:
            return False
        if self.path_glob is not None and self.path_glob.match(request.path) is None:
            return False
        if self.host_glob is not None and self.host_glob.match(_host_only(request.host)) is None:
            return False
        return self.condition is None or self.condition(request)

    def key_of(self, request: RequestLike) -> tuple[str, ...]:
        """The counter key of a request; a missing value counts as ""."""
        parts = self.key_parts
        if len(parts) == 1 and parts[0][0] == "client_ip":
            return (request.client_ip or "",)  # the common case, kept short
        values: list[str] = []
        for kind, name in self.key_parts:
            if kind == "client_ip":
                value = request.client_ip
            elif kind == "path":
                value = request.path
            elif kind == "method":
                value = request.method
            elif kind == "header":
                value = request.header(name)
            elif kind == "cookie":
                value = request.cookie(name)
            else:
                value = request.arg(name)
            values.append(value or "")
        return tuple(values)


def _host_only(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _str_list(value: object, field: str, *, allow_single: bool = True) -> list[str]:
    if isinstance(value, str) and allow_single:
        return [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{field}: must be a non-empty list of strings")
    out: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ValueError(f"{field}[{index}]: must be a non-empty string")
        out.append(item)
    return out


def _int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: must be an integer")
    if not low <= value <= high:
        raise ValueError(f"{field}: must be between {low} and {high}, not {value}")
    return value


_RULE_KEYS = frozenset(
    {
        "id",
        "msg",
        "tags",
        "paranoia",
        "mode",
        "on_error",
        "match",
        "limit",
        "strategy",
        "key",
        "cost",
        "ban_seconds",
    }
)
_MATCH_KEYS = frozenset({"path", "methods", "hosts"})
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def _parse_key(value: object) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    items = _str_list(value, "key")
    if len(items) > 8:
        raise ValueError("key: at most 8 parts")
    parts: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        field = f"key[{index}]"
        if item in ("client_ip", "path", "method"):
            parts.append((item, ""))
            continue
        kind, sep, name = item.partition(":")
        if not sep or kind not in ("header", "cookie", "query") or not name:
            raise ValueError(
                f"{field}: {item!r} is not one of client_ip, path, method, "
                "header:NAME, cookie:NAME, query:NAME"
            )
        if kind == "header":
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{field}: {name!r} is not a valid header name")
            name = name.lower()
        parts.append((kind, name))
    if len(set(parts)) != len(parts):
        raise ValueError("key: a part is listed twice")
    canonical = tuple(kind if not name else f"{kind}:{name}" for kind, name in parts)
    return canonical, tuple(parts)


def parse_rate_limit_rule(spec: Mapping[str, object]) -> RateLimitRule:
    """Compile one entry of the top-level ``rate_limits`` list.

    Raises ValueError("field: message"); the loader adds file, line and rule id.
    """
    if not isinstance(spec, Mapping):
        raise ValueError("rate_limits: each rule must be a mapping")
    for name in spec:
        if name not in _RULE_KEYS:
            raise ValueError(f"{name}: unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})")
    for required in ("id", "msg", "limit"):
        if required not in spec:
            raise ValueError(f"{required}: required")
    rule_id = _int(spec["id"], "id", 1, 999_999_999)
    msg = spec["msg"]
    if not isinstance(msg, str) or not msg.strip():
        raise ValueError("msg: must be a non-empty string")

    raw_limit = spec["limit"]
    if not isinstance(raw_limit, str) or not raw_limit.strip():
        raise ValueError('limit: must be a string such as "100/minute;1000/hour"')
    try:
        items = tuple(limits.parse_many(raw_limit))
    except ValueError as exc:
        raise ValueError(f"limit: {raw_limit!r} is not a rate limit ({exc})") from None
    if not items:
        raise ValueError(f"limit: {raw_limit!r} has no limit in it")
    if len(items) > _MAX_LIMITS_PER_RULE:
        raise ValueError(f"limit: at most {_MAX_LIMITS_PER_RULE} limits per rule")
    for item in items:
        if item.amount < 1:
            raise ValueError(f"limit: {item} allows nothing; use an IP list or a filter to block")
        if item.get_expiry() < 1:
            raise ValueError(f"limit: {item} has a window shorter than one second")
    if len({(i.amount, i.get_expiry()) for i in items}) != len(items):
        raise ValueError("limit: the same limit is listed twice")

    strategy = spec.get("strategy", "moving-window")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: must be one of {', '.join(STRATEGIES)}, not {strategy!r}")

    key, key_parts = _parse_key(spec.get("key", ["client_ip"]))
    cost = _int(spec.get("cost", 1), "cost", 1, _MAX_COST)
    smallest = min(item.amount for item in items)
    if cost > smallest:
        raise ValueError(f"cost: {cost} is more than the limit's amount {smallest}")
    ban_seconds = _int(spec.get("ban_seconds", 0), "ban_seconds", 0, _MAX_BAN_SECONDS)

    mode = spec.get("mode")
    if mode not in (None, "enforce", "detect"):
        raise ValueError(f"mode: must be enforce or detect, not {mode!r}")
    on_error = spec.get("on_error")
    if on_error not in (None, "open", "closed"):
        raise ValueError(f"on_error: must be open or closed, not {on_error!r}")
    paranoia = _int(spec.get("paranoia", 1), "paranoia", 1, 4)
    tags = tuple(_str_list(spec["tags"], "tags", allow_single=False)) if "tags" in spec else ()

    match = spec.get("match", {})
    if not isinstance(match, Mapping):
        raise ValueError("match: must be a mapping with path, methods and/or hosts")
    for name in match:
        if name not in _MATCH_KEYS:
            raise ValueError(f"match.{name}: unknown key (allowed: path, methods, hosts)")
    paths = tuple(_str_list(match["path"], "match.path")) if "path" in match else ()
    for index, glob in enumerate(paths):
        if not glob.startswith(("/", "*")):
            raise ValueError(f"match.path[{index}]: {glob!r} must start with / or *")
    methods = (
        frozenset(m.upper() for m in _str_list(match["methods"], "match.methods"))
        if "methods" in match
        else frozenset()
    )
    hosts = (
        tuple(h.lower() for h in _str_list(match["hosts"], "match.hosts"))
        if "hosts" in match
        else ()
    )

    if len(items) == 1:
        names: tuple[str, ...] = (str(rule_id),)
    else:
        names = tuple(f"{rule_id}-{i.amount}-{i.get_expiry()}s" for i in items)
    policy = ", ".join(
        f'"{name}";q={item.amount};w={item.get_expiry()}'
        for name, item in zip(names, items, strict=True)
    )
    return RateLimitRule(
        id=rule_id,
        msg=msg,
        limits=items,
        strategy=strategy,
        key=key,
        paths=paths,
        methods=methods,
        hosts=hosts,
        cost=cost,
        ban_seconds=ban_seconds,
        mode=mode,
        on_error=on_error,
        paranoia=paranoia,
        tags=tags,
        path_glob=compile_globs(paths, ignore_case=False),
        host_glob=compile_globs(hosts, ignore_case=True),
        key_parts=key_parts,
        policy_names=names,
        policy_header=policy.encode("ascii"),
    )


# ------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    rule: RateLimitRule
    limited: bool
    retry_after: int  # seconds, >= 1 when limited, 0 otherwise
    headers: tuple[tuple[bytes, bytes], ...]
    remaining: int = 0  # quota left in the rule's tightest limit
    banned: bool = False  # refused because of a standing ban, not by the window itself


def _result(
    rule: RateLimitRule,
    limited: bool,
    retry: float,
    remaining: Sequence[int] = (),
    resets: Sequence[float] = (),
    *,
    banned: bool = False,
) -> RateLimitResult:
    """Build a result and its headers; no ``remaining`` means "nothing left" everywhere."""
    retry_after = max(1, math.ceil(retry - 1e-6)) if limited else 0
    if remaining:
        state = ", ".join(
            f'"{name}";r={max(0, r)};t={max(0, math.ceil(t - 1e-6))}'
            for name, r, t in zip(rule.policy_names, remaining, resets, strict=True)
        )
        least = max(0, min(remaining))
    else:
        state = ", ".join(f'"{name}";r=0;t={retry_after}' for name in rule.policy_names)
        least = 0
    headers: tuple[tuple[bytes, bytes], ...] = (
        (b"ratelimit-policy", rule.policy_header),
        (b"ratelimit", state.encode("ascii")),
    )
    if limited:
        headers = ((b"retry-after", str(retry_after).encode("ascii")), *headers)
    return RateLimitResult(
        rule=rule,
        limited=limited,
        retry_after=retry_after,
        headers=headers,
        remaining=least,
        banned=banned,
    )


# ---------------------------------------------------------------------- the windows
#
# The same arithmetic runs in Python (memory) and in Lua (Redis); keep them in step.
# Times are seconds (float) here, milliseconds (integer) in Lua.


class _MemEntry:
    __slots__ = ("ban_until", "windows")

    def __init__(self, windows: list[Any]) -> None:
        self.ban_until = 0.0
        self.windows = windows


# A moving window keeps (last hit time, units) buckets rather than one timestamp per
# unit: hits closer together than 1/_BUCKETS of the window share a bucket stamped
# with the latest of them. A unit may so be counted up to window/_BUCKETS longer
# than its own age says (stricter, never laxer), and a key holds at most
# min(amount, _BUCKETS) buckets per limit whatever the traffic.
_BUCKETS = 100


class _Moving:
    """Buckets oldest first, in two parallel lists (far smaller than a deque of
    pairs: the common key has one or two buckets)."""

    __slots__ = ("stamps", "total", "units")

    def __init__(self) -> None:
        self.stamps: list[float] = []  # the latest hit of each bucket
        self.units: list[int] = []
        self.total = 0


def _new_windows(code: int, count: int) -> list[Any]:
    if code == _MOVING:
        return [_Moving() for _ in range(count)]
    if code == _FIXED:
        return [[0, 0.0] for _ in range(count)]  # [count, window end]
    return [[0, 0, 0] for _ in range(count)]  # [window index, previous count, current count]


def _fixed_state(w: list[Any], now: float, period: float) -> tuple[int, float]:
    if now >= w[1]:
        w[0] = 0
        w[1] = now + period
    return w[0], w[1] - now


def _moving_state(mv: _Moving, now: float, period: float) -> int:
    stamps = mv.stamps
    if stamps and stamps[0] <= now - period:
        horizon = now - period
        gone = 1
        while gone < len(stamps) and stamps[gone] <= horizon:
            gone += 1
        mv.total -= sum(mv.units[:gone])
        del stamps[:gone]
        del mv.units[:gone]
    return mv.total


def _moving_add(mv: _Moving, now: float, period: float, units: int) -> None:
    stamps = mv.stamps
    if stamps and now - stamps[-1] < period / _BUCKETS:
        stamps[-1] = now
        mv.units[-1] += units
    else:
        stamps.append(now)
        mv.units.append(units)
    mv.total += units


def _moving_retry(mv: _Moving, now: float, period: float, cost: int, amount: int) -> float:
    """Seconds until `cost` more units fit."""
    excess = mv.total + cost - amount
    for stamp, units in zip(mv.stamps, mv.units, strict=True):
        excess -= units
        if excess <= 0:
            return stamp + period - now
    return period  # not reached: cost <= amount


def _sliding_state(w: list[Any], now: float, period: float) -> tuple[int, int, float]:
    """(previous, current, elapsed in current window); rolls the window if needed."""
    index = int(now // period)
    if w[0] != index:
        w[1] = w[2] if w[0] == index - 1 else 0
        w[2] = 0
        w[0] = index
    return w[1], w[2], now - index * period


def _sliding_retry(
    prev: int, cur: int, cost: int, amount: int, period: float, elapsed: float
) -> float:
    room = amount - cur - cost
    if room >= 0:
        if prev <= 0:
            return 0.0
        return max(0.0, period - elapsed - room * period / prev)
    # Not before the next window, where the current count becomes the weighted one.
    into_next = max(0.0, period - (amount - cost) * period / cur)
    return period - elapsed + into_next


class _Pick:
    """Which of the rules' results a request gets: the first enforced refusal at once, else
    the first detect-only refusal, else the tightest allowance (for the headers)."""

    __slots__ = ("best", "detected")

    def __init__(self) -> None:
        self.detected: RateLimitResult | None = None
        self.best: RateLimitResult | None = None

    def add(self, result: RateLimitResult | None) -> bool:
        """Take one rule's result; True when it is an enforced refusal, which ends the check."""
        if result is None:
            return False
        if result.limited:
            if result.rule.mode != "detect":
                return True
            if self.detected is None:
                self.detected = result
        elif self.best is None or result.remaining < self.best.remaining:
            self.best = result
        return False

    def result(self) -> RateLimitResult | None:
        return self.detected if self.detected is not None else self.best


class _MemoryBackend:
    def __init__(self, rules: Sequence[RateLimitRule], max_keys: int) -> None:
        self._max_keys = max_keys
        self._codes = [_STRATEGY_CODE[r.strategy] for r in rules]
        self._periods = [tuple(float(i.get_expiry()) for i in r.limits) for r in rules]
        self._amounts = [tuple(i.amount for i in r.limits) for r in rules]
        self._state: OrderedDict[tuple[int, tuple[str, ...]], _MemEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def check(
        self, index: int, rule: RateLimitRule, key: tuple[str, ...], want_stats: bool
    ) -> RateLimitResult | None:
        now = _monotonic()
        state = self._state
        slot = (index, key)
        entry = state.get(slot)
        code = self._codes[index]
        if entry is None:
            if len(state) >= self._max_keys:
                state.popitem(last=False)  # forget the least recently seen key
            entry = state[slot] = _MemEntry(_new_windows(code, len(rule.limits)))
        else:
            state.move_to_end(slot)
            if entry.ban_until > now:
                return _result(rule, True, entry.ban_until - now, banned=True)
        cost = rule.cost
        periods = self._periods[index]
        amounts = self._amounts[index]
        windows = entry.windows
        if len(windows) == 1 and not want_stats:
            # The common case, kept short: one limit, under it, no headers wanted.
            period = periods[0]
            amount = amounts[0]
            w = windows[0]
            if code == _FIXED:
                if now >= w[1]:
                    w[0] = 0
                    w[1] = now + period
                if w[0] + cost <= amount:
                    w[0] += cost
                    return None
            elif code == _MOVING:
                if _moving_state(w, now, period) + cost <= amount:
                    _moving_add(w, now, period, cost)
                    return None
            else:
                prev, cur, elapsed = _sliding_state(w, now, period)
                if prev * (period - elapsed) / period + cur + cost <= amount:
                    w[2] += cost
                    return None
        return self._check_all(entry, rule, now, code, periods, amounts, want_stats)

    def check_moving_one(self, rule: RateLimitRule, key: tuple[str, ...]) -> RateLimitResult | None:
        """check() of rule 0 when it is the only rule, has one moving-window limit, and no
        headers are wanted: the usual set-up, kept to the fewest steps (the first request of
        a key, a ban, an old bucket to drop or a refusal go through check())."""
        now = _monotonic()
        state = self._state
        slot = (0, key)
        entry = state.get(slot)
        if entry is None or entry.ban_until:
            return self.check(0, rule, key, False)
        mv: _Moving = entry.windows[0]
        stamps = mv.stamps
        period = self._periods[0][0]
        cost = rule.cost
        if (stamps and stamps[0] <= now - period) or mv.total + cost > self._amounts[0][0]:
            return self.check(0, rule, key, False)
        state.move_to_end(slot)
        if stamps and now - stamps[-1] < period / _BUCKETS:  # _moving_add's usual case, inlined
            stamps[-1] = now
            mv.units[-1] += cost
            mv.total += cost
        else:
            _moving_add(mv, now, period, cost)
        return None

    def _check_all(
        self,
        entry: _MemEntry,
        rule: RateLimitRule,
        now: float,
        code: int,
        periods: tuple[float, ...],
        amounts: tuple[int, ...],
        want_stats: bool,
    ) -> RateLimitResult | None:
        cost = rule.cost
        windows = entry.windows
        n = len(windows)
        used: list[int] = [0] * n
        resets: list[float] = [0.0] * n
        retry = -1.0
        # Test every limit before counting, so that a refused hit counts nowhere.
        for i in range(n):
            period = periods[i]
            amount = amounts[i]
            if code == _FIXED:
                used[i], resets[i] = _fixed_state(windows[i], now, period)
                if used[i] + cost > amount:
                    retry = max(retry, resets[i])
            elif code == _MOVING:
                used[i] = _moving_state(windows[i], now, period)
                if used[i] + cost > amount:
                    retry = max(retry, _moving_retry(windows[i], now, period, cost, amount))
            else:
                prev, cur, elapsed = _sliding_state(windows[i], now, period)
                weighted = prev * (period - elapsed) / period + cur
                used[i] = math.ceil(weighted)
                resets[i] = period - elapsed
                if weighted + cost > amount:
                    retry = max(retry, _sliding_retry(prev, cur, cost, amount, period, elapsed))
        if retry >= 0.0:
            if rule.ban_seconds:
                entry.ban_until = now + rule.ban_seconds
                retry = max(retry, float(rule.ban_seconds))
            remaining = [a - u for a, u in zip(amounts, used, strict=True)]
            return _result(rule, True, retry, remaining, [retry] * n)
        for i in range(n):
            if code == _FIXED:
                windows[i][0] += cost
            elif code == _MOVING:
                _moving_add(windows[i], now, periods[i], cost)
            else:
                windows[i][2] += cost
        if not want_stats:
            return None
        remaining = [a - u - cost for a, u in zip(amounts, used, strict=True)]
        if code == _MOVING:
            resets = [w.stamps[0] + p - now for w, p in zip(windows, periods, strict=True)]
        return _result(rule, False, 0.0, remaining, resets)


# ------------------------------------------------------------------------- Redis

# KEYS[1] ban key, KEYS[1+i] window key of limit i (every limit of a rule has the
# rule's strategy).
# ARGV: cost, pending (units already admitted locally: added unconditionally),
#       ban_ms, want (1: report remaining/reset even when allowed), strategy code,
#       then per limit: amount, period_ms.
# Returns {status, retry_ms, remaining_1, reset_ms_1, remaining_2, reset_ms_2, ...}
# with status 0 allowed, 1 limited now, 2 refused by a standing ban; an allowed
# request without `want` gets just {0, 0}.
# Every redis.call costs a few µs of server time, so the allowed path is kept to
# the fewest: fixed 1-2 calls, moving 4, sliding 4 (+1 with a ban).
_LUA = """
local cost = tonumber(ARGV[1])
local pending = tonumber(ARGV[2])
local ban_ms = tonumber(ARGV[3])
local want = ARGV[4] == '1'
local kind = tonumber(ARGV[5])
local n = #KEYS - 1
local amounts, periods = {}, {}
for i = 1, n do
  amounts[i] = tonumber(ARGV[4 + 2 * i])
  periods[i] = tonumber(ARGV[5 + 2 * i])
end

if ban_ms > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then return {2, ttl} end
end

local function limited(retry, remaining)
  if ban_ms > 0 then
    redis.call('SET', KEYS[1], '1', 'PX', ban_ms)
    if ban_ms > retry then retry = ban_ms end
  end
  local out = {1, retry}
  for i = 1, n do
    out[1 + 2 * i] = remaining[i]
    out[2 + 2 * i] = retry
  end
  return out
end

if kind == 1 then
  -- fixed window: a counter that expires one period after its first hit
  local values = {}
  local failed = false
  for i = 1, n do
    local k = KEYS[i + 1]
    if pending > 0 then
      if redis.call('INCRBY', k, pending) == pending then redis.call('PEXPIRE', k, periods[i]) end
    end
    local v = redis.call('INCRBY', k, cost)
    if v == cost then redis.call('PEXPIRE', k, periods[i]) end
    values[i] = v
    if v > amounts[i] then failed = true end
  end
  if failed then
    local retry, remaining = 0, {}
    for i = 1, n do
      local k = KEYS[i + 1]
      redis.call('DECRBY', k, cost)
      if values[i] > amounts[i] then
        local ttl = redis.call('PTTL', k)
        if ttl < 0 then ttl = periods[i] end
        if ttl > retry then retry = ttl end
      end
      remaining[i] = amounts[i] - values[i] + cost
    end
    return limited(retry, remaining)
  end
  if not want then return {0, 0} end
  local out = {0, 0}
  for i = 1, n do
    local ttl = redis.call('PTTL', KEYS[i + 1])
    if ttl < 0 then ttl = periods[i] end
    out[1 + 2 * i] = amounts[i] - values[i]
    out[2 + 2 * i] = ttl
  end
  return out
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if kind == 2 then
  -- moving window: a list of hit times in ms, newest first
  local function push(k, x, amount, period)
    local left = math.min(x, amount)
    local size = 0
    while left > 0 do
      local chunk = {}
      for j = 1, math.min(left, 1000) do chunk[j] = now end
      size = redis.call('LPUSH', k, unpack(chunk))
      left = left - #chunk
    end
    -- Older entries beyond `amount` never decide anything; trim them in bulk.
    if size > 2 * amount then redis.call('LTRIM', k, 0, amount - 1) end
    redis.call('PEXPIRE', k, period)
  end
  local function used(k, period)
    local lo, hi = 0, redis.call('LLEN', k)
    local horizon = now - period
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if tonumber(redis.call('LINDEX', k, mid)) > horizon then lo = mid + 1 else hi = mid end
    end
    return lo
  end
  if pending > 0 then
    for i = 1, n do push(KEYS[i + 1], pending, amounts[i], periods[i]) end
  end
  local failed = false
  for i = 1, n do
    local e = redis.call('LINDEX', KEYS[i + 1], amounts[i] - cost)
    if e and tonumber(e) > now - periods[i] then failed = true end
  end
  if failed then
    local retry, remaining = 0, {}
    for i = 1, n do
      local k = KEYS[i + 1]
      remaining[i] = amounts[i] - used(k, periods[i])
      if remaining[i] < cost then
        local r = tonumber(redis.call('LINDEX', k, amounts[i] - cost)) + periods[i] - now
        if r > retry then retry = r end
      end
    end
    return limited(retry, remaining)
  end
  for i = 1, n do push(KEYS[i + 1], cost, amounts[i], periods[i]) end
  if not want then return {0, 0} end
  local out = {0, 0}
  for i = 1, n do
    local k = KEYS[i + 1]
    local u = used(k, periods[i])
    out[1 + 2 * i] = amounts[i] - u
    out[2 + 2 * i] = tonumber(redis.call('LINDEX', k, u - 1)) + periods[i] - now
  end
  return out
end

-- sliding window counter: {w = window index, c = its count, p = the previous count}
local state = {}
local failed = false
for i = 1, n do
  local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
  local index = math.floor(now / period)
  local elapsed = now - index * period
  local h = redis.call('HMGET', k, 'w', 'c', 'p')
  local w = tonumber(h[1])
  local prev, cur = 0, 0
  if w == index then
    prev, cur = tonumber(h[3]) or 0, tonumber(h[2]) or 0
  elseif w == index - 1 then
    prev = tonumber(h[2]) or 0
  end
  cur = cur + pending
  local weighted = prev * (period - elapsed) / period + cur
  if weighted + cost > amount then failed = true end
  state[i] = {k, index, elapsed, prev, cur, weighted}
end
local function save(i, cur)
  local s = state[i]
  redis.call('HSET', s[1], 'w', s[2], 'c', cur, 'p', s[4])
  redis.call('PEXPIRE', s[1], 2 * periods[i])
end
if failed then
  local retry, remaining = 0, {}
  for i = 1, n do
    local s = state[i]
    local amount, period = amounts[i], periods[i]
    local elapsed, prev, cur, weighted = s[3], s[4], s[5], s[6]
    if pending > 0 then save(i, cur) end
    remaining[i] = amount - math.ceil(weighted)
    if weighted + cost > amount then
      local room = amount - cur - cost
      local r
      if room >= 0 then
        r = math.max(0, period - elapsed - room * period / prev)
      else
        r = period - elapsed + math.max(0, period - (amount - cost) * period / cur)
      end
      r = math.ceil(r)
      if r > retry then retry = r end
    end
  end
  return limited(retry, remaining)
end
local out = {0, 0}
for i = 1, n do
  local s = state[i]
  save(i, s[5] + cost)
  out[1 + 2 * i] = amounts[i] - math.ceil(s[6]) - cost
  out[2 + 2 * i] = periods[i] - s[3]
end
if not want then return {0, 0} end
return out
"""


_Queued = tuple[list[str], tuple[int, ...], "asyncio.Future[list[Any]]"]


class _LocalEntry:
    """What one worker remembers about one Redis-backed key."""

    __slots__ = (
        "inflight",
        "pending",
        "refusal",
        "refused_banned",
        "refused_until",
        "remaining",
        "resets_at",
        "synced_at",
    )

    def __init__(self) -> None:
        self.refused_until = 0.0  # monotonic; refuse locally until then
        self.refused_banned = False
        self.refusal: RateLimitResult | None = None
        self.synced_at = -math.inf  # monotonic time of the last answer from Redis
        self.remaining = 0  # smallest remaining across the rule's limits at that answer
        self.pending = 0  # units admitted locally, not yet sent
        self.inflight = False
        self.resets_at: tuple[float, ...] = ()


def _storage_key(prefix: str, rule: RateLimitRule, key: tuple[str, ...]) -> str:
    text = "|".join(v.replace("%", "%25").replace("|", "%7C") for v in key)
    if len(text) > _MAX_KEY_CHARS or any(c in text for c in "{}"):
        text = (
            "h:"
            + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        )
    # The braces keep every key of one counter in one Redis Cluster slot.
    return f"{prefix}:{rule.id}:{{{text}}}"


def open_limits_storage(uri: str, timeout: float, field: str) -> Any:
    """An async `limits` storage for a URI, its calls bounded by `timeout` where the backend
    allows; ValueError("field: ...") when the URI is unusable."""
    from limits.storage import storage_from_string

    async_uri = uri if uri.startswith("async+") else f"async+{uri}"
    options: dict[str, float | str | bool] = {"wrap_exceptions": True}
    if urlsplit(async_uri).scheme.startswith("async+redis"):
        options["implementation"] = "redispy"  # coredis is not a dependency
        options["socket_timeout"] = timeout
        options["socket_connect_timeout"] = timeout
    try:
        return storage_from_string(async_uri, **options)
    except Exception as exc:
        raise ValueError(f"{field}: {redact_uri(uri)}: {exc}") from exc


def redact_uri(uri: str) -> str:
    """A storage URI fit for a log line: any user name and password replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


class _Health:
    """Circuit breaker and once-per-interval logging for one storage."""

    __slots__ = (
        "down_until",
        "failing",
        "last_log",
        "last_recovery_log",
        "retry_interval",
        "suppressed",
        "where",
    )

    def __init__(self, where: str, retry_interval: float) -> None:
        self.where = where
        self.retry_interval = retry_interval
        self.down_until = 0.0
        self.failing = False
        self.last_log = -math.inf
        self.last_recovery_log = -math.inf
        self.suppressed = 0

    def gate(self, now: float) -> None:
        if now < self.down_until:
            raise StorageUnavailable(f"rate-limit storage {self.where} unavailable (backing off)")

    def failed(self, exc: BaseException) -> StorageUnavailable:
        now = _monotonic()
        self.down_until = now + self.retry_interval
        self.failing = True
        if now - self.last_log >= _LOG_INTERVAL:
            logger.warning(
                "rate-limit storage %s unavailable: %s: %s (%d similar failures since the last "
                "message; retrying every %.2fs)",
                self.where,
                type(exc).__name__,
                exc,
                self.suppressed,
                self.retry_interval,
            )
            self.last_log = now
            self.suppressed = 0
        else:
            self.suppressed += 1
        return StorageUnavailable(f"rate-limit storage {self.where} unavailable: {exc}")

    def recovered(self) -> None:
        self.failing = False
        now = _monotonic()
        # A flapping storage must not log twice a second either.
        if now - self.last_recovery_log >= _LOG_INTERVAL:
            logger.warning("rate-limit storage %s is available again", self.where)
            self.last_recovery_log = now


class _RespError(Exception):
    """An error reply from Redis."""


def _pack(*args: str | int | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode("utf-8", "surrogatepass")
        parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


def _parse_resp(buf: bytearray, pos: int) -> tuple[Any, int] | None:
    """One RESP2 value from buf[pos:]: (value, end) or None when incomplete.

    Error replies become _RespError values (so that an array can carry them);
    malformed input raises ValueError.
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == 58:  # ':'
        return int(line), pos
    if kind == 42:  # '*'
        count = int(line)
        if count < 0:
            return None, pos
        items: list[Any] = []
        for _ in range(count):
            parsed = _parse_resp(buf, pos)
            if parsed is None:
                return None
            value, pos = parsed
            items.append(value)
        return items, pos
    if kind == 36:  # '$'
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            return None
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == 43:  # '+'
        return line, pos
    if kind == 45:  # '-'
        return _RespError(line.decode("utf-8", "replace")), pos
    raise ValueError(f"unexpected reply type {chr(kind)!r}")


class _RespProtocol(asyncio.Protocol):
    """Replies come back in the order the commands went out: a FIFO of futures."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.waiters:
            try:
                parsed = _parse_resp(self.buffer, 0)
            except (ValueError, IndexError) as exc:
                self.abort(ConnectionError(f"malformed reply from Redis: {exc}"))
                return
            if parsed is None:
                return
            value, end = parsed
            del self.buffer[:end]
            waiter = self.waiters.popleft()
            if not waiter.done():  # a cancelled request still has its reply consumed
                waiter.set_result(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _fail(self, exc: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    def abort(self, exc: Exception) -> None:
        self.closed = True
        self._fail(exc)
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[Any], proto: _RespProtocol, polls: int = 2) -> None:
    if waiter.done():
        return
    if polls:
        # A busy event loop (or a descheduled process) can see the timer come due
        # while the reply already waits in the socket buffer: let the loop poll I/O
        # once more before calling it a timeout.
        asyncio.get_running_loop().call_soon(_expire, waiter, proto, polls - 1)
        return
    waiter.set_exception(TimeoutError("Redis did not answer in time"))
    # The reply stream is out of step with the waiters now: start afresh.
    proto.abort(ConnectionError("connection to Redis dropped after a timeout"))


class _RespRunner:
    """A lean asyncio client for the one thing we need: EVALSHA on one connection.

    Commands from concurrent requests are written as they come and their replies
    matched in order (pipelining without batching delays). redis-py's asyncio
    client costs two to three times as much per call, which is most of a
    request's budget; TLS (rediss://) still goes through redis-py.
    """

    def __init__(self, uri: str, timeout: float) -> None:
        parts = urlsplit(uri)
        query = dict(pair.partition("=")[::2] for pair in parts.query.split("&") if pair)
        self._unix_path: str | None = None
        if parts.scheme in ("unix", "redis+unix"):
            self._unix_path = parts.path
            db_text = query.get("db", "0")
        else:
            db_text = parts.path.lstrip("/") or query.get("db", "0")
        try:
            self._db = int(db_text)
        except ValueError:
            raise ValueError(f"rate_limit_storage: database {db_text!r} is not a number") from None
        self._host = parts.hostname or "127.0.0.1"
        try:
            self._port = parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"rate_limit_storage: {exc}") from None
        self._username = unquote(parts.username) if parts.username else None
        password = parts.password if parts.password is not None else query.get("password")
        self._password = unquote(password) if password else None
        self._timeout = timeout
        # Connecting takes a few round trips and happens once per connection; a
        # floor keeps a loaded event loop from failing it. Later calls are
        # bounded by `timeout`.
        self._connect_timeout = max(timeout, _MIN_CONNECT_TIMEOUT)
        self._proto: _RespProtocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[_RespProtocol] | None = None
        self._sha = hashlib.sha1(_LUA.encode()).hexdigest()
        self.errors: tuple[type[BaseException], ...] = (
            _RespError,
            OSError,  # ConnectionError is one
            TimeoutError,
            asyncio.TimeoutError,
        )

    async def _open(self) -> _RespProtocol:
        loop = asyncio.get_running_loop()
        if self._unix_path is not None:
            _, proto = await loop.create_unix_connection(_RespProtocol, self._unix_path)
        else:
            _, proto = await loop.create_connection(_RespProtocol, self._host, self._port)
        try:
            if self._password is not None:
                auth: tuple[str, ...] = (self._password,)
                if self._username is not None:
                    auth = (self._username, self._password)
                await self._reply(proto, _pack("AUTH", *auth))
            if self._db:
                await self._reply(proto, _pack("SELECT", self._db))
        except BaseException:
            proto.abort(ConnectionError("setting up the Redis connection failed"))
            raise
        return proto

    async def _connection(self) -> _RespProtocol:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Used from another event loop than before (a test client, a restarted
            # server): the old connection belongs to the old loop; leave it alone.
            self._loop = loop
            self._proto = None
            self._connecting = None
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        connecting = self._connecting
        if connecting is None:
            # A task of its own: a request cancelled while waiting must not cancel
            # the connection every other request is waiting for.
            connecting = loop.create_task(asyncio.wait_for(self._open(), self._connect_timeout))
            connecting.add_done_callback(self._connected)
            self._connecting = connecting
        return await asyncio.shield(connecting)

    def _connected(self, task: asyncio.Task[_RespProtocol]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled() and task.exception() is None:
            if task.get_loop() is self._loop:
                self._proto = task.result()
            else:
                task.result().abort(ConnectionError("opened on a loop no longer in use"))

    async def _reply(self, proto: _RespProtocol, payload: bytes) -> Any:
        transport = proto.transport
        if transport is None or proto.closed:
            raise ConnectionError("connection to Redis is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        proto.waiters.append(waiter)
        transport.write(payload)
        timer = loop.call_later(self._timeout, _expire, waiter, proto)
        try:
            reply = await waiter
        finally:
            timer.cancel()
        if isinstance(reply, _RespError):
            raise reply
        return reply

    async def run(self, keys: list[str], args: tuple[int, ...]) -> list[Any]:
        proto = await self._connection()
        payload = _pack("EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            reply: list[Any] = await self._reply(proto, payload)
        except _RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await self._reply(proto, _pack("SCRIPT", "LOAD", _LUA))
            reply = await self._reply(proto, payload)
        return reply

    async def close(self) -> None:
        if asyncio.get_running_loop() is not self._loop:
            self._proto = self._connecting = None  # another loop's; nothing to do from here
            return
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


def _no_client_setinfo() -> dict[str, Any]:
    """Client options that skip CLIENT SETINFO (two round trips per new connection)."""
    try:
        import redis.driver_info  # noqa: F401  # redis-py >= 7 spells it driver_info
    except ImportError:
        return {"lib_name": None, "lib_version": None}
    return {"driver_info": None}


class _RedisPyRunner:
    """redis-py's asyncio client, for what _RespRunner does not speak (TLS)."""

    def __init__(self, uri: str, timeout: float) -> None:
        try:
            import redis.asyncio as redis_asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import NoScriptError, RedisError
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ValueError(
                "rate_limit_storage: rediss:// needs the redis client: pip install 'wafmw[redis]'"
            ) from exc
        self._no_script: type[Exception] = NoScriptError
        self.errors: tuple[type[BaseException], ...] = (
            RedisError,
            OSError,
            TimeoutError,
            asyncio.TimeoutError,
        )

        def make_client() -> Any:
            return redis_asyncio.Redis.from_url(
                uri,
                socket_timeout=timeout,
                socket_connect_timeout=max(timeout, _MIN_CONNECT_TIMEOUT),
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
                **_no_client_setinfo(),
            )

        self._make_client = make_client
        self._client: Any = make_client()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sha = hashlib.sha1(_LUA.encode()).hexdigest()
        self._busy = False
        self._queue: list[_Queued] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, keys: list[str], args: tuple[int, ...]) -> list[Any]:
        """Run the script; calls made while another is on the wire queue up and
        go out together as one pipeline, so one connection carries everything and a
        burst of requests costs one round trip per queue, not one connection each."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # redis-py's connections belong to the loop that opened them.
            if self._loop is not None:
                self._client = self._make_client()
                self._busy, self._queue, self._drainer = False, [], None
            self._loop = loop
        if self._busy:
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._queue.append((keys, args, future))
            return await future
        self._busy = True
        try:
            return await self._eval_one(keys, args)
        finally:
            if self._queue:
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
            else:
                self._busy = False

    async def _eval_one(self, keys: list[str], args: tuple[int, ...]) -> list[Any]:
        client = self._client
        try:
            reply: list[Any] = await client.evalsha(self._sha, len(keys), *keys, *args)
        except self._no_script:
            await client.script_load(_LUA)
            reply = await client.evalsha(self._sha, len(keys), *keys, *args)
        return reply

    async def _eval_many(self, batch: list[_Queued]) -> list[Any]:
        for attempt in (1, 2):
            async with self._client.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    pipe.evalsha(self._sha, len(keys), *keys, *args)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, self._no_script) for r in replies):
                await self._client.script_load(_LUA)
                continue
            break
        return replies

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    replies = await self._eval_many(batch)
                except Exception as exc:
                    # Everything still queued would meet the same storage: fail it now.
                    batch += self._queue
                    self._queue = []
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    break
                for (_, _, future), reply in zip(batch, replies, strict=True):
                    if future.done():
                        continue  # its request was cancelled
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            for _, _, future in self._queue:
                if not future.done():
                    future.set_exception(StorageUnavailable("rate-limit storage closed"))
            self._queue = []
            self._busy = False

    async def close(self) -> None:
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            return  # the client's connections belong to another loop
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(BaseException):
                await self._drainer
        await self._client.aclose()


class _RedisBackend:
    def __init__(
        self,
        rules: Sequence[RateLimitRule],
        uri: str,
        *,
        timeout: float,
        max_keys: int,
        key_prefix: str,
        batch_fraction: float,
        batch_max_age: float,
        retry_interval: float,
    ) -> None:
        self._runner: _RespRunner | _RedisPyRunner
        if urlsplit(uri).scheme == "rediss":
            self._runner = _RedisPyRunner(uri, timeout)
        else:
            self._runner = _RespRunner(uri, timeout)
        self._errors = self._runner.errors
        self._prefix = key_prefix
        self._max_keys = max_keys
        self._batch_max_age = batch_max_age
        self._health = _Health(redact_uri(uri), retry_interval)
        self._local: OrderedDict[tuple[int, tuple[str, ...]], _LocalEntry] = OrderedDict()
        self._suffixes: list[tuple[str, ...]] = []
        self._args_want: list[tuple[int, ...]] = []
        self._args_plain: list[tuple[int, ...]] = []
        self._batch: list[int] = []
        for rule in rules:
            code = _STRATEGY_CODE[rule.strategy]
            self._suffixes.append(
                (":ban", *(f":{code}:{i.amount}:{i.get_expiry()}" for i in rule.limits))
            )
            k = math.floor(min(i.amount for i in rule.limits) * batch_fraction)
            self._batch.append(k if k >= 2 else 0)
            tail: list[int] = [code]
            for item in rule.limits:
                tail += [item.amount, item.get_expiry() * 1000]
            # Batching needs the remaining count back from every round trip.
            self._args_want.append((rule.ban_seconds * 1000, 1, *tail))
            self._args_plain.append((rule.ban_seconds * 1000, 1 if k >= 2 else 0, *tail))

    def __len__(self) -> int:
        return len(self._local)

    def _entry(self, slot: tuple[int, tuple[str, ...]]) -> _LocalEntry:
        local = self._local
        entry = local.get(slot)
        if entry is None:
            if len(local) >= self._max_keys:
                local.popitem(last=False)
            entry = local[slot] = _LocalEntry()
        else:
            local.move_to_end(slot)
        return entry

    async def check(
        self, index: int, rule: RateLimitRule, key: tuple[str, ...], want_stats: bool
    ) -> RateLimitResult | None:
        now = _monotonic()
        slot = (index, key)
        entry = self._entry(slot)
        if entry.refused_until > now:
            # A flood from one key lands here: reuse the answer while it reads the same.
            cached = entry.refusal
            if cached is not None and cached.retry_after == max(
                1, math.ceil(entry.refused_until - now - 1e-6)
            ):
                return cached
            cached = _result(rule, True, entry.refused_until - now, banned=entry.refused_banned)
            entry.refusal = cached
            return cached
        batch = self._batch[index]
        cost = rule.cost
        if (
            batch
            and not entry.inflight
            and entry.pending + cost <= batch
            and entry.pending + cost <= entry.remaining
            and now - entry.synced_at < self._batch_max_age
        ):
            entry.pending += cost
            if not want_stats:
                return None
            remaining = [entry.remaining - entry.pending] * len(rule.limits)
            return _result(rule, False, 0.0, remaining, [t - now for t in entry.resets_at])
        self._health.gate(now)
        pending = entry.pending
        entry.pending = 0
        entry.inflight = True
        base = _storage_key(self._prefix, rule, key)
        keys = [base + suffix for suffix in self._suffixes[index]]
        try:
            tail = self._args_want[index] if want_stats else self._args_plain[index]
            reply = await self._runner.run(keys, (cost, pending, *tail))
        except self._errors as exc:
            raise self._health.failed(exc) from exc
        finally:
            entry.inflight = False
        if self._health.failing:
            self._health.recovered()
        now = _monotonic()
        status = int(reply[0])
        entry.synced_at = now
        if status != 0:
            retry = int(reply[1]) / 1000
            entry.remaining = 0
            entry.refused_until = now + retry
            entry.refused_banned = status == 2
            entry.refusal = None
            if status == 2:
                return _result(rule, True, retry, banned=True)
        if len(reply) == 2:
            return None  # allowed, and nothing more was asked for
        n = len(rule.limits)
        remaining = [int(reply[2 + 2 * i]) for i in range(n)]
        resets = [int(reply[3 + 2 * i]) / 1000 for i in range(n)]
        entry.resets_at = tuple(now + t for t in resets)
        if status != 0:
            return _result(rule, True, int(reply[1]) / 1000, remaining, resets)
        entry.remaining = min(remaining)
        return _result(rule, False, 0.0, remaining, resets) if want_stats else None

    async def close(self) -> None:
        await self._runner.close()


# ------------------------------------------------------------ other limits storages


class _LimitsBackend:
    """Any storage ``limits`` supports; one or more round trips per limit."""

    def __init__(
        self,
        rules: Sequence[RateLimitRule],
        uri: str,
        *,
        timeout: float,
        key_prefix: str,
        retry_interval: float,
    ) -> None:
        from limits.aio import strategies

        self._storage: LimitsStorage = open_limits_storage(uri, timeout, "rate_limit_storage")
        by_name: dict[str, type[LimitsStrategy]] = {
            "fixed-window": strategies.FixedWindowRateLimiter,
            "moving-window": strategies.MovingWindowRateLimiter,
            "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
        }
        self._strategies: dict[str, LimitsStrategy] = {}
        for rule in rules:
            if rule.strategy not in self._strategies:
                try:
                    self._strategies[rule.strategy] = by_name[rule.strategy](self._storage)
                except NotImplementedError as exc:
                    raise ValueError(
                        f"rate_limit_storage: {redact_uri(uri)} does not support {rule.strategy}"
                    ) from exc
        self._timeout = timeout
        self._prefix = key_prefix
        self._health = _Health(redact_uri(uri), retry_interval)

    def __len__(self) -> int:
        return 0

    async def check(
        self, index: int, rule: RateLimitRule, key: tuple[str, ...], want_stats: bool
    ) -> RateLimitResult | None:
        self._health.gate(_monotonic())
        try:
            result = await asyncio.wait_for(self._check(rule, key, want_stats), self._timeout)
        except (Exception, asyncio.TimeoutError) as exc:
            raise self._health.failed(exc) from exc
        if self._health.failing:
            self._health.recovered()
        return result

    async def _check(
        self, rule: RateLimitRule, key: tuple[str, ...], want_stats: bool
    ) -> RateLimitResult | None:
        storage = self._storage
        strategy = self._strategies[rule.strategy]
        base = _storage_key(self._prefix, rule, key)
        ban_key = f"{base}:ban"
        if rule.ban_seconds and await storage.get(ban_key) > 0:
            left = await storage.get_expiry(ban_key) - time.time()
            return _result(rule, True, max(left, 1.0), banned=True)
        limited = False
        for item in rule.limits:
            if not await strategy.test(item, base, cost=rule.cost):
                limited = True
                break
        if not limited:
            for item in rule.limits:
                # test-then-hit is not atomic here; another worker can slip in between.
                if not await strategy.hit(item, base, cost=rule.cost):
                    limited = True
                    break
        if not limited and not want_stats:
            return None
        now = time.time()
        remaining: list[int] = []
        resets: list[float] = []
        for item in rule.limits:
            stats = await strategy.get_window_stats(item, base)
            remaining.append(stats.remaining)
            resets.append(max(0.0, stats.reset_time - now))
        if not limited:
            return _result(rule, False, 0.0, remaining, resets)
        retry = max(
            (t for r, t in zip(remaining, resets, strict=True) if r < rule.cost), default=1.0
        )
        if rule.ban_seconds:
            await storage.incr(ban_key, rule.ban_seconds, 1)
            retry = max(retry, float(rule.ban_seconds))
        return _result(rule, True, retry, remaining, resets)

    async def close(self) -> None:
        return None


# ----------------------------------------------------------------------- limiter


class RateLimiter:
    """Applies rate_limits rules to requests; one per ruleset, shared by all requests.

    ``check`` evaluates the matching rules in order. A rule in detect mode that is
    over its limit does not stop evaluation; the first enforcing rule over its
    limit does (later rules are not counted). Returns that limited result, else
    the first limited detect-mode result, else None — or, with
    ``success_headers=True``, a non-limited result carrying the RateLimit headers
    of the matching rule with the least quota left.

    Storage failures and timeouts raise StorageUnavailable (the caller applies the
    rate-limit group's on_error). Options:

    - ``timeout``: bound on one storage call, seconds (opening a connection may
      take max(timeout, 0.25 s));
    - ``max_memory_keys``: cap of the in-process LRU table (windows in memory;
      remembered refusals and pre-counts with Redis);
    - ``key_prefix``: first part of every storage key;
    - ``batch_fraction`` / ``batch_max_age``: Redis pre-counting, K =
      floor(smallest amount x batch_fraction) units per key and worker, only
      when K >= 2, for at most batch_max_age seconds between round trips;
      0 turns it off;
    - ``retry_interval``: after a storage failure, how long to answer
      StorageUnavailable at once before trying the storage again.
    """

    def __init__(
        self,
        rules: Sequence[RateLimitRule],
        storage_uri: str = "memory://",
        *,
        timeout: float = 0.05,
        max_memory_keys: int = 100_000,
        key_prefix: str = "wafmw",
        success_headers: bool = False,
        batch_fraction: float = 0.01,
        batch_max_age: float = 0.05,
        retry_interval: float = 1.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout: must be > 0")
        if max_memory_keys < 1:
            raise ValueError("max_memory_keys: must be >= 1")
        if not 0.0 <= batch_fraction <= 0.5:
            raise ValueError("batch_fraction: must be between 0 and 0.5")
        self.rules: tuple[RateLimitRule, ...] = tuple(rules)
        self._success_headers = success_headers
        scheme = urlsplit(storage_uri).scheme.lower()
        self.storage_uri = storage_uri
        self._backend: _MemoryBackend | _RedisBackend | _LimitsBackend | None
        if not self.rules:
            self._backend = None
        elif scheme in ("memory", "async+memory"):
            self._backend = _MemoryBackend(self.rules, max_memory_keys)
        elif scheme in ("redis", "rediss", "redis+unix", "unix"):
            uri = storage_uri.replace("redis+unix://", "unix://", 1)
            self._backend = _RedisBackend(
                self.rules,
                uri,
                timeout=timeout,
                max_keys=max_memory_keys,
                key_prefix=key_prefix,
                batch_fraction=batch_fraction,
                batch_max_age=batch_max_age,
                retry_interval=retry_interval,
            )
        elif scheme:
            self._backend = _LimitsBackend(
                self.rules,
                storage_uri,
                timeout=timeout,
                key_prefix=key_prefix,
                retry_interval=retry_interval,
            )
        else:
            raise ValueError(f"rate_limit_storage: {storage_uri!r} is not a storage URI")
        backend = self._backend
        self._memory = backend if isinstance(backend, _MemoryBackend) else None
        self._remote = backend if isinstance(backend, (_RedisBackend, _LimitsBackend)) else None
        # One rule over every request, counted per client address: the usual set-up, for which
        # check_local neither asks the rule whether it matches nor builds its key by parts.
        only = self.rules[0] if len(self.rules) == 1 else None
        self._per_client_only = only is not None and (
            not only.methods
            and only.path_glob is None
            and only.host_glob is None
            and only.condition is None
            and only.key_parts == (("client_ip", ""),)
        )
        # ... with one moving-window limit, in memory, no headers wanted: check_moving_one.
        self._moving_per_client = (
            self._per_client_only
            and self._memory is not None
            and not success_headers
            and only is not None
            and only.strategy == "moving-window"
            and len(only.limits) == 1
        )

    @property
    def local_keys(self) -> int:
        """How many keys this process holds state for (bounded by max_memory_keys)."""
        return len(self._backend) if self._backend is not None else 0

    @property
    def local(self) -> bool:
        """Whether checks need no I/O (memory storage): then check_local answers them."""
        return self._remote is None

    async def check(self, request: RequestLike) -> RateLimitResult | None:
        remote = self._remote
        if remote is None:
            return self.check_local(request)
        want = self._success_headers
        picked = _Pick()
        for index, rule in enumerate(self.rules):
            if rule.matches(request):
                result = await remote.check(index, rule, rule.key_of(request), want)
                if picked.add(result):
                    return result
        return picked.result()

    def check_local(self, request: RequestLike) -> RateLimitResult | None:
        """check() for memory storage (or no limits), without a coroutine."""
        memory = self._memory
        if memory is None:
            return None
        rules = self.rules
        if self._moving_per_client:
            return memory.check_moving_one(rules[0], (request.client_ip or "",))
        want = self._success_headers
        if self._per_client_only:
            return memory.check(0, rules[0], (request.client_ip or "",), want)
        if len(rules) == 1:  # one rule: its result is the request's (what _Pick would pick)
            rule = rules[0]
            return (
                memory.check(0, rule, rule.key_of(request), want) if rule.matches(request) else None
            )
        picked = _Pick()
        for index, rule in enumerate(rules):
            if rule.matches(request):
                result = memory.check(index, rule, rule.key_of(request), want)
                if picked.add(result):
                    return result
        return picked.result()

    async def close(self) -> None:
        if isinstance(self._backend, (_RedisBackend, _LimitsBackend)):
            await self._backend.close()
