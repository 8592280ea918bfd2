from __future__ import annotations

import logging
import random
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.asgi import EchoApp, call, http_scope, post_scope
from wafmw import RuleFileError, WAFMiddleware
from wafmw.errors import EvaluationTimeout
from wafmw.loader import default_rules_path
from wafmw.request import RequestView, may_have_body

pytestmark = pytest.mark.anyio

RULES = """
wafmw: 1
settings:
  mode: enforce
  on_error: open
  anomaly_threshold: 5
filters:
  - id: 100
    msg: SQL UNION SELECT
    targets: [args, body, path]
    transforms: [url_decode, lowercase]
    regex: '\\bunion\\b[\\s\\S]{0,100}?\\bselect\\b'
  - id: 101
    msg: weak signal
    severity: warning
    targets: [args]
    contains: sleepy
  - id: 102
    msg: another weak signal
    severity: notice
    targets: [args]
    contains: dreamy
"""

ATTACK = "/?id=1%20UNION%20SELECT%20password%20FROM%20users"


@pytest.fixture
def rules(write_rules: Callable[..., Path]) -> Path:
    return write_rules(RULES)


async def test_blocks_attack_and_passes_benign(rules: Path) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules)
    blocked = await call(waf, http_scope(ATTACK))
    assert blocked.status == 403
    assert app.calls == 0
    passed = await call(waf, http_scope("/?q=union%20station"))
    assert passed.status == 200
    assert app.calls == 1


async def test_block_response_has_request_id_and_no_rule_details(rules: Path) -> None:
    waf = WAFMiddleware(EchoApp(), rules=rules)
    html = await call(waf, http_scope(ATTACK))
    assert html.headers["content-type"].startswith("text/html")
    assert html.headers["x-request-id"].encode() in html.body
    assert b"SQL" not in html.body and b"union" not in html.body.lower()
    js = await call(waf, http_scope(ATTACK, headers=[("accept", "application/json")]))
    assert js.headers["content-type"] == "application/json"
    assert b'"request_id"' in js.body and b"union" not in js.body.lower()


async def test_anomaly_score_adds_up_weak_signals(rules: Path) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules)
    one = await call(waf, http_scope("/?a=sleepy"))
    assert one.status == 200  # 3 < threshold 5
    both = await call(waf, http_scope("/?a=sleepy&b=dreamy"))
    assert both.status == 403  # 3 + 2 reaches 5


async def test_detect_mode_logs_what_enforce_would_do(
    rules: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules, mode="detect")
    with caplog.at_level(logging.INFO, logger="wafmw"):
        result = await call(waf, http_scope(ATTACK))
    assert result.status == 200 and app.calls == 1
    events = [r.wafmw for r in caplog.records if hasattr(r, "wafmw")]
    assert len(events) == 1
    assert events[0]["would_block"] is True
    assert events[0]["rule_ids"] == [100]
    assert events[0]["ruleset"] == waf.engine.ruleset.version


async def test_off_mode_passes_everything(rules: Path) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules, mode="off")
    assert (await call(waf, http_scope(ATTACK))).status == 200
    assert app.calls == 1


async def test_block_event_is_logged_with_ruleset_version(
    rules: Path, caplog: pytest.LogCaptureFixture
) -> None:
    waf = WAFMiddleware(EchoApp(), rules=rules)
    with caplog.at_level(logging.INFO, logger="wafmw"):
        await call(waf, http_scope(ATTACK, headers=[("host", "t"), ("x-request-id", "abc-1")]))
    (event,) = [r.wafmw for r in caplog.records if hasattr(r, "wafmw")]
    assert event["action"] == "block"
    assert event["request_id"] == "abc-1"
    assert event["matches"][0]["target"] == "args:id"
    assert event["client"] == "127.0.0.1"
    assert event["method"] == "GET" and event["path"] == "/"
    assert event["eval_us"] > 0


