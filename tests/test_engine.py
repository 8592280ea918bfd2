"""The engine's operators, targets, exclusions and decisions, driven through rule files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wafmw import detectors, load_rules
from wafmw import engine as engine_module
from wafmw import transforms as transforms_module
from wafmw.casetest import case_scope
from wafmw.decision import Match
from wafmw.doorkeeper import Doorkeeper
from wafmw.engine import Engine
from wafmw.model import Case
from wafmw.request import RequestView, may_have_body


def engine_for(write_rules: Callable[..., Path], filters: str, extra: str = "") -> Engine:
    return Engine(load_rules(write_rules("wafmw: 1\nfilters:\n" + filters + extra)))


def matched(
    engine: Engine, path: str, *, method: str = "GET", headers: tuple = (), body: str = ""
) -> list[int]:
    scope, data = case_scope(Case(method=method, path=path, headers=headers, body=body))
    view = RequestView(scope)
    deadline = time.perf_counter() + 5
    matches = engine.evaluate_head(view, deadline)
    if data:
        view.body = data
        matches += engine.evaluate_body(view, deadline)
    return sorted(m.rule_id for m in matches)


def rule(rule_id: int, targets: str, op: str, extra: str = "") -> str:
    text = f"  - id: {rule_id}\n    msg: r{rule_id}\n    targets: {targets}\n    {op}\n"
    return text + "".join(f"    {line}\n" for line in extra.splitlines() if line)


def test_operators(write_rules: Callable[..., Path]) -> None:
    engine = engine_for(
        write_rules,
        rule(1, "[args]", "contains: needle")
        + rule(2, "[args]", "contains_any: [alpha, beta]")
        + rule(3, "[method]", "equals: DELETE")
        + rule(4, "['headers:user-agent']", "starts_with: curl/")
        + rule(5, "[path]", "ends_with: .php")
        + rule(6, "[args]", "length: {gt: 10}")
        + rule(7, "[args]", "count: {ge: 3}")
        + rule(8, "[args]", "regex: '(?i)^x+$'"),
    )
    assert matched(engine, "/?a=a-needle") == [1]
    assert matched(engine, "/?a=a+beta") == [2]
    assert matched(engine, "/", method="DELETE") == [3]
    assert matched(engine, "/", headers=(("User-Agent", "curl/8.0"),)) == [4]
    assert matched(engine, "/", headers=(("User-Agent", "Mozilla curl/8.0"),)) == []
    assert matched(engine, "/index.php") == [5]
    assert matched(engine, "/?a=0123456789ab") == [6]
    assert matched(engine, "/?a=1&b=2&c=3") == [7]
    assert matched(engine, "/?a=XXX") == [8]
    assert matched(engine, "/?a=yXXX") == []


def test_negate_and_missing_header(write_rules: Callable[..., Path]) -> None:
    engine = engine_for(
        write_rules,
        rule(1, "['headers:user-agent']", "count: {eq: 0}")
        + rule(2, "[method]", "equals: GET", "negate: true"),
    )
    assert matched(engine, "/") == [1]
    assert matched(engine, "/", headers=(("User-Agent", "x"),)) == []
    assert matched(engine, "/", method="POST", headers=(("User-Agent", "x"),), body="a=1") == [2]


def test_transforms_apply_before_matching(write_rules: Callable[..., Path]) -> None:
    engine = engine_for(
        write_rules,
        rule(
            1,
            "[args]",
            "contains: '<script'",
            "transforms: [url_decode, html_entity_decode, lowercase]",
        )
        + rule(2, "[args]", "contains: '../'", "transforms: [normalize_path]"),
    )
    assert matched(engine, "/?q=%253CScRiPt%253E") == [1]  # double encoded
    assert matched(engine, "/?q=%26lt;script%26gt;") == [1]  # entity after url decoding
    assert matched(engine, "/?f=..%5C..%5Cwin.ini") == [2]  # backslashes


def test_named_targets_and_body_kinds(write_rules: Callable[..., Path]) -> None:
    engine = engine_for(
        write_rules,
        rule(1, "['args:id']", "contains: evil")
        + rule(2, "[body]", "contains: evil")
        + rule(3, "['cookies:session']", "contains: evil")
        + rule(4, "[body_names]", "contains: $where")
        + rule(5, "[files]", "ends_with: .php"),
    )
    assert matched(engine, "/?id=evil") == [1]
    assert matched(engine, "/?other=evil") == []
    assert matched(engine, "/", headers=(("Cookie", "a=b; session=evil"),)) == [3]
    assert matched(engine, "/", headers=(("Cookie", "a=evil"),)) == []
    json_headers = (("Content-Type", "application/json"),)
    assert matched(
        engine, "/", method="POST", headers=json_headers, body='{"user": {"name": "evil"}}'
    ) == [2]
    assert matched(
        engine, "/", method="POST", headers=json_headers, body='{"user": {"$where": "1"}}'
    ) == [4]
    multipart = (
        '--XyZ\r\nContent-Disposition: form-data; name="f"; filename="shell.php"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n<?php ?>\r\n--XyZ--\r\n"
    )
    assert matched(
        engine,
        "/",
        method="POST",
        body=multipart,
        headers=(("Content-Type", "multipart/form-data; boundary=XyZ"),),
    ) == [5]


def test_a_named_argument_is_found_however_its_name_is_spelled(
    write_rules: Callable[..., Path],
) -> None:
    """A filter on named query arguments that no sieve speaks for (a length) is skipped when
    none of the names is in the query and nothing there is encoded; a name spelled encoded
    is still found."""
    engine = engine_for(write_rules, rule(1, "['args:_method']", "length: {gt: 3}"))
    assert engine._head_args_only  # the shortcut this test is about applies
    assert matched(engine, "/?_method=DELETE") == [1]
    assert matched(engine, "/?a=1&_method=DELETE") == [1]
    assert matched(engine, "/?%5Fmethod=DELETE") == [1]  # percent-encoded name
    assert matched(engine, "/?_met%68od=DELETE&b=1") == [1]
    assert matched(engine, "/?_method=a+b+c") == [1]
    assert matched(engine, "/?method=DELETE") == []
    assert matched(engine, "/?a=DELETE&_methods=DELETE") == []
    assert matched(engine, "/?_method=PUT") == []


def test_exclusions_by_path_and_by_argument(write_rules: Callable[..., Path]) -> None:
    filters = rule(1, "[args]", "contains: evil", "tags: [demo]") + rule(
        2, "[args]", "contains: evil"
    )
    engine = engine_for(
        write_rules,
        filters,
        "exclusions:\n"
        "  - {rules: [1], path: /admin/*}\n"
        "  - {tags: [demo], targets: ['args:html']}\n",
    )
    assert matched(engine, "/?q=evil") == [1, 2]
    assert matched(engine, "/admin/page?q=evil") == [2]  # rule 1 off on this path only
    assert matched(engine, "/?html=evil") == [2]  # rule 1 ignores just this argument
    assert matched(engine, "/?html=evil&q=evil") == [1, 2]  # ...but still sees the others


def test_decision_allow_block_and_rule_detect_mode(write_rules: Callable[..., Path]) -> None:
    engine = engine_for(
        write_rules,
        rule(1, "[path]", "equals: /health", "action: allow")
        + rule(2, "[args]", "contains: bad", "action: block")
        + rule(3, "[args]", "contains: trial", "mode: detect")
        + rule(4, "[args]", "contains: note", "action: log"),
    )

    def decide(path: str) -> tuple[str, bool]:
        scope, _ = case_scope(Case(path=path))
        decision = engine.decide(engine.evaluate_head(RequestView(scope), time.perf_counter() + 5))
        return decision.outcome, decision.would_block

    assert decide("/health?x=bad") == ("allow", False)
    assert decide("/?x=bad") == ("block", True)
    assert decide("/?x=trial") == ("log", True)  # detect-only rule: logged, would block
    assert decide("/?x=note") == ("log", False)
    assert decide("/?x=fine") == ("allow", False)


def test_anchors_hold_per_value_in_joined_scan(write_rules: Callable[..., Path]) -> None:
    engine = engine_for(write_rules, rule(1, "[args]", "regex: '^admin$'"))
    assert matched(engine, "/?a=x&b=admin&c=y") == [1]
    assert matched(engine, "/?a=xadmin") == []


def test_many_rules_share_one_scanner_per_chain(write_rules: Callable[..., Path]) -> None:
    filters = "".join(
        rule(i, "[args]", f"regex: '\\bword{i}x'", "transforms: [lowercase]") for i in range(1, 201)
    )
    engine = engine_for(write_rules, filters)
    assert len(engine.groups) == 1 and len(engine.groups[0].set_filters) == 200
    assert matched(engine, "/?q=WORD137X+word13") == [137]


def test_join_separator_avoids_what_rules_look_for(write_rules: Callable[..., Path]) -> None:
    engine = engine_for(
        write_rules,
        rule(1, "[args, headers]", "regex: '\\x00|\\n[a-z-]+:'", "transforms: [url_decode]"),
    )
    (group,) = engine.groups
    assert group.separator not in ("\x00", "\n")
    # Values that would look like a header line or a NUL byte at a join are not flagged...
    scope, _ = case_scope(Case(path="/?a=x&b=https://example.com/", headers=(("X-A", "b"),)))
    view = RequestView(scope)
    assert (
        group.scanner.match(
            view.transformed(view.joined(group.head_units, group.separator), group.chain)
        )
        == []
    )
    # ...while the same rule still matches inside one value.
    assert matched(engine, "/?a=x%00y") == [1]
    assert matched(engine, "/?a=x%0aset-cookie:%20a") == [1]


def test_a_clean_head_is_remembered_and_a_matching_one_never(
    write_rules: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(
        write_rules,
        rule(1, "[args, headers]", "contains: evil")
        + rule(2, "[headers:x-mode]", "contains: debug", "mode: detect"),
    )
    evaluated: list[str] = []
    full = engine._evaluate

    def counting(view: RequestView, deadline: float, *, body: bool) -> list[Any]:
        evaluated.append(view.path)
        return full(view, deadline, body=body)

    monkeypatch.setattr(engine, "_evaluate", counting)
    headers = (("User-Agent", "a browser"),)
    assert matched(engine, "/p?q=fine", headers=headers) == []
    assert not engine._clean_heads  # seen once: not remembered (see doorkeeper.py)
    assert matched(engine, "/p?q=fine", headers=headers) == []
    assert matched(engine, "/p?q=fine", headers=headers) == []
    assert evaluated == ["/p", "/p"]  # the third time: one lookup
    # Any change in the head is a new head.
    assert matched(engine, "/p?q=evil", headers=headers) == [1]
    assert matched(engine, "/p?q=fine", headers=(("User-Agent", "evil bot"),)) == [1]
    assert matched(engine, "/p?q=fine", headers=(*headers, ("X-Mode", "debug"))) == [2]
    # A head with a match, even a detect-only one, is evaluated every time: logged each time.
    assert matched(engine, "/p?q=fine", headers=(*headers, ("X-Mode", "debug"))) == [2]
    assert matched(engine, "/p?q=evil", headers=headers) == [1]
    assert len(evaluated) == 7


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", [(b"accept", b"text/html")]),
        ("GET", [(b"transfer-encoding", b"chunked"), (b"content-type", b"text/plain")]),
        ("GET", [(b"content-length", b"0")]),
        ("POST", [(b"content-type", b"Application/JSON; charset=utf-8")]),
        ("PUT", [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"9")]),
        ("OPTIONS", [(b"content-length", b"4")]),
    ],
)
def test_a_remembered_head_hands_over_what_a_fresh_view_works_out(
    write_rules: Callable[..., Path], method: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """The memory of clean heads also keeps whether each head frames a body and its media
    type: a view whose head it knows gets the answers a fresh view works out itself."""
    engine = engine_for(write_rules, rule(1, "[args]", "contains: evil"))

    def view() -> RequestView:
        scope = {"type": "http", "method": method, "path": "/p", "query_string": b"q=1"}
        return RequestView({**scope, "headers": [(b"host", b"t"), *headers]})

    for _ in range(3):  # remembered from the second time on
        remembered = view()
        assert engine.evaluate_head(remembered, time.perf_counter() + 5) == []
    assert engine._clean_heads
    assert remembered.known_may_have_body is not None  # handed over, not worked out
    fresh = view()
    assert (may_have_body(remembered), remembered.media_type) == (
        may_have_body(fresh),
        fresh.media_type,
    )


def test_header_pairs_given_as_lists_are_read_as_pairs(write_rules: Callable[..., Path]) -> None:
    """ASGI allows any iterable pair: a head whose pairs are lists (unhashable) gets the
    verdicts of the same head given as tuples, each time (the memories do without it)."""
    engine = engine_for(
        write_rules,
        rule(1, "['headers:user-agent']", "starts_with: sqlmap")  # decided by the signature
        + rule(2, "[headers]", "contains: evil")  # the sieve's
        + rule(3, "['headers:x-mode']", "length: {gt: 3}"),  # a direct filter
    )

    def verdict(pairs: list[Any]) -> list[int]:
        scope = {"type": "http", "method": "GET", "path": "/", "query_string": b""}
        view = RequestView({**scope, "headers": [[b"host", b"t"], *pairs]})
        return sorted(m.rule_id for m in engine.evaluate_head(view, time.perf_counter() + 5))

    for _ in range(3):
        assert verdict([[b"user-agent", b"sqlmap/1.7"]]) == [1]
        assert verdict([[b"user-agent", b"Mozilla/5.0"], [b"x-note", b"evil"]]) == [2]
        assert verdict([[b"x-mode", b"debug"]]) == [3]
        assert verdict([[b"user-agent", b"Mozilla/5.0"], [b"x-mode", b"on"]]) == []
        assert verdict([(b"user-agent", b"sqlmap/1.7"), [b"x-mode", b"debug"]]) == [1, 3]


def test_the_clean_head_memory_is_bounded(
    write_rules: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "_CLEAN_HEAD_MEMORY", 16)
    engine = engine_for(write_rules, rule(1, "[args]", "contains: evil"))
    for i in range(100):
        assert matched(engine, f"/p?q={i}") == []
        assert matched(engine, f"/p?q={i}") == []  # seen twice: remembered
        assert 0 < len(engine._clean_heads) <= 16
    for _ in range(2):
        assert matched(engine, "/p?q=" + "a" * 5000) == []  # too large to remember
    assert all(len(key[5]) < 5000 for key in engine._clean_heads)


def test_heads_seen_once_are_not_remembered(write_rules: Callable[..., Path]) -> None:
    """Most heads carry their own path, query or cookie: remembering each would only churn
    the memory. Among one-off heads, one that comes back is remembered."""
    engine = engine_for(write_rules, rule(1, "[args]", "contains: evil"))
    for i in range(200):
        assert matched(engine, f"/p?q={i}") == []
    assert not engine._clean_heads
    assert matched(engine, "/p?q=7") == []
    assert len(engine._clean_heads) == 1


def test_forget_makes_the_next_request_a_first_sight(
    write_rules: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(write_rules, rule(1, "[args, headers]", "contains: evil"))
    headers = (("User-Agent", "a browser"),)
    assert matched(engine, "/p?q=fine", headers=headers) == []
    assert matched(engine, "/p?q=fine", headers=headers) == []
    assert engine._clean_heads and engine.head_sieve is not None
    assert engine.head_sieve.parts_seen
    engine.forget()
    assert not engine._clean_heads and not engine.head_sieve.parts_seen
    evaluated: list[bool] = []
    full = engine._evaluate
    monkeypatch.setattr(
        engine, "_evaluate", lambda *a, **k: evaluated.append(True) or full(*a, **k)
    )
    assert matched(engine, "/p?q=fine", headers=headers) == []
    assert evaluated == [True]


@pytest.mark.parametrize("words", [1, 60], ids=["short value", "long value"])
def test_forget_drops_the_detectors_memory_of_values(
    write_rules: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, words: int
) -> None:
    """A detector remembers its verdicts on short values, and on the last long one; after
    forget() the same value is read again, as for a request that is new (the worst-case
    benchmark times shapes so: with the last long value remembered, a shape sent request
    after request cost a third of what it costs between others)."""
    engine = engine_for(write_rules, rule(1, "[args]", "detect: sqli"))
    read: list[str] = []
    real = detectors._sqli
    monkeypatch.setattr(detectors, "_sqli", lambda value: read.append(value) or real(value))
    path = "/p?q=" + "union+station+" * words
    assert matched(engine, path) == []
    assert len(read) == 1
    engine.forget()
    assert matched(engine, path) == []
    assert len(read) == 2 and read[0] == read[1]


class _Iterable:
    """Header pairs a server gives as an iterable that is no sequence (ASGI allows it)."""

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.pairs = pairs

    def __iter__(self) -> Any:
        return iter(self.pairs)


@pytest.mark.parametrize("shape", ["tuples", "lists", "iterable"])
def test_a_repeated_header_reads_as_its_first_value(shape: str) -> None:
    """header() and raw_header() agree with the first of repeated headers, whatever shape the
    server gave the pairs in."""
    pairs = [
        (b"host", b"a.example"),
        (b"content-length", b"5"),
        (b"x-twice", b"first"),
        (b"content-length", b"0"),
        (b"x-twice", b"second"),
    ]
    headers: Any = {
        "tuples": pairs,
        "lists": [list(p) for p in pairs],
        "iterable": _Iterable(pairs),
    }[shape]
    view = RequestView({"type": "http", "method": "POST", "path": "/", "headers": headers})
    assert view.raw_header(b"content-length") == b"5"
    assert view.raw_header(b"x-twice") == b"first"
    assert view.header("x-twice") == "first"
    assert view.raw_header(b"absent") is None and view.header("absent") is None
    assert view.header("host") == "a.example"


def test_the_rules_of_one_detector_read_a_value_once(
    write_rules: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rules on the same detector, whose transforms leave a value as it is, read it once:
    a short value through the shared memory, a long one through the last value kept."""
    read: list[int] = []
    real = detectors.DETECTORS["sqli"]

    def counted(value: str) -> bool:
        read.append(len(value))
        return bool(real.check(value))

    counting = detectors.Detector("sqli", real.prefilter, counted)
    monkeypatch.setattr(engine_module, "get_detector", lambda name: counting)
    engine = engine_for(
        write_rules,
        rule(1, "[args]", "detect: sqli", "transforms: [url_decode, lowercase]")
        + rule(2, "[args]", "detect: sqli", "transforms: [url_decode, compress_whitespace]"),
    )
    attack = "1 union select password from users"
    assert matched(engine, "/?q=" + attack.replace(" ", "%20")) == [1, 2]
    assert read == [len(attack)]
    padded = attack + " --" + "x" * 600  # past the memory of short values
    read.clear()
    assert matched(engine, "/?q=" + padded.replace(" ", "%20")) == [1, 2]
    assert read == [len(padded)]
    read.clear()
    assert matched(engine, "/?q=" + padded.replace(" ", "%20") + "y") == [1, 2]
    assert read == [len(padded) + 1]  # another long value: read afresh


