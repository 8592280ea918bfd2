"""Rate limits against the real Redis at WAFMW_REDIS_URL (default redis://127.0.0.1:6379).

No mocks: every test talks to Redis, or to a real socket that refuses, hangs or
forwards to Redis. Off CI an unreachable Redis skips these tests; with CI=true
it fails them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from wafmw.ratelimit import (
    RateLimiter,
    RateLimitResult,
    RateLimitRule,
    StorageUnavailable,
    parse_rate_limit_rule,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

REDIS_URL = os.environ.get("WAFMW_REDIS_URL", "redis://127.0.0.1:6379")
ROOT = Path(__file__).resolve().parent.parent


def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(
        REDIS_URL, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_URL} is unreachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return client


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    client = _redis_or_skip()
    value = f"wafmwtest-{uuid.uuid4().hex[:12]}"
    yield value
    for key in client.scan_iter(match=f"*{value}*", count=1000):
        client.delete(key)
    client.close()


@dataclass
class Req:
    method: str = "POST"
    path: str = "/login"
    host: str = "example.com"
    client_ip: str | None = "192.0.2.1"
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str) -> str | None:
        return None

    def arg(self, name: str) -> str | None:
        return None


def rule(**spec: Any) -> RateLimitRule:
    base: dict[str, Any] = {"id": 300010, "msg": "login", "limit": "5/minute"}
    base.update(spec)
    return parse_rate_limit_rule(base)


def allowed(results: list[RateLimitResult | None]) -> int:
    return sum(1 for r in results if r is None or not r.limited)


async def run(limiter: RateLimiter, n: int, req: Req | None = None) -> list[RateLimitResult | None]:
    return [await limiter.check(req or Req()) for _ in range(n)]


@contextlib.asynccontextmanager
async def limiter_of(*args: Any, **kwargs: Any) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(*args, **kwargs)
    try:
        yield limiter
    finally:
        await limiter.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------- windows and headers


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
async def test_each_strategy_allows_exactly_the_limit(strategy: str, prefix: str) -> None:
    async with limiter_of([rule(strategy=strategy)], REDIS_URL, key_prefix=prefix) as limiter:
        results = await run(limiter, 8)
    assert [r is None for r in results] == [True] * 5 + [False] * 3
    refused = results[5]
    assert refused is not None and refused.limited and not refused.banned
    assert 1 <= refused.retry_after <= 120
    names = [k for k, _ in refused.headers]
    assert names == [b"retry-after", b"ratelimit-policy", b"ratelimit"]


async def test_fixed_window_expires(prefix: str) -> None:
    r = rule(limit="2/second", strategy="fixed-window")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix) as limiter:
        assert allowed(await run(limiter, 3)) == 2
        await asyncio.sleep(1.05)
        assert allowed(await run(limiter, 3)) == 2


async def test_moving_window_slides(prefix: str) -> None:
    r = rule(limit="2/2 seconds", strategy="moving-window")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix) as limiter:
        assert allowed(await run(limiter, 1)) == 1
        await asyncio.sleep(1.0)
        assert allowed(await run(limiter, 2)) == 1
        await asyncio.sleep(1.05)  # the first hit has left, the second has not
        assert allowed(await run(limiter, 2)) == 1


async def test_sliding_window_counter_weights_the_previous_window(prefix: str) -> None:
    r = rule(limit="4/second", strategy="sliding-window-counter")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix) as limiter:
        assert allowed(await run(limiter, 6)) == 4
        await asyncio.sleep(2.05)  # two windows later nothing is left
        assert allowed(await run(limiter, 6)) == 4


async def test_headers(prefix: str) -> None:
    r = rule(strategy="fixed-window")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix, success_headers=True) as limiter:
        first = await limiter.check(Req())
        assert first is not None and not first.limited
        assert dict(first.headers) == {
            b"ratelimit-policy": b'"300010";q=5;w=60',
            b"ratelimit": b'"300010";r=4;t=60',
        }
        await run(limiter, 4)
        refused = await limiter.check(Req())
    assert refused is not None and refused.limited
    h = dict(refused.headers)
    assert h[b"retry-after"] in (b"59", b"60")
    assert h[b"ratelimit"] == b'"300010";r=0;t=' + h[b"retry-after"]


async def test_keys_are_separate(prefix: str) -> None:
    r = rule(limit="1/minute", key=["client_ip", "header:x-api-key"])
    async with limiter_of([r], REDIS_URL, key_prefix=prefix) as limiter:
        assert allowed(await run(limiter, 2, Req(headers={"x-api-key": "a"}))) == 1
        assert allowed(await run(limiter, 2, Req(headers={"x-api-key": "b"}))) == 1
        assert allowed(await run(limiter, 2, Req(client_ip="2001:db8::1"))) == 1
        # Separators and braces inside values cannot make two keys collide.
        assert allowed(await run(limiter, 2, Req(headers={"x-api-key": "a|{x}%"}))) == 1


async def test_several_limits_and_cost(prefix: str) -> None:
    r = rule(limit="4/second;6/minute", cost=2, strategy="moving-window")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix) as limiter:
        assert allowed(await run(limiter, 3)) == 2  # 4 units in this second
        await asyncio.sleep(1.05)
        results = await run(limiter, 2)  # 2 more units fit the minute, then it is full
        assert allowed(results) == 1
        refused = results[1]
        assert refused is not None and refused.retry_after >= 55


# ------------------------------------------------------------ exactness across workers


async def test_two_limiters_on_one_redis_allow_exactly_the_limit(prefix: str) -> None:
    r = rule(limit="5/minute")
    async with (
        limiter_of([r], REDIS_URL, key_prefix=prefix, timeout=1.0) as one,
        limiter_of([r], REDIS_URL, key_prefix=prefix, timeout=1.0) as two,
    ):
        results = await asyncio.gather(*((one if i % 2 else two).check(Req()) for i in range(20)))
    assert allowed(list(results)) == 5


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
async def test_concurrent_flood_across_limiters_is_exact(strategy: str, prefix: str) -> None:
    r = rule(limit="50/minute", strategy=strategy)
    # A generous timeout: this test is about exactness, not about a loaded test machine.
    limiters = [RateLimiter([r], REDIS_URL, key_prefix=prefix, timeout=1.0) for _ in range(3)]
    try:
        results = await asyncio.gather(*(limiters[i % 3].check(Req()) for i in range(300)))
    finally:
        for limiter in limiters:
            await limiter.close()
    assert allowed(list(results)) == 50


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    sys.path.insert(0, {root!r})
    from wafmw.ratelimit import RateLimiter, parse_rate_limit_rule

    class Req:
        method = "POST"; path = "/login"; host = "x"; client_ip = "192.0.2.1"
        def header(self, n): return None
        def cookie(self, n): return None
        def arg(self, n): return None

    async def main():
        rule = parse_rate_limit_rule({{"id": 1, "msg": "m", "limit": "{limit}"}})
        limiter = RateLimiter([rule], {url!r}, key_prefix={prefix!r})
        while time.time() < {start}:
            await asyncio.sleep(0.001)
        results = await asyncio.gather(*(limiter.check(Req()) for _ in range({n})))
        await limiter.close()
        print(json.dumps(sum(1 for r in results if r is None)))

    asyncio.run(main())
    """
)