async def test_post_body_reaches_app_byte_for_byte_in_chunks(rules: Path) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules)
    payload = bytes(range(256)) * 40 + "é ünïcode".encode()
    chunks = [payload[i : i + 1000] for i in range(0, len(payload), 1000)]
    scope = post_scope("/upload", payload, "application/octet-stream")
    result = await call(waf, scope, chunks)
    assert result.status == 200
    assert app.received == payload
    assert result.body == payload


async def test_body_attack_blocked(rules: Path) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules)
    body = b"comment=1+union+all+select+1"
    scope = post_scope("/c", body, "application/x-www-form-urlencoded")
    assert (await call(waf, scope, [body[:5], body[5:]])).status == 403
    assert app.calls == 0


async def test_body_beyond_inspect_limit_is_passed_whole(write_rules: Callable[..., Path]) -> None:
    path = write_rules(
        RULES.replace("anomaly_threshold: 5", "anomaly_threshold: 5\n  body: {inspect_bytes: 10}")
    )
    app = EchoApp()
    waf = WAFMiddleware(app, rules=path)
    body = b"x=1&" + b"a" * 5000 + b"&y=union select"
    scope = post_scope("/c", body, "application/x-www-form-urlencoded")
    result = await call(waf, scope, [body[:100], body[100:]])
    assert result.status == 200  # the attack is past the inspected prefix
    assert app.received == body


async def test_body_beyond_limit_rejected_when_configured(write_rules: Callable[..., Path]) -> None:
    path = write_rules(
        RULES.replace(
            "anomaly_threshold: 5",
            "anomaly_threshold: 5\n  body: {inspect_bytes: 10, oversize: reject}",
        )
    )
    app = EchoApp()
    waf = WAFMiddleware(app, rules=path)
    body = b"x" * 100
    scope = post_scope("/c", body)
    assert (await call(waf, scope, [body])).status == 413
    assert app.calls == 0


class Boom(Exception):
    pass


def _break_engine(waf: WAFMiddleware) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise Boom("inside the WAF")

    waf.engine.evaluate_head = explode  # type: ignore[method-assign]


async def test_fail_open_lets_request_through_with_body(
    rules: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules, on_error="open")
    _break_engine(waf)
    body = b"hello=world"
    scope = post_scope("/c", body)
    with caplog.at_level(logging.INFO, logger="wafmw"):
        result = await call(waf, scope, [body])
    assert result.status == 200 and app.received == body
    assert waf.counters["errors"] == 1
    assert any("Boom" in r.getMessage() for r in caplog.records)


async def test_fail_open_after_body_read_replays_body(rules: Path) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules, on_error="open")

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise Boom("phase 2")

    waf.engine.evaluate_body = explode  # type: ignore[method-assign]
    body = b"a=1&b=2"
    scope = post_scope("/c", body, "application/x-www-form-urlencoded")
    result = await call(waf, scope, [b"a=1", b"&b=2"])
    assert result.status == 200 and app.received == body


async def test_fail_closed_answers_503(rules: Path) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules, on_error="closed")
    _break_engine(waf)
    result = await call(waf, http_scope("/"))
    assert result.status == 503
    assert app.calls == 0


async def test_app_exception_passes_through_untouched(rules: Path) -> None:
    class AppError(Exception):
        pass

    async def failing_app(scope: Any, receive: Any, send: Any) -> None:
        raise AppError("the app's own")

    waf = WAFMiddleware(failing_app, rules=rules, on_error="closed")
    with pytest.raises(AppError):
        await call(waf, http_scope("/"))
    assert waf.counters["errors"] == 0