def test_the_doorkeeper_admits_on_the_second_sighting_and_stays_bounded() -> None:
    door = Doorkeeper(8)
    assert not door.admits(("GET", "/a"))
    assert door.admits(("GET", "/a"))
    assert not door.admits(("GET", "/a"))  # admitted: its memory holds it from now on
    for i in range(100):
        assert not door.admits(("GET", f"/{i}"))
        assert len(door._seen) <= 8
    assert not door.admits(("GET", "/0"))  # forgotten when the doorkeeper filled up


def _overrun_at_the_first_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget runs out at the first flag the engine confirms, and never again."""
    confirm = Engine._confirm
    overran: list[bool] = []

    def overrun_once(self: Engine, *args: Any, **kwargs: Any) -> None:
        if not overran:
            overran.append(True)
            raise engine_module.EvaluationTimeout()
        confirm(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "_confirm", overrun_once)


def _shipped_view(case: Case) -> tuple[RequestView, bytes]:
    scope, body = case_scope(case)
    return RequestView(scope), body


def test_a_second_try_takes_up_the_scans_of_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """After an overrun, the middleware tries once more on the same view: the sieve's scan and
    the groups' own scans done by then are not done again, and nothing is lost."""
    engine = Engine(load_rules(None))
    sieve_scans: list[object] = []
    group_scans: list[object] = []
    sieve_type = type(engine.head_sieve)
    scan_head, scan_text = sieve_type.scan_head, Engine._scan_text
    monkeypatch.setattr(
        sieve_type,
        "scan_head",
        lambda self, view: sieve_scans.append(view) or scan_head(self, view),
    )
    monkeypatch.setattr(
        Engine,
        "_scan_text",
        staticmethod(lambda g, u, view: group_scans.append(view) or scan_text(g, u, view)),
    )
    # Entities wake the groups that decode them: those scan on their own.
    case = Case("GET", "/s?q=%26lt;script%26gt;alert(1)%26lt;/script%26gt;")
    fresh, _ = _shipped_view(case)
    expected = [m.rule_id for m in engine.evaluate_head(fresh, time.perf_counter() + 10)]
    assert expected and len(sieve_scans) == 1 and group_scans
    scans_of_one_try = len(group_scans)
    sieve_scans.clear()
    group_scans.clear()

    view, _ = _shipped_view(case)
    _overrun_at_the_first_confirmation(monkeypatch)  # once the scans are done
    with pytest.raises(engine_module.EvaluationTimeout):
        engine.evaluate_head(view, time.perf_counter() + 10)
    first_try = len(group_scans)
    assert [m.rule_id for m in engine.evaluate_head(view, time.perf_counter() + 10)] == expected
    assert len(sieve_scans) == 1  # the first try's
    assert first_try >= 1  # it overran with a group's scan done
    assert len(group_scans) == scans_of_one_try  # none twice over both tries


