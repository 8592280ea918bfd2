"""Bounded body parsing: every kind, the limits, and bodies built to break parsers."""

from __future__ import annotations

import sys

import pytest

from wafmw.body import BodyLimits, ParsedBody, parse_body

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
LIMITS = BodyLimits()


def _multipart(boundary: str, *parts: str, close: bool = True, nl: str = "\r\n") -> bytes:
    text = "".join(f"--{boundary}{nl}{part}{nl}" for part in parts)
    if close:
        text += f"--{boundary}--{nl}"
    return text.encode("utf-8")


# --------------------------------------------------------------------------- empty / raw


def test_empty_body_is_empty_whatever_the_type() -> None:
    for ctype in (None, FORM, JSON, "multipart/form-data; boundary=x", "text/plain"):
        parsed = parse_body(ctype, b"", LIMITS)
        assert parsed == ParsedBody("empty", (), (), (), "", parse_error=False, truncated=False)


@pytest.mark.parametrize("ctype", [None, "", "text/plain", "application/xml", "text/xml; a=b"])
def test_other_types_are_raw(ctype: str | None) -> None:
    parsed = parse_body(ctype, b"<a>x=1&y=2</a>", LIMITS)
    assert parsed.kind == "raw"
    assert parsed.fields == () and parsed.names == () and parsed.files == ()
    assert parsed.raw == "<a>x=1&y=2</a>"
    assert not parsed.parse_error and not parsed.truncated


def test_raw_is_decoded_with_replacement() -> None:
    parsed = parse_body("text/plain", b"caf\xc3\xa9 \xff\xfe", LIMITS)
    assert parsed.raw == "café \ufffd\ufffd"


# --------------------------------------------------------------------------- urlencoded


def test_form_fields_and_repeated_keys() -> None:
    parsed = parse_body(FORM, b"a=1&a=2&&b=%3Cx%3E+y&c&d=", LIMITS)
    assert parsed.kind == "form"
    assert parsed.fields == (("a", "1"), ("a", "2"), ("b", "<x> y"), ("c", ""), ("d", ""))
    assert parsed.names == ("a", "a", "b", "c", "d")
    assert not parsed.parse_error and not parsed.truncated


def test_form_content_type_is_case_insensitive_and_ignores_params() -> None:
    parsed = parse_body("Application/X-WWW-Form-URLEncoded; charset=UTF-8", b"q=1", LIMITS)
    assert parsed.kind == "form" and parsed.fields == (("q", "1"),)


def test_form_non_utf8_bytes_are_replaced() -> None:
    parsed = parse_body(FORM, b"a=%ff%c3%a9&b=\xff", LIMITS)
    assert parsed.fields == (("a", "\ufffdé"), ("b", "\ufffd"))


def test_form_max_fields_truncates() -> None:
    body = "&".join(f"k{i}=v{i}" for i in range(50)).encode()
    parsed = parse_body(FORM, body, BodyLimits(max_fields=10))
    assert parsed.kind == "form" and parsed.truncated
    assert parsed.fields == tuple((f"k{i}", f"v{i}") for i in range(10))
    exact = parse_body(FORM, body, BodyLimits(max_fields=50))
    assert len(exact.fields) == 50 and not exact.truncated


def test_form_cut_short_by_the_caller_is_fine() -> None:
    parsed = parse_body(FORM, b"a=hello&b=wor", LIMITS)
    assert parsed.fields == (("a", "hello"), ("b", "wor"))


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("ctype", [JSON, "application/vnd.api+json", "text/json; charset=utf-8"])
def test_json_content_types(ctype: str) -> None:
    assert parse_body(ctype, b'{"a": "b"}', LIMITS).kind == "json"


def test_json_leaves_and_keys_at_depth() -> None:
    body = b"""{"user": {"name": "bob", "tags": ["x", 2, 2.50, 1e400, true, false, null],
                         "deep": {"k": {"q": "' or 1=1"}}},
                "n": null, "user2": [{"name": "eve"}]}"""
    parsed = parse_body(JSON, body, LIMITS)
    assert parsed.kind == "json"
    assert parsed.fields == (
        ("name", "bob"),
        ("tags", "x"),
        ("tags", "2"),
        ("tags", "2.50"),
        ("tags", "1e400"),
        ("tags", "true"),
        ("tags", "false"),
        ("q", "' or 1=1"),
        ("name", "eve"),
    )
    assert parsed.names == ("user", "n", "user2", "name", "tags", "deep", "k", "q", "name")
    assert not parsed.parse_error and not parsed.truncated


def test_json_top_level_scalars_and_arrays() -> None:
    assert parse_body(JSON, b'"<script>"', LIMITS).fields == (("", "<script>"),)
    assert parse_body(JSON, b'[1, [2, ["x"]]]', LIMITS).fields == (("", "1"), ("", "2"), ("", "x"))
    assert parse_body(JSON, b"null", LIMITS).fields == ()
    assert parse_body(JSON, b"NaN", LIMITS).fields == (("", "NaN"),)


