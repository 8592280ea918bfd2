"""The engine's sieve (wafmw/sieve.py) must never change a verdict, only skip work.

The main check is differential: the same requests through the same ruleset with and without
the sieve give the same matches. The requests are every case of every shipped rule, at every
paranoia level, in several disguises (encodings, placements, JSON and form bodies, repeated so
that the sieve's memories are warm). The parts it relies on — one trigger per transform, the
base64 trigger, the quote stand-in of JSON bodies — are checked on their own as well.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
import tempfile
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import pytest
import re2

from wafmw.body import BodyLimits
from wafmw.casetest import case_scope
from wafmw.engine import Engine
from wafmw.loader import load_rules
from wafmw.model import Ruleset, Target
from wafmw.patterns import (
    as_if_stood_in,
    re2_options,
    tolerating,
    tolerating_cmdline,
    without_upper_bounds,
)
from wafmw.request import RequestView
from wafmw.sieve import (
    _ESCAPED_STRING,
    _JSON_JUNK,
    _JSON_SYNTAX_STOOD_IN,
    ERASING,
    JSON_JUNK_AS_IS_SOURCE,
    JSON_JUNK_ENTRY,
    PART_MEMORY,
    QUOTE_STAND_IN,
    TRIGGERS,
)
from wafmw.transforms import TRANSFORMS, cmdline, cmdline_ascii

from .asgi import http_scope, post_scope

RULES = Path(__file__).resolve().parent.parent / "rules" / "wafmw.yaml"


def _matches(engine: Engine, scope: dict[str, Any], body: bytes) -> list[tuple[int, str]]:
    view = RequestView(scope, body_limits=BodyLimits())
    engine._clean_heads.clear()  # the sieve and its part memory are what is under test
    found = engine.evaluate_head(view, 1e18)
    if body:
        view.body = body
        found += engine.evaluate_body(view, 1e18)
    return sorted((m.rule_id, m.target) for m in found)


def _pair(ruleset: Ruleset) -> tuple[Engine, Engine]:
    sieved, plain = Engine(ruleset), Engine(ruleset)
    plain.head_sieve = plain.body_sieve = None
    assert sieved.head_sieve is not None or sieved.body_sieve is not None
    return sieved, plain


def _disguises(scope: dict[str, Any], body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The request as it is, and its payloads moved and re-encoded."""
    out = [(scope, body)]
    query = scope["query_string"].decode("latin-1")
    values = [v for _, _, v in (p.partition("=") for p in query.split("&")) if v]
    values += [v.decode("latin-1") for _, v in scope["headers"]]
    if body:
        values.append(body.decode("utf-8", "replace"))
    for value in values[:3]:
        encoded = quote(value, safe="")
        out.append((http_scope(f"/search?q={encoded}&page=2"), b""))
        out.append((http_scope(f"/search?q={quote(encoded, safe='')}"), b""))  # twice encoded
        out.append((http_scope("/x", headers=[("x-payload", value.upper())]), b""))
        out.append((http_scope("/x", headers=[("cookie", f"a=1; b={encoded}")]), b""))
        data = json.dumps({"comment": value, "n": [1, value]}).encode()
        out.append((post_scope("/api", data, "application/json"), data))
        form = f"a=1&comment={encoded}".encode()
        out.append((post_scope("/form", form, "application/x-www-form-urlencoded"), form))
        b64 = base64.b64encode(value.encode("utf-8", "replace")).decode()
        out.append((http_scope(f"/search?token={quote(b64, safe='')}"), b""))
    return out


def _shipped_requests() -> list[tuple[dict[str, Any], bytes]]:
    ruleset = load_rules([RULES], paranoia=4)
    requests = []
    for rule in ruleset.filters:
        for case in (*rule.match_cases, *rule.no_match_cases):
            requests.extend(_disguises(*case_scope(case)))
    return requests


@pytest.mark.parametrize("paranoia", [1, 2, 4])
def test_shipped_rules_give_the_same_matches_with_and_without_the_sieve(paranoia: int) -> None:
    sieved, plain = _pair(load_rules([RULES], paranoia=paranoia))
    requests = _shipped_requests()
    assert len(requests) > 1000
    flagged_nothing = 0
    for _ in range(2):  # the second time round, the sieve's memories are warm
        for scope, body in requests:
            expected = _matches(plain, scope, body)
            assert _matches(sieved, scope, body) == expected, (scope, body)
            flagged_nothing += not expected
    assert flagged_nothing > 100  # the no-match cases really are benign requests


def test_browser_traffic_is_decided_by_the_sieve_alone() -> None:
    """The point of it: after the first time, a browser's GET costs no confirmation."""
    engine, _ = _pair(load_rules([RULES]))
    headers = [
        ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0"),
        ("sec-ch-ua", '"Google Chrome";v="131", "Chromium";v="131"'),
        ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ]
    scope = http_scope("/products?page=2", headers=headers)
    assert _matches(engine, scope, b"") == []
    view = RequestView(scope)
    assert engine.head_sieve is not None
    assert engine.head_sieve.scan_head(view) == {}


LOWER_RULE = """
    filters:
      - id: 1
        msg: a word as Python lowercases it, which RE2's case folding does not reach
        targets: [args, body]
        transforms: [url_decode, lowercase]
        regex: 'i\u0307nject'
        action: block
"""


def test_text_that_is_not_ascii_is_scanned_lowercased_and_ascii_beside_it_is_not() -> None:
    """The letter "İ" lowercases to "i" and a combining dot, which no case-insensitive
    pattern matches in "İ": the sieve scans such text lowercased too, but not the ASCII text
    beside it, which the case-insensitive patterns read as lower() does."""
    sieved, plain = _pair(load_rules_text(LOWER_RULE))
    value = quote("\u0130nject")
    form = f"q={value}&p={'A' * 3000}".encode()
    for scope, body in [
        (http_scope(f"/a?{form.decode()}"), b""),
        (post_scope("/a", form, "application/x-www-form-urlencoded"), form),
    ]:
        assert _matches(sieved, scope, body) == _matches(plain, scope, body) != []
    sieve = sieved.head_sieve
    assert sieve is not None
    text = sieve._finish((b"ASCII PART",), ["\u00c9t\u00c9"], None)
    sep = sieve.separator
    assert text == sep.join([b"ASCII PART", "\u00c9t\u00c9".encode(), "\u00e9t\u00e9".encode()])