def test_a_second_try_on_a_body_takes_up_the_sieve_scan_of_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = Engine(load_rules(None))
    scans: list[object] = []
    sieve_type = type(engine.body_sieve)
    scan_body = sieve_type.scan_body
    monkeypatch.setattr(
        sieve_type,
        "scan_body",
        lambda self, view, media_type: scans.append(view) or scan_body(self, view, media_type),
    )
    case = Case(
        "POST", "/api", (("Content-Type", "application/json"),), '{"name": "Ada", "qty": 2}'
    )
    view, body = _shipped_view(case)
    view.body = body
    with pytest.raises(engine_module.EvaluationTimeout):
        engine.evaluate_body(view, time.perf_counter() - 1)  # out of budget once scanned
    assert engine.evaluate_body(view, time.perf_counter() + 10, again=True) == []
    assert len(scans) == 1
    assert engine.evaluate_body(view, time.perf_counter() + 10) == []
    assert len(scans) == 2  # a first try scans afresh

    # A body the sieve flags, whose budget runs out while its flags are confirmed.
    attack = Case(
        "POST",
        "/api",
        (("Content-Type", "application/json"),),
        '{"q": "1 union select password from users"}',
    )
    fresh, body = _shipped_view(attack)
    fresh.body = body
    expected = [m.rule_id for m in engine.evaluate_body(fresh, time.perf_counter() + 10)]
    assert expected
    view, _ = _shipped_view(attack)
    view.body = body
    _overrun_at_the_first_confirmation(monkeypatch)
    scans.clear()
    with pytest.raises(engine_module.EvaluationTimeout):
        engine.evaluate_body(view, time.perf_counter() + 10)
    again = engine.evaluate_body(view, time.perf_counter() + 10, again=True)
    assert [m.rule_id for m in again] == expected
    assert len(scans) == 1