def test_json_huge_integer_does_not_fail() -> None:
    digits = "9" * 20000
    parsed = parse_body(JSON, f'{{"a": {digits}}}'.encode(), LIMITS)
    assert parsed.kind == "json" and parsed.fields == (("a", digits),)


def test_json_depth_limit_truncates() -> None:
    body = b'{"a": 1, "b": {"c": 2, "d": {"e": 3}}, "f": [[["g"]]]}'
    parsed = parse_body(JSON, body, BodyLimits(json_max_depth=2))
    assert parsed.kind == "json" and parsed.truncated and not parsed.parse_error
    assert parsed.fields == (("a", "1"), ("c", "2"))
    assert parsed.names == ("a", "b", "f", "c", "d")
    full = parse_body(JSON, body, BodyLimits(json_max_depth=4))
    assert not full.truncated and ("e", "3") in full.fields and ("f", "g") in full.fields


def test_json_max_fields_truncates_leaves_and_keys() -> None:
    leaves = parse_body(
        JSON, b"[" + b",".join(b"%d" % i for i in range(100)) + b"]", BodyLimits(max_fields=5)
    )
    assert leaves.truncated and leaves.fields == tuple(("", str(i)) for i in range(5))
    keys = b"{" + b",".join(b'"k%d": null' % i for i in range(100)) + b"}"
    parsed = parse_body(JSON, keys, BodyLimits(max_fields=5))
    assert parsed.truncated and parsed.names == tuple(f"k{i}" for i in range(5))


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"a": }', b"{'a': 1}", b'{"a": 1} trailing', b"\xff\xfe{", b'{"a": "b'],
)
def test_malformed_json_is_raw_with_parse_error(body: bytes) -> None:
    parsed = parse_body(JSON, body, LIMITS)
    assert parsed.kind == "raw" and parsed.parse_error
    assert parsed.fields == () and parsed.raw == body.decode("utf-8", "replace")


def test_json_with_bom_and_invalid_utf8_inside_strings() -> None:
    parsed = parse_body(JSON, b'\xef\xbb\xbf{"a": "x\xffy"}', LIMITS)
    assert parsed.kind == "json" and parsed.fields == (("a", "x\ufffdy"),)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_absurd_nesting_neither_raises_nor_recurses(opener: bytes) -> None:
    body = opener * 100_000
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # any recursion per nesting level would blow up now
    try:
        parsed = parse_body(JSON, body, LIMITS)
        closed = parse_body(JSON, b"[" * 100_000 + b"]" * 100_000, LIMITS)
    finally:
        sys.setrecursionlimit(limit)
    assert parsed.kind == "raw" and parsed.parse_error and parsed.truncated
    assert closed.kind == "raw" and closed.parse_error and closed.truncated


def test_moderate_nesting_is_parsed_and_bounded_by_depth() -> None:
    body = b"[" * 300 + b'"deep"' + b"]" * 300
    parsed = parse_body(JSON, body, LIMITS)
    assert parsed.kind == "json" and parsed.truncated and parsed.fields == ()
    deep_ok = parse_body(JSON, body, BodyLimits(json_max_depth=300))
    assert deep_ok.fields == (("", "deep"),) and not deep_ok.truncated


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = b'{"a": "' + b"[" * 5000 + b'", "b": "\\"[[["}'
    parsed = parse_body(JSON, body, LIMITS)
    assert parsed.kind == "json"
    assert parsed.fields == (("a", "[" * 5000), ("b", '"[[['))


# --------------------------------------------------------------------------- multipart


def test_multipart_fields_and_files() -> None:
    body = _multipart(
        "XyZ",
        'Content-Disposition: form-data; name="a"\r\n\r\nhello\r\nworld',
        'Content-Disposition: form-data; name="a"\r\n\r\nsecond',
        'content-disposition: form-data; name="up"; filename="shell.php"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n<?php system($_GET[c]); ?>",
    )
    parsed = parse_body('multipart/form-data; boundary="XyZ"', body, LIMITS)
    assert parsed.kind == "multipart"
    assert parsed.fields == (("a", "hello\r\nworld"), ("a", "second"))
    assert parsed.names == ("a", "a", "up")
    assert parsed.files == ("shell.php",)
    assert not parsed.parse_error and not parsed.truncated


def test_multipart_bare_lf_and_preamble() -> None:
    body = b"preamble\n" + _multipart(
        "b", 'Content-Disposition: form-data; name="x"\n\nvalue', nl="\n"
    )
    parsed = parse_body("multipart/form-data; boundary=b", body, LIMITS)
    assert parsed.fields == (("x", "value"),) and not parsed.truncated


