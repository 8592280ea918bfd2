"""Staging the outage: flip the rule file between good and bad versions under load.

    python benchmarks/flip.py [--seconds 20] [--flip-every 1.2] [--connections 8]

Serves a small app behind wafmw with uvicorn (one worker) on loopback, reloading its rule
file every 0.2 s. While clients send benign and attack requests continuously, the rule file
is replaced in turn by: good version A, a doubled file (duplicated entries), an oversized
file, a truncated file, invalid UTF-8, a YAML alias bomb, a pathological regex, and good
version B. Printed: requests served and failed, how benign and attack requests were answered,
and which ruleset version answered them. A failed request is a connection error or a 5xx.
Reloads are rate-limited to one a second, so a version that stays in place for less than that
may never be tried. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GOOD_A = """\
wafmw: 1
filters:
  - id: 100
    msg: union select
    targets: [args]
    transforms: [url_decode, lowercase]
    regex: 'union\\s+select'
    cases:
      match: [{path: "/?q=1%20union%20select%202"}]
      no_match: [{path: "/?q=union%20station"}]
"""
GOOD_B = (
    GOOD_A
    + """\
  - id: 101
    msg: script tag
    targets: [args]
    transforms: [url_decode, lowercase]
    contains: '<script'
    cases:
      match: [{path: "/?q=%3Cscript%3E"}]
      no_match: [{path: "/?q=script"}]
"""
)


def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "wafmw: 1\nlists:\n" + "".join(f"  {x}\n" for x in lines)


VERSIONS: list[tuple[str, bytes]] = [
    ("good A", GOOD_A.encode()),
    ("doubled", (GOOD_A + GOOD_A.split("filters:\n", 1)[1]).encode()),
    ("oversized", (GOOD_A + "#" + "x" * (3 * 1024 * 1024) + "\n").encode()),
    ("truncated", GOOD_A[: len(GOOD_A) // 2].encode()),
    ("invalid utf-8", GOOD_A.encode() + b"# \xff\xfe\n"),
    ("alias bomb", _bomb().encode()),
    (
        "pathological regex",
        (
            GOOD_A + "  - id: 103\n    msg: m\n    targets: [args]\n    regex: '^(?=(a|aa)+$)'\n"
        ).encode(),
    ),
    ("good B", GOOD_B.encode()),
]

APP = """
import os
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from wafmw import WAFMiddleware

async def endpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok", headers={"x-ruleset": waf.store.active.ruleset.version})

waf = WAFMiddleware(Starlette(routes=[Route("/", endpoint)]), rules=os.environ["FLIP_RULES"],
                    reload_interval=0.2)
app = waf
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def client(port: int, stop: float, stats: collections.Counter[str]) -> None:
    targets = ["/?q=union+station", "/?q=1%20union%20select%202", "/?q=%3Cscript%3E"]
    i = 0
    while time.monotonic() < stop:
        target = targets[i % len(targets)]
        i += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {target} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".encode())
            response = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        except (OSError, asyncio.TimeoutError):
            stats["failed"] += 1
            continue
        head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
        status = int(head.split(" ", 2)[1])
        if status >= 500:
            stats["failed"] += 1
            continue
        stats["served"] += 1
        stats[f"{target} -> {status}"] += 1
        for line in head.split("\r\n"):
            if line.startswith("x-ruleset:"):
                stats[f"answered by ruleset {line.split(':', 1)[1].strip()}"] += 1


async def run(port: int, rules: Path, seconds: float, every: float, connections: int) -> None:
    stats: collections.Counter[str] = collections.Counter()
    stop = time.monotonic() + seconds
    clients = [asyncio.create_task(client(port, stop, stats)) for _ in range(connections)]
    flips = 0
    while time.monotonic() < stop:
        _name, data = VERSIONS[flips % len(VERSIONS)]
        replace(rules, data)
        flips += 1
        await asyncio.sleep(every)
    await asyncio.gather(*clients)
    print(f"{flips} rule-file flips over {seconds:.0f} s, {connections} clients")
    print(f"served: {stats.pop('served', 0)}   failed: {stats.pop('failed', 0)}")
    for key, count in sorted(stats.items()):
        print(f"  {key}: {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flip-every", type=float, default=1.2)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "flip_app.py").write_text(APP)
        rules = Path(tmp) / "rules.yaml"
        rules.write_bytes(VERSIONS[0][1])
        port = free_port()
        env = {**os.environ, "FLIP_RULES": str(rules), "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}"}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "flip_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "critical",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(run(port, rules, args.seconds, args.flip_every, args.connections))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