def test_an_overrun_decides_on_what_it_found_unless_an_allow_rule_may_undo_it(
    write_rules: Callable[..., Path],
) -> None:
    """Engine.overrun_matches: matches found before an overrun decide the request when they
    block already; an allow filter of the phase is checked first, and one that overruns
    too leaves the request to on_error."""
    engine = engine_for(
        write_rules,
        rule(1, "[args]", "contains: union", "severity: critical")
        + rule(2, "[args]", "contains: sleepy", "severity: notice")
        + rule(3, "['args:partner']", "regex: '^(?=(a|aa)+$)'", "action: allow"),
        "settings: {time_budget_ms: 50}\n",
    )
    critical, notice = (
        Match(rule_id, "m", "args:q", "v", score, "score", False)
        for rule_id, score in ((1, 5), (2, 2))
    )
    view, _ = _shipped_view(Case("GET", "/?q=union"))
    assert engine.overrun_matches(view, [], [critical], body=False) == [critical]
    assert engine.overrun_matches(view, [critical], [], body=False) == []  # the head's block
    assert engine.overrun_matches(view, [], [notice], body=False) is None  # below the threshold
    trusted, _ = _shipped_view(Case("GET", "/?q=union&partner=aaaa"))
    decisive = engine.overrun_matches(trusted, [], [critical], body=False)
    assert decisive is not None and [m.rule_id for m in decisive] == [1, 3]
    assert engine.decide(decisive).outcome == "allow"
    slow, _ = _shipped_view(Case("GET", "/?q=union&partner=" + "a" * 40 + "!"))
    assert engine.overrun_matches(slow, [], [critical], body=False) is None