def test_the_sieve_text_carries_a_url_decoded_copy_only_when_decoding_changes_it() -> None:
    sieve = Engine(load_rules([RULES])).head_sieve
    assert sieve is not None
    sep = sieve.separator
    assert sieve._finish((b"100% sure",), ["50%"], None) == sep.join([b"100% sure", b"50%"])
    assert sieve._finish((b"a%41",), [], None) == sep.join([b"a%41", b"aA"])


def test_a_value_found_clean_under_one_header_is_checked_under_another() -> None:
    rules = load_rules_text(
        """
        filters:
          - id: 1
            msg: evil in x-a
            targets: [headers:x-a]
            contains: evil
            action: block
        """
    )
    engine = Engine(rules)
    assert _matches(engine, http_scope("/", headers=[("x-b", "evil")]), b"") == []
    assert _matches(engine, http_scope("/", headers=[("x-b", "evil")]), b"") == []
    assert _matches(engine, http_scope("/", headers=[("x-a", "evil")]), b"") == [(1, "headers:x-a")]


def test_a_lone_new_part_of_the_request_line_is_scanned_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Headers recur: the usual new part of a head is its URI. When it holds a match, it is
    not scanned again alone (the same text); its flags are the ones a scan of it alone gives.
    With a header new beside it, the parts are scanned one by one to tell them apart."""
    engine = Engine(load_rules([RULES]))
    sieve = engine.head_sieve
    assert sieve is not None
    headers = [("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0")]
    sieve.scan_head(RequestView(http_scope("/", headers=headers)))  # the headers, seen
    runs: list[Any] = []
    run = type(sieve)._run

    def counting(self: Any, pieces: Any, extra: Any = (), **kwargs: Any) -> Any:
        runs.append(pieces)
        return run(self, pieces, extra, **kwargs)

    monkeypatch.setattr(type(sieve), "_run", counting)
    attack = "/search?q=1%27%20union%20select%20password%20from%20users--"
    flagged = sieve.scan_head(RequestView(http_scope(attack, headers=headers)))
    assert flagged and len(runs) == 1
    alone = Engine(load_rules([RULES])).head_sieve
    assert alone is not None
    by_part = alone.scan_head(RequestView(http_scope(attack, headers=headers)))

    def named(flags: Any) -> dict[tuple[int, int], list[int]]:
        return {(entry.group, entry.filter.rule.id): parts for entry, parts in flags.items()}

    assert named(flagged) == named(by_part)
    runs.clear()
    other = [("user-agent", "curl/8.5.0")]
    sieve.scan_head(RequestView(http_scope(attack.replace("users", "admins"), headers=other)))
    assert len(runs) > 1


def test_the_part_memory_is_bounded() -> None:
    engine = Engine(load_rules([RULES]))
    sieve = engine.head_sieve
    assert sieve is not None
    for i in range(PART_MEMORY + 500):
        sieve.scan_head(RequestView(http_scope(f"/p{i}", headers=[("x-n", str(i))])))
        assert len(sieve.parts_seen) <= PART_MEMORY


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_each_trigger_fires_wherever_its_transform_changes_a_value(name: str) -> None:
    trigger = re2.compile(TRIGGERS[name])
    transform = TRANSFORMS[name].apply
    rng = random.Random(name)
    alphabet = "aZ09 \t\n/.\\-#*&;=%'\"^,(:_+é\u2003\x00" + "lt;amp;#x41;"
    for _ in range(20000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        # An erasing transform empties every value it does not decode: what its trigger must
        # find is what it leaves.
        left = transform(value) if name in ERASING else transform(value).lower() != value.lower()
        if left:
            assert trigger.search(f"\x01{value}\x01"), (name, value, transform(value))


def test_the_base64_trigger_fires_on_every_base64_text() -> None:
    trigger = re2.compile(TRIGGERS["base64_decode"])
    decode = TRANSFORMS["base64_decode"].apply
    rng = random.Random(7)
    printable = [chr(c) for c in (9, 10, 13, *range(32, 127))]
    for _ in range(5000):
        text = "".join(rng.choice(printable) for _ in range(rng.randrange(6, 40)))
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            for value in (
                encode(text.encode()).decode(),
                encode(text.encode()).decode().rstrip("="),
            ):
                if decode(value) != value:
                    for before, after in (("\x01", "\x01"), ("=", "&"), ("=", ";"), ('"', '"')):
                        assert trigger.search(before + value + after), value
    # random tokens do not decode, and seldom look like text
    assert decode("SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c") == (
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )


@pytest.mark.parametrize(
    "pattern",
    [
        r'"',
        r'["\']\s*or',
        r'[^"]+"',
        r"[ -~]{3}",
        r"\x22x",
        r"\"",
        r"name=\"[a-z]+\"",
        r"[[:punct:]]",
        r'["\x05-]x',  # a trailing "-" is itself: the stand-in must not make it a range
        r'["a\\-]x',
    ],
)
def test_tolerating_matches_the_stand_in_wherever_the_pattern_matched_the_quote(
    pattern: str,
) -> None:
    original = re2.compile(pattern)
    stand_in = re2.compile(tolerating(pattern, '"', QUOTE_STAND_IN.decode()))
    rng = random.Random(pattern)
    for _ in range(3000):
        text = "".join(rng.choice("ab \"'x=-_or\x05\\") for _ in range(rng.randrange(0, 10)))
        if original.search(text):
            assert stand_in.search(text.replace('"', QUOTE_STAND_IN.decode())), text


_CMD_NOISE = "\\\"'^"
_CMD_SEPARATORS = ",; \t\n\x0b\x1c\xa0\u2003"


def _case_values(case: Any) -> list[str]:
    """The decoded values a rule case carries: path, query values, header values, body."""
    path, _, query = case.path.partition("?")
    values = [unquote(path)]
    values += [unquote_plus(v) for _, _, v in (p.partition("=") for p in query.split("&"))]
    values += [value for _, value in case.headers]
    values += [unquote_plus(v) for _, _, v in (p.partition("=") for p in case.body.split("&"))]
    return [v for v in values if v]


def _cmdline_disguise(text: str, rng: random.Random) -> str:
    """The text with what cmdline undoes mixed in: quoting characters anywhere, separator runs
    for spaces, spaces before "/" and "(", letters in either case."""
    out = []
    for ch in text:
        if rng.random() < 0.2:
            out.append(rng.choice(_CMD_NOISE) * rng.randrange(1, 3))
        if ch == " ":
            ch = "".join(rng.choice(_CMD_SEPARATORS) for _ in range(rng.randrange(1, 4)))
        elif ch in "/(" and rng.random() < 0.4:
            ch = "".join(rng.choice(_CMD_SEPARATORS) for _ in range(rng.randrange(1, 3))) + ch
        elif ch.isalpha() and rng.random() < 0.3:
            ch = ch.swapcase()
        out.append(ch)
    return "".join(out)


@pytest.mark.parametrize(
    ("pattern", "seed"),
    [
        (r"\bcat\s*/etc/passwd\b", "cat /etc/passwd"),
        (r"(?:^|[|&])\s*id\b", "a| id"),
        (r"[a-z]+\(\)", "f ()"),
        (r"x[^\s]{0,3}y", "x/(y"),
        (r"a b$", "a b"),
        (r"^\s*ls", " ls"),
        (r"\w+\s*/\w+", "ab /cd"),
        (r"[^a-z]/x", "1 /x"),
        (r"\x20-\x2f", "a -/"),
        (r"(?i:rm)\s+-rf", "rm -rf"),
        (r"a.b", "a b"),
        (r"\Bat\b", "cat"),
        (r"=\bcat", "=cat"),
        (r"\$\{?ifs", "${IFS}"),
    ],
)
def test_tolerating_cmdline_matches_wherever_the_pattern_matched_after_cmdline(
    pattern: str, seed: str
) -> None:
    original = re2.compile(pattern)
    tolerant = re2.compile("(?i:" + tolerating_cmdline(pattern) + ")")
    rng = random.Random(pattern)
    alphabet = "abcxyt /()-;=,\"'^\t\n\xa0A"
    checked = 0
    for _ in range(5000):
        noise = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 4))) for _ in "ab"]
        text = noise[0] + _cmdline_disguise(seed, rng) + noise[1]
        if original.search(cmdline(text)):
            checked += 1
            assert tolerant.search(text), (text, cmdline(text))
    assert checked > 300  # the disguises keep reaching the pattern


def test_tolerating_cmdline_keeps_the_shipped_command_rules_on_disguised_attacks() -> None:
    """Every shipped rule on the cmdline chain, on its own attack cases disguised: where the
    rule matches after cmdline, its rewritten pattern matches the raw text."""
    ruleset = load_rules([RULES], paranoia=4)
    rng = random.Random(11)
    rules = [r for r in ruleset.filters if "cmdline" in r.transforms and r.operator == "regex"]
    assert len(rules) >= 5
    for rule in rules:
        original = re2.compile(rule.argument)
        tolerant = re2.compile("(?i:" + tolerating_cmdline(rule.argument) + ")")
        hits = 0
        for case in rule.match_cases:
            for value in _case_values(case):
                for _ in range(30):
                    text = _cmdline_disguise(value, rng)
                    if original.search(cmdline(text)):
                        hits += 1
                        assert tolerant.search(text), (rule.id, text)
        assert hits, rule.id


def test_json_quotes_do_not_wake_quote_rules_but_raw_body_rules_still_see_them() -> None:
    rules = load_rules_text(
        """
        filters:
          - id: 1
            msg: a quoted name in the raw body
            targets: [body_raw]
            regex: 'name"\\s*:\\s*"x'
            action: block
          - id: 2
            msg: a quote in a value
            targets: [body]
            contains: '"'
            action: block
        """
    )
    sieved, plain = _pair(rules)
    assert sieved.body_sieve is not None and sieved.body_sieve.quote_stand_in
    for data, expected in (
        (b'{"name": "x"}', [(1, "body_raw")]),
        (b'{"name": "y"}', []),
        (b'{"name": "say \\"hi\\""}', [(2, "body:name")]),
    ):
        scope = post_scope("/api", data, "application/json")
        assert _matches(sieved, scope, data) == _matches(plain, scope, data) == expected


def _cmdline_reference(s: str) -> str:
    for ch in ("\\", '"', "'", "^"):
        s = s.replace(ch, "")
    s = s.replace(",", " ").replace(";", " ")
    s = re.sub(r"\s+", " ", s)
    return s.replace(" /", "/").replace(" (", "(").lower()


def test_cmdline_ascii_fast_path_agrees_with_the_general_one() -> None:
    rng = random.Random(3)
    alphabet = "ab /(\\\"'^,;\t\n\r\x0b\x0c\x1c\x1f\x01\x1aAZ09 é\xa0"
    for _ in range(50000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16)))
        assert cmdline(value) == _cmdline_reference(value), value
        if value.isascii():  # the bytes form the sieve uses
            assert cmdline_ascii(value.encode()) == _cmdline_reference(value).encode(), value


def load_rules_text(text: str) -> Ruleset:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rules.yaml"
        path.write_text("wafmw: 1\n" + textwrap.dedent(text))
        return load_rules([path])


def test_a_check_on_named_body_fields_is_flagged_by_name_and_kept_where_the_name_is() -> None:
    rules = load_rules_text(
        """
        filters:
          - id: 1
            msg: anything but utf-8 in the charset field
            targets: ["body:_charset_"]
            regex: '^(?:[^u]|u[^t]|ut[^f]|utf[^-]|utf-[^8]|utf-8.)'
            action: block
        """
    )
    sieved, plain = _pair(rules)
    assert sieved.body_sieve is not None and not sieved._direct_body  # flagged, not direct
    form, json_type = "application/x-www-form-urlencoded", "application/json"
    for data, media, expected in (
        (b"_charset_=utf-7&a=b", form, [(1, "body:_charset_")]),
        (b"%5Fcharset%5F=utf-7", form, [(1, "body:_charset_")]),
        (b"_charset_=utf-8", form, []),
        (b"a=b&c=d", form, []),
        (b'{"_charset_": "utf-7"}', json_type, [(1, "body:_charset_")]),
        (b'{"\\u005fcharset_": "utf-7"}', json_type, [(1, "body:_charset_")]),
        (b'{"charset": "utf-7"}', json_type, []),
    ):
        scope = post_scope("/f", data, media)
        assert _matches(sieved, scope, data) == _matches(plain, scope, data) == expected, data


def test_json_bodies_wake_no_shipped_body_rule() -> None:
    """Ordinary JSON bodies, escapes included, flag nothing in the body sieve at any paranoia
    level: one scan and no confirmation. (The file-name rules, whose classes hold the quote
    and control characters, are checked only on bodies that can hold files; JSON's own
    backslashes no longer wake the js_decode trigger.)"""
    items = [{"id": i, "name": f"Item {i}", "tags": ["summer", "sale"]} for i in range(20)]
    plain = json.dumps({"cart": items}).encode()
    escaped = json.dumps({"cart": items, "note": "caf\u00e9 \u2603", "url": "a/b"})
    escaped = escaped.replace("a/b", "a\\/b")
    for paranoia in (1, 2, 4):
        engine, _ = _pair(load_rules([RULES], paranoia=paranoia))
        assert engine.body_sieve is not None and engine.body_sieve.files_direct
        for data in (plain, escaped.encode()):
            scope = post_scope("/api", data, "application/json")
            view = RequestView(scope, body_limits=BodyLimits())
            view.body = data
            assert engine.body_sieve.scan_body(view, "application/json") == {}, (paranoia, data)


INVALID_JSON = [
    b'{"q": "x" or 1=1 --}',
    b'{"q": "1" union select password from users}',
    b'not json: "><script>alert(1)</script>',
    b'{"q": "x" "y\\" onmouseover=alert(1)"}',
    b'{"q": "a" "b"}',
    b"{'q': 'x' or '1'='1'}",
    b'{"q": "unterminated \\" or 1=1',
    b'{"q": "caf\xc3\xa9" or 1=1}',
    b'{"q": "bad \xff byte" or 1=1}',
    b"[" * 600 + b'"x" or 1=1' + b"]" * 600,
    b'{"q": \x1a" or "1"="1\x1a}',  # a control character where a stand-in would be
]


@pytest.mark.parametrize("paranoia", [1, 2, 4])
def test_a_body_that_says_json_but_does_not_parse_is_scanned_as_the_rules_read_it(
    paranoia: int,
) -> None:
    """The rules read a JSON body that does not parse as raw text, quotes and backslashes
    included: the sieve must not scan it with them stood in (that hid quote-based attacks)."""
    sieved, plain = _pair(load_rules([RULES], paranoia=paranoia))
    quote_rule = load_rules_text(
        """
        filters:
          - id: 2
            msg: a quote in a value
            targets: [body]
            contains: '"'
            action: block
        """
    )
    quote_sieved, quote_plain = _pair(quote_rule)
    for data in INVALID_JSON:
        scope = post_scope("/api", data, "application/json")
        expected = _matches(plain, scope, data)
        assert _matches(sieved, scope, data) == expected, data
        assert _matches(quote_sieved, scope, data) == _matches(quote_plain, scope, data), data
        if b'"' in data:  # it does not parse, so the raw text, quotes and all, is read
            assert _matches(quote_plain, scope, data) == [(2, "body")]
    # Valid, but too deep to parse: read as its strings, which the sieve scans as they are.
    deep = b'{"n": ' + b"[" * 600 + b'"1\\u0027 or \\u00271\\u0027=\\u00271"' + b"]" * 600 + b"}"
    scope = post_scope("/api", deep, "application/json")
    assert _matches(sieved, scope, deep) == _matches(plain, scope, deep) != []


_STOOD_IN_QUOTE = QUOTE_STAND_IN.decode()


@pytest.mark.parametrize(
    ("pattern", "exact"),
    [
        ('"', True),  # the quote itself: nothing in the text stands for it any more
        (r"\x22|\x{22}|\"", True),
        (r"['\"`]\s*or\b", True),  # the class loses the quote
        (r"[\x00-\x1f]", True),  # holds the stand-in: gains the quote
        (r"\x1a", True),
        (r"[!-/]=", True),  # the quote inside a range: the range is split
        (r"[^a-z]x", True),  # holds both already
        (r"[^\x00-\x1f]x", True),  # holds the quote, not the stand-in: loses the quote
        (r"[^'\"]+=", True),  # holds the stand-in, not the quote: keeps them so
        (r"\Wor\W", True),
        (r"[[:punct:]]\d", False),  # a named class holding the quote keeps it
        (r"[[:cntrl:]]\d", True),
        (r"[\pP\d]x", False),  # cannot tell what \pP holds: keeps the quote
        (r"a.b", True),
    ],
)
def test_as_if_stood_in_reads_the_text_as_the_pattern_reads_it_stood_in(
    pattern: str, exact: bool
) -> None:
    original = re2.compile(pattern, re2_options())
    rewritten = re2.compile(as_if_stood_in(pattern, '"', _STOOD_IN_QUOTE), re2_options())
    rng = random.Random(pattern)
    for _ in range(3000):
        text = "".join(rng.choice("ab \"'x=-_or1!/\x1a\x05") for _ in range(rng.randrange(8)))
        expected = original.search(text.replace('"', _STOOD_IN_QUOTE)) is not None
        found = rewritten.search(text) is not None
        assert found or not expected, text  # never misses
        if exact:
            assert found == expected, text


def _random_pattern(rng: random.Random, depth: int = 0) -> str:
    """A small RE2 pattern from pieces that touch the quote and its stand-in: literals and
    their escapes, classes positive and negated with ranges and named members, quantifiers,
    groups and alternations."""
    atoms = ['"', "a", "'", "=", ".", r"\x22", r"\x{1a}", r"\x1A", r"\"", r"\s", r"\S", r"\W"]
    atoms += [r"\w", r"\d", r"\pP", r"\b"]
    members = ['"', "'", "a-z", "!-/", r"\x00-\x1f", r"\x1a", r"\s", r"\W", r"\d", "[:punct:]"]
    members += ["[:cntrl:]", "[:^alpha:]", r"\]", "=", r"\x{20}-\x{7e}", "-"]
    out = []
    for _ in range(rng.randrange(1, 4)):
        roll = rng.random()
        if roll < 0.45:
            atom = rng.choice(atoms)
        elif roll < 0.85:
            body = "".join(rng.choice(members) for _ in range(rng.randrange(1, 4)))
            atom = f"[{'^' if rng.random() < 0.4 else ''}{body}]"
        elif depth < 2:
            atom = f"(?:{_random_pattern(rng, depth + 1)}|{_random_pattern(rng, depth + 1)})"
        else:
            atom = "b"
        out.append(atom + rng.choice(["", "", "?", "+", "*", "{1,2}"]))
    return "".join(out)


def test_as_if_stood_in_never_misses_on_random_patterns() -> None:
    """User rules reach the JSON pass too: for random patterns built from what the rewrite
    touches, the rewritten pattern matches every text where the original matches the text
    with its quotes stood in (or the rewrite refuses, and the set is built without it)."""
    rng = random.Random(13)
    alphabet = "a\"'=!/ \x1a\x05-b]1"
    tried = 0
    for _ in range(400):
        pattern = _random_pattern(rng)
        try:
            original = re2.compile(pattern, re2_options())
        except re2.error:
            continue
        try:
            rewritten = re2.compile(as_if_stood_in(pattern, '"', _STOOD_IN_QUOTE), re2_options())
        except ValueError:
            continue
        tried += 1
        for _ in range(200):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(7)))
            if original.search(text.replace('"', _STOOD_IN_QUOTE)):
                assert rewritten.search(text), (pattern, text)
    assert tried > 300


@pytest.mark.parametrize("pattern", [r"[^\pL]x", r"\1", r"\Q\"\E"])
def test_as_if_stood_in_refuses_what_it_cannot_rewrite(pattern: str) -> None:
    with pytest.raises(ValueError):
        as_if_stood_in(pattern, '"', _STOOD_IN_QUOTE)


@pytest.mark.parametrize("paranoia", [1, 2, 4])
def test_the_json_pass_flags_what_the_stood_in_pass_flags(paranoia: int) -> None:
    """The body pass rewritten to read JSON bodies without escapes as they are, over the
    shipped rules' cases as JSON values and as bodies of their own, with quotes, stand-ins
    and control characters mixed in: it flags what the pass flags on the stood-in text."""
    engine, _ = _pair(load_rules([RULES], paranoia=paranoia))
    sieve = engine.body_sieve
    assert sieve is not None and sieve.json_pass is not None  # in use at every level
    (stood_in,) = sieve.passes
    rng = random.Random(paranoia)
    texts: list[bytes] = []
    for rule in load_rules([RULES], paranoia=4).filters:
        for case in (*rule.match_cases, *rule.no_match_cases):
            for value in _case_values(case):
                texts.append(json.dumps({"v": value}, ensure_ascii=True).encode())
                texts.append(value.encode("utf-8", "replace"))
    for text in list(texts):
        noisy = bytearray(text)
        for _ in range(3):
            if noisy:
                noisy[rng.randrange(len(noisy))] = rng.choice(b'"\x1a\x05 ')
        texts.append(bytes(noisy))
    for text in texts:
        if b"\\" in text:
            continue  # the JSON pass reads only bodies without escapes
        expected = stood_in.scanner.Match(text.translate(_JSON_SYNTAX_STOOD_IN)) or []
        found = sieve.json_pass.scanner.Match(text) or []
        flags = {sieve.json_pass.entries[i] for i in found} - {JSON_JUNK_ENTRY}
        assert flags == {stood_in.entries[i] for i in expected} - {JSON_JUNK_ENTRY}, text


def test_the_json_lexer_passes_every_valid_document_and_stops_stray_tokens() -> None:
    rng = random.Random(7)

    def value(depth: int = 0) -> Any:
        roll = rng.random()
        if depth > 3 or roll < 0.3:
            return rng.choice([1, -2.5, 1e10, True, False, None, "x y", 'q"\\u', "caf\u00e9"])
        if roll < 0.65:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {f'k{i}"': value(depth + 1) for i in range(rng.randrange(4))}

    as_is = re2.compile(JSON_JUNK_AS_IS_SOURCE, re2_options())

    def junk(data: bytes) -> bool:
        stood_in = _JSON_JUNK.search(data.translate(_JSON_SYNTAX_STOOD_IN)) is not None
        if b"\\" not in data:  # the lexer for the body as it is says the same
            assert (as_is.search(data) is not None) == stood_in, data
        return stood_in

    strays = [" or 1=1", "'x'", "<b>", " = ", " tru", " nul", ' "a" "b"', " 1 2", "\\", "}{"]
    for _ in range(2000):
        text = json.dumps(value(), ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
        assert not junk(text.encode()), text
        assert junk((text + rng.choice(strays)).encode()), text


def _entity_encoded(scope: dict[str, Any], body: bytes) -> list[dict[str, Any]]:
    """The request's payloads written as HTML entities, in the query (where the trigger of
    html_entity_decode then fires) and in a header (where it fires there), each beside a
    parameter whose "&name" reads as an entity too."""
    query = scope["query_string"].decode("latin-1")
    values = [v for _, _, v in (p.partition("=") for p in query.split("&")) if v]
    values = [unquote(v) for v in values] + [v.decode("latin-1") for _, v in scope["headers"]]
    if body:
        values.append(body.decode("utf-8", "replace"))
    out = []
    for value in values[:3]:
        encoded = "".join(f"&#{ord(c)};" if c in "<>\"'()/;:=" else c for c in value)
        target = f"/search?q={quote(encoded, safe='')}&notify=1"
        out.append(http_scope(target))
        out.append(http_scope("/search?notify=1", headers=[("x-note", encoded)]))
    return out


@pytest.mark.parametrize("paranoia", [1, 2, 4])
def test_a_trigger_in_one_part_rescans_the_targets_it_holds_and_trusts_the_sieve_elsewhere(
    paranoia: int,
) -> None:
    """A trigger that fires only in the query (or only in a header) sends its group to its
    own scan over the targets that part holds; the sieve's flags speak for the others. Every
    shipped rule's cases, so disguised, match as they do without the sieve."""
    sieved, plain = _pair(load_rules([RULES], paranoia=paranoia))
    ruleset = load_rules([RULES], paranoia=4)
    compared = matched = 0
    for rule in ruleset.filters:
        for case in (*rule.match_cases, *rule.no_match_cases):
            for variant in _entity_encoded(*case_scope(case)):
                expected = _matches(plain, variant, b"")
                assert _matches(sieved, variant, b"") == expected, variant
                compared += 1
                matched += bool(expected)
    # Direct filters (on a named argument, the path, a named header), each an entity away
    # from a match.
    for variant in (
        http_scope("/api?_method=%26%2368%3BELETE&notify=1"),
        http_scope("/backup/db&#46;bak?notify=1"),
        http_scope("/?notify=1", headers=[("user-agent", "sqlm&#97;p/1.7")]),
    ):
        assert _matches(sieved, variant, b"") == _matches(plain, variant, b"") != [], variant
    assert compared > 300 and matched > 100
    scanned: list[tuple[str, ...]] = []
    full = sieved._scan_hits

    def spy(group: Any, units: tuple[Target, ...], view: RequestView) -> list[int]:
        scanned.append(tuple(u.kind for u in units))
        return full(group, units, view)

    sieved._scan_hits = spy  # type: ignore[method-assign]
    browser = [("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"), ("accept", "*/*")]
    _matches(sieved, http_scope("/p?a=1&notify=1", headers=browser), b"")
    assert scanned and all("headers" not in kinds for kinds in scanned)


