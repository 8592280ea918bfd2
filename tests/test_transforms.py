"""Transforms: a golden table, plus properties every transform must keep on any input."""

from __future__ import annotations

import random
import re
import sys
import unicodedata
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from wafmw import transforms as transforms_module
from wafmw.transforms import (
    CMDLINE_DELETED,
    CMDLINE_SEPARATORS,
    JOIN_CHARACTERS,
    TRANSFORMS,
    Transform,
    apply_chain,
    cmdline,
)

_TABLE_PATH = Path(__file__).parent / "data" / "transforms.yaml"
_TABLE: list[dict[str, Any]] = yaml.safe_load(_TABLE_PATH.read_text(encoding="utf-8"))
# How much any transform may grow its input (plus a little slack for tiny inputs).
_GROWTH = 4


def _row_id(row: dict[str, Any]) -> str:
    return f"{row['transform']}:{row['input']!r}"[:80]


@pytest.mark.parametrize("row", _TABLE, ids=_row_id)
def test_golden(row: dict[str, Any]) -> None:
    assert set(row) == {"transform", "input", "output"}
    assert TRANSFORMS[row["transform"]].apply(row["input"]) == row["output"]


def test_golden_table_covers_every_transform() -> None:
    counts = {name: 0 for name in TRANSFORMS}
    for row in _TABLE:
        counts[row["transform"]] += 1
    assert {name: n for name, n in counts.items() if n < 6} == {}


def test_registry_shape() -> None:
    assert set(TRANSFORMS) == {
        "url_decode",
        "html_entity_decode",
        "js_decode",
        "lowercase",
        "remove_nulls",
        "compress_whitespace",
        "remove_whitespace",
        "normalize_path",
        "remove_comments",
        "replace_comments",
        "cmdline",
        "base64_decode",
        "base64_only",
        "nfkc",
        "trim",
    }
    for name, t in TRANSFORMS.items():
        assert isinstance(t, Transform)
        assert t.name == name
    with pytest.raises(TypeError):
        TRANSFORMS["x"] = TRANSFORMS["trim"]  # type: ignore[index]


def test_apply_chain() -> None:
    assert apply_chain("%3CScRiPt%3E", ["url_decode", "lowercase"]) == "<script>"
    assert apply_chain("x", []) == "x"
    assert apply_chain("%2541", ("url_decode",)) == "A"
    with pytest.raises(KeyError):
        apply_chain("x", ["url_decode", "no_such_transform"])


# --------------------------------------------------------------------------- random inputs

# Characters that exercise every transform's special cases, mixed with arbitrary code points.
_INTERESTING = (
    "%uUxX0123456789abcdefABCDEF&#;\\/.-*!^'\",()<> \t\r\x0b\x0c\x00=+_:"
    "ltgampquotcolon\u00a0\u2003\u3000\u0301\u0307İΣσςΑ\ufdfa\u3300ﬁ①ｓ"
)


def _random_string(rng: random.Random, max_len: int = 40, newline: bool = True) -> str:
    chars = []
    for _ in range(rng.randrange(max_len + 1)):
        r = rng.random()
        if r < 0.7:
            chars.append(rng.choice(_INTERESTING))
        elif r < 0.8:
            chars.append(chr(rng.randrange(0x100)))  # bytes seen as latin-1
        elif r < 0.97:
            chars.append(chr(rng.randrange(0x110000)))  # any code point, surrogates included
        elif newline:
            chars.append("\n")
    s = "".join(chars)
    return s if newline else s.replace("\n", "")