def test_four_processes_enforce_the_limit_exactly(prefix: str, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        WORKER.format(
            root=str(ROOT),
            limit="17/minute",
            url=REDIS_URL,
            prefix=prefix,
            start=time.time() + 2.0,
            n=25,
        )
    )
    procs = [
        subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    counts = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(counts) == 17


# ------------------------------------------------------------------------------ bans


async def test_ban_is_shared_through_redis(prefix: str) -> None:
    r = rule(limit="2/second", ban_seconds=30, strategy="fixed-window")
    async with (
        limiter_of([r], REDIS_URL, key_prefix=prefix) as one,
        limiter_of([r], REDIS_URL, key_prefix=prefix) as two,
    ):
        assert allowed(await run(one, 3)) == 2
        await asyncio.sleep(1.05)  # the window is over; the ban is not
        result = await two.check(Req())  # a worker that never saw this client
        assert result is not None and result.limited and result.banned
        assert 27 <= result.retry_after <= 30
        assert await two.check(Req(client_ip="192.0.2.2")) is None


async def test_ban_ends(prefix: str) -> None:
    r = rule(limit="1/second", ban_seconds=1, strategy="moving-window")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix) as limiter:
        assert allowed(await run(limiter, 2)) == 1
        await asyncio.sleep(1.1)
        assert allowed(await run(limiter, 1)) == 1


async def test_refusals_are_answered_locally_until_the_key_frees(prefix: str) -> None:
    r = rule(limit="1/minute")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix) as limiter:
        await run(limiter, 2)
        client = redis.Redis.from_url(REDIS_URL)
        calls_before = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        started = time.perf_counter()
        results = await run(limiter, 1000)
        elapsed = time.perf_counter() - started
        calls_after = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        client.close()
    assert allowed(results) == 0
    assert calls_after - calls_before < 50  # other tests may run concurrently; not 1000
    assert elapsed < 1.0