def test_the_strings_with_escapes_are_found_decoded_and_only_they() -> None:
    """A JSON body with escapes is scanned with its escaped strings decoded beside it, found
    by a search from each quote (no parse): every such string, key or value, and no other."""
    sieve = Engine(load_rules([RULES])).body_sieve
    assert sieve is not None
    rng = random.Random(11)
    words = ["plain", 'say "hi"', "C:\\dir", "caf\u00e9", "a/b", "tab\there", "\u2603", "", "x"]
    for _ in range(500):
        doc = {
            rng.choice(words) + str(i): rng.choice([rng.choice(words), [rng.choice(words)]])
            for i in range(rng.randrange(1, 6))
        }
        ascii_only = rng.random() < 0.5
        text = json.dumps(doc, ensure_ascii=ascii_only)
        if rng.random() < 0.3:
            text = text.replace("/", "\\/")
        strings: list[str] = []
        for key, value in doc.items():
            strings += [key, *(value if isinstance(value, list) else [value])]
        expected = [s for s in strings if "\\" in json.dumps(s, ensure_ascii=ascii_only)]
        if "\\/" in text:
            expected = [
                s for s in strings if "\\" in json.dumps(s, ensure_ascii=ascii_only) or "/" in s
            ]
        found = sieve._escaped_strings(text.encode())
        parts = found.split(sieve.separator.decode()) if found else []
        assert sorted(parts) == sorted(expected), text


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"[a-z][a-z0-9+.-]{1,20}://", r"[a-z][a-z0-9+.-]{1,}://"),
        (r"(?:\.0x[0-9a-f]{1,2}){0,3}x{10,12}?", r"(?:\.0x[0-9a-f]{1,}){0,}x{10,}?"),
        (r"\x{1f}{0,3}", r"\x{1f}{0,}"),
        (r"a{3}b{2,}c{,5}", r"a{3}b{2,}c{,5}"),  # no upper bound to drop, or no repetition
        (r"\{1,2\}[{1,2}]\\{1,2}", r"\{1,2\}[{1,2}]\\{1,}"),  # escaped or in a class
        (r"\Qa{1,2}\E", r"\Qa{1,2}\E"),  # quoting is left alone
    ],
)
def test_without_upper_bounds_drops_only_the_bounds_of_counted_repetitions(
    pattern: str, expected: str
) -> None:
    assert without_upper_bounds(pattern) == expected
    re2.compile(expected, re2_options())