def test_an_overrun_carries_the_matches_found_before_it(write_rules: Callable[..., Path]) -> None:
    engine = engine_for(
        write_rules,
        rule(1, "[args]", "contains: union") + rule(2, "[body_raw]", "contains: MZ"),
    )
    for query, found in (("q=union", [1]), ("q=station", [])):
        view, _ = _shipped_view(Case("GET", "/?" + query))
        with pytest.raises(engine_module.EvaluationTimeout) as overrun:
            engine.evaluate_head(view, time.perf_counter() - 1)
        assert [m.rule_id for m in overrun.value.matches] == found
    # A binary body, which only the filters on the raw body read.
    for data, found in ((b"MZ" + bytes(range(256)), [2]), (bytes(range(256)), [])):
        scope, _ = case_scope(Case("POST", "/up", (("Content-Type", "application/octet-stream"),)))
        view = RequestView(scope)
        view.body = data
        assert view.parsed_body.kind == "binary"
        with pytest.raises(engine_module.EvaluationTimeout) as overrun:
            engine.evaluate_body(view, time.perf_counter() - 1)
        assert [m.rule_id for m in overrun.value.matches] == found


@pytest.fixture
def decode_rounds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts url_decode's rounds are run on, from here on."""
    rounds: list[str] = []
    decode_round = transforms_module._url_decode_round

    def counting(text: str) -> str:
        rounds.append(text)
        return decode_round(text)

    monkeypatch.setattr(transforms_module, "_url_decode_round", counting)
    return rounds


