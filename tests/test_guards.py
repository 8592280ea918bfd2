"""Rate limits, IP lists, client identity and bots through the middleware (issues 4 and 5)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.asgi import EchoApp, call, http_scope
from wafmw import RuleFileError, WAFMiddleware

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("WAFMW_REDIS_URL", "redis://127.0.0.1:6379")

LOGIN_LIMIT = """\
wafmw: 1
settings:
  rate_limit_storage: "{storage}"
  client_ip: {{trusted_proxies: ["10.0.0.0/8"]}}
rate_limits:
  - id: 300010
    msg: login attempts
    match: {{path: /login, methods: [POST]}}
    limit: "5/minute"
    key: [client_ip]
    strategy: moving-window
"""


def redis_available() -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(REDIS_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1).close()
    except OSError:
        return False
    return True


def need_redis() -> None:
    if not redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required in CI")
        pytest.skip(f"no Redis at {REDIS_URL}")


def login(client: str = "203.0.113.9", xff: str | None = None, peer: str | None = None) -> dict:
    headers = [("host", "t"), ("content-length", "0")]
    if xff is not None:
        headers.append(("x-forwarded-for", xff))
    return http_scope("/login", method="POST", headers=headers, client=(peer or client, 5000))


async def test_login_limit_memory_sixth_gets_429(write_rules: Callable[..., Path]) -> None:
    app = EchoApp()
    waf = WAFMiddleware(app, rules=write_rules(LOGIN_LIMIT.format(storage="memory://")))
    statuses = [(await call(waf, login())).status for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    sixth = await call(waf, login())
    assert int(sixth.headers["retry-after"]) >= 1
    assert "ratelimit-policy" in sixth.headers and "ratelimit" in sixth.headers
    assert app.calls == 5
    # Other clients and other routes are not affected.
    assert (await call(waf, login(client="203.0.113.10"))).status == 200
    assert (await call(waf, http_scope("/login"))).status == 200


async def test_forged_forwarded_for_from_untrusted_peer_is_ignored(
    write_rules: Callable[..., Path],
) -> None:
    waf = WAFMiddleware(EchoApp(), rules=write_rules(LOGIN_LIMIT.format(storage="memory://")))
    statuses = [
        (await call(waf, login(xff=f"198.51.100.{i}"))).status for i in range(6)
    ]  # the peer (203.0.113.9) is untrusted, so each forged XFF changes nothing
    assert statuses == [200] * 5 + [429]


async def test_forwarded_for_from_trusted_proxy_keys_by_real_client(
    write_rules: Callable[..., Path],
) -> None:
    waf = WAFMiddleware(EchoApp(), rules=write_rules(LOGIN_LIMIT.format(storage="memory://")))
    for _ in range(5):
        assert (await call(waf, login(peer="10.1.2.3", xff="198.51.100.7"))).status == 200
    assert (await call(waf, login(peer="10.1.2.3", xff="198.51.100.7"))).status == 429
    # Behind the same proxy, another real client has its own quota.
    assert (await call(waf, login(peer="10.1.2.3", xff="198.51.100.8"))).status == 200


async def test_detect_mode_only_logs_rate_limits(write_rules: Callable[..., Path]) -> None:
    path = write_rules(LOGIN_LIMIT.format(storage="memory://"))
    waf = WAFMiddleware(EchoApp(), rules=path, mode="detect")
    assert [(await call(waf, login())).status for _ in range(7)] == [200] * 7
    assert waf.counters["logged"] == 2


async def test_two_workers_on_one_redis_allow_exactly_five(
    write_rules: Callable[..., Path],
) -> None:
    need_redis()
    # A fresh rule id per run: the counters in Redis outlive the test by a minute.
    rule_id = 400_000_000 + uuid.uuid4().int % 100_000_000
    rules = write_rules(LOGIN_LIMIT.format(storage=REDIS_URL).replace("300010", str(rule_id)))
    a, b = WAFMiddleware(EchoApp(), rules=rules), WAFMiddleware(EchoApp(), rules=rules)
    statuses = []
    for i in range(12):
        waf = (a, b)[i % 2]
        statuses.append((await call(waf, login(client="192.0.2.77"))).status)
    assert statuses.count(200) == 5 and statuses.count(429) == 7


async def test_storage_down_requests_still_served(write_rules: Callable[..., Path]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    rules = write_rules(LOGIN_LIMIT.format(storage=f"redis://127.0.0.1:{closed_port}"))
    app = EchoApp()
    waf = WAFMiddleware(app, rules=rules)
    statuses = [(await call(waf, login())).status for _ in range(8)]
    assert statuses == [200] * 8  # on_error open for the rate-limit group
    assert app.calls == 8
    closed = WAFMiddleware(
        EchoApp(),
        rules=write_rules(
            LOGIN_LIMIT.format(storage=f"redis://127.0.0.1:{closed_port}").replace(
                "client_ip:", "rate_limit_on_error: closed\n  client_ip:"
            ),
            "closed.yaml",
        ),
    )
    assert (await call(closed, login())).status == 503


async def test_ip_lists(write_rules: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "deny.txt").write_text("# abusers\n198.51.100.0/24\n")
    rules = write_rules(
        "wafmw: 1\n"
        "ip_lists:\n"
        "  allow: [192.0.2.10]\n"
        "  deny: [2001:db8::/32, {file: deny.txt}]\n"
        "filters:\n"
        "  - {id: 1, msg: m, targets: [args], contains: evil}\n"
    )
    waf = WAFMiddleware(EchoApp(), rules=rules)
    assert (await call(waf, http_scope("/", client=("198.51.100.20", 1)))).status == 403
    assert (await call(waf, http_scope("/", client=("2001:db8::5", 1)))).status == 403
    assert (await call(waf, http_scope("/", client=("203.0.113.1", 1)))).status == 200
    assert (await call(waf, http_scope("/?q=evil", client=("203.0.113.1", 1)))).status == 403
    # An allow-listed client skips the other rules (allow_skips_rules defaults to true).
    assert (await call(waf, http_scope("/?q=evil", client=("192.0.2.10", 1)))).status == 200


async def test_bad_rate_limit_and_ip_list_are_refused_with_place(
    write_rules: Callable[..., Path],
) -> None:
    rules = write_rules(
        "wafmw: 1\nrate_limits:\n  - {id: 7, msg: m, limit: 'lots/minute'}\n"
        "ip_lists:\n  deny: [10.0.0.300]\n"
    )
    with pytest.raises(RuleFileError) as info:
        WAFMiddleware(EchoApp(), rules=rules)
    problems = {(p.rule_id, p.field) for p in info.value.problems}
    assert (7, "limit") in problems
    assert any(field and field.startswith("ip_lists.deny") for _, field in problems)


# -- bots ----------------------------------------------------------------------------------------

CHROME = [
    ("host", "shop.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-language", "en-US,en;q=0.9"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("sec-ch-ua", '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", '"Windows"'),
    ("sec-fetch-site", "none"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("upgrade-insecure-requests", "1"),
]


def with_ua(ua: str) -> list[tuple[str, str]]:
    return [(k, ua if k == "user-agent" else v) for k, v in CHROME]


async def test_default_rules_bots_browser_passes_tools_refused() -> None:
    seen: dict[str, object] = {}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen["bot"] = scope.get("wafmw.bot")
        await EchoApp()(scope, receive, send)

    waf = WAFMiddleware(app)
    ok = await call(waf, http_scope("/products", headers=CHROME))
    assert ok.status == 200
    verdict = seen["bot"]
    assert verdict is not None and verdict.score is not None and verdict.score >= 60  # type: ignore[attr-defined]
    for tool in (
        "sqlmap/1.8.4#stable (https://sqlmap.org)",
        "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
    ):
        refused = await call(waf, http_scope("/products", headers=with_ua(tool)))
        assert refused.status == 403, tool


async def test_googlebot_from_outside_its_network_is_not_verified() -> None:
    seen: dict[str, object] = {}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen["bot"] = scope.get("wafmw.bot")
        await EchoApp()(scope, receive, send)

    waf = WAFMiddleware(app)
    googlebot = [
        ("host", "t"),
        ("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
        ("accept", "*/*"),
    ]
    result = await call(waf, http_scope("/", headers=googlebot, client=("203.0.113.50", 1)))
    verdict = seen.get("bot")
    if result.status == 200:
        assert verdict is not None
        assert verdict.verified_crawler is None and verdict.impostor  # type: ignore[attr-defined]
    else:
        assert result.status == 403  # an impostor may well be refused outright
    inside = await call(waf, http_scope("/", headers=googlebot, client=("66.249.66.1", 1)))
    assert inside.status == 200
    assert seen["bot"].verified_crawler == "googlebot"  # type: ignore[attr-defined]


async def test_rate_limit_matched_by_a_filter_condition(write_rules: Callable[..., Path]) -> None:
    rules = write_rules(
        "wafmw: 1\n"
        "rate_limits:\n"
        "  - id: 300030\n"
        "    msg: anonymous API calls\n"
        "    match:\n"
        "      path: /api/*\n"
        "      when: {targets: ['headers:x-api-key'], count: {eq: 0}}\n"
        "    limit: 2/minute\n"
    )
    waf = WAFMiddleware(EchoApp(), rules=rules)
    anonymous = [(await call(waf, http_scope("/api/items"))).status for _ in range(3)]
    assert anonymous == [200, 200, 429]
    keyed = http_scope("/api/items", headers=[("host", "t"), ("x-api-key", "k1")])
    assert [(await call(waf, keyed)).status for _ in range(3)] == [200, 200, 200]


async def test_rate_limit_condition_errors_name_the_place(
    write_rules: Callable[..., Path],
) -> None:
    rules = write_rules(
        "wafmw: 1\nrate_limits:\n  - id: 9\n    msg: m\n    limit: 1/minute\n"
        "    match: {when: {targets: [body], contains: x}}\n"
    )
    with pytest.raises(RuleFileError) as info:
        WAFMiddleware(EchoApp(), rules=rules)
    (problem,) = info.value.problems
    assert problem.rule_id == 9 and problem.field == "match.when.targets"


async def test_reload_keeps_counters_when_limits_unchanged(
    write_rules: Callable[..., Path],
) -> None:
    text = LOGIN_LIMIT.format(storage="memory://")
    path = write_rules(text)
    waf = WAFMiddleware(EchoApp(), rules=path)
    assert [(await call(waf, login())).status for _ in range(4)] == [200] * 4
    path.write_text(text + "filters:\n  - {id: 1, msg: m, targets: [args], contains: evil}\n")
    assert waf.reload() is True
    # The filter change did not reset the login counter: one more, then 429.
    assert [(await call(waf, login())).status for _ in range(2)] == [200, 429]
    assert (await call(waf, http_scope("/?q=evil"))).status == 403


async def test_storage_errors_are_counted_in_status(write_rules: Callable[..., Path]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    rules = write_rules(LOGIN_LIMIT.format(storage=f"redis://127.0.0.1:{closed_port}"))
    waf = WAFMiddleware(EchoApp(), rules=rules)
    for _ in range(3):
        await call(waf, login())
    status = waf.status()
    assert status["counters"]["rate_limit_storage_errors"] == 3
    assert status["active"]["rate_limits"] == 1


BOT_THRESHOLDS = """\
wafmw: 1
filters: []
bots:
  rules:
    - {id: 100950, msg: automated, below: 30, action: block, on_unknown: allow}
    - {id: 100951, msg: suspicious, below: 60, action: log, on_unknown: allow, paths: ["/shop*"]}
    - {id: 100952, msg: unknown, below: 45, action: log, on_unknown: log}