def test_without_upper_bounds_never_misses_and_keeps_everything_but_the_bounds() -> None:
    """The unbounded pattern matches every text the pattern matches; on texts too short to
    reach past a bound of 9, it matches exactly where the pattern with each upper bound raised
    to 9 does: the lower bounds and everything else are kept."""
    rng = random.Random(29)
    tried = 0
    for _ in range(300):
        pattern = "".join(
            rng.choice(["a", "b", "[ab]", "[^a]", r"\d", "(?:ab|b)", "(?:a|1)"])
            + rng.choice(["", "?", "{2,3}", "{0,2}", "{1,4}", "{2}"])
            for _ in range(rng.randrange(1, 4))
        )
        original = re2.compile(pattern, re2_options())
        widened = re2.compile(without_upper_bounds(pattern), re2_options())
        raised = re2.compile(re.sub(r"\{(\d),\d\}", r"{\1,9}", pattern), re2_options())
        tried += "," in pattern
        for _ in range(100):
            text = "".join(rng.choice("ab1 ") for _ in range(rng.randrange(9)))
            if original.search(text):
                assert widened.search(text), (pattern, text)
            assert bool(widened.search(text)) == bool(raised.search(text)), (pattern, text)
    assert tried > 100


def _shipped_scanners() -> list[Any]:
    """Every scanner of the shipped rules at paranoia 4: the sieves' passes and the groups'."""
    engine = Engine(load_rules([str(RULES)], paranoia=4))
    scanners: list[Any] = [g.scanner for g in engine.groups if g.scanner is not None]
    for sieve in (engine.head_sieve, engine.body_sieve):
        assert sieve is not None
        scanners += [p.scanner for p in sieve.passes]
        if sieve.json_pass is not None:
            scanners.append(sieve.json_pass.scanner)
    return scanners


