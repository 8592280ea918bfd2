"""Over HTTP: uvicorn (one worker) on loopback, bare app vs the same app behind wafmw.

    python benchmarks/http_load.py [--duration 10] [--connections 16] [--rounds 3]

Needs uvicorn and a load generator: Debian's `wrk` when it is installed (`apt-get install wrk`),
else a small asyncio client in this file (which competes for the same two cores, so its
absolute numbers are lower; the ratio is what to read). Rounds alternate bare and wafmw;
printed are the medians of requests per second, p50 and p99 latency, and the ratio to bare.
Runs a benign browser GET and a 2 KB JSON POST. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inprocess import BROWSER_HEADERS, _json_body

ROOT = Path(__file__).resolve().parent.parent

APP = """
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
import os

async def endpoint(request: Request) -> PlainTextResponse:
    if request.method == "POST":
        await request.body()
    return PlainTextResponse("ok")

app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
if os.environ.get("WAFMW_BENCH_WRAP") == "1":
    from wafmw import WAFMiddleware
    app = WAFMiddleware(app)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(app_dir: str, wrap: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "WAFMW_BENCH_WRAP": "1" if wrap else "0",
        "PYTHONPATH": f"{app_dir}{os.pathsep}{ROOT}",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "error",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("uvicorn did not start")


WRK_POST = """
wrk.method = "POST"
wrk.body = io.open("{body}", "rb"):read()
wrk.headers["Content-Type"] = "application/json"
"""


def run_wrk(
    port: int,
    path: str,
    headers: list[tuple[str, str]],
    body_file: str | None,
    duration: int,
    connections: int,
    tmp: str,
) -> tuple[float, float, float]:
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency"]
    for name, value in headers:
        if name not in ("host", "content-type"):
            cmd += ["-H", f"{name}: {value}"]
    if body_file is not None:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_POST.format(body=body_file))
        cmd += ["-s", str(script)]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def latency(pct: str) -> float:
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return rps, latency("50"), latency("99")


async def _python_load(
    port: int, request: bytes, duration: int, connections: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    stop = time.monotonic() + duration

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < stop:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    return (
        len(latencies) / duration,
        latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99)],
    )


def run_python(
    port: int,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    duration: int,
    connections: int,
) -> tuple[float, float, float]:
    method = "POST" if body is not None else "GET"
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    if body is not None:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    return asyncio.run(_python_load(port, request, duration, connections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None
    print(
        f"load generator: {'wrk' if use_wrk else 'python asyncio client'}; "
        f"{args.connections} connections, {args.duration} s per run, {args.rounds} rounds"
    )
    body = _json_body(2048)
    cases = {
        "benign GET": ("/products?category=shirts&page=2&sort=price", None),
        "2 KB JSON POST": ("/api/cart", body),
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bench_app.py").write_text(APP)
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for _ in range(args.rounds):
            for config in ("bare", "wafmw"):
                proc, port = start_server(tmp, wrap=config == "wafmw")
                try:
                    for case, (path, data) in cases.items():
                        headers = [
                            h
                            for h in BROWSER_HEADERS
                            if not (data is not None and h[0] == "cookie")
                        ]
                        if use_wrk:
                            result = run_wrk(
                                port,
                                path,
                                headers,
                                str(body_file) if data is not None else None,
                                args.duration,
                                args.connections,
                                tmp,
                            )
                        else:
                            result = run_python(
                                port, path, headers, data, args.duration, args.connections
                            )
                        results.setdefault((config, case), []).append(result)
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    print(f"\n{'request':16} {'config':7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8}")
    for case in cases:
        bare_rps = statistics.median(r[0] for r in results[("bare", case)])
        for config in ("bare", "wafmw"):
            runs = results[(config, case)]
            rps = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            print(f"{case:16} {config:7} {rps:9.0f} {p50:8.2f} {p99:8.2f} {rps / bare_rps:8.0%}")


if __name__ == "__main__":
    main()