def _encode_some(rng: random.Random, s: str) -> str:
    # Percent- and entity-encode parts of a string, so that decoders meet real escapes.
    out = []
    for ch in s:
        r = rng.random()
        if r < 0.2 and ord(ch) < 0x100:
            out.append(f"%{ord(ch):02x}")
        elif r < 0.3:
            out.append(f"&#x{ord(ch):x};")
        elif r < 0.4 and ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _inputs(seed: int, n: int, newline: bool = True) -> list[str]:
    rng = random.Random(seed)
    values = [_random_string(rng, newline=newline) for _ in range(n)]
    values += [_encode_some(rng, v) for v in values[: n // 2]]
    if not newline:
        values = [v.replace("\n", "") for v in values]
    return values


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_never_raises_and_output_is_bounded(name: str) -> None:
    apply = TRANSFORMS[name].apply
    for value in _inputs(zlib.crc32(name.encode()), 1500):
        out = apply(value)
        assert isinstance(out, str)
        assert len(out) <= _GROWTH * len(value) + 4, (value, out)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_output_encodes_to_utf8_when_input_does(name: str) -> None:
    # RE2 needs UTF-8: a decoder must never create a lone surrogate from escapes.
    apply = TRANSFORMS[name].apply
    for value in _inputs(7, 1500):
        if re.search("[\ud800-\udfff]", value):
            continue
        apply(value).encode("utf-8")


@pytest.mark.parametrize("name", sorted(n for n, t in TRANSFORMS.items() if t.local))
def test_local_transforms_commute_with_joining(name: str) -> None:
    apply = TRANSFORMS[name].apply
    rng = random.Random(name)
    # NUL is never the join character of a chain with remove_nulls (the engine skips it).
    separators = [c for c in JOIN_CHARACTERS if not (name == "remove_nulls" and c == "\x00")]
    values = [
        "".join(ch for ch in v if ch not in JOIN_CHARACTERS)
        for v in _inputs(11, 1000, newline=True)
    ]
    for _ in range(1500):
        sep = rng.choice(separators)
        parts = rng.sample(values, rng.randrange(1, 4))
        assert apply(sep.join(parts)) == sep.join(apply(p) for p in parts), (sep, parts)


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("normalize_path", "x/..", "y"),
        ("remove_comments", "a/*", "*/b"),
        ("replace_comments", "a/*", "*/b"),
        ("base64_decode", "PHNjcmlwdD4=", "PHNjcmlwdD4="),
        ("base64_only", "PHNjcmlwdD4=", "PHNjcmlwdD4="),
        ("trim", "a ", "b"),
    ],
)
def test_non_local_transforms_really_are_not(name: str, a: str, b: str) -> None:
    # Each transform marked non-local has a witness, so the flag is not left off by mistake.
    t = TRANSFORMS[name]
    assert not t.local
    assert t.apply(a + "\x01" + b) != t.apply(a) + "\x01" + t.apply(b)


def test_whitespace_transforms_do_not_touch_join_characters() -> None:
    for name in ("compress_whitespace", "remove_whitespace", "cmdline"):
        t = TRANSFORMS[name]
        assert t.local
        assert t.apply("x \x01 y") == t.apply("x ") + "\x01" + t.apply(" y")


def test_url_decode_stops_after_four_rounds() -> None:
    value = "%27"
    for _ in range(5):
        value = value.replace("%", "%25")
    # Five extra layers: four are peeled, one remains.
    assert TRANSFORMS["url_decode"].apply(value) == "%2527"


def test_html_entity_decode_huge_numbers_do_not_raise() -> None:
    assert TRANSFORMS["html_entity_decode"].apply("&#" + "9" * 10000 + ";") == "\ufffd"
    assert TRANSFORMS["html_entity_decode"].apply("&#x" + "f" * 10000) == "\ufffd"


def test_nfkc_long_expansion_list_matches_unicodedata() -> None:
    # The transform keeps characters whose NFKD is longer than 4 as they are; that list is
    # written out in the module and must match this Python's Unicode database.
    t = TRANSFORMS["nfkc"]
    for cp in range(0x80, sys.maxunicode + 1):
        ch = chr(cp)
        if len(unicodedata.normalize("NFKD", ch)) > 4:
            assert t.apply(ch) == ch, hex(cp)