class _Clock:
    """time.perf_counter_ns for a scanner under test: each read moves it `tick` ns on."""

    def __init__(self) -> None:
        self.now = 0
        self.tick = 10

    def __call__(self) -> int:
        self.now += self.tick
        return self.now


def _timed_scanner(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, _Clock, list[str]]:
    """A scanner whose clock the test sets, and the record of its probes ("probed"). Its
    texts hold pattern 1; text new to it is reported to hold all three."""
    import wafmw.patterns as patterns

    ways: list[str] = []
    knows = patterns.Scanner.knows
    monkeypatch.setattr(
        patterns.Scanner, "knows", lambda self, t: ways.append("probed") or knows(self, t)
    )
    clock = _Clock()
    monkeypatch.setattr(patterns.time, "perf_counter_ns", clock)
    return patterns.Scanner([r"union\s+select", r"<script", r"etc/passwd"]), clock, ways


def test_a_long_text_goes_through_the_set_when_probes_are_fast_and_holds_all_when_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scanner.match probes a long text at a few windows and times them: through the set when
    they are fast; when they are slow, the text is new to the set, and every pattern is
    reported unsearched (the callers confirm each)."""
    scanner, clock, ways = _timed_scanner(monkeypatch)
    text = ("a=1&" * 2000 + "q=<script>").encode()
    clock.tick = 10  # ns: every window fast
    assert scanner.match(text) == [1] and ways == ["probed"]
    clock.tick = 10_000_000  # 10 ms a window: new text
    assert scanner.match(text) == [0, 1, 2] and ways == ["probed", "probed"]
    assert scanner.match(b"q=<script>") == [1] and len(ways) == 2  # short: no probe


def test_a_slow_scan_of_a_shorter_text_makes_the_scanner_probe_the_next_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Texts shorter than PROBE_MIN_BYTES go through the set unprobed, until one of them
    takes long (text new to the set's automaton): the scanner then probes its next
    _WARY_SCANS texts of WARY_MIN_BYTES or more, and one whose probe is slow is reported to
    hold every pattern."""
    import wafmw.patterns as patterns

    scanner, clock, ways = _timed_scanner(monkeypatch)
    text = ("a=1&" * 200 + "q=<script>").encode()
    assert patterns.WARY_MIN_BYTES <= len(text) < patterns.PROBE_MIN_BYTES
    clock.tick = 10  # ns: fast scans, no probe
    for _ in range(3):
        assert scanner.match(text) == [1]
    assert ways == []
    clock.tick = 10_000_000  # 10 ms a scan: the set did not know the text
    assert scanner.match(text) == [1] and ways == []  # found, at that cost
    assert scanner.match(text) == [0, 1, 2] and ways == ["probed"]
    assert scanner.match(b"q=<script>") == [1] and len(ways) == 1  # too short to probe
    clock.tick = 10  # the set knows the text again: probed, scanned through the set
    ways.clear()
    for _ in range(patterns._WARY_SCANS + 5):
        assert scanner.match(text) == [1]
    # The slow probe above made it wary afresh: that many probes, and no more.
    assert ways == ["probed"] * patterns._WARY_SCANS