def test_a_long_form_body_is_url_decoded_once_for_the_sieve_and_the_groups(
    decode_rounds: list[str],
) -> None:
    # The body sieve and the body groups' own scans join the raw body and the parsed values
    # in other orders; the decoding of the raw body is shared (RequestView.url_decoded).
    engine = Engine(load_rules(None))
    value = "%2F..%2F..%5C" * 600  # 7.8 KB of escapes: "/../..\" once decoded
    found = matched(engine, "/submit", method="POST", body=f"field={value}")
    assert 930100 in found  # the traversal is still found
    # One round over the raw body (the parsed value holds no escape left); before, one over
    # the sieve's join and one over the group's.
    assert [len(t) for t in decode_rounds if len(t) >= len(value)] == [len("field=" + value)]


def test_a_long_query_is_url_decoded_once_by_the_head_sieve(decode_rounds: list[str]) -> None:
    # The head sieve scans the new parts joined, then, as something matched, the URI alone:
    # its decoding is done once (RequestView.url_decoded).
    engine = Engine(load_rules(None))
    query = "q=" + "%252525" * 1200  # 8.4 KB, three rounds of escapes
    assert matched(engine, "/search?" + query) == []  # nested thrice is no attack by itself
    # The query's first round, once, over the query alone (the URI's query is a text of its
    # own): not over the join of the new parts, nor again for the URI's own scan.
    assert [len(t) for t in decode_rounds if query[:40] in t] == [len(query)]