def test_nfkc_output_is_bounded_by_four() -> None:
    value = "\ufdfa" * 100 + "\u3300" * 100 + "\ufb03" * 100
    assert len(TRANSFORMS["nfkc"].apply(value)) <= 4 * len(value)


def test_large_inputs_are_fast_enough() -> None:
    # Linear behaviour on big adversarial values: a quadratic path would take seconds here.
    big = [
        "%" * 100_000,
        "%25" * 50_000,
        "&" * 100_000,
        "&#" * 50_000,
        "\\" * 100_000,
        "/*" * 50_000,
        "../" * 50_000,
        "-" * 100_000,
        " " * 100_000,
        "A" * 100_001,
        "\ufdfa" * 50_000,
    ]
    for name, t in TRANSFORMS.items():
        for value in big:
            out = t.apply(value)
            assert len(out) <= _GROWTH * len(value), name


def test_url_decode_fast_path_agrees_with_general_path() -> None:
    from wafmw import transforms

    rng = random.Random(3)
    alphabet = "%0123456789abcdefABCDEFuxz/.<>'\" "
    for _ in range(5000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
        general = transforms._PCT_RE.sub(transforms._pct_sub, value)
        assert transforms._url_decode_round(value) == general, value


def test_url_decode_fast_path_agrees_with_the_escape_by_escape_one() -> None:
    # The C-speed round (any text without %u escapes) must decode exactly as the regex round
    # that handles one escape at a time: broken escapes, backslashes, overlong and invalid
    # UTF-8, non-ASCII text around escapes.
    from wafmw.transforms import _PCT_RE, _pct_sub, _url_decode_round

    rng = random.Random(11)
    pieces = ["%", "%2", "%25", "%41", "%c3", "%a9", "%C0%AF", "%e0%80%ae", "%ff", "\\", "\\x41"]
    pieces += ["a", "é", "\x01", " ", "%%", "%0", "%zz", "%F0%9F%98%80", "%ed%a0%80", "+"]
    # and %u escapes, decoded one by one between stretches decoded at C speed
    pieces += ["%u0041", "%U00e9", "%uD83D%uDE00", "%ud800", "%uDE00", "%u", "%u00", "%uzzzz"]
    for _ in range(50000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 8)))
        assert _url_decode_round(value) == _PCT_RE.sub(_pct_sub, value), value


def test_url_decode_runs_rounds_until_one_would_change_nothing() -> None:
    """url_decode skips the round that would find no escape: it gives what running rounds
    until one changes nothing gives, short texts and long ones (RE2 looks for the escape)."""
    from wafmw.transforms import _URL_ROUNDS, _url_decode_round, url_decode

    def rounds_until_stable(value: str) -> str:
        for _ in range(_URL_ROUNDS):
            decoded = _url_decode_round(value)
            if decoded == value:
                break
            value = decoded
        return value

    rng = random.Random(17)
    pieces = ["%", "%25", "%2525", "%41", "%2541", "%u0041", "%25u0041", "%U00e9", "%'(", "%zz"]
    pieces += ["a", "é", "\\", "%c3%a9", "%ed%a0%80", "%uD83D%uDE00", "%%", "u", "U", " "]
    for _ in range(20000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 12)))
        assert url_decode(value) == rounds_until_stable(value), value
    for _ in range(200):
        value = "".join(rng.choice(pieces) for _ in range(rng.randrange(150, 400)))
        assert url_decode(value) == rounds_until_stable(value), value
    # long texts whose only escapes are %u ones, or broken ones
    for few in (["%u0041", "%U00e9", "a", " ", "%zz"], ["%'(", "%", "b", "%2"]):
        value = "".join(rng.choice(few) for _ in range(300))
        assert url_decode(value) == rounds_until_stable(value), value


