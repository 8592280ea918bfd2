"""Rate limits across real uvicorn worker processes sharing Redis, and Redis going away."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.test_guards import REDIS_URL, need_redis

ROOT = Path(__file__).resolve().parent.parent
RULES = """\
wafmw: 1
settings:
  rate_limit_storage: "{storage}"
rate_limits:
  - id: {rule_id}
    msg: login attempts
    match: {{path: /login, methods: [POST]}}
    limit: "{limit}/minute"
    key: [client_ip]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}")


@contextmanager
def uvicorn_workers(rules: Path, workers: int) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "WAFMW_TEST_RULES": str(rules), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.worker_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        # Wait until every worker answers (each has its own pid).
        pids: set[str] = set()
        deadline = time.monotonic() + 20
        with httpx.Client() as client:
            while len(pids) < workers and time.monotonic() < deadline:
                pids.add(client.get(f"{base}/login", headers={"connection": "close"}).text)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def unique_rule_id() -> int:
    return 400_000_000 + uuid.uuid4().int % 100_000_000


def test_limit_enforced_exactly_across_four_uvicorn_workers(
    write_rules: Callable[..., Path],
) -> None:
    need_redis()
    limit = 7
    rules = write_rules(RULES.format(storage=REDIS_URL, rule_id=unique_rule_id(), limit=limit))
    with uvicorn_workers(rules, 4) as base:
        statuses, served_by = [], set()
        for _ in range(limit + 13):
            # A new connection each time, so the requests spread over the workers.
            response = httpx.post(f"{base}/login", headers={"connection": "close"})
            statuses.append(response.status_code)
            if response.status_code == 200:
                served_by.add(response.text)
    assert statuses.count(200) == limit, statuses
    assert statuses.count(429) == 13
    assert len(served_by) >= 2  # the allowed requests really came from several workers


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
def test_redis_stopped_mid_test_requests_still_served(write_rules: Callable[..., Path]) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        rules = write_rules(
            RULES.format(storage=f"redis://127.0.0.1:{port}", rule_id=unique_rule_id(), limit=3)
        )
        with uvicorn_workers(rules, 2) as base:
            before = [httpx.post(f"{base}/login").status_code for _ in range(2)]
            assert before == [200, 200]  # counted in Redis, still under the limit of 3
            server.terminate()
            server.wait(timeout=10)
            started = time.monotonic()
            during = [httpx.post(f"{base}/login").status_code for _ in range(10)]
            elapsed = time.monotonic() - started
            assert during == [200] * 10  # on_error open: served as if there were no limit
            assert elapsed < 10
    finally:
        if server.poll() is None:
            server.kill()