_JSON = (("Content-Type", "application/json"),)


def _body_matches(engine: Engine, body: str) -> tuple[list[tuple[int, str]], bool]:
    """The body's matches and whether the body was parsed to find them."""
    scope, data = case_scope(Case(method="POST", path="/api", headers=_JSON, body=body))
    view = RequestView(scope)
    view.body = data
    found = engine.evaluate_body(view, time.perf_counter() + 5)
    return sorted((m.rule_id, m.target) for m in found), view.body_parsed


NAMES_BODIES = [
    '{\n  "cart": [\n    {"id": 1, "note": "two\\nlines"}\n  ]\n}',  # newlines, none in a key
    '{"a\\nb": 1}',
    '{"ok": {"a\\rb": [1, 2]}}',
    '{"a%0ab": 1}',
    '{"filter": {"name__icontains": "x"}}',
    '{"x": 1, "x": 2, "y\\n": 3}',
    '{"q": ' + "[" * 300 + '{"deep\\nkey": 1}' + "]" * 300 + "}",  # too deep to be parsed
    '{"broken\\n": ',  # does not parse
    '{"k": "v"}',
]


def test_names_only_filters_check_a_json_bodys_keys_before_parsing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipped filters that read only a body's names (CR or LF in a name, 921110; ORM
    lookups, 934170) match a JSON body exactly as when it is parsed for its names; a body
    none of whose keys can match is not parsed at all, though its newlines woke 921110."""
    engine = Engine(load_rules(None))
    checked = [_body_matches(engine, body) for body in NAMES_BODIES]
    monkeypatch.setattr(Engine, "_json_may_match", staticmethod(lambda *args: True))
    parsed = [_body_matches(engine, body)[0] for body in NAMES_BODIES]
    assert [matches for matches, _ in checked] == parsed
    assert parsed[1:6] == [
        [(921110, "body_names")],
        [(921110, "body_names")],
        [(921110, "body_names")],
        [(934170, "body_names")],
        [(921110, "body_names")],
    ]
    assert parsed[6] == parsed[8] == []
    assert not checked[0][1] and not checked[8][1]  # keys checked, body never parsed


def test_a_negated_or_counting_names_filter_reads_the_parsed_names(
    write_rules: Callable[..., Path],
) -> None:
    """A name the keys alone would not match can still make a negated filter or a count
    match, and the raw body holds more than its strings and numbers: such filters are never
    decided before the parse. (One engine each: a filter that parses the body would let the
    next read the parsed names anyway.)"""

    def rule_ids(filters: str, body: str) -> list[int]:
        engine = engine_for(write_rules, filters)
        return [rule_id for rule_id, _ in _body_matches(engine, body)[0]]

    negated = rule(1, "[body_names]", "equals: id", "negate: true")
    assert rule_ids(negated, '{"other": 1}') == [1]
    assert rule_ids(negated, '{"id": 1}') == []
    # The raw body is no string or number of it: a filter that reads it is not pre-checked.
    raw = rule(4, "[body, body_raw]", "regex: '\"a\": *1'")
    assert rule_ids(raw, '{"a": 1}') == [4]
    assert rule_ids(rule(2, "[body_names]", "count: {eq: 0}"), "[1, 2]") == [2]
    assert rule_ids(rule(3, "[body_names]", "count: {ge: 2}"), '{"a": 1, "b": 2}') == [3]


def test_only_the_values_a_flagged_filters_probe_finds_something_in_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A JSON body with many values, one of which wakes a filter (an apostrophe, the SQL
    tokenizer's): the values its probe finds nothing in are not checked, and the matches,
    their targets and values included, are those found by checking every value."""
    import wafmw.patterns as patterns

    engine = Engine(load_rules(None))
    items = [{"id": i, "note": f"plain note {i}", "tags": ["a", "b"]} for i in range(40)]
    bodies = []
    for at, note in [(3, "don't wash"), (17, "x' or 1=1 --"), (39, "it's 1' union select 2--")]:
        changed = [dict(item) for item in items]
        changed[at]["note"] = note
        bodies.append(json.dumps({"cart": changed}))
    attacks = {"q": "a' or 'a'='a", "r": "<script>alert(1)</script>"}
    bodies.append(json.dumps({"cart": items, **attacks}))

    def matches(body: str) -> list[tuple[int, str, str]]:
        scope, data = case_scope(Case(method="POST", path="/api", headers=_JSON, body=body))
        view = RequestView(scope)
        view.body = data
        found = engine.evaluate_body(view, time.perf_counter() + 5)
        return sorted((m.rule_id, m.target, m.value) for m in found)

    listing = [matches(body) for body in bodies]
    assert listing[0] == [] and all(listing[1:])
    checked: list[int] = []
    pieces_holding = patterns.OnePattern.pieces_holding

    def noting(self: Any, text: str, separator: str) -> list[int] | None:
        found = pieces_holding(self, text, separator)
        checked.append(-1 if found is None else len(found))
        return found

    monkeypatch.setattr(patterns.OnePattern, "pieces_holding", noting)
    matches(bodies[0])
    assert checked and 0 < max(checked) <= 2  # of the body's 200 values
    monkeypatch.setattr(patterns.OnePattern, "pieces_holding", lambda *args: None)
    assert [matches(body) for body in bodies] == listing