def test_broken_escapes_are_spelled_the_same_however_many_there_are() -> None:
    from wafmw.transforms import _BAD_PCT, _spell_broken_escapes

    rng = random.Random(13)
    pieces = [b"%", b"%%", b"%2", b"%41", b"%zz", b"a", b"%4", b"%%41", b"x%"]
    for _ in range(20000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 60)))
        assert _spell_broken_escapes(data) == _BAD_PCT.sub(b"%25", data), data
    # Long texts (searched by RE2 first): mostly valid escapes, broken ones anywhere or none.
    for _ in range(3000):
        units = [b"%41", b"%c3%a9", b"ab"] * 3 + [rng.choice(pieces)]
        data = b"".join(rng.choice(units) for _ in range(rng.randrange(150, 400)))
        if rng.random() < 0.3:
            data = data.replace(b"%%", b"%25%").replace(b"%2%", b"%25%")
        assert _spell_broken_escapes(data) == _BAD_PCT.sub(b"%25", data), data


def test_cmdline_character_lists_are_what_cmdline_does() -> None:
    """The sieve rewrites patterns from these lists: they must not drift from the transform."""
    for code in range(0x3001):
        ch = chr(code)
        out = cmdline("a" + ch + "b")
        assert (out == "a b") == (ch in CMDLINE_SEPARATORS), repr(ch)
        assert (out == "ab") == (ch in CMDLINE_DELETED), repr(ch)


_ENTITY_PIECES = ["&", "#", "x", "X", ";", "amp", "ampx", "lt", "notin", "not", "26", "0"]
_ENTITY_PIECES += ["9" * 9, "a", " ", "&#x26;", "&#38", "&nbsp", "&bogus;", "&#xd800;", "&#150;"]
_JS_PIECES = ["\\", "u", "x", "{", "}", "0", "7", "41", "d83d", "\\ude00", "110000", "n", "'"]
_JS_PIECES += ["/", "a", "\\u00e9", "\\x41", "\\101", "\\u{1F600}", "\\8", " "]
# Texts whose escapes are one character each, which js_decode decodes by replacements.
_JS_ONE_CHAR_PIECES = ["\\", "\\\\", "\\/", "\\n", "n", "/", "\\'", '"', "\\`", "a", "\\8"]
_JS_ONE_CHAR_PIECES += ["\n", "\\\n", "\uffff", "x41", "u", " ", "\\b", "\\q"]


@pytest.mark.parametrize(
    ("decode", "pattern", "sub", "pieces"),
    [
        ("html_entity_decode", "_ENTITY_RE", "_entity_sub", _ENTITY_PIECES),
        ("js_decode", "_JS_RE", "_js_sub", _JS_PIECES),
        ("js_decode", "_JS_RE", "_js_sub", _JS_ONE_CHAR_PIECES),
    ],
)
def test_decoding_by_split_and_memory_agrees_with_one_match_at_a_time(
    decode: str, pattern: str, sub: str, pieces: list[str]
) -> None:
    """Entities and JavaScript escapes are decoded from a split of the text through a memory
    of decoded matches; the reference decodes each match in place. Random texts of fragments,
    twice each (the second time from the memory)."""
    decoded = getattr(transforms_module, decode)
    reference = getattr(transforms_module, pattern)
    rng = random.Random(decode)
    for _ in range(3000):
        # Mostly short texts; some long ones, with more distinct pieces between "&"s than
        # html_entity_decode decodes one by one (it then splits on the pattern).
        size = rng.randrange(12) if rng.random() < 0.9 else rng.randrange(400)
        text = "".join(rng.choice([*pieces, "\u00e9"]) for _ in range(size))
        expected = reference.sub(getattr(transforms_module, sub), text)
        assert decoded(text) == expected, text
        assert decoded(text) == expected, text