async def test_lifespan_and_unknown_scopes_pass_straight_through(rules: Path) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    waf = WAFMiddleware(app, rules=rules)
    await waf({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await waf({"type": "something-new"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "something-new"]


CATASTROPHIC = """
wafmw: 1
settings: {on_error: ON_ERROR, time_budget_ms: 200}
filters:
  - id: 500
    msg: a user rule that backtracks catastrophically (the look-ahead forces `regex`)
    targets: [args]
    regex: '^(?=(a|aa)+$)'
"""


@pytest.mark.parametrize(("on_error", "status"), [("open", 200), ("closed", 503)])
async def test_catastrophic_regex_cannot_hang_a_request(
    write_rules: Callable[..., Path], on_error: str, status: int
) -> None:
    path = write_rules(CATASTROPHIC.replace("ON_ERROR", on_error))
    waf = WAFMiddleware(EchoApp(), rules=path)
    assert waf.engine.groups[0].direct_head[0].pattern.engine == "regex"  # type: ignore[union-attr]
    started = time.perf_counter()
    result = await call(waf, http_scope("/?x=" + "a" * 40 + "!"))
    assert time.perf_counter() - started < 1.0
    assert result.status == status
    assert waf.counters["timeouts"] == 1


@pytest.mark.parametrize("phase", ["head", "body"])
@pytest.mark.parametrize("overruns", ["once", "always"])
async def test_an_evaluation_out_of_budget_runs_once_more(
    rules: Path, phase: str, overruns: str
) -> None:
    """A budget may go to work that is done by the next try (RE2 building the states that new
    text needs, or waiting for the GIL while a ruleset is built): a timed-out evaluation runs
    once more, and blocks the attack. One that overruns again is a timeout, and on_error
    (open) lets the request through."""
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules)
    engine = waf.engine
    real = engine.evaluate_head if phase == "head" else engine.evaluate_body
    calls: list[float] = []
    second_tries: list[bool] = []

    def out_of_budget(view: Any, deadline: float, **again: bool) -> Any:
        calls.append(deadline)
        second_tries.append(again.get("again", False))
        if len(calls) == 1 or overruns == "always":
            raise EvaluationTimeout()
        return real(view, deadline, **again)

    setattr(engine, f"evaluate_{phase}", out_of_budget)
    if phase == "head":
        result = await call(waf, http_scope(ATTACK))
    else:
        body = b"q=1 UNION SELECT password FROM users"
        scope = post_scope("/", body, "application/x-www-form-urlencoded")
        result = await call(waf, scope, [body])
    assert len(calls) == 2 and calls[1] > calls[0]  # the second try has a budget of its own
    # The body's second try takes up what the first one remembered (see test_engine).
    assert second_tries == [False, phase == "body"]
    if overruns == "once":
        assert (result.status, app.calls, waf.counters["timeouts"]) == (403, 0, 0)
    else:
        assert (result.status, app.calls, waf.counters["timeouts"]) == (200, 1, 1)


SLOW_BESIDE_AN_ATTACK_RULE = """
wafmw: 1
settings: {on_error: open, time_budget_ms: 50}
filters:
  - id: 100
    msg: SQL UNION SELECT
    targets: [args, body]
    transforms: [url_decode, lowercase]
    regex: '\\bunion\\b[\\s\\S]{0,100}?\\bselect\\b'
  - id: 500
    msg: a user rule that backtracks catastrophically (the look-ahead forces `regex`)
    targets: [args, body]
    regex: '^(?=(a|aa)+$)'
  - id: 600
    msg: a trusted partner's requests (after rule 500, which overruns first)
    targets: ['args:partner']
    length: {eq: 4}
    action: allow
"""
SLOW_VALUE = "a" * 40 + "!"


@pytest.mark.parametrize("phase", ["head", "body"])
@pytest.mark.parametrize("attack", [True, False])
async def test_an_overrun_keeps_the_block_it_found(
    write_rules: Callable[..., Path], phase: str, attack: bool
) -> None:
    """A value that runs a rule out of the budget must not carry an attack found before it
    past the WAF (on_error: open): what the evaluation found before the overrun already
    blocks, as the rest could only add to it. Without that evidence the overrun is the usual
    timeout: a second try, and on_error."""
    waf = WAFMiddleware(app := EchoApp(), rules=write_rules(SLOW_BESIDE_AN_ATTACK_RULE))
    query = ("id=1%20UNION%20SELECT%20password%20FROM%20users&" if attack else "") + (
        "x=" + SLOW_VALUE
    )
    if phase == "head":
        result = await call(waf, http_scope("/?" + query))
    else:
        body = query.encode()
        result = await call(waf, post_scope("/", body, "application/x-www-form-urlencoded"), [body])
    assert waf.counters["timeouts"] == 1
    if attack:
        assert (result.status, app.calls) == (403, 0)
    else:
        assert (result.status, app.calls) == (200, 1)
    # The rule that overran counts towards its quarantine either way.
    assert list(waf.store._failures) == [500]


async def test_an_overrun_still_lets_an_allow_rule_allow(write_rules: Callable[..., Path]) -> None:
    """An allow filter would allow the request whatever else matched: when the evaluation
    overran before it, it is checked before blocking on what was found."""
    waf = WAFMiddleware(app := EchoApp(), rules=write_rules(SLOW_BESIDE_AN_ATTACK_RULE))
    target = "/?id=1%20UNION%20SELECT%20password%20FROM%20users&x=" + SLOW_VALUE
    result = await call(waf, http_scope(target + "&partner=acme"))
    assert (result.status, app.calls) == (200, 1)
    result = await call(waf, http_scope(target + "&partner=other"))
    assert (result.status, app.calls) == (403, 1)


async def test_an_attack_padded_with_random_text_is_blocked(tmp_path: Path) -> None:
    """Random text is what RE2's lazily built automata handle worst the first time (tens of
    milliseconds a kilobyte through a set); the query's text here is long enough to be probed
    and searched one pattern at a time. The shipped rules and settings, but for a time budget
    that no machine overruns: whether 50 ms suffice is the machine's speed, measured by
    benchmarks/hostile.py (a 4 KB query took 60-75 ms first, then 17-52 ms on a slow day);
    the second try after an overrun is tested above."""
    shipped = default_rules_path()
    top = yaml.safe_load(shipped.read_text())
    top["include"] = [str(shipped.parent / name) for name in top["include"]]
    top["settings"]["time_budget_ms"] = 10_000
    rules = tmp_path / "shipped.yaml"
    rules.write_text(yaml.safe_dump(top))
    rng = random.Random(5)
    printable = string.ascii_letters + string.digits + string.punctuation + " "
    junk = "".join(rng.choice(printable) for _ in range(2048))
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules)
    target = "/search?id=1%20UNION%20SELECT%20password%20FROM%20users&pad=" + quote(junk, safe="")
    result = await call(waf, http_scope(target))
    assert (result.status, app.calls, waf.counters["timeouts"]) == (403, 0, 0)


async def test_binary_uploads_pass_the_shipped_rules_byte_for_byte() -> None:
    """Random bytes hold NULs, CR LF and shell punctuation: read as text, the shipped rules
    refused every such upload (a null byte alone scores 5)."""
    rng = random.Random(11)
    app = EchoApp()
    waf = WAFMiddleware(app)
    uploads = [rng.randbytes(size) for size in (1, 100, 4096, 20000)]
    uploads.append(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(3000))
    for body in uploads:
        scope = post_scope("/upload", body, "application/octet-stream")
        result = await call(waf, scope, [body[:700], body[700:]])
        assert (result.status, app.received) == (200, body)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32"])
async def test_text_labelled_as_binary_is_still_inspected(encoding: str) -> None:
    """Starlette's request.json() reads any body, whatever its Content-Type, in UTF-8, 16 or
    32: text sent as octet-stream is inspected as text."""
    app = EchoApp()
    waf = WAFMiddleware(app)
    body = '{"id": "1 UNION SELECT password FROM users"}'.encode(encoding)
    result = await call(waf, post_scope("/api", body, "application/octet-stream"), [body])
    assert (result.status, app.calls) == (403, 0)


async def test_a_binary_body_is_read_by_body_raw_filters_only(
    write_rules: Callable[..., Path],
) -> None:
    def waf_reading(target: str) -> WAFMiddleware:
        text = RULES + (
            f"  - id: 200\n    msg: php in an upload\n    targets: [{target}]\n"
            "    contains: '<?php'\n    severity: critical\n"
        )
        return WAFMiddleware(EchoApp(), rules=write_rules(text, f"{target}.yaml"))

    body = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00<?php system($_GET['c']); ?>\xff\xd9"
    as_binary = post_scope("/upload", body, "image/jpeg")
    as_text = post_scope("/upload", body, "text/plain")
    assert (await call(waf_reading("body_raw"), as_binary, [body])).status == 403
    assert (await call(waf_reading("body"), as_binary, [body])).status == 200
    assert (await call(waf_reading("body"), as_text, [body])).status == 403


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_chunked_body_declared_empty_by_content_length_is_inspected(method: str) -> None:
    """A server frames a chunked body by Transfer-Encoding whatever Content-Length says: the
    body the app would read is the one the WAF inspects, whatever the method."""
    app = EchoApp()
    waf = WAFMiddleware(app)
    headers = [
        ("content-length", "0"),
        ("transfer-encoding", "chunked"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]
    attack = b"id=1%20UNION%20SELECT%20password%20FROM%20users"
    result = await call(waf, http_scope("/submit", method, headers), [attack])
    assert (result.status, app.calls) == (403, 0)


async def test_a_remembered_clean_head_keeps_its_body_inspected_or_not() -> None:
    """The memory of clean heads also remembers whether a head frames a body: sent again and
    again (remembered from the second time on), a GET with a chunked body still has it
    inspected, and a GET without framing headers still reaches the app with its messages
    untouched."""
    app = EchoApp()
    waf = WAFMiddleware(app)
    framed = [
        ("transfer-encoding", "chunked"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]
    for _ in range(4):
        result = await call(waf, http_scope("/submit", "GET", framed), [b"q=shirts"])
        assert result.status == 200
    assert app.calls == 4
    attack = b"id=1%20UNION%20SELECT%20password%20FROM%20users"
    for _ in range(3):
        result = await call(waf, http_scope("/submit", "GET", framed), [attack])
        assert result.status == 403
    assert app.calls == 4
    plain = http_scope("/page", "GET", [("accept", "text/html")])
    reads: list[int] = []  # app.calls as each receive() came

    async def receive() -> dict[str, Any]:
        reads.append(app.calls)
        return {"type": "http.request", "body": b"unframed", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    for calls in range(5, 9):
        await waf(plain, receive, send)
        assert (app.calls, app.received) == (calls, b"unframed")
    assert reads == [5, 6, 7, 8]  # no framing header: each body read by the app, not the WAF


async def test_an_empty_post_reaches_the_app_as_sent() -> None:
    """A body method is always read: an empty body is handed on as the server gave it."""
    app = EchoApp()
    waf = WAFMiddleware(app)
    result = await call(waf, http_scope("/submit", "DELETE", [("content-length", "0")]))
    assert (result.status, app.calls, app.received) == (200, 1, b"")


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", [], False),
        ("POST", [], True),  # HTTP/2 and HTTP/3 need no Content-Length: the method says
        ("GET", [(b"content-length", b"12")], True),
        ("POST", [(b"content-length", b"0")], True),  # a body method is always read
        ("DELETE", [], True),
        ("OPTIONS", [(b"content-length", b"0")], False),
        ("GET", [(b"content-length", b" 0 ")], False),
        ("GET", [(b"transfer-encoding", b"chunked")], True),
        # Transfer-Encoding frames the body whatever Content-Length says (RFC 9112, 6.3).
        ("GET", [(b"transfer-encoding", b"chunked"), (b"content-length", b"0")], True),
        ("POST", [(b"content-length", b"0"), (b"transfer-encoding", b"chunked")], True),
        ("GET", [(b"content-length", b"5"), (b"content-length", b"0")], True),  # the first
        ("GET", [[b"host", b"t"], [b"content-length", b"3"]], True),  # pairs as lists
    ],
)
def test_whether_a_request_may_have_a_body(method: str, headers: list[Any], expected: bool) -> None:
    scope = {"type": "http", "method": method, "path": "/", "headers": [(b"host", b"t"), *headers]}
    assert may_have_body(RequestView(scope)) is expected


async def test_invalid_rules_refused_at_startup(write_rules: Callable[..., Path]) -> None:
    path = write_rules(
        "wafmw: 1\nfilters:\n  - id: 1\n    msg: m\n    targets: [args]\n    regex: '('\n"
    )
    with pytest.raises(RuleFileError) as info:
        WAFMiddleware(EchoApp(), rules=path)
    assert "rule 1" in str(info.value) and "regex" in str(info.value)


# -- a real Starlette app ------------------------------------------------------------------------


def _starlette_app(rules: Path, **options: Any) -> Starlette:
    async def search(request: Request) -> JSONResponse:
        return JSONResponse({"q": request.query_params.get("q")})

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await request.body())

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    return Starlette(
        routes=[
            Route("/search", search),
            Route("/echo", echo, methods=["POST"]),
            WebSocketRoute("/ws", ws),
        ],
        middleware=[Middleware(WAFMiddleware, rules=rules, **options)],
    )


def test_starlette_app_with_middleware_entry(rules: Path) -> None:
    client = TestClient(_starlette_app(rules))
    assert client.get("/search", params={"q": "union station"}).json() == {"q": "union station"}
    assert client.get("/search?q=1%20union%20select%20pw").status_code == 403
    body = b"name=O'Brien&note=select a seat"
    response = client.post(
        "/echo", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200 and response.content == body


def test_websocket_handshake_inspected(rules: Path) -> None:
    client = TestClient(_starlette_app(rules))
    with client.websocket_connect("/ws?room=lobby") as ws:
        assert ws.receive_text() == "hi"
    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/ws?room=1%20union%20select%20pw"),
    ):
        pass
    assert info.value.code == 1008


async def test_failure_before_evaluation_is_inside_the_boundary(rules: Path) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules, on_error="open")

    def broken_snapshot() -> Any:
        raise Boom("deriving the kill-switch engine failed")

    waf.store.engine = broken_snapshot  # type: ignore[method-assign]
    result = await call(waf, http_scope("/"))
    assert result.status == 200 and app.calls == 1
    assert waf.counters["errors"] == 1