# ---------------------------------------------------------------------------- batching


async def test_large_limit_with_one_worker_is_exact(prefix: str) -> None:
    r = rule(limit="1000/minute", strategy="sliding-window-counter")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix) as limiter:
        assert allowed(await run(limiter, 1100)) == 1000


async def test_large_limit_over_admission_is_bounded(prefix: str) -> None:
    # K = floor(1000 * 0.01) = 10 units per key per worker at most.
    r = rule(limit="1000/minute", strategy="fixed-window")
    async with (
        limiter_of([r], REDIS_URL, key_prefix=prefix) as one,
        limiter_of([r], REDIS_URL, key_prefix=prefix) as two,
    ):
        results = [await (one if i % 2 else two).check(Req()) for i in range(1200)]
    assert 1000 <= allowed(results) <= 1000 + 2 * 10


async def test_batching_can_be_turned_off(prefix: str) -> None:
    r = rule(limit="1000/minute", strategy="fixed-window")
    async with (
        limiter_of([r], REDIS_URL, key_prefix=prefix, batch_fraction=0) as one,
        limiter_of([r], REDIS_URL, key_prefix=prefix, batch_fraction=0) as two,
    ):
        results = [await (one if i % 2 else two).check(Req()) for i in range(1100)]
    assert allowed(results) == 1000


# ------------------------------------------------------------------- storage failures


async def test_closed_port_fails_fast_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="wafmw")
    async with limiter_of([rule()], url, timeout=0.05, retry_interval=0.05) as limiter:
        for _ in range(20):
            started = time.perf_counter()
            with pytest.raises(StorageUnavailable):
                await limiter.check(Req())
            assert time.perf_counter() - started < 0.5
            await asyncio.sleep(0.01)
    warnings = [r for r in caplog.records if r.name == "wafmw" and "unavailable" in r.message]
    assert len(warnings) == 1
    assert "127.0.0.1" in warnings[0].getMessage()


async def test_a_hanging_server_is_bounded_by_the_timeout() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # accept, read, never answer
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with limiter_of([rule()], f"redis://127.0.0.1:{port}", timeout=0.05) as limiter:
            started = time.perf_counter()
            with pytest.raises(StorageUnavailable):
                await limiter.check(Req())
            elapsed = time.perf_counter() - started
            assert elapsed < 0.5
            # Backing off: the next call fails at once without touching the network.
            started = time.perf_counter()
            with pytest.raises(StorageUnavailable):
                await limiter.check(Req())
            assert time.perf_counter() - started < 0.01
    finally:
        server.close()