def test_the_memories_of_decoded_entities_are_bounded() -> None:
    pieces = transforms_module._ENTITY_PIECE_MEMO
    padding = "&amp;" * transforms_module._PIECES_MIN  # enough "&"s to be decoded by pieces
    for n in range(2 * transforms_module._DECODED_MEMORY):
        decoded = transforms_module.html_entity_decode(f"a&#{n + 1000};b{padding}")
        assert decoded == f"a{chr(n + 1000)}b" + "&" * transforms_module._PIECES_MIN
        assert len(pieces) <= transforms_module._DECODED_MEMORY
    assert "#1000;b" not in pieces and f"#{2 * transforms_module._DECODED_MEMORY + 999};b" in pieces
    # Many entities new at once go through the split on the pattern and its memory.
    many = "".join(f"&#{n + 5000};" for n in range(2 * transforms_module._DECODED_MEMORY))
    expected = "".join(chr(n + 5000) for n in range(2 * transforms_module._DECODED_MEMORY))
    assert transforms_module.html_entity_decode(many) == expected
    assert len(transforms_module._ENTITY_MEMO) <= transforms_module._DECODED_MEMORY
    long = "&#x" + "0" * 60 + "41;"
    assert transforms_module.html_entity_decode(long) == "A"
    assert long[1:] not in pieces and long not in transforms_module._ENTITY_MEMO


def test_entities_repeated_through_a_long_text_decode_from_the_memory_of_pieces() -> None:
    """Text made of a few entities repeated: each piece after an "&" is decoded once, then
    looked up; the decoding is the pattern's, entity by entity."""
    text = "&#x26;x26;&lt;b&amp" * 3000 + "&notin;&notit;"
    expected = _reference_entity_decode(text)
    assert transforms_module.html_entity_decode(text) == expected
    assert transforms_module._ENTITY_PIECE_MEMO.get("#x26;x26;") == "&x26;"
    assert transforms_module.html_entity_decode(text) == expected
    # Alike at the start, then many pieces new to the memory: split on the pattern.
    varied = "&amp;" * 500 + "".join(f"&#{n + 300};x" for n in range(100))
    assert transforms_module.html_entity_decode(varied) == _reference_entity_decode(varied)
    assert "#399;x" not in transforms_module._ENTITY_PIECE_MEMO


def _reference_entity_decode(text: str) -> str:
    return transforms_module._ENTITY_RE.sub(transforms_module._entity_sub, text)


def test_a_long_value_runs_each_step_its_chains_share_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chains that begin alike (url_decode, html_entity_decode, then lowercase or js_decode),
    or that meet the same text after a step that changed nothing (base64_decode of text that
    is not base64), run each step on that text once, and give what the whole chain gives."""
    from wafmw.request import RequestView
    from wafmw.transforms import TRANSFORMS, Transform

    value = "%26lt;SCRIPT%26gt;\\/x " * 100
    short = value[:100]
    first = ("url_decode", "html_entity_decode", "lowercase")
    second = ("url_decode", "html_entity_decode", "js_decode")
    third = ("base64_decode", "url_decode", "html_entity_decode", "lowercase")
    expected = {
        (text, chain): apply_chain(text, chain)
        for text, chain in [(value, first), (value, second), (value, third), (short, first)]
    }
    runs: list[tuple[str, int]] = []

    def counted(t: Transform) -> Transform:
        def apply(s: str) -> str:
            runs.append((t.name, len(s)))
            return t.apply(s)

        return Transform(t.name, apply, t.local)

    monkeypatch.setattr(
        transforms_module, "TRANSFORMS", {n: counted(t) for n, t in TRANSFORMS.items()}
    )
    view = RequestView({"type": "http", "headers": []})
    assert view.transformed(value, first) == expected[(value, first)]
    assert view.transformed(value, second) == expected[(value, second)]
    assert [name for name, _ in runs] == [*first, "js_decode"]
    assert view.transformed(value, third) == expected[(value, third)]
    assert [name for name, _ in runs] == [*first, "js_decode", "base64_decode"]
    runs.clear()
    assert view.transformed(short, first) == expected[(short, first)]
    assert [name for name, _ in runs] == list(first)  # a short value's chain runs whole
