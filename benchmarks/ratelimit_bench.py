"""Cost per request of one rate limit, in memory and in Redis.

    python benchmarks/ratelimit_bench.py [--redis redis://127.0.0.1:6379] [--rounds 15]

Not part of the test run. For every scenario, in small interleaved blocks (so
that the drift of a shared machine's load hits everything alike), medians of:

* ``check``: RateLimiter.check alone, µs per call;
* ``app``:   a bare Starlette app driven in-process through ASGI behind a minimal
  middleware that builds a request view and calls RateLimiter.check first;
* ``added``: ``app`` minus the same middleware without the limiter, measured in
  the block just before: what the rate limit costs a request;
* ``ratio``: ``app`` over the bare Starlette app (no middleware at all).

Scenarios (the limiter answers "allowed" unless the name says otherwise):

* memory/<strategy>: 1,000,000/minute on one client, never limited;
* redis/large:      1,000,000/minute on one client: local pre-counting
  (K = 10,000 units per round trip, at most 50 ms between round trips);
* redis/exact:      100/minute on a different client each request, so every
  request is decided by Redis (the exact path, one round trip each);
* redis/exact-x50:  the same with 50 requests in flight at once (pipelined);
* redis/flooded:    5/minute on one client, nearly every request refused
  (answered locally until the key frees; the app is not called).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from wafmw.ratelimit import RateLimiter, parse_rate_limit_rule

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


class View:
    """The smallest RequestLike over an ASGI scope (the core's RequestView does more)."""

    __slots__ = ("client_ip", "host", "method", "path", "scope")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        client = scope.get("client")
        self.client_ip: str | None = client[0] if client else None
        self.host = self.header("host") or ""

    def header(self, name: str) -> str | None:
        raw = name.encode("latin-1")
        for key, value in self.scope["headers"]:
            if key == raw:
                return str(value.decode("latin-1"))
        return None

    def cookie(self, name: str) -> str | None:
        return None

    def arg(self, name: str) -> str | None:
        return None


def with_limiter(app: ASGIApp, limiter: RateLimiter | None) -> ASGIApp:
    """The app behind a minimal middleware; with no limiter it only builds the view,
    which is the baseline the limiter's added cost is measured against."""

    async def wrapped(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        view = View(scope)
        if limiter is not None:
            result = await limiter.check(view)
            if result is not None and result.limited:
                await send(
                    {"type": "http.response.start", "status": 429, "headers": list(result.headers)}
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await app(scope, receive, send)

    return wrapped


async def homepage(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def make_scope(ip: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/login",
        "raw_path": b"/login",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"example.com"), (b"user-agent", b"bench")],
        "client": (ip, 50000),
        "server": ("127.0.0.1", 8000),
    }


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Message) -> None:
    return None


IPS = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(200_000)]


class Scenario:
    def __init__(
        self,
        name: str,
        limit: str,
        strategy: str,
        storage: str,
        *,
        rotate_ips: bool = False,
        concurrency: int = 1,
    ) -> None:
        self.name = name
        self.rotate_ips = rotate_ips
        self.concurrency = concurrency
        self.prefix = f"wafmwbench-{uuid.uuid4().hex[:8]}"
        rule = parse_rate_limit_rule(
            {"id": 1, "msg": "bench", "limit": limit, "strategy": strategy, "key": ["client_ip"]}
        )
        self.limiter = RateLimiter(
            [rule], storage, key_prefix=self.prefix, timeout=1.0, max_memory_keys=250_000
        )
        self.cursor = 0
        self.check_us: list[float] = []
        self.app_us: list[float] = []
        self.added_us: list[float] = []
        self.ratio: list[float] = []

    def next_ip(self) -> str:
        if not self.rotate_ips:
            return "192.0.2.1"
        self.cursor += 1
        return IPS[self.cursor % len(IPS)]