def test_text_new_to_every_scanner_wakes_every_group_and_the_attack_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random text around an attack, read by scanners that know it and by scanners that find
    it new: the latter's body sieve flags every entry of its passes, the groups it wakes
    report every filter, each filter is confirmed by its own patterns, and the same matches
    are found."""
    import wafmw.patterns as patterns

    confirmed: list[int] = []
    confirm = Engine._confirm
    monkeypatch.setattr(
        Engine,
        "_confirm",
        lambda self, cf, *a, **k: confirmed.append(cf.rule.id) or confirm(self, cf, *a, **k),
    )
    rng = random.Random(5)
    pad = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(6000))
    data = f"a={pad}&q=1%27%20UNION%20SELECT%20password%20FROM%20users--&b={pad}".encode()
    scope = post_scope("/f", data, "application/x-www-form-urlencoded")
    found: dict[bool, list[tuple[int, str]]] = {}
    confirmations: dict[bool, set[int]] = {}
    for knows in (True, False):
        monkeypatch.setattr(patterns.Scanner, "knows", lambda self, text, k=knows: k)
        engine = Engine(load_rules([RULES]))
        sieve = engine.body_sieve
        assert sieve is not None
        view = RequestView(scope, body_limits=BodyLimits())
        view.body = data
        flagged = set(sieve.scan_body(view, "application/x-www-form-urlencoded"))
        every = {entry for p in sieve.passes for entry in p.entries} - {JSON_JUNK_ENTRY}
        assert (flagged == every) is not knows
        confirmed.clear()
        found[knows] = _matches(engine, scope, data)
        confirmations[knows] = set(confirmed)
    assert 942100 in {rule_id for rule_id, _ in found[True]}
    assert found[False] == found[True]
    assert len(confirmations[False]) > 2 * len(confirmations[True])


def test_a_scan_at_a_few_microseconds_a_byte_makes_the_scanner_wary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random text costs a small set (a head group's) 4-5 µs a byte while new: such a scan
    too makes the scanner probe its next texts, so that each new random text does not pay
    it whole again. English prose new to a set costs 1-2 µs a byte, and does not."""
    import wafmw.patterns as patterns

    scanner, clock, ways = _timed_scanner(monkeypatch)
    text = ("a=1&" * 200 + "q=<script>").encode()
    assert patterns.WARY_MIN_BYTES <= len(text) < patterns.PROBE_MIN_BYTES
    clock.tick = 2_000 * len(text)  # each scan 2 µs a byte: never wary, never probed
    for _ in range(3):
        assert scanner.match(text) == [1]
    assert ways == []
    clock.tick = 4_000 * len(text)  # 4 µs a byte: found at that cost, then wary
    assert scanner.match(text) == [1] and ways == []
    assert scanner.match(text) == [0, 1, 2] and ways == ["probed"]


