"""Rate-limit rules and the in-memory windows (Redis: test_ratelimit_redis.py)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from wafmw import ratelimit
from wafmw.ratelimit import (
    RateLimiter,
    RateLimitResult,
    RateLimitRule,
    parse_rate_limit_rule,
)

pytestmark = pytest.mark.anyio


@dataclass
class Req:
    method: str = "POST"
    path: str = "/login"
    host: str = "example.com"
    client_ip: str | None = "192.0.2.1"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str) -> str | None:
        return self.cookies.get(name)

    def arg(self, name: str) -> str | None:
        return self.args.get(name)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_020.0  # a multiple of 60 plus 20 s into a minute window

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(ratelimit, "_monotonic", fake)
    yield fake


def rule(**spec: Any) -> RateLimitRule:
    base: dict[str, Any] = {"id": 300010, "msg": "login", "limit": "5/minute"}
    base.update(spec)
    return parse_rate_limit_rule(base)


async def run(limiter: RateLimiter, n: int, req: Req | None = None) -> list[RateLimitResult | None]:
    return [await limiter.check(req or Req()) for _ in range(n)]


def allowed(results: list[RateLimitResult | None]) -> int:
    return sum(1 for r in results if r is None or not r.limited)


def headers(result: RateLimitResult | None) -> dict[str, str]:
    assert result is not None
    return {k.decode(): v.decode() for k, v in result.headers}


# -------------------------------------------------------------------------- parsing


def test_parse_full_rule() -> None:
    r = rule(
        match={"path": ["/login", "/api/*"], "methods": ["post"], "hosts": ["*.example.com"]},
        limit="100/minute;1000/hour",
        strategy="sliding-window-counter",
        key=["client_ip", "header:X-Api-Key", "cookie:sid", "query:user", "path", "method"],
        cost=2,
        ban_seconds=600,
        mode="detect",
        on_error="closed",
        paranoia=2,
        tags=["rate-limit"],
    )
    assert [(i.amount, i.get_expiry()) for i in r.limits] == [(100, 60), (1000, 3600)]
    assert r.strategy == "sliding-window-counter"
    assert r.key == ("client_ip", "header:x-api-key", "cookie:sid", "query:user", "path", "method")
    assert r.methods == frozenset({"POST"})
    assert r.cost == 2 and r.ban_seconds == 600 and r.mode == "detect"
    assert r.policy_header == b'"300010-100-60s";q=100;w=60, "300010-1000-3600s";q=1000;w=3600'


def test_parse_defaults() -> None:
    r = rule()
    assert r.strategy == "moving-window"
    assert r.key == ("client_ip",)
    assert r.cost == 1 and r.ban_seconds == 0 and r.mode is None
    assert r.policy_header == b'"300010";q=5;w=60'


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"limit": "lots"}, "limit: 'lots' is not a rate limit"),
        ({"limit": 5}, "limit: must be a string"),
        ({"limit": "0/minute"}, "limit: 0 per 1 minute allows nothing"),
        ({"limit": "5/minute;5/minute"}, "limit: the same limit is listed twice"),
        ({"strategy": "token-bucket"}, "strategy: must be one of"),
        ({"key": ["ip"]}, "key[0]: 'ip' is not one of"),
        ({"key": ["header:"]}, "key[0]: 'header:' is not one of"),
        ({"key": ["header:bad name"]}, "key[0]: 'bad name' is not a valid header name"),
        ({"key": ["path", "path"]}, "key: a part is listed twice"),
        ({"key": []}, "key: must be a non-empty list"),
        ({"cost": 0}, "cost: must be between 1"),
        ({"cost": 6}, "cost: 6 is more than the limit's amount 5"),
        ({"cost": True}, "cost: must be an integer"),
        ({"ban_seconds": -1}, "ban_seconds: must be between 0"),
        ({"mode": "off"}, "mode: must be enforce or detect"),
        ({"on_error": "maybe"}, "on_error: must be open or closed"),
        ({"match": {"paths": "/x"}}, "match.paths: unknown key"),
        ({"match": {"path": "login"}}, "match.path[0]: 'login' must start with /"),
        ({"match": {"methods": []}}, "match.methods: must be a non-empty list"),
        ({"limits": "5/minute"}, "limits: unknown key"),
        ({"id": 0}, "id: must be between 1"),
        ({"msg": ""}, "msg: must be a non-empty string"),
    ],
)
def test_parse_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        rule(**spec)
    assert message in str(info.value)


def test_missing_required_fields() -> None:
    with pytest.raises(ValueError, match="limit: required"):
        parse_rate_limit_rule({"id": 1, "msg": "x"})


# -------------------------------------------------------------------------- matching


def test_match_path_globs_methods_and_hosts() -> None:
    r = rule(match={"path": ["/login", "/api/*"], "methods": ["POST"], "hosts": ["*.example.com"]})
    assert r.matches(Req(host="www.example.com"))
    assert r.matches(Req(path="/api/v1/users", host="API.EXAMPLE.COM:8443"))
    assert not r.matches(Req(path="/login/x", host="www.example.com"))
    assert not r.matches(Req(method="GET", host="www.example.com"))
    assert not r.matches(Req(host="example.org"))
    assert rule().matches(Req(method="GET", path="/anything", host=""))


def test_extra_condition() -> None:
    r = dataclasses.replace(rule(), condition=lambda req: req.header("x-bot") == "1")
    assert r.matches(Req(headers={"x-bot": "1"}))
    assert not r.matches(Req())


def test_match_host_with_ipv6_literal() -> None:
    r = rule(match={"hosts": ["[::1]"]})
    assert r.matches(Req(host="[::1]:8000"))


# ------------------------------------------------------------------------------ keys


def test_keys_of_each_kind() -> None:
    req = Req(headers={"x-api-key": "k1"}, cookies={"sid": "s1"}, args={"user": "u1"}, method="PUT")
    assert rule().key_of(req) == ("192.0.2.1",)
    assert rule(key=["header:X-API-Key"]).key_of(req) == ("k1",)
    assert rule(key=["cookie:sid"]).key_of(req) == ("s1",)
    assert rule(key=["query:user"]).key_of(req) == ("u1",)
    assert rule(key=["path", "method"]).key_of(req) == ("/login", "PUT")
    assert rule(key=["client_ip", "header:x-missing"]).key_of(req) == ("192.0.2.1", "")
    assert rule().key_of(Req(client_ip=None)) == ("",)


async def test_clients_are_counted_apart(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="2/minute")])
    assert allowed(await run(limiter, 5, Req(client_ip="192.0.2.1"))) == 2
    assert allowed(await run(limiter, 5, Req(client_ip="192.0.2.2"))) == 2
    assert allowed(await run(limiter, 5, Req(client_ip="2001:db8::1"))) == 2


async def test_combined_key(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="1/minute", key=["client_ip", "header:x-api-key"])])
    a = Req(headers={"x-api-key": "a"})
    b = Req(headers={"x-api-key": "b"})
    assert allowed(await run(limiter, 3, a)) == 1
    assert allowed(await run(limiter, 3, b)) == 1
    assert allowed(await run(limiter, 3, Req())) == 1  # no key header: its own bucket


async def test_non_matching_requests_are_not_counted(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="1/minute", match={"path": "/login", "methods": ["POST"]})])
    assert await limiter.check(Req(method="GET")) is None
    assert await limiter.check(Req(path="/other")) is None
    assert allowed(await run(limiter, 2)) == 1


@pytest.mark.parametrize(
    ("spec", "other"),
    [
        ({"match": {"path": "/login"}}, Req(path="/other")),
        ({"match": {"methods": ["POST"]}}, Req(method="GET")),
        ({"match": {"hosts": ["example.com"]}}, Req(host="other.example")),
        ({"key": ["header:x-api-key"]}, Req(headers={"x-api-key": "b"})),
        ({"key": ["path"]}, Req(path="/other")),
    ],
)
async def test_one_rule_reads_each_of_its_conditions_and_keys(
    clock: Clock, spec: dict[str, Any], other: Req
) -> None:
    """A lone rule is checked by the short path only when it counts every request by client
    address; each condition or key of its own keeps it on the full one."""
    limiter = RateLimiter([rule(limit="1/minute", **spec)])
    assert allowed(await run(limiter, 3)) == 1
    assert allowed(await run(limiter, 3, other)) == (3 if "match" in spec else 1)
    plain = RateLimiter([rule(limit="1/minute")])  # the same client: one bucket for both
    assert allowed(await run(plain, 3)) == 1
    assert allowed(await run(plain, 3, other)) == 0
    condition = dataclasses.replace(rule(limit="1/minute"), condition=lambda req: False)
    assert allowed(await run(RateLimiter([condition]), 3)) == 3


async def test_no_rules() -> None:
    limiter = RateLimiter([])
    assert await limiter.check(Req()) is None
    await limiter.close()


# ---------------------------------------------------------------------------- windows


async def test_fixed_window(clock: Clock) -> None:
    limiter = RateLimiter([rule(strategy="fixed-window")])
    assert allowed(await run(limiter, 5)) == 5
    clock.now += 30
    result = await limiter.check(Req())
    assert result is not None and result.limited
    assert result.retry_after == 30  # the window started at the first hit
    clock.now += 29.9
    assert (await limiter.check(Req())) is not None
    clock.now += 0.1
    assert allowed(await run(limiter, 6)) == 5


async def test_moving_window(clock: Clock) -> None:
    limiter = RateLimiter([rule(strategy="moving-window")])
    assert allowed(await run(limiter, 3)) == 3  # t = 0
    clock.now += 30
    assert allowed(await run(limiter, 2)) == 2  # t = 30
    clock.now += 1
    result = await limiter.check(Req())  # t = 31
    assert result is not None and result.limited
    assert result.retry_after == 29  # the three hits of t = 0 leave at t = 60
    clock.now += 29  # t = 60: the first three have left, the two of t = 30 remain
    assert allowed(await run(limiter, 5)) == 3
    clock.now += 30  # t = 90: the two of t = 30 leave
    assert allowed(await run(limiter, 5)) == 2


async def test_moving_window_retry_for_a_cost_above_one(clock: Clock) -> None:
    limiter = RateLimiter([rule(strategy="moving-window", cost=2)])
    assert allowed(await run(limiter, 1)) == 1  # 2 units at t = 0
    clock.now += 10
    assert allowed(await run(limiter, 1)) == 1  # 2 units at t = 10 (4 of 5)
    clock.now += 10
    result = await limiter.check(Req())  # needs 2, 1 left: wait for t = 0 to leave
    assert result is not None and result.limited and result.retry_after == 40


async def test_sliding_window_counter(clock: Clock) -> None:
    clock.now = 1_000_040.0  # 20 s into a 60 s window (windows are aligned to the clock)
    limiter = RateLimiter([rule(strategy="sliding-window-counter")])
    assert allowed(await run(limiter, 5)) == 5
    result = await limiter.check(Req())
    assert result is not None and result.limited
    # Next window starts in 40 s; there 5 * (60 - e) / 60 + 1 <= 5 needs e >= 12.
    assert result.retry_after == 52
    clock.now += 40 + 30  # half way through the next window: weighted count 2.5
    assert allowed(await run(limiter, 5)) == 2
    clock.now += 120  # two windows on: nothing left of the old counts
    assert allowed(await run(limiter, 6)) == 5


async def test_several_limits_in_one_rule(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="2/second;3/minute", strategy="fixed-window")])
    assert allowed(await run(limiter, 3)) == 2
    clock.now += 1
    results = await run(limiter, 2)
    assert allowed(results) == 1
    limited = results[1]
    assert limited is not None and limited.limited
    assert limited.retry_after == 59  # the minute window, not the second


async def test_refused_hits_are_not_counted(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="2/second;3/minute", strategy="moving-window")])
    assert allowed(await run(limiter, 10)) == 2  # 8 refused by the per-second limit
    clock.now += 1
    assert allowed(await run(limiter, 10)) == 1  # the minute limit saw only 2 hits


async def test_cost(clock: Clock) -> None:
    limiter = RateLimiter([rule(cost=2, strategy="fixed-window")])
    assert allowed(await run(limiter, 4)) == 2


# ---------------------------------------------------------------------------- headers


async def test_headers_when_limited(clock: Clock) -> None:
    limiter = RateLimiter([rule(strategy="fixed-window")])
    await run(limiter, 5)
    clock.now += 23
    h = headers(await limiter.check(Req()))
    assert h == {
        "retry-after": "37",
        "ratelimit-policy": '"300010";q=5;w=60',
        "ratelimit": '"300010";r=0;t=37',
    }


async def test_success_headers(clock: Clock) -> None:
    limiter = RateLimiter([rule(strategy="fixed-window")], success_headers=True)
    first = await limiter.check(Req())
    assert first is not None and not first.limited and first.retry_after == 0
    assert headers(first) == {
        "ratelimit-policy": '"300010";q=5;w=60',
        "ratelimit": '"300010";r=4;t=60',
    }
    clock.now += 10
    assert headers(await limiter.check(Req()))["ratelimit"] == '"300010";r=3;t=50'


async def test_success_headers_pick_the_tightest_rule(clock: Clock) -> None:
    loose = rule(id=1, limit="100/minute")
    tight = rule(id=2, limit="3/minute")
    limiter = RateLimiter([loose, tight], success_headers=True)
    result = await limiter.check(Req())
    assert result is not None and result.rule.id == 2 and result.remaining == 2


async def test_headers_of_several_limits(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="2/second;3/minute", strategy="fixed-window")])
    await run(limiter, 2)
    h = headers(await limiter.check(Req()))
    assert h["retry-after"] == "1"
    assert h["ratelimit-policy"] == '"300010-2-1s";q=2;w=1, "300010-3-60s";q=3;w=60'
    assert h["ratelimit"] == '"300010-2-1s";r=0;t=1, "300010-3-60s";r=1;t=1'


# ------------------------------------------------------------------------------- bans


async def test_ban(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="2/second", ban_seconds=100, strategy="fixed-window")])
    results = await run(limiter, 3)
    assert allowed(results) == 2
    first_refusal = results[2]
    assert first_refusal is not None and first_refusal.retry_after == 100
    assert not first_refusal.banned  # this one went over the limit; the ban starts now
    clock.now += 5  # the window has long reset, the ban has not
    banned = await limiter.check(Req())
    assert banned is not None and banned.limited and banned.banned
    assert banned.retry_after == 95
    assert headers(banned)["ratelimit"] == '"300010";r=0;t=95'
    assert allowed(await run(limiter, 1, Req(client_ip="192.0.2.99"))) == 1  # others unaffected
    clock.now += 95
    assert allowed(await run(limiter, 3)) == 2


# ------------------------------------------------------------------- several rules, modes


async def test_detect_mode_does_not_stop_enforcing_rules(clock: Clock) -> None:
    detect = rule(id=1, limit="1/minute", mode="detect")
    enforce = rule(id=2, limit="2/minute")
    limiter = RateLimiter([detect, enforce])
    assert await limiter.check(Req()) is None
    second = await limiter.check(Req())
    assert second is not None and second.limited and second.rule.id == 1  # detect only
    third = await limiter.check(Req())
    assert third is not None and third.limited and third.rule.id == 2  # enforced


async def test_first_enforced_refusal_stops_counting(clock: Clock) -> None:
    first = rule(id=1, limit="1/minute")
    second = rule(id=2, limit="2/minute")
    limiter = RateLimiter([first, second])
    await run(limiter, 5)  # rule 2 saw only the first request
    limiter_rules_two_only = await limiter.check(Req(client_ip="192.0.2.50"))
    assert limiter_rules_two_only is None
    clock.now += 61
    results = await run(limiter, 3)
    assert [r.rule.id if r else None for r in results] == [None, 1, 1]


# ---------------------------------------------------------------------------- memory


async def test_memory_is_bounded(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="1/minute")], max_memory_keys=100)
    for i in range(5000):
        await limiter.check(Req(client_ip=f"10.0.{i // 256}.{i % 256}"))
    assert limiter.local_keys == 100
    # The oldest keys were forgotten: their count starts again (more lenient, never stricter).
    assert await limiter.check(Req(client_ip="10.0.0.0")) is None
    # A recently seen key is still limited.
    assert (await limiter.check(Req(client_ip="10.0.19.135"))) is not None


async def test_a_busy_key_survives_a_flood_of_new_keys(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="1/minute", ban_seconds=600)], max_memory_keys=50)
    await run(limiter, 2)  # banned
    for i in range(1000):
        await limiter.check(Req(client_ip=f"10.1.{i // 256}.{i % 256}"))
        if i % 10 == 0:
            # The banned client keeps knocking, which keeps its entry fresh.
            result = await limiter.check(Req())
            assert result is not None and result.banned


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not a storage URI"):
        RateLimiter([rule()], "nonsense")
    with pytest.raises(ValueError, match="timeout"):
        RateLimiter([rule()], timeout=0)
    with pytest.raises(ValueError, match="max_memory_keys"):
        RateLimiter([rule()], max_memory_keys=0)


# ----------------------------------------------------------------- the RESP parser


def test_resp_parser() -> None:
    parse = ratelimit._parse_resp
    assert parse(bytearray(b":42\r\n"), 0) == (42, 5)
    assert parse(bytearray(b"*3\r\n:0\r\n:-1\r\n:7\r\n"), 0) == ([0, -1, 7], 17)
    assert parse(bytearray(b"+OK\r\n"), 0) == (b"OK", 5)
    assert parse(bytearray(b"$3\r\nabc\r\n"), 0) == (b"abc", 9)
    assert parse(bytearray(b"$-1\r\n"), 0) == (None, 5)
    assert parse(bytearray(b"*-1\r\n"), 0) == (None, 5)
    error, _ = parse(bytearray(b"-NOSCRIPT No matching script\r\n"), 0) or (None, 0)
    assert isinstance(error, ratelimit._RespError) and str(error).startswith("NOSCRIPT")
    # Incomplete input waits for more bytes.
    for partial in (b"", b":4", b"*2\r\n:1\r\n", b"$3\r\nab", b"*2\r\n:1\r\n:"):
        assert parse(bytearray(partial), 0) is None
    with pytest.raises(ValueError):
        parse(bytearray(b"?what\r\n"), 0)


def test_resp_pack() -> None:
    assert ratelimit._pack("EVALSHA", "ab", 1, b"k") == (
        b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n"
    )
    assert ratelimit._pack("é") == b"*1\r\n$2\r\n\xc3\xa9\r\n"


def test_glob_is_literal_except_star_and_question_mark() -> None:
    r = rule(match={"path": ["/a[1]/*", "/v?/x"]})
    assert r.matches(Req(path="/a[1]/b/c"))
    assert not r.matches(Req(path="/a1/b"))
    assert r.matches(Req(path="/v2/x"))
    assert not r.matches(Req(path="/v22/x"))


async def test_moving_window_buckets_are_bounded(clock: Clock) -> None:
    limiter = RateLimiter([rule(limit="1000/minute", strategy="moving-window")])
    for _ in range(900):  # one hit every 0.05 s for 45 s: 900 hits, all allowed
        assert await limiter.check(Req()) is None
        clock.now += 0.05
    backend = limiter._backend
    assert isinstance(backend, ratelimit._MemoryBackend)
    (entry,) = backend._state.values()
    window = entry.windows[0]
    assert window.total == 900
    assert len(window.stamps) <= 100  # hits 0.05 s apart share 0.6 s buckets
    clock.now += 15.0  # the first hits leave; the buckets were stamped late, never early
    assert window.total == 900 and await limiter.check(Req()) is None


@pytest.mark.parametrize(
    "spec",
    [
        {"limit": "7/10 seconds", "strategy": "moving-window"},
        {"limit": "5/minute", "strategy": "moving-window", "cost": 2},
        {"limit": "4/5 seconds", "strategy": "moving-window", "ban_seconds": 3},
    ],
)
def test_the_short_moving_window_check_is_the_general_one(
    clock: Clock, spec: dict[str, Any]
) -> None:
    """One per-client moving-window rule takes check_moving_one; on random clients and clock
    steps (buckets shared, buckets leaving, refusals, bans) it answers what check() answers
    and leaves the same counts behind."""
    short, general = RateLimiter([rule(**spec)]), RateLimiter([rule(**spec)])
    assert short._moving_per_client
    general._moving_per_client = False  # the general path, as for any other set-up
    rng = random.Random(3)
    refused = 0
    for _ in range(3000):
        req = Req(client_ip=rng.choice(["192.0.2.1", "192.0.2.2", "2001:db8::7"]))
        got, want = short.check_local(req), general.check_local(req)
        assert (got and dataclasses.astuple(got)) == (want and dataclasses.astuple(want))
        refused += bool(got and got.limited)
        clock.now += rng.choice([0.0, 0.001, 0.05, 0.3, 1.0, 4.0])
    assert refused > 100  # the refusals were compared, not only the admissions
    for backend in (short._backend, general._backend):
        assert isinstance(backend, ratelimit._MemoryBackend)
    assert {
        k: (e.ban_until, [(w.stamps, w.units, w.total) for w in e.windows])
        for k, e in short._backend._state.items()  # type: ignore[union-attr]
    } == {
        k: (e.ban_until, [(w.stamps, w.units, w.total) for w in e.windows])
        for k, e in general._backend._state.items()  # type: ignore[union-attr]
    }