VALUE_BODIES = [
    '{"comment": "I don\'t wash it, it\'s fine", "n": 3}',  # apostrophes, nothing to match
    '{"q": "x\' or 1=1 --", "page": 2}',
    '{"items": [{"note": "a"}, {"note": "<script>alert(1)</script>"}]}',
    '{"1\' union select password from users--": "key, not value"}',
    '{"id": "1 union select 2", "price": 1e5, "ok": true}',
    '{"deep": ' + "[" * 40 + "\"' or 'a'='a\"" + "]" * 40 + "}",  # past the depth limit
    '{"broken": "it\'s" ',  # does not parse: its raw text is what the rules read
    '{"escaped": "it\\u0027s \\u0027 or 1=1--"}',  # a backslash: parsed, not pre-checked
]


def test_value_filters_check_a_json_bodys_texts_before_parsing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Filters that read a body's values (the SQL and XSS tokenizers', among others) check
    the strings and numbers of a JSON body without escapes before it is parsed, and parse it
    only when one of those may match: the matches, their targets and values, are those of
    the parsed body, and a body with an apostrophe and no injection is never parsed."""
    engine = Engine(load_rules(None))

    def matches(body: str) -> tuple[list[tuple[int, str, str]], bool]:
        scope, data = case_scope(Case(method="POST", path="/api", headers=_JSON, body=body))
        view = RequestView(scope)
        view.body = data
        found = engine.evaluate_body(view, time.perf_counter() + 5)
        return sorted((m.rule_id, m.target, m.value) for m in found), view.body_parsed

    checked = [matches(body) for body in VALUE_BODIES]
    monkeypatch.setattr(Engine, "_json_may_match", staticmethod(lambda *args: True))
    parsed = [matches(body)[0] for body in VALUE_BODIES]
    assert [found for found, _ in checked] == parsed
    assert parsed[0] == parsed[6] == [] and checked[0][1] is False  # not parsed
    assert all(parsed[1:5]) and parsed[7]
    assert {target for _, target, _ in parsed[3]} == {"body_names"}  # found in a key
