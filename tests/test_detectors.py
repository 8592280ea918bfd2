"""The tokenizer detectors: realistic attacks match, realistic benign text does not."""

from __future__ import annotations

import random
import re
import string
import time

import pytest
import re2

from wafmw import detectors
from wafmw.detectors import DETECTORS, Detector, sqli, xss

SQLI_ATTACKS = [
    "1' OR '1'='1",
    "1 OR 1=1",
    "admin'--",
    "admin' #",
    "1 UNION SELECT username, password FROM users",
    "-1' union/**/select 1,2,3-- -",
    "1; DROP TABLE users",
    "1' AND SLEEP(5)-- ",
    "1 AND extractvalue(1, concat(0x7e, version()))",
    "'; WAITFOR DELAY '0:0:5'--",
    "1' and 1=(select count(*) from information_schema.tables)--",
    "') or ('a'='a",
    '<?xml version="1.0"?><root><a probe="1 OR 1=1"></a></root>',
    "OR 1#",
    "1 UNION SELECT @@version -- -",
    "(select(0)from(select(sleep(15)))v)",
    "z'or email notnull--",
    "user'collate nocase--",
    "x'&email--",
    "' ? # = #",
    "'''or 1",
    "1 or 2 is true",
    "1 and 1 is not null",
]
SQLI_BENIGN = [
    "O'Brien",
    "union station",
    "select committee meets on Wednesday",
    "Can't log in since Tuesday. Tried resetting my password twice -- still nothing.",
    "We're holding a 'select few' event on 5/12; RSVP by replying YES or NO.",
    "I work at Procter & Gamble and we'd like a bulk quote for 500+ units.",
    "Try: SELECT id, total FROM orders WHERE user_id = 42 ORDER BY id;",
    "drop table leaf extension",
    "men's 'slim fit' jeans",
    "status:open AND priority:high",
    "and/or",
    "",
    '<?xml version="1.0"?><order><id>42</id><note>Leave at the back door</note></order>',
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "I'm not sure --",
    "O'Brien and Smith --",
    "can't and won't --",
    "rock 'n' roll -- live",
    # English's "is" takes any word, SQL's only NULL, TRUE, FALSE or UNKNOWN.
    "1 is fastest and produces the least compression, and 9 is slowest",
    "the port is used, and 0 is not allowed",
]
XSS_ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src=//evil.example>",
    "<details open ontoggle=confirm(1)>",
]
XSS_BENIGN = [
    '<p>Hello <strong>there</strong>, see <a href="https://example.com">this</a></p>',
    '<p><img src="https://cdn.example.com/img/banner.jpg" alt="Banner" width="600"></p>',
    '<p style="text-align:center"><span style="color:#ff0000">Sale</span></p>',
    "The kids loved the <Lego> set",
    "const button = () => <button onClick={() => setOpen(true)}>Open</button>",
    "5 < 6 and 7 > 3",
]


@pytest.mark.parametrize("value", SQLI_ATTACKS)
def test_sqli_attacks(value: str) -> None:
    assert sqli(value)


@pytest.mark.parametrize("value", SQLI_BENIGN)
def test_sqli_benign(value: str) -> None:
    assert not sqli(value)


@pytest.mark.parametrize("value", XSS_ATTACKS)
def test_xss_attacks(value: str) -> None:
    assert xss(value)