async def timed(n: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> float:
    """µs per request for n requests, `concurrency` in flight at a time."""
    started = time.perf_counter()
    if concurrency == 1:
        for _ in range(n):
            await one()
    else:
        for _ in range(n // concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))
    # Everything in a block of `concurrency` shares the wall time: per request = total / n.
    return (time.perf_counter() - started) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--redis", default=os.environ.get("WAFMW_REDIS_URL", "redis://127.0.0.1:6379")
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=2000, help="requests per block")
    args = parser.parse_args()

    app = Starlette(routes=[Route("/login", homepage, methods=["POST"])])
    scenarios = [
        Scenario(f"memory/{s}", "1000000/minute", s, "memory://")
        for s in ("moving-window", "fixed-window", "sliding-window-counter")
    ]
    redis_ok = True
    try:
        import redis

        redis.Redis.from_url(args.redis, socket_connect_timeout=1).ping()
    except Exception as exc:  # the benchmark runs memory-only without Redis
        print(f"Redis at {args.redis} unreachable ({exc}); memory only", file=sys.stderr)
        redis_ok = False
    if redis_ok:
        scenarios += [
            Scenario("redis/large", "1000000/minute", "sliding-window-counter", args.redis),
            Scenario("redis/exact", "100/minute", "moving-window", args.redis, rotate_ips=True),
            Scenario(
                "redis/exact-x50",
                "100/minute",
                "moving-window",
                args.redis,
                rotate_ips=True,
                concurrency=50,
            ),
            Scenario("redis/flooded", "5/minute", "moving-window", args.redis),
        ]
    wrapped = {s.name: with_limiter(app, s.limiter) for s in scenarios}
    noop = with_limiter(app, None)
    fixed_view = View(make_scope("192.0.2.1"))
    rotating_views = [View(make_scope(ip)) for ip in IPS]
    gc.collect()
    gc.freeze()  # the long-lived setup objects stay out of every later collection
    bare_us: list[float] = []

    for round_no in range(args.rounds + 1):  # round 0 warms up and is dropped
        for s in scenarios:
            n = args.n // 4 if s.name.startswith("redis/exact") else args.n
            n -= n % s.concurrency

            async def bare_one(s: Scenario = s) -> None:
                await app(make_scope(s.next_ip()), receive, send)

            async def noop_one(s: Scenario = s) -> None:
                await noop(make_scope(s.next_ip()), receive, send)

            async def app_one(s: Scenario = s) -> None:
                await wrapped[s.name](make_scope(s.next_ip()), receive, send)

            async def check_one(s: Scenario = s) -> None:
                if s.rotate_ips:
                    s.cursor += 1
                    await s.limiter.check(rotating_views[s.cursor % len(IPS)])
                else:
                    await s.limiter.check(fixed_view)

            # Small blocks in pairs (no-op middleware, then the limiter), so that the
            # drift of a shared machine's load cancels out in each pair's difference.
            block = max(s.concurrency, n // 10 - (n // 10) % s.concurrency)
            for _ in range(10):
                bare = await timed(block, s.concurrency, bare_one)
                noop_us = await timed(block, s.concurrency, noop_one)
                limited = await timed(block, s.concurrency, app_one)
                check = await timed(block, s.concurrency, check_one)
                if round_no:
                    bare_us.append(bare)
                    s.check_us.append(check)
                    s.app_us.append(limited)
                    s.added_us.append(limited - noop_us)
                    s.ratio.append(limited / bare)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"python {sys.version.split()[0]}, {args.rounds} rounds, medians, µs per request;"
        f" load average {load:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"bare Starlette app (in-process ASGI call): {statistics.median(bare_us):.2f} µs")
    print("check: RateLimiter.check alone; app: the app behind a minimal middleware calling it;")
    print("added: app minus the same middleware without the limiter; ratio: app / bare app")
    print(f"{'scenario':30} {'check':>8} {'app':>8} {'added':>8} {'ratio':>7}")
    for s in scenarios:
        note = "  (429s: the app is not called)" if s.name == "redis/flooded" else ""
        print(
            f"{s.name:30} {statistics.median(s.check_us):8.2f} {statistics.median(s.app_us):8.2f}"
            f" {statistics.median(s.added_us):8.2f} {statistics.median(s.ratio):7.3f}{note}"
        )
    for s in scenarios:
        await s.limiter.close()
    if redis_ok:
        client = redis.Redis.from_url(args.redis)
        for s in scenarios:
            for key in client.scan_iter(match=f"*{s.prefix}*", count=1000):
                client.delete(key)
        client.close()


if __name__ == "__main__":
    asyncio.run(main())