def test_a_probe_of_random_text_ends_within_its_first_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first window is looked at in growing pieces, each timed against the probes' bound:
    text that costs a new state a byte is told before the whole window is scanned."""
    import wafmw.patterns as patterns

    scanner, clock, ways = _timed_scanner(monkeypatch)
    looked: list[int] = []
    match = scanner.Match
    monkeypatch.setattr(
        scanner, "Match", lambda window: looked.append(len(window)) or match(window)
    )
    text = ("a=1&" * 2000 + "q=<script>").encode()
    clock.tick = patterns._COLD_PROBE_NS // 2 + 1  # each look: half the bound and more
    assert scanner.match(text) == [0, 1, 2] and ways == ["probed"]
    assert looked == list(patterns._FIRST_LOOKS)  # stopped at the second look
    assert max(looked) < patterns._PROBE_BYTES
    looked.clear()
    clock.tick = 10  # known text: every look, then the three windows, then the whole text
    assert scanner.match(text) == [1]
    assert looked == [
        *patterns._FIRST_LOOKS,
        *[patterns._PROBE_BYTES] * patterns._PROBES,
        len(text),
    ]


def test_a_pattern_too_large_for_a_single_patterns_memory_is_still_searched_alone() -> None:
    """A user's word list can compile in a set's memory bound but not in the lower one of a
    pattern searched alone (a probe's, on a long text): it is then compiled with the set's."""
    import wafmw.patterns as patterns

    words = "|".join(f"w{i}x{i * 7}y" for i in range(60000))
    text = b"a " * 3000 + b"W59999x419993Y <script>"
    assert len(text) >= patterns.PROBE_MIN_BYTES  # searched alone, not through a set
    probe = patterns.OnePattern(rf"(?i)\b(?:{words})\b")
    assert probe.found(text.decode()) and not probe.found("nothing here " * 400)


def test_a_set_is_searched_through_the_bindings_function_or_else_its_method() -> None:
    """Scans call the binding's C function for a set's Match, and the set's own method where
    the binding is laid out otherwise: either way, the same answers."""
    import re2

    import wafmw.patterns as patterns

    compiled = re2.Set.SearchSet()
    compiled.Add("b+c")
    compiled.Add("x")
    compiled.Compile()
    inner = patterns._matcher(compiled)
    assert inner is not compiled.Match
    assert inner(b"abbc x") == [0, 1] and not inner(b"abd")

    class Elsewhere:  # a binding without the inner object
        def Match(self, text: bytes) -> list[int] | None:
            return compiled.Match(text)

    other = Elsewhere()
    assert patterns._matcher(other)(b"abbc") == [0]


B64_RULE = """
    filters:
      - id: 1
        msg: a base64 value that hides a script tag
        targets: [args, headers, body]
        transforms: [base64_only, lowercase]
        regex: '<script'
        action: block
"""


def test_a_filter_after_base64_only_is_found_by_its_trigger_alone() -> None:
    """Its pattern stays out of the sieve, so plain text never wakes it, yet every base64
    value that hides a match is found."""
    sieved, plain = _pair(load_rules_text(B64_RULE))
    assert sieved.head_sieve is not None
    [sieve_pass] = sieved.head_sieve.passes
    assert [entry.filter for entry in sieve_pass.entries] == [None]  # the trigger only
    hidden = quote(base64.b64encode(b"<SCRIPT>alert(1)</script>").decode(), safe="")
    cases = [
        (http_scope(f"/search?q={hidden}"), [(1, "args:q")]),
        (http_scope("/x", headers=[("x-data", unquote(hidden))]), [(1, "headers:x-data")]),
        (http_scope("/search?q=%3Cscript%3Ealert(1)"), []),  # plain text: other rules' job
        (http_scope("/search?q=PHNjcmlwdD4"), [(1, "args:q")]),
        (http_scope("/search?q=aGVsbG8gd29ybGQ"), []),  # "hello world"
    ]
    for scope, expected in cases:
        assert _matches(plain, scope, b"") == expected
        assert _matches(sieved, scope, b"") == expected
    # and in bodies, through the body's sieve
    assert sieved.body_sieve is not None
    assert all(e.filter is None for p in sieved.body_sieve.passes for e in p.entries)
    encoded = unquote(hidden)
    bodies = [
        (f"a=1&note={hidden}".encode(), "application/x-www-form-urlencoded", "body:note"),
        (json.dumps({"note": encoded}).encode(), "application/json", "body:note"),
        (json.dumps({"note": "<script>"}).encode(), "application/json", None),
    ]
    for body, media_type, target in bodies:
        scope = post_scope("/submit", body, media_type)
        expected = [(1, target)] if target else []
        assert _matches(plain, scope, body) == _matches(sieved, scope, body) == expected


def test_a_filter_after_base64_only_that_matches_an_emptied_value_is_left_to_its_group() -> None:
    rules = load_rules_text(B64_RULE.replace("'<script'", "'^$'"))
    sieved, plain = _pair(rules)
    assert sieved.head_sieve is not None
    assert sieved.head_sieve.unsieved  # the sieve cannot speak for it
    scope = http_scope("/search?q=plain")
    assert _matches(plain, scope, b"") == _matches(sieved, scope, b"") == [(1, "args:q")]


def test_escaped_strings_are_found_as_the_plain_pattern_finds_them() -> None:
    """The escaped-string search reads a string's rest as runs between escapes; over random
    JSON-ish bytes it finds the very spans the plain character-by-character pattern finds."""
    plain = re.compile(rb'"[^"\\]*\\.(?:[^"\\]|\\.)*"', re.DOTALL)
    rng = random.Random(11)
    pieces = [b'"', b"\\", b"a", b'\\"', b"\\\\", b"\n", b"\\\n", b"{", b":", b" ", b"\xc3\xa9"]
    for _ in range(20000):
        text = b"".join(rng.choice(pieces) for _ in range(rng.randrange(16)))
        expected = [m.span() for m in plain.finditer(text)]
        assert [m.span() for m in _ESCAPED_STRING.finditer(text)] == expected, text


def test_a_long_text_probed_by_one_filter_after_another_is_encoded_once() -> None:
    """Probes read a long value through a regex, over its UTF-8 encoding: the filters that
    read one value probe it one after another, and it is encoded once for all of them. A
    text equal to it is read from that encoding; any other text is not."""
    import wafmw.patterns as patterns

    needle, haystack = patterns.OnePattern("needle"), patterns.OnePattern("haystack")
    text = "é" * 3000 + " needle " + "x" * 2000
    assert len(text) >= patterns.PROBE_MIN_BYTES
    assert needle.found(text)
    encoded = patterns._last_encoded[1]
    assert encoded == text.encode()
    assert not haystack.found(text)
    assert needle.found("".join(text)) and patterns._last_encoded[1] is encoded
    other = text.replace("needle", "nEEdle")  # as long, and other
    assert not needle.found(other) and patterns._last_encoded[1] == other.encode()


def test_the_pieces_holding_a_match_are_every_piece_a_match_of_its_own_is_in() -> None:
    """pieces_holding lists the pieces of a joined text that its pattern finds something in,
    so that only those values are checked. Over random pieces (multi-byte letters, the
    pattern's characters, runs of them) and patterns (some that run across a separator),
    every piece in which the pattern matches alone is listed, in order, with at most the
    pieces a match across separators runs through beside them; None when more than
    PIECES_LISTED pieces would be listed, or a match is empty."""
    import wafmw.patterns as patterns

    rng = random.Random(11)
    sep = "\x01"
    alphabet = ["a", "b", "'", '"', "é", "€", " ", "x"]
    # (pattern, whether a match of it can run across a separator)
    sources = [("'", False), ("a'b", False), ("b+'", False), ("é'|€", False)]
    sources += [("a\\x01b", True), ("'[^a]*'", True), ("(?:^|\\x01)b", True)]
    listed = 0
    for _ in range(3000):
        source, spans = rng.choice(sources)
        probe = patterns.OnePattern(source)
        alone = re2.compile(source)
        pieces = [
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
            for _ in range(rng.randrange(1, 30))
        ]
        holding = probe.pieces_holding(sep.join(pieces), sep)
        own = [i for i, piece in enumerate(pieces) if alone.search(piece)]
        if holding is None:
            assert len(own) > patterns.PIECES_LISTED or spans, (source, pieces)
            continue
        listed += 1
        assert holding == sorted(set(holding)), (source, pieces, holding)
        assert set(own) <= set(holding), (source, pieces, holding)
        if not spans:
            assert holding == own, (source, pieces, holding)
    assert listed > 1500
    assert patterns.OnePattern("a*").pieces_holding(sep.join(["b", "a"]), sep) is None
    quote = patterns.OnePattern("'")
    most = patterns.PIECES_LISTED
    assert quote.pieces_holding(sep.join(["'", "x"] * most), sep) == list(range(0, 2 * most, 2))
    assert quote.pieces_holding(sep.join(["'"] * (most + 1)), sep) is None

    class Counting:
        """The probe's regex, counting its searches."""

        def __init__(self, regex: Any) -> None:
            self.regex, self.searches = regex, 0

        def search(self, data: bytes, pos: int) -> Any:
            self.searches += 1
            return self.regex.search(data, pos)

    # A long value that holds the pattern many times: searched once, not once a match.
    quote.pieces_holding("", sep)  # compiles the regex
    counting = Counting(quote._regex)
    quote._regex = counting
    assert quote.pieces_holding(sep.join(["a", "x'" * 5000, "b", "it's"]), sep) == [1, 3]
    assert counting.searches == 2