@pytest.mark.anyio
async def test_header_pairs_given_as_lists_are_inspected_every_time() -> None:
    """ASGI says header pairs are tuples of bytes; a server that gives lists makes the head
    unhashable. The memories of heads then do without: every request is still inspected (the
    shipped rules, bots included), and a body is still found by its Content-Length."""
    app = EchoApp()
    waf = WAFMiddleware(app)

    def listed(scope: dict[str, Any]) -> dict[str, Any]:
        scope["headers"] = [[name, value] for name, value in scope["headers"]]
        return scope

    browser = [("host", "t"), ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox")]
    for _ in range(2):
        assert (await call(waf, listed(http_scope("/p?q=shirts", headers=browser)))).status == 200
        attack = http_scope("/p?q=1%20UNION%20SELECT%20password%20FROM%20users", headers=browser)
        assert (await call(waf, listed(attack))).status == 403
        body = b"q=<script>alert(document.cookie)</script>"
        post = post_scope("/p", body, "application/x-www-form-urlencoded")
        assert (await call(waf, listed(post), [body])).status == 403
        benign = post_scope("/p", b"q=shirts", "application/x-www-form-urlencoded")
        result = await call(waf, listed(benign), [b"q=shirts"])
        assert result.status == 200 and app.received == b"q=shirts"
    assert waf.counters["errors"] == 0


@pytest.mark.parametrize("answer", [404, 200])
async def test_the_apps_answers_reach_the_bot_behaviour_counts(
    write_rules: Callable[..., Path], answer: int
) -> None:
    """The status the app sends is what the behaviour tracker counts: a client answered 404
    again and again earns the 4xx-share signal; the same requests answered 200 do not."""
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope.get("wafmw.bot"))
        await send({"type": "http.response.start", "status": answer, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    waf = WAFMiddleware(app, rules=write_rules("wafmw: 1\nfilters: []\nbots: {}\n"))
    headers = [("host", "t"), ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox")]
    for index in range(25):
        result = await call(waf, http_scope(f"/page-{index % 3}", headers=headers))
        assert result.status == answer  # sent through to the client as the app sent it
    ids = {signal.id for signal in seen[-1].signals}
    assert (913141 in ids) == (answer == 404)