def test_multipart_filename_star_and_empty_filename() -> None:
    body = _multipart(
        "B",
        'Content-Disposition: form-data; name="f"; filename="a.jpg"; '
        "filename*=UTF-8''%E2%82%AC%20shell.php\r\n\r\ndata",
        "Content-Disposition: form-data; name=\"g\"; filename*=utf-8'en'r%C3%A9sum%C3%A9.pdf"
        "\r\n\r\ndata",
        'Content-Disposition: form-data; name="h"; filename=""\r\n\r\n<script>',
        'Content-Disposition: form-data; name="w"; filename="C:\\dir\\a \\"q\\".txt"\r\n\r\nx',
    )
    parsed = parse_body("multipart/form-data; boundary=B", body, LIMITS)
    assert parsed.files == ("a.jpg", "€ shell.php", "résumé.pdf", 'C:\\dir\\a "q".txt')
    # A part that names no file is inspected as a field, whatever it claims.
    assert parsed.fields == (("h", "<script>"),)
    assert parsed.names == ("f", "g", "h", "w")


def test_multipart_part_without_headers_or_name() -> None:
    body = _multipart("B", "\r\nno headers", "X-Other: 1\r\n\r\nnameless")
    parsed = parse_body("multipart/form-data; boundary=B", body, LIMITS)
    assert parsed.fields == (("", "no headers"), ("", "nameless"))


def test_multipart_non_utf8() -> None:
    body = b'--B\r\nContent-Disposition: form-data; name="n\xff"\r\n\r\nv\xfe\r\n--B--\r\n'
    parsed = parse_body("multipart/form-data; boundary=B", body, LIMITS)
    assert parsed.fields == (("n\ufffd", "v\ufffd"),)


def test_multipart_max_fields() -> None:
    parts = [f'Content-Disposition: form-data; name="p{i}"\r\n\r\n{i}' for i in range(20)]
    body = _multipart("B", *parts)
    parsed = parse_body("multipart/form-data; boundary=B", body, BodyLimits(max_fields=5))
    assert parsed.truncated and parsed.names == tuple(f"p{i}" for i in range(5))
    exact = parse_body("multipart/form-data; boundary=B", body, BodyLimits(max_fields=20))
    assert not exact.truncated and len(exact.fields) == 20


@pytest.mark.parametrize(
    "ctype",
    ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=zzz"],
)
def test_multipart_without_usable_boundary_is_raw_with_parse_error(ctype: str) -> None:
    body = _multipart("B", 'Content-Disposition: form-data; name="a"\r\n\r\n1')
    parsed = parse_body(ctype, body, LIMITS)
    assert parsed.kind == "raw" and parsed.parse_error and parsed.fields == ()


def test_multipart_cut_short_keeps_what_was_read() -> None:
    body = _multipart(
        "B",
        'Content-Disposition: form-data; name="a"\r\n\r\n1',
        'Content-Disposition: form-data; name="b"\r\n\r\npartial val',
        close=False,
    )
    parsed = parse_body("multipart/form-data; boundary=B", body[:-6], LIMITS)
    assert parsed.kind == "multipart" and parsed.truncated and not parsed.parse_error
    assert parsed.fields == (("a", "1"), ("b", "partial"))
    head_only = parse_body(
        "multipart/form-data; boundary=B", b"--B\r\nContent-Disposition: form-da", LIMITS
    )
    assert head_only.kind == "multipart" and head_only.truncated and head_only.names == ("",)
    delimiter_only = parse_body("multipart/form-data; boundary=B", b"--B", LIMITS)
    assert delimiter_only.kind == "multipart" and delimiter_only.truncated


def test_garbage_never_raises() -> None:
    import random

    rng = random.Random(1)
    ctypes = [FORM, JSON, "multipart/form-data; boundary=B", "text/plain", None]
    alphabet = b'--B\r\n{}[]":,=&%;\\ \xff\x00Content-Disposition: name="filename*'
    for _ in range(3000):
        body = bytes(rng.choice(alphabet) for _ in range(rng.randrange(80)))
        for ctype in ctypes:
            parsed = parse_body(ctype, body, BodyLimits(json_max_depth=3, max_fields=4))
            assert parsed.raw == body.decode("utf-8", "replace")
            assert len(parsed.fields) <= 4 and len(parsed.names) <= 4


def test_json_walk_has_a_budget_for_empty_containers() -> None:
    body = b"[" + b"[]," * 40_000 + b'"last"]'
    parsed = parse_body(JSON, body, BodyLimits(max_fields=10))
    assert parsed.kind == "json" and parsed.truncated and parsed.fields == ()


def test_multipart_line_that_only_starts_with_the_boundary_is_content() -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="q"\r\n\r\n'
        b"--Bx\r\n' union select password from users\r\n--B--\r\n"
    )
    parsed = parse_body("multipart/form-data; boundary=B", body, LIMITS)
    assert parsed.fields == (("q", "--Bx\r\n' union select password from users"),)
    assert parsed.names == ("q",) and not parsed.truncated


def test_multipart_padding_after_delimiter_and_empty_part_value() -> None:
    body = b'--B \t\r\nContent-Disposition: form-data; name="a"\r\n\r\n\r\n--B--'
    parsed = parse_body("multipart/form-data; boundary=B", body, LIMITS)
    assert parsed.fields == (("a", ""),) and not parsed.truncated
