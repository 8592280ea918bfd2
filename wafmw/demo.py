"""`wafmw demo`: an example app behind the default rules, and a handful of requests through it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from .casetest import case_scope
from .middleware import WAFMiddleware
from .model import Case

# (label, method, path with query, headers, body)
DEMO_REQUESTS: list[tuple[str, str, str, dict[str, str], str]] = [
    ("benign search", "GET", "/search?q=union%20station", {}, ""),
    ("benign name", "GET", "/search?q=O%27Brien%20and%20sons", {}, ""),
    (
        "benign JSON post",
        "POST",
        "/comments",
        {"content-type": "application/json"},
        json.dumps({"author": "Ann", "text": "Select the best option; see <b>docs</b>."}),
    ),
    ("SQL injection", "GET", "/search?q=1%20UNION%20SELECT%20password%20FROM%20users", {}, ""),
    ("XSS", "GET", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E", {}, ""),
    ("path traversal", "GET", "/files?name=..%2F..%2F..%2Fetc%2Fpasswd", {}, ""),
    (
        "binary upload",  # NULs, CR LF, "|" and ";": binary data, a file to the filters
        "POST",
        "/comments",
        {"content-type": "application/octet-stream"},
        "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00|;\x00\x08\x06\x00\x00\x00\x1f\xf3\xffa",
    ),
    (
        "command injection",
        "POST",
        "/comments",
        {"content-type": "application/x-www-form-urlencoded"},
        "text=hello%3B%20cat%20/etc/passwd",
    ),
]


async def _home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello from the app behind wafmw\n")


async def _search(request: Request) -> JSONResponse:
    return JSONResponse({"query": request.query_params.get("q", ""), "results": []})


async def _files(request: Request) -> JSONResponse:
    return JSONResponse({"name": request.query_params.get("name", "")})


async def _comments(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"received_bytes": len(body)})


def example_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", _home),
            Route("/search", _search),
            Route("/files", _files),
            Route("/comments", _comments, methods=["POST"]),
        ]
    )


async def _call(app: Any, method: str, target: str, headers: dict[str, str], body: str) -> int:
    sample_headers = (("User-Agent", "wafmw-demo"), *headers.items())
    scope, data = case_scope(Case(method, target, sample_headers, body))
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


class _EventCapture(logging.Handler):
    """Collects the wafmw events of one request, to print which rules decided it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "wafmw", None)
        if isinstance(event, dict):
            self.events.append(event)


def run_demo(rules: list[str] | None = None) -> int:
    waf = WAFMiddleware(example_app(), rules=rules or None)
    ruleset = waf.engine.ruleset
    print(
        f"wafmw demo: ruleset {ruleset.version}, {len(ruleset.filters)} filters "
        f"(paranoia {ruleset.settings.paranoia}, mode {ruleset.settings.mode})\n"
    )
    capture = _EventCapture()
    log = logging.getLogger("wafmw")
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(capture)
    log.setLevel(logging.INFO)
    log.propagate = False  # the demo prints its own summary line per request
    results: list[tuple[str, str, str, int, float, list[int]]] = []

    async def send_all() -> None:
        for label, method, target, headers, body in DEMO_REQUESTS:
            capture.events.clear()
            started = time.perf_counter()
            status = await _call(waf, method, target, headers, body)
            elapsed = (time.perf_counter() - started) * 1e6
            rule_ids = [i for e in capture.events for i in e.get("rule_ids", [])]
            results.append((label, method, target, status, elapsed, rule_ids))

    try:
        asyncio.run(send_all())
    finally:
        log.removeHandler(capture)
        log.setLevel(old_level)
        log.propagate = old_propagate
    blocked = 0
    for label, method, target, status, elapsed, rule_ids in results:
        verdict = "BLOCKED" if status == 403 else "allowed"
        blocked += status == 403
        shown = target if len(target) <= 58 else target[:55] + "..."
        detail = f"  rules {rule_ids}" if rule_ids else ""
        print(f"  {verdict:8} {status}  {method:4} {shown:58} {elapsed:7.0f} µs  {label}{detail}")
    print(f"\n{blocked} of {len(DEMO_REQUESTS)} requests blocked; the rest reached the app.")
    return 0


def serve(rules: list[str] | None, host: str, port: int) -> int:
    try:
        import uvicorn
    except ImportError:
        print("`wafmw demo --serve` needs uvicorn: pip install 'wafmw[serve]'")
        return 2
    app = WAFMiddleware(example_app(), rules=rules or None)
    print(f"Try: curl -i 'http://{host}:{port}/search?q=1%20union%20select%20password'")
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