async def test_recovers_when_redis_comes_back(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens at first; then a forwarder to the real Redis opens on that port."""
    caplog.set_level(logging.WARNING, logger="wafmw")
    port = free_port()
    target = urlsplit(REDIS_URL)
    host, target_port = target.hostname or "127.0.0.1", target.port or 6379

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    r = rule(limit="3/minute")
    url = f"redis://127.0.0.1:{port}"
    async with limiter_of([r], url, key_prefix=prefix, retry_interval=0.1) as limiter:
        with pytest.raises(StorageUnavailable):
            await limiter.check(Req())
        server = await asyncio.start_server(forward, "127.0.0.1", port)
        try:
            await asyncio.sleep(0.15)
            assert allowed(await run(limiter, 5)) == 3
        finally:
            server.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "wafmw"]
    assert any("available again" in m for m in messages)


class Forwarder:
    """A TCP forwarder to the real Redis that can be stopped (connections cut) and restarted."""

    def __init__(self, port: int) -> None:
        target = urlsplit(REDIS_URL)
        self.host, self.target_port = target.hostname or "127.0.0.1", target.port or 6379
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers = []
        await asyncio.sleep(0.01)


async def test_redis_stopped_mid_test_and_back(prefix: str) -> None:
    forwarder = Forwarder(free_port())
    await forwarder.start()
    r = rule(limit="4/minute")
    url = f"redis://127.0.0.1:{forwarder.port}"
    try:
        async with limiter_of([r], url, key_prefix=prefix, retry_interval=0.1) as limiter:
            assert allowed(await run(limiter, 2)) == 2
            await forwarder.stop()  # Redis "goes away" with the connection open
            for _ in range(5):
                with pytest.raises(StorageUnavailable):
                    await limiter.check(Req())
            await forwarder.start()
            await asyncio.sleep(0.15)
            # Back, with the counts kept by Redis meanwhile: two more, then refused.
            assert allowed(await run(limiter, 4)) == 2
    finally:
        await forwarder.stop()


async def test_password_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="wafmw")
    async with limiter_of([rule()], url) as limiter:
        with pytest.raises(StorageUnavailable) as info:
            await limiter.check(Req())
    assert "s3cret" not in caplog.text
    assert "s3cret" not in str(info.value)


# ----------------------------------------------------- other storages through `limits`


async def test_limits_storage_path(prefix: str) -> None:
    """A URI the fast path does not take (here async+redis://) goes through `limits`."""
    url = REDIS_URL.replace("redis://", "async+redis://", 1)
    r = rule(limit="3/minute", ban_seconds=30)
    async with (
        limiter_of([r], url, key_prefix=prefix) as one,
        limiter_of([r], url, key_prefix=prefix) as two,
    ):
        assert allowed(await run(one, 2)) == 2
        results = await run(two, 3)
        assert allowed(results) == 1
        refused = results[1]
        assert refused is not None and refused.limited and refused.retry_after >= 29
        banned = await one.check(Req())
        assert banned is not None and banned.banned


async def test_limits_storage_path_unreachable() -> None:
    url = f"async+redis://127.0.0.1:{free_port()}"
    async with limiter_of([rule()], url, timeout=0.05) as limiter:
        started = time.perf_counter()
        with pytest.raises(StorageUnavailable):
            await limiter.check(Req())
        assert time.perf_counter() - started < 0.5


# ---------------------------------------------------------------- the Redis clients


async def test_database_number_in_the_uri(prefix: str) -> None:
    url = REDIS_URL.rstrip("/") + "/5"
    async with limiter_of([rule(limit="1/minute")], url, key_prefix=prefix) as limiter:
        assert allowed(await run(limiter, 2)) == 1
    client = redis.Redis.from_url(REDIS_URL, db=5)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        assert keys
        client.delete(*keys)
    finally:
        client.close()


async def test_failed_auth_is_storage_unavailable() -> None:
    # The test Redis has no password: AUTH is refused, which must not pass silently.
    url = REDIS_URL.replace("redis://", "redis://:wrong@", 1)
    async with limiter_of([rule()], url) as limiter:
        with pytest.raises(StorageUnavailable):
            await limiter.check(Req())


async def test_redis_py_runner_coalesces_concurrent_calls(prefix: str) -> None:
    """The redis-py path (used for rediss://) queues calls behind the one on the wire."""
    from wafmw import ratelimit

    r = rule(limit="5/minute")
    async with (
        limiter_of([r], REDIS_URL, key_prefix=prefix, timeout=1.0) as one,
        limiter_of([r], REDIS_URL, key_prefix=prefix, timeout=1.0) as two,
    ):
        for limiter in (one, two):
            backend = limiter._backend
            assert isinstance(backend, ratelimit._RedisBackend)
            await backend._runner.close()
            backend._runner = ratelimit._RedisPyRunner(REDIS_URL, 1.0)
            backend._errors = backend._runner.errors
        results = await asyncio.gather(*((one if i % 2 else two).check(Req()) for i in range(40)))
    assert allowed(list(results)) == 5


async def test_cancelled_requests_do_not_desynchronise_replies(prefix: str) -> None:
    r = rule(limit="1000/minute")
    async with limiter_of([r], REDIS_URL, key_prefix=prefix, batch_fraction=0) as limiter:
        tasks = [
            asyncio.create_task(limiter.check(Req(client_ip=f"10.9.0.{i}"))) for i in range(50)
        ]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Every later call still gets its own reply: a fresh key is allowed, a full one is not.
        one = rule(id=2, limit="1/minute")
        assert await limiter.check(Req(client_ip="10.9.1.1")) is None
    async with limiter_of([one], REDIS_URL, key_prefix=prefix) as limiter:
        results = await run(limiter, 3)
        assert [r is None for r in results] == [True, False, False]


@pytest.mark.parametrize("runner", ["resp", "redis-py"])
def test_one_limiter_used_from_two_event_loops(runner: str, prefix: str) -> None:
    """A limiter outlives an event loop (test clients, restarts) and keeps working."""
    from wafmw import ratelimit

    limiter = RateLimiter([rule(limit="3/minute")], REDIS_URL, key_prefix=prefix, timeout=1.0)
    backend = limiter._backend
    assert isinstance(backend, ratelimit._RedisBackend)
    if runner == "redis-py":
        backend._runner = ratelimit._RedisPyRunner(REDIS_URL, 1.0)
        backend._errors = backend._runner.errors

    async def two() -> int:
        return allowed(await run(limiter, 2))

    assert asyncio.run(two()) == 2
    assert asyncio.run(two()) == 1  # a new loop, the same counts in Redis

    async def close() -> None:
        await limiter.close()

    asyncio.run(close())
