"""Over HTTP: uvicorn (one worker) on loopback, bare app vs the same app behind wafmw.

    python benchmarks/http_load.py [--duration 10] [--connections 16] [--rounds 3]

Needs uvicorn and a load generator: Debian's `wrk` when it is installed (`apt-get install wrk`),
else a small asyncio client in this file (which competes for the same two cores, so its
absolute numbers are lower; the ratio is what to read). Rounds alternate bare and wafmw;
printed are the medians of requests per second, p50 and p99 latency, and the ratio to bare;
then the server's CPU time per request and the ratio it gives (bare over wafmw), which a
neighbour taking the core for a while does not move (see server_cpu_s). Runs a benign browser
GET and a 2 KB JSON POST. Never part of the test run.

The wrapped app runs what the in-process benchmark runs: the shipped default ruleset (bots
included) plus one in-memory moving-window rate limit. The load generator sits on one address,
so, as an app behind a reverse proxy would, wafmw trusts 127.0.0.1 for X-Forwarded-For and each
request names one of 1000 client addresses there (one client sending tens of thousands of
requests a minute is what the bot heuristics' request-rate signal is for).
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

import yaml
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
    app = WAFMiddleware(app, rules=os.environ["WAFMW_BENCH_RULES"])
"""


def write_rules(tmp: str) -> str:
    """The default ruleset's own top file, with the benchmark's rate limit and the trusted
    proxy added (settings and bots are only read from a top file, so it is rewritten)."""
    top = yaml.safe_load((ROOT / "rules" / "wafmw.yaml").read_text())
    top["include"] = [str(ROOT / "rules" / name) for name in top.get("include", [])]
    top.setdefault("settings", {})["client_ip"] = {"trusted_proxies": ["127.0.0.1/32"]}
    limits = yaml.safe_load((Path(__file__).resolve().parent / "one-rate-limit.yaml").read_text())
    top["rate_limits"] = limits["rate_limits"]
    path = Path(tmp) / "rules.yaml"
    path.write_text(yaml.safe_dump(top, sort_keys=False))
    return str(path)


def server_cpu_s(pid: int) -> float:
    """CPU seconds the server process has used (user and system, from /proc). The server runs
    one event loop on one core, so while the load generator keeps it busy, its requests per
    second are about one over its CPU time per request. Unlike requests per second, CPU time
    is not moved by another process taking the core for a while; cache and clock effects
    still move it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(app_dir: str, wrap: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "WAFMW_BENCH_WRAP": "1" if wrap else "0",
        "WAFMW_BENCH_RULES": str(Path(app_dir) / "rules.yaml"),
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


WRK_CLIENTS = """
counter = 0
request = function()
  counter = counter + 1
  local n = counter % 1000
  wrk.headers["X-Forwarded-For"] = "10.0." .. math.floor(n / 250) .. "." .. (n % 250)
  return wrk.format()
end
"""
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
) -> tuple[float, float, float, int]:
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency"]
    for name, value in headers:
        if name not in ("host", "content-type"):
            cmd += ["-H", f"{name}: {value}"]
    script = Path(tmp) / "load.lua"
    script.write_text((WRK_POST.format(body=body_file) if body_file else "") + WRK_CLIENTS)
    cmd += ["-s", str(script)]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def latency(pct: str) -> float:
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return rps, latency("50"), latency("99"), done


async def _python_load(
    port: int, requests: list[bytes], duration: int, connections: int
) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    stop = time.monotonic() + duration

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < stop:
            start = time.perf_counter()
            writer.write(requests[len(latencies) % len(requests)])
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
        len(latencies),
    )


def run_python(
    port: int,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    duration: int,
    connections: int,
) -> tuple[float, float, float, int]:
    method = "POST" if body is not None else "GET"
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    if body is not None:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    requests = [
        ("\r\n".join([*lines, f"x-forwarded-for: 10.0.{i // 250}.{i % 250}"]) + "\r\n\r\n").encode()
        + (body or b"")
        for i in range(1000)
    ]
    return asyncio.run(_python_load(port, requests, duration, connections))


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
        write_rules(tmp)
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        # (req/s, p50, p99, server CPU µs per request)
        results: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
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
                        cpu_before = server_cpu_s(proc.pid)
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
                        cpu = server_cpu_s(proc.pid) - cpu_before
                        rps, p50, p99, done = result
                        results.setdefault((config, case), []).append(
                            (rps, p50, p99, cpu / max(done, 1) * 1e6)
                        )
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    print(
        f"\n{'request':16} {'config':7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8}"
        f" {'CPU µs/req':>11} {'by CPU':>7}"
    )
    for case in cases:
        bare_rps = statistics.median(r[0] for r in results[("bare", case)])
        bare_cpu = statistics.median(r[3] for r in results[("bare", case)])
        for config in ("bare", "wafmw"):
            runs = results[(config, case)]
            rps = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            cpu = statistics.median(r[3] for r in runs)
            print(
                f"{case:16} {config:7} {rps:9.0f} {p50:8.2f} {p99:8.2f} {rps / bare_rps:8.0%}"
                f" {cpu:11.1f} {bare_cpu / cpu:7.0%}"
            )


if __name__ == "__main__":
    main()