"""


@pytest.mark.parametrize("path", ["/", "/shop/cart"])
async def test_bot_rules_act_on_exactly_the_scores_below_their_thresholds(
    write_rules: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Guards skip walking the bot rules for a score no rule acts below; for every score and
    for UNKNOWN, what they answer is what decide() over all the rules answers."""
    from wafmw.bots.model import BotVerdict
    from wafmw.bots.rules import decide
    from wafmw.guards import Guards
    from wafmw.killswitch import NO_KILL
    from wafmw.loader import load_rules
    from wafmw.request import RequestView

    ruleset = load_rules([write_rules(BOT_THRESHOLDS)])
    guards = Guards(ruleset)
    assert guards.bots is not None and guards.detector is not None
    verdicts = [BotVerdict(s, (), None, False, s, "browser") for s in range(1, 100)]
    verdicts += [BotVerdict(None, (), None, False, b, "unknown") for b in (None, 20, 50, 90)]
    acted = set()
    for verdict in verdicts:
        monkeypatch.setattr(
            guards.detector, "evaluate_local", lambda view, count=False, v=verdict: v
        )
        view = RequestView(http_scope(path))
        outcome = guards.bot_local(view, NO_KILL, False)
        expected = decide(guards.bots.rules, verdict, "GET", path)
        got = outcome.match.rule_id if outcome is not None and outcome.match else None
        assert got == (expected.rule.id if expected is not None else None), verdict
        acted.add(got)
    assert acted == ({None, 100950, 100951, 100952} if path != "/" else {None, 100950, 100952})