@pytest.mark.parametrize("value", XSS_BENIGN)
def test_xss_benign(value: str) -> None:
    assert not xss(value)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_interface(name: str) -> None:
    det = DETECTORS[name]
    assert isinstance(det, Detector)
    assert det.name == name
    re2.compile(det.prefilter)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_prefilter_passes_every_attack(name: str) -> None:
    rx = re2.compile(DETECTORS[name].prefilter)
    for value in SQLI_ATTACKS if name == "sqli" else XSS_ATTACKS:
        assert rx.search(value.lower()), value


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_never_raises_and_bounded(name: str) -> None:
    check = DETECTORS[name].check
    nasty = ["'" * 100_000, "/*" * 50_000, "<" * 100_000, "\x00\ud800'--", "((((" * 10_000]
    for value in nasty:
        start = time.perf_counter()
        assert check(value) in (True, False)
        assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "value",
    [
        "'" + " " * 4000,
        " " * 4000 + "'",  # a run of whitespace no token precedes
        "'a" + " " * 4000 + "(",  # past the function-call window
        "'" + "\\'" * 2000 + "\\",
        "<" + "a" * 4000 + "<",
        "<" + " " * 4000 + "<a",
    ],
)
def test_no_run_is_read_in_quadratic_time(value: str) -> None:
    """Runs that a match attempt could split in many ways, or that no alternative could
    end (an open string ending in a backslash was no string, so each escaped quote in it
    began another): each such attempt was retried from every position of the run, and
    these values cost 0.14 to 4 s. Now a few milliseconds at most."""
    for check in (sqli, xss):
        start = time.perf_counter()
        check(value)
        assert time.perf_counter() - start < 0.05


def test_cost_is_small() -> None:
    values = SQLI_BENIGN + SQLI_ATTACKS
    start = time.perf_counter()
    for _ in range(200):
        for v in values:
            sqli(v)
    per_call = (time.perf_counter() - start) / (200 * len(values))
    assert per_call < 500e-6


def test_the_one_scan_tokenizer_reads_as_the_stepwise_one() -> None:
    """_tokens reads a value in one finditer scan; _tokens_stepwise (kept for MySQL's /*! */,
    whose end it cuts out of the text) one match at a time. Random SQL-ish strings — comments,
    quotes, whitespace runs past the function-call window, the token bound — read the same."""
    rng = random.Random(3)
    pieces = ["'", '"', "`", " ", "\n", "\t", "\u00a0", "\x1c", "/*", "*/", "/*1", "--", "-- "]
    pieces += ["#", ";\x00", ";", "(", ")", "or", "union", "select", "sleep", "1", "0x1f", "@@v"]
    pieces += ["@a", "@", "a.b", "=", "<>", "||", "\\", "\\'", "''", "$", "?", "::", "\u00e9", ","]
    pieces += [".", "e5", "1.5e+3", " " * 70, '""', '\\"', "\\\n", "`x`", "a b c"]
    pieces += ["()*+", "[]{}~^%", "$?=", ",,", "(=", "*/*"]  # runs of one-character tokens
    for _ in range(30000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randrange(20)))
        if "/*!" not in value:
            assert detectors._tokens(value) == detectors._tokens_stepwise(value), value
    for many in ["sleep (1) " * 300, "()" * 2000, "a(" + "()*+$" * 500, "x ()" * 300]:
        # past the token bound, in single tokens and in runs of them
        assert detectors._tokens(many) == detectors._tokens_stepwise(many)
        assert len(detectors._tokens(many)) == detectors._MAX_TOKENS


