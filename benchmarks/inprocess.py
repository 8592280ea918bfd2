"""In-process overhead of wafmw against a bare Starlette app, measured in the same run.

    python benchmarks/inprocess.py [--rounds 15] [--requests 2000] [--rules FILE ...]
        [--no-rate-limit] [--clients 1000] [--varied] [--parts] [--same-objects]

The wrapped app runs the shipped default ruleset (bot heuristics included) plus one in-memory
moving-window rate limit (benchmarks/one-rate-limit.yaml); `--rules` replaces the default
ruleset, `--no-rate-limit` drops the limit.

Requests come from a pool of `--clients` addresses, one after the other: benign traffic comes
from many browsers, and one address sending tens of thousands of requests a minute is what the
bot heuristics' request-rate signal exists to notice (`--clients 1` shows that case). With
`--varied`, no request of a run repeats an earlier one: each has its own path, query, cookie
and Referer, as real traffic does (its User-Agent, Accept and client hints recur, as a
browser's do); by default each case repeats one request, so wafmw's memories of recurring
values are always warm.

Each request gets new `str` and `bytes` objects, as a server hands them (see `_fresh`);
`--same-objects` hands every request the objects of the first, as a harness that builds one
scope and reuses it does: hashes are then computed once, and memories compare by identity.

`--parts` splits the cost of a benign GET and a 2 KB POST: the middleware with no rules at
all, then with only the rate limit, only the bot heuristics, only the pattern filters (the
default ruleset without its `bots` section), and everything, all in the same interleaved run.

Each round times `--requests` calls of every configuration in turn (configurations interleaved,
so machine noise hits all of them alike); the figure per configuration is the median over
rounds of the mean µs per request. Printed: bare µs, wrapped µs, the difference and the ratio.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from wafmw import WAFMiddleware

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RULES = ROOT / "rules" / "wafmw.yaml"
RATE_LIMIT = Path(__file__).resolve().parent / "one-rate-limit.yaml"

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUgRG9lIiwi"
    "aWF0IjoxNzE2MjM5MDIyLCJleHAiOjE3MTYyNDI2MjIsInJvbGVzIjpbInVzZXIiLCJlZGl0b3IiXX0.Sfl"
    "KxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
BROWSER_HEADERS = [
    ("host", "shop.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.9"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("sec-ch-ua", '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", '"Windows"'),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("referer", "https://shop.example.com/catalog?page=2"),
    ("cookie", f"session={JWT}; theme=dark; consent=1"),
]


def _json_body(size: int) -> bytes:
    items = []
    i = 0
    while True:
        items.append(
            {
                "id": i,
                "name": f"Item number {i}",
                "note": "Blue cotton shirt, size M",
                "tags": ["summer", "sale"],
                "price": 19.99 + i,
            }
        )
        body = json.dumps({"cart": items, "coupon": "WELCOME10"}).encode()
        if len(body) >= size:
            return body
        i += 1


def scope_for(method: str, target: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "client": ("203.0.113.7", 51000),
        "server": ("shop.example.com", 443),
    }


def varied(scope: dict[str, Any], i: int) -> dict[str, Any]:
    """The same request with its own path, query, cookie and Referer."""
    out = dict(scope)
    out["path"] = f"{scope['path']}/{i}"
    out["raw_path"] = out["path"].encode()
    if scope["query_string"]:
        out["query_string"] = scope["query_string"] + f"&ref=mail{i}&utm_id={i * 7919}".encode()
    headers = []
    for name, value in scope["headers"]:
        if name == b"cookie":
            value = value.replace(b"theme=dark", f"theme=dark; _ga=GA1.2.{i}.{i * 31}".encode())
        elif name == b"referer":
            value = f"https://shop.example.com/catalog?page={i % 50}&q=shirt+{i}".encode()
        headers.append((name, value))
    out["headers"] = headers
    return out


def make_cases() -> dict[str, tuple[dict[str, Any], bytes]]:
    small, large = _json_body(2048), _json_body(65536)
    post = [h for h in BROWSER_HEADERS if h[0] not in ("cookie",)]

    def post_headers(body: bytes) -> list[tuple[str, str]]:
        return [*post, ("content-type", "application/json"), ("content-length", str(len(body)))]

    return {
        "benign GET": (
            scope_for("GET", "/products?category=shirts&page=2&sort=price", BROWSER_HEADERS),
            b"",
        ),
        "2 KB JSON POST": (scope_for("POST", "/api/cart", post_headers(small)), small),
        "64 KB JSON POST": (scope_for("POST", "/api/cart", post_headers(large)), large),
        "attack GET": (
            scope_for(
                "GET", "/products?id=1%20UNION%20SELECT%20password%20FROM%20users", BROWSER_HEADERS
            ),
            b"",
        ),
    }


async def _endpoint(request: Request) -> PlainTextResponse:
    if request.method == "POST":
        await request.body()
    return PlainTextResponse("ok")


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/{path:path}", _endpoint, methods=["GET", "POST"])])


async def _noop_send(message: Any) -> None:
    return None


def _fresh(scope: dict[str, Any], client: tuple[str, int]) -> dict[str, Any]:
    """A copy of the scope made of new objects, as a server hands each request: a str or bytes
    object remembers its hash once computed, and reusing one request's objects would spare
    wafmw's memories the hashing and comparing that every real request costs them (about
    2 µs and 17.7k instructions per GET, see README). Both configurations pay for the copying
    alike."""
    out = dict(scope)
    out["path"] = scope["path"].encode().decode()
    out["raw_path"] = bytes(bytearray(scope["raw_path"]))
    out["query_string"] = bytes(bytearray(scope["query_string"]))
    out["headers"] = [(bytes(bytearray(k)), bytes(bytearray(v))) for k, v in scope["headers"]]
    out["client"] = (client[0].encode().decode(), client[1])
    return out


def _same(scope: dict[str, Any], client: tuple[str, int]) -> dict[str, Any]:
    """A copy of the scope dict holding the very objects of every earlier request (see
    `--same-objects`)."""
    out = dict(scope)
    out["client"] = client
    return out


def make_runner(
    app: Any, scopes: list[dict[str, Any]], body: bytes, clients: int, *, same: bool = False
) -> Callable[[int], Any]:
    """A coroutine function running n requests, cycling through the scopes and the clients."""
    message = {"type": "http.request", "body": body, "more_body": False}
    copy = _same if same else _fresh
    addresses = [(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 51000) for i in range(clients)]
    counter = 0

    async def run(n: int) -> None:
        nonlocal counter
        for _ in range(n):
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return message

            scope = copy(scopes[counter % len(scopes)], addresses[counter % clients])
            counter += 1
            await app(scope, receive, _noop_send)

    return run


def measure(
    configs: dict[str, Any],
    cases: dict[str, tuple[dict[str, Any], bytes]],
    rounds: int,
    requests: int,
    *,
    clients: int = 1000,
    variants: int = 1,
    same: bool = False,
) -> dict[tuple[str, str], float]:
    """Median µs per request per (configuration, case). With variants > 1, each case cycles
    through that many distinct requests (see varied())."""
    samples: dict[tuple[str, str], list[float]] = {}
    loop = asyncio.new_event_loop()
    scopes = {
        k: [scope]
        if variants == 1
        else [varied(scope, i) for i in range(variants if "64 KB" not in k else variants // 10)]
        for k, (scope, _) in cases.items()
    }
    try:
        runners = {
            (c, k): make_runner(app, scopes[k], cases[k][1], clients, same=same)
            for c, app in configs.items()
            for k in cases
        }
        for run in runners.values():  # warm-up
            loop.run_until_complete(run(50))
        for _ in range(rounds):
            for case in cases:
                for config in configs:
                    n = requests if "64 KB" not in case else max(requests // 10, 50)
                    start = time.perf_counter()
                    loop.run_until_complete(runners[(config, case)](n))
                    per = (time.perf_counter() - start) / n * 1e6
                    samples.setdefault((config, case), []).append(per)
    finally:
        loop.close()
    return {key: statistics.median(values) for key, values in samples.items()}


def part_rules(tmp: Path) -> dict[str, list[str]]:
    """Rule files for each part of wafmw alone (written into `tmp`), and for everything."""
    empty = tmp / "empty.yaml"
    empty.write_text("wafmw: 1\nfilters: []\n")
    bots = tmp / "bots.yaml"
    bots.write_text("wafmw: 1\nfilters: []\nbots: {}\n")
    top = yaml.safe_load(SHIPPED_RULES.read_text())
    top.pop("bots", None)
    top["include"] = [str(SHIPPED_RULES.parent / name) for name in top.get("include", [])]
    filters = tmp / "filters.yaml"
    filters.write_text(yaml.safe_dump(top, sort_keys=False))
    return {
        "no rules": [str(empty)],
        "rate limit only": [str(empty), str(RATE_LIMIT)],
        "bots only": [str(bots)],
        "filters only": [str(filters)],
        "everything": [str(SHIPPED_RULES), str(RATE_LIMIT)],
    }


def measure_parts(args: argparse.Namespace) -> None:
    """The benign GET and 2 KB POST through each part of wafmw alone, in one run."""
    with tempfile.TemporaryDirectory() as tmp:
        parts = part_rules(Path(tmp))
        configs: dict[str, Any] = {"bare": bare_app()}
        configs.update({name: WAFMiddleware(bare_app(), rules=r) for name, r in parts.items()})
    cases = {k: v for k, v in make_cases().items() if k in ("benign GET", "2 KB JSON POST")}
    results = measure(configs, cases, args.rounds, args.requests, clients=args.clients)
    print(f"median µs per request over {args.rounds} interleaved rounds; {args.clients} clients")
    print(f"{'configuration':18} " + " ".join(f"{case:>22}" for case in cases))
    for name in configs:
        cells = []
        for case in cases:
            b, w = results[("bare", case)], results[(name, case)]
            cells.append(f"{w:9.1f} µs" + (f" {w - b:+9.1f}" if name != "bare" else " " * 10))
        print(f"{name:18} " + " ".join(f"{c:>22}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rules", action="append", help="rule file (default: shipped rules)")
    parser.add_argument("--no-rate-limit", action="store_true", help="without the rate limit")
    parser.add_argument("--clients", type=int, default=1000, help="client addresses to cycle")
    parser.add_argument("--varied", action="store_true", help="every request a different one")
    parser.add_argument("--parts", action="store_true", help="what each part of wafmw costs")
    parser.add_argument(
        "--same-objects", action="store_true", help="every request the same str and bytes objects"
    )
    args = parser.parse_args()
    logging.getLogger("wafmw").setLevel(logging.ERROR)  # the attack GET logs a decision each
    if args.parts:
        measure_parts(args)
        return
    rules = list(args.rules or [str(SHIPPED_RULES)])
    if not args.no_rate_limit:
        rules.append(str(RATE_LIMIT))
    bare = bare_app()
    configs = {"bare": bare, "wafmw": WAFMiddleware(bare_app(), rules=rules)}
    # Enough distinct requests that none repeats in a run (warm-up included).
    variants = 50 + args.rounds * args.requests if args.varied else 1
    results = measure(
        configs,
        make_cases(),
        args.rounds,
        args.requests,
        clients=args.clients,
        variants=variants,
        same=args.same_objects,
    )
    print(
        f"median µs per request over {args.rounds} interleaved rounds; rules: "
        f"{', '.join(Path(r).name for r in rules)}; {args.clients} clients; "
        + ("every request different" if args.varied else "one request per case, repeated")
        + ("; the same objects every time" if args.same_objects else "")
    )
    print(f"{'request':18} {'bare':>9} {'wafmw':>9} {'added':>9} {'ratio':>7}")
    for case in make_cases():
        b, w = results[("bare", case)], results[("wafmw", case)]
        print(f"{case:18} {b:9.1f} {w:9.1f} {w - b:+9.1f} {w / b:7.2f}")


if __name__ == "__main__":
    main()