@pytest.mark.parametrize("long", [False, True])
def test_a_schema_name_beside_a_query_word_is_an_injection(long: bool) -> None:
    """A system catalogue named beside SELECT, FROM or "(" is read as an injection with no
    other shape, in a short value and at the end of the 4 KB that a long one is read to."""

    def padded(value: str) -> str:
        if not long:
            return value
        head = "a " * ((detectors._MAX_INPUT - len(value)) // 2)
        return head + value + " tail" * 20

    for value in ["name from sysobjects", "(information_schema.tables)", "x from mysql.user"]:
        assert sqli(padded(value)), value
    for value in ["information_schema", "the sysobjects table", "from the mysql docs"]:
        assert not sqli(padded(value)), value


def test_a_reading_two_quotes_share_is_tokenized_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """After `"'`, the reading from the run that begins at the double quote and the reading
    from the single quote begin at the same place: that text is tokenized once. Each reading
    still finds its own shapes: only the one from the double quote, first in the value, reads
    a leading DROP as an injection."""
    tokenized: list[str] = []
    tokens = detectors._tokens

    def counting(value: str) -> list[tuple[str, str]]:
        tokenized.append(value)
        return tokens(value)

    monkeypatch.setattr(detectors, "_tokens", counting)
    assert not sqli("a\"'b c")
    assert sorted(tokenized) == sorted(["a\"'b c", "'b c", "b c"])
    assert sqli("\"'drop me a line")
    assert not sqli("x\"'drop me a line")


@pytest.mark.parametrize(
    ("value", "injection"),
    [
        ("1=1", True),
        ("'a'='a'", True),
        ("42<=>42", True),
        ("'1' not regexp '2'", True),
        ("'a'<'b'", True),
        ("1<2", False),  # numbers compared with < or > are prose as often as not
        ("page 1 of 2", False),
        ("(select 1)", True),
        ("(select * from t)", True),
        ("x (select case when 1 then 2 end)", True),
        ("size (select one)", False),
    ],
)
def test_a_literal_compared_with_a_literal_and_a_subquery_are_injections(
    value: str, injection: bool
) -> None:
    """The two shapes that begin at a literal and at "(", each the only shape in its value."""
    assert sqli(value) is injection


class _Everything:
    """A set that holds every value: with it, _sql_shapes looks at every token."""

    def __contains__(self, item: object) -> bool:
        return True


def test_the_tokens_passed_over_begin_no_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """_sql_shapes passes over tokens whose kind and text begin none of its shapes, and checks
    only the literal shapes at a literal and the subquery at "(": over random SQL-ish token
    streams, in every reading, it finds what it finds when it looks at all with every check."""
    rng = random.Random(7)
    words = ["union", "all", "distinct", "select", "values", "sleep", "benchmark", "waitfor"]
    words += ["delay", "or", "and", "xor", "not", "div", "||", "&&", "is", "null", "true"]
    words += ["like", "order", "group", "by", "into", "outfile", "procedure", "analyse"]
    words += ["having", "from", "where", "char", "concat", "drop", "exec", "count", "users"]
    words += ["1", "0x1f", "'a'", '"b"', "@v", "=", "<", ">", "<>", "+", "-", "*", "(", ")", ","]
    words += [";", "--", "#", "/*x*/", "case", "when", "x", "extractvalue", "?", "."]
    # Short streams of a few tokens too, where the shapes that must begin near the start of
    # a reading (ORDER BY, a bare comparison) are not outrun by others.
    few = ["order", "group", "by", "1", "2", "=", "'a'", "x", ")", "--"]
    cases = []
    for k in range(6000):
        vocabulary, longest = (words, 12) if k % 2 else (few, 5)
        value = " ".join(rng.choice(vocabulary) for _ in range(rng.randrange(1, longest)))
        toks = detectors._tokens(value)
        cases.append((toks, rng.random() < 0.5))
    passing_over = [detectors._sql_shapes(t, broke_out=b) for t, b in cases]
    monkeypatch.setattr(detectors, "_SHAPE_KINDS", _Everything())
    monkeypatch.setattr(detectors, "_ANSWERED", frozenset())  # every check at every token
    looking_at_all = [detectors._sql_shapes(t, broke_out=b) for t, b in cases]
    assert passing_over == looking_at_all
    assert 0.05 < sum(passing_over) / len(cases) < 0.95  # both verdicts are well represented


def test_no_token_but_a_word_begins_with_a_letter() -> None:
    """The tokenizers try words first (the commonest tokens); that changes no match only while
    no other alternative can begin where a word does."""
    branches = re.findall(r"\(\?P<(\w+)>(.*)\)\s*$", detectors._TOKEN_RE.pattern, re.MULTILINE)
    names = [name for name, _ in branches]
    assert names[:2] == ["ws", "word"] and {"cmt", "str", "num", "var", "op", "punct"} <= set(names)
    for name, body in branches:
        if name in ("ws", "word"):
            continue
        alone = re.compile(body, re.VERBOSE)
        for first in string.ascii_lowercase + "_":
            for rest in ("", "1", "a", "_", ".", "(", " ", "'", "=", "x1 ("):
                assert alone.match(first + rest) is None, (name, first + rest)
