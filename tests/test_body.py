"""Bounded body parsing: every kind, the limits, and bodies built to break parsers."""

from __future__ import annotations

import http.server
import inspect
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from wafmw import request as request_module
from wafmw.body import (
    BodyLimits,
    ParsedBody,
    json_object_keys,
    json_texts,
    parse_body,
    parse_query,
)
from wafmw.request import RequestView

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
XML = "application/xml"
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


@pytest.mark.parametrize("ctype", [None, "", "text/plain", "application/octet-stream"])
def test_other_types_are_raw(ctype: str | None) -> None:
    parsed = parse_body(ctype, b"<a>x=1&y=2</a>", LIMITS)
    assert parsed.kind == "raw"
    assert parsed.fields == () and parsed.names == () and parsed.files == ()
    assert parsed.raw == "<a>x=1&y=2</a>"
    assert not parsed.parse_error and not parsed.truncated


@pytest.mark.parametrize(
    "ctype",
    ["application/octet-stream", "image/png", "application/pdf", "Application/Octet-Stream; x=1"],
)
@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # a NUL byte
        b"caf\xe9 au lait",  # not UTF-8, no NUL
        bytes(range(256)),
    ],
)
def test_binary_data_of_a_type_not_text_is_binary(ctype: str, body: bytes) -> None:
    parsed = parse_body(ctype, body, LIMITS)
    assert parsed.kind == "binary"
    assert parsed.fields == () and parsed.names == () and parsed.files == ()
    assert parsed.raw == body.decode("utf-8", "replace")  # what body_raw reads
    assert not parsed.parse_error


@pytest.mark.parametrize("ctype", [None, "", "text/plain", "text/csv"])
def test_binary_data_declared_as_text_or_undeclared_is_read_as_text(ctype: str | None) -> None:
    body = b"a\x00b\xff"
    assert parse_body(ctype, body, LIMITS).kind == "raw"


@pytest.mark.parametrize(
    "body",
    [
        b"plain text, ascii",
        "naïve café ☕".encode(),
        "naïve café ☕".encode()[:-1],  # cut short inside the last character
        '{"q": "1 union select"}'.encode("utf-16"),  # with a byte-order mark
        '{"q": "1 union select"}'.encode("utf-16-le"),  # sniffed by its NULs, as json does
        '{"q": "1 union select"}'.encode("utf-16-be"),
        '{"q": "1 union select"}'.encode("utf-32"),
        '{"q": "1 union select"}'.encode("utf-32-le"),
        '{"q": "1 union select"}'.encode("utf-32-be"),
    ],
)
def test_text_of_a_type_not_text_is_raw(body: bytes) -> None:
    """Text is text whatever its label: an app may hand any body to json.loads, which reads
    UTF-16 and UTF-32 too."""
    assert parse_body("application/octet-stream", body, LIMITS).kind == "raw"


def test_nuls_that_do_not_decode_as_wide_text_are_binary() -> None:
    rng = random.Random(3)
    for _ in range(50):
        # Starting as UTF-16 or UTF-32 would, then random: an unpaired surrogate or a code
        # point past U+10FFFF comes within a few hundred bytes.
        body = rng.choice([b"\x00a", b"a\x00", b"\xff\xfe", b"\x00\x00\xfe\xff"]) + rng.randbytes(
            4096
        )
        assert parse_body("application/octet-stream", body, LIMITS).kind == "binary"


def test_a_binary_body_gives_no_body_values_and_its_text_to_body_raw() -> None:
    body = b"GIF89a\x01\x00\x01\x00\x80\x00\x00<script>"
    view = _view_with_content_type(b"image/gif")
    view.body = body
    assert view.items("body") == () and view.items("body_names") == ()
    assert view.items("body_raw") == (("", body.decode("utf-8", "replace")),)
    text = _view_with_content_type(b"text/plain")
    text.body = body
    assert text.items("body") == text.items("body_raw") == (("", body.decode("utf-8", "replace")),)


def test_a_parsed_type_is_never_binary() -> None:
    for ctype in (FORM, JSON, XML, "multipart/form-data; boundary=x"):
        assert parse_body(ctype, b"\x00\xff\xfe", LIMITS).kind != "binary"


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
    # Too deep to parse: read as its strings (none in the first; "a", up to max_fields, in
    # the second), truncated, not a parse error.
    assert parsed.kind == "json" and parsed.truncated and not parsed.parse_error
    assert parsed.fields == (() if opener == b"[" else (("", "a"),) * LIMITS.max_fields)
    assert closed.kind == "json" and closed.truncated and closed.fields == ()


def test_a_document_too_deep_to_parse_is_read_as_its_strings() -> None:
    """Nested past the hard depth, a document cannot be parsed; each string in it, however
    deep, is still inspected (escapes decoded); a bad escape makes it raw text after all."""
    body = b'{"q": "top", "n": ' + b"[" * 600 + b'"\\u0027 or 1=1 --"' + b"]" * 600 + b"}"
    parsed = parse_body(JSON, body, LIMITS)
    assert parsed.kind == "json" and parsed.truncated and not parsed.parse_error
    assert parsed.fields == (("", "q"), ("", "top"), ("", "n"), ("", "' or 1=1 --"))
    bad = parse_body(JSON, b"[" * 600 + b'"\\x"' + b"]" * 600, LIMITS)
    assert bad.kind == "raw" and bad.parse_error


def test_a_deep_document_cut_inside_a_string_cannot_hang_the_parser() -> None:
    """A string left open runs to the end of the text: else each escaped quote inside it
    began a search that ran to the end and failed (48 KB took 23 s, growing with the square
    of the length; this one would take minutes)."""
    started = time.perf_counter()
    parsed = parse_body(JSON, b"[" * 501 + b'"' + b'\\"x' * 40_000, LIMITS)
    assert time.perf_counter() - started < 1.0
    assert parsed.kind == "raw" and parsed.parse_error
    # The brackets after an open string do not nest: not too deep, and not JSON either.
    cut = parse_body(JSON, b'["' + b"[" * 600, LIMITS)
    assert cut.kind == "raw" and cut.parse_error


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
    ctypes = [FORM, JSON, "multipart/form-data; boundary=B", XML, "text/plain", None]
    alphabet = b'--B\r\n{}[]":,=&%;\\ \xff\x00Content-Disposition: name="filename*<a/>!#x'
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


# --------------------------------------------------------------------------- XML


@pytest.mark.parametrize(
    "ctype", [XML, "text/xml; charset=utf-8", "application/soap+xml", "Application/Atom+XML"]
)
def test_xml_content_types(ctype: str) -> None:
    parsed = parse_body(ctype, b"<a>1</a>", LIMITS)
    assert parsed.kind == "xml" and parsed.fields == (("a", "1"),)


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/octet-stream"])
def test_xml_is_not_sniffed_without_an_xml_type(ctype: str | None) -> None:
    # The markup stays in the one raw value: parsed, "<script>" would be an element name.
    parsed = parse_body(ctype, b'<?xml version="1.0"?><script>alert(1)</script>', LIMITS)
    assert parsed.kind == "raw" and not parsed.parse_error


def test_xml_attributes_and_text_in_document_order() -> None:
    body = (
        b'<?xml version="1.0"?>\n<root id="7">\n  <a probe="x\' or 1=1--" b=\'two\'/>\n'
        b"  <name>O'Brien</name>\n</root>"
    )
    parsed = parse_body(XML, body, LIMITS)
    assert parsed.kind == "xml" and not parsed.parse_error and not parsed.truncated
    assert parsed.fields == (
        ("id", "7"),
        ("probe", "x' or 1=1--"),
        ("b", "two"),
        ("name", "O'Brien"),
    )
    assert parsed.names == ("root", "id", "a", "probe", "b", "name")
    assert parsed.raw == body.decode()
    assert parsed.files == ()


def test_xml_mixed_content_is_named_by_the_enclosing_element() -> None:
    parsed = parse_body(XML, b"<p>before<b>bold</b>after<i/>  \n\t</p>", LIMITS)
    # Whitespace-only runs are formatting, not values.
    assert parsed.fields == (("p", "before"), ("b", "bold"), ("p", "after"))


def test_xml_entities_and_character_references_are_decoded() -> None:
    body = b'<a t="&lt;script&gt;&#10;&#x41;&quot;">&amp;&apos;&#60;img&#x20;src=x&gt;</a>'
    parsed = parse_body(XML, body, LIMITS)
    assert parsed.fields == (("t", '<script>\nA"'), ("a", "&'<img src=x>"))


def test_xml_cdata_and_comments_join_the_text_run() -> None:
    # An app's tree builder joins them; split, "' or 1=1--" would reach no rule whole.
    body = b"<r><q>' or <![CDATA[1=1]]><!-- x --><?pi y?>--</q><c><![CDATA[<script>]]></c></r>"
    parsed = parse_body(XML, body, LIMITS)
    assert parsed.fields == (("q", "' or 1=1--"), ("c", "<script>"))


def test_xml_namespaces_are_kept_as_written() -> None:
    body = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<s:Body><q>1</q></s:Body></s:Envelope>"
    )
    parsed = parse_body("application/soap+xml", body, LIMITS)
    assert parsed.names == ("s:Envelope", "xmlns:s", "s:Body", "q")
    assert parsed.fields == (("xmlns:s", "http://schemas.xmlsoap.org/soap/envelope/"), ("q", "1"))


def test_xml_declared_encoding_is_honoured() -> None:
    body = '<?xml version="1.0" encoding="ISO-8859-1"?><a>café</a>'.encode("latin-1")
    parsed = parse_body(XML, body, LIMITS)
    assert parsed.fields == (("a", "café"),)
    assert parsed.raw == body.decode("utf-8", "replace")


@pytest.mark.parametrize(
    "body",
    [
        b"<a>x=1&y=2</a>",  # a bare "&"
        b"<a><b></a>",
        b"<a>1</a><b>2</b>",  # two roots
        b"<a>&undeclared;</a>",
        b"text",
        b"<a",
        b'<?xml version="1.0" encoding="UTF-7"?><a>+ADw-script+AD4-</a>',
        b'<?xml version="1.0" encoding="no-such-codec"?><a/>',
        b"\xff\xfe<\x00a\x00>",  # UTF-16 BOM, cut short
    ],
)
def test_malformed_xml_is_raw_with_parse_error(body: bytes) -> None:
    parsed = parse_body(XML, body, LIMITS)
    assert parsed.kind == "raw" and parsed.parse_error and not parsed.truncated
    assert parsed.fields == () and parsed.names == ()
    assert parsed.raw == body.decode("utf-8", "replace")


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]>\n<lolz>&lol9;</lolz>"
)


def test_billion_laughs_is_refused_at_once() -> None:
    start = time.perf_counter()
    parsed = parse_body(XML, BILLION_LAUGHS, LIMITS)
    assert time.perf_counter() - start < 0.5
    assert parsed.kind == "raw" and parsed.parse_error
    # The whole document stays for the rules (the XXE rules look for <!ENTITY).
    assert parsed.raw == BILLION_LAUGHS.decode()


def test_quadratic_blowup_and_attribute_defaults_are_refused() -> None:
    quadratic = (
        b'<!DOCTYPE a [<!ENTITY e "' + b"x" * 50_000 + b'">]><a>' + b"&e;" * 20_000 + b"</a>"
    )
    defaults = b'<!DOCTYPE a [<!ATTLIST b c CDATA "payload">]><a><b/><b/></a>'
    for body in (quadratic, defaults):
        start = time.perf_counter()
        parsed = parse_body(XML, body, LIMITS)
        assert time.perf_counter() - start < 0.5
        assert parsed.kind == "raw" and parsed.parse_error


def test_external_entities_and_dtds_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY e "TOP-SECRET"><!ATTLIST a x CDATA "TOP-SECRET">')
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # pragma: no cover - must never run
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY e "TOP-SECRET">')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        bodies = [
            # an external DTD: not read, its entity stays a reference as written
            f'<!DOCTYPE a SYSTEM "{dtd.as_uri()}"><a>&e;</a>',
            f'<!DOCTYPE a SYSTEM "{url}/evil.dtd"><a>&e;</a>',
            f'<!DOCTYPE a PUBLIC "-//X//EN" "{url}/p.dtd"><a x="1">&e;</a>',
            # external entities declared in the document: refused, never resolved
            f'<!DOCTYPE a [<!ENTITY e SYSTEM "{secret.as_uri()}">]><a>&e;</a>',
            f'<!DOCTYPE a [<!ENTITY e SYSTEM "{url}/e">]><a>&e;</a>',
            f'<!DOCTYPE a [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]><a>&e;</a>',
            f'<!DOCTYPE a [<!ENTITY u SYSTEM "{url}/u" NDATA png>]><a/>',
        ]
        for text in bodies:
            parsed = parse_body(XML, text.encode(), LIMITS)
            assert "TOP-SECRET" not in repr(parsed.fields) + repr(parsed.names), text
            assert parsed.raw == text
            if "[" in text:
                assert parsed.kind == "raw" and parsed.parse_error
            else:
                assert parsed.kind == "xml" and ("a", "&e;") in parsed.fields
    finally:
        server.shutdown()
        server.server_close()
    assert requests == []


def test_xml_depth_limit_leaves_the_document_whole() -> None:
    body = b"<a>" * 5 + b"deep" + b"</a>" * 5
    parsed = parse_body(XML, body, BodyLimits(json_max_depth=4))
    assert parsed.kind == "raw" and parsed.truncated and not parsed.parse_error
    assert parsed.raw == body.decode()
    full = parse_body(XML, body, BodyLimits(json_max_depth=5))
    assert full.kind == "xml" and full.fields == (("a", "deep"),) and not full.truncated


def test_xml_absurd_nesting_neither_raises_nor_recurses() -> None:
    body = b"<a>" * 200_000 + b"x" + b"</a>" * 200_000
    start = time.perf_counter()
    parsed = parse_body(XML, body, LIMITS)
    assert time.perf_counter() - start < 1.0
    assert parsed.kind == "raw" and parsed.truncated


@pytest.mark.parametrize(
    "body",
    [
        b"<r>" + b"<a>1</a>" * 6 + b"</r>",  # text values
        b"<r " + b" ".join(b'a%d="1"' % i for i in range(6)) + b"/>",  # attribute values
        b"<r>" + b"<a/>" * 6 + b"</r>",  # names only
    ],
)
def test_xml_max_fields_leaves_the_document_whole(body: bytes) -> None:
    parsed = parse_body(XML, body, BodyLimits(max_fields=5))
    assert parsed.kind == "raw" and parsed.truncated and not parsed.parse_error
    assert parsed.raw == body.decode()
    assert parse_body(XML, body, BodyLimits(max_fields=7)).kind == "xml"


def test_xml_large_documents_parse_in_linear_time() -> None:
    limits = BodyLimits(max_fields=1_000_000, json_max_depth=32)
    many = b"<r>" + b'<a x="&lt;1&gt;">t&amp;t</a>' * 40_000 + b"</r>"
    wide = b"<r " + b" ".join(b'a%d="v"' % i for i in range(40_000)) + b"/>"
    long_text = b"<r>" + b"&lt;x&gt;" * 200_000 + b"</r>"
    for body in (many, wide, long_text):
        start = time.perf_counter()
        parsed = parse_body(XML, body, limits)
        assert time.perf_counter() - start < 2.0
        assert parsed.kind == "xml" and not parsed.truncated


def test_xml_garbage_never_raises() -> None:
    import random

    rng = random.Random(3)
    seed = (
        b'<?xml version="1.0"?><!DOCTYPE r><r a="&lt;1&#10;"><b>x&amp;<![CDATA[y]]></b><!--c--></r>'
    )
    for _ in range(3000):
        body = bytearray(seed)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(body))
            op = rng.randrange(3)
            if op == 0:
                del body[i]
            elif op == 1:
                body.insert(i, rng.choice(b'<>&;"#![]/=x\x00\xff'))
            else:
                body[i : i + 1] = body[i : i + 1] * 3
        parsed = parse_body(XML, bytes(body), BodyLimits(json_max_depth=3, max_fields=4))
        assert parsed.kind in ("xml", "raw")
        assert parsed.raw == bytes(body).decode("utf-8", "replace")
        assert len(parsed.fields) <= 4 and len(parsed.names) <= 4


# --------------------------------------------------------------------------- media type


def _view_with_content_type(value: bytes | bytearray | None) -> RequestView:
    headers: list[tuple[bytes, Any]] = [(b"host", b"a")]
    if value is not None:
        headers.append((b"content-type", value))
    return RequestView({"type": "http", "method": "POST", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"application/json", "application/json"),
        (b"Application/JSON; charset=utf-8", "application/json"),
        (b"  multipart/form-data ; boundary=x", "multipart/form-data"),
        (bytearray(b"Text/XML"), "text/xml"),  # not hashable: read without the memory
        (b"caf\xe9/x", "caf\ufffd/x"),
        (None, ""),
    ],
)
def test_media_type_from_the_raw_header_twice(value: bytes | None, expected: str) -> None:
    # The second view is answered from the memory of raw values: the same answer.
    assert _view_with_content_type(value).media_type == expected
    assert _view_with_content_type(value).media_type == expected


def test_media_type_memory_is_bounded() -> None:
    for i in range(3 * request_module._MEDIA_TYPE_MEMORY):
        view = _view_with_content_type(f"application/x-{i}".encode())
        assert view.media_type == f"application/x-{i}"
        assert len(request_module._MEDIA_TYPES) <= request_module._MEDIA_TYPE_MEMORY
    long = b"application/json; " + b"x" * request_module._MEDIA_TYPE_MAX_BYTES
    assert _view_with_content_type(long).media_type == "application/json"
    assert long not in request_module._MEDIA_TYPES


# --------------------------------------------------------------------------- query and form


def test_parse_query_agrees_with_parse_qsl() -> None:
    """parse_query (query arguments and form bodies) decodes at C speed what parse_qsl decodes
    one escape at a time: the same pairs for random strings of escapes good and broken,
    UTF-8 valid and not, pluses, backslashes and characters beyond ASCII."""
    rng = random.Random(5)
    pieces = ["%", "%2", "%25", "%41", "%4g", "%C3%A9", "%C3", "%FF", "%C0%AF", "%E2%82", "%5C"]
    pieces += ["%u0041", "+", "=", "&", "a", "Z", "\\", "\\x41", " ", "\u00e9", "\u2603", "%0A"]
    for _ in range(5000):
        query = "".join(rng.choice(pieces) for _ in range(rng.randrange(14)))
        expected = tuple(parse_qsl(query, keep_blank_values=True, errors="replace"))
        assert parse_query(query) == expected, query


def _walked_with_a_stack(doc: Any, limits: BodyLimits) -> tuple[list[Any], list[str], bool]:
    """The JSON walk as a loop over a stack of every value (the parser's until the fourteenth
    session): the reference its recursive walk must read as."""
    fields: list[tuple[str, str]] = []
    names: list[str] = []
    truncated = False
    budget = 4 * limits.max_fields + 64
    stack: list[tuple[Any, str, int]] = [(doc, "", 1)]
    while stack:
        budget -= 1
        if budget < 0:
            truncated = True
            break
        value, key, depth = stack.pop()
        if isinstance(value, dict):
            if depth > limits.json_max_depth:
                truncated = True
                continue
            children = []
            for k, v in value.items():
                if len(names) >= limits.max_fields:
                    truncated = True
                    break
                names.append(k)
                children.append((v, k, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            if depth > limits.json_max_depth:
                truncated = True
                continue
            if len(value) > budget:
                truncated = True
                value = value[:budget]
            stack.extend([(v, key, depth + 1) for v in reversed(value)])
        elif value is not None:
            if len(fields) >= limits.max_fields:
                truncated = True
                break
            fields.append((key, "true" if value is True else "false" if value is False else value))
    return fields, names, truncated


def test_the_json_walk_reads_every_document_as_a_walk_over_a_stack_does() -> None:
    """Random documents (objects, arrays, strings, numbers, true, false, null, empty
    containers, runs of nulls as long as the walk's budget) under random limits: the same
    leaves, keys and truncation, in the same order, as the plain walk over a stack of every
    value."""
    rng = random.Random(17)

    def document(depth: int = 0) -> Any:
        roll = rng.random()
        if roll < 0.05:  # a run of steps that are neither fields nor names, near the budget
            return [rng.choice([None, [], {}]) for _ in range(rng.randrange(60, 75))]
        if depth > 5 or roll < 0.4:
            return rng.choice(["a", "b c", 1, 2.5, None, True, False, [], {}])
        if roll < 0.7:
            return [document(depth + 1) for _ in range(rng.randrange(6))]
        return {f"k{rng.randrange(12)}": document(depth + 1) for _ in range(rng.randrange(6))}

    truncations = 0
    for _ in range(5000):
        body = json.dumps(document()).encode()
        limits = BodyLimits(
            json_max_depth=rng.choice([1, 2, 3, 32]), max_fields=rng.choice([1, 2, 3, 5, 1000])
        )
        parsed = parse_body(JSON, body, limits)
        doc = json.loads(body, parse_int=str, parse_float=str)
        fields, names, truncated = _walked_with_a_stack(doc, limits)
        assert (list(parsed.fields), list(parsed.names), parsed.truncated) == (
            fields,
            names,
            truncated,
        ), body
        truncations += truncated
    assert 500 < truncations < 4500  # the limits cut many walks short, and not all


@pytest.mark.parametrize("max_fields", [1, 5])
def test_the_json_walk_stops_at_its_budget_of_steps(max_fields: int) -> None:
    """Each value is a step of the walk, the document itself too, nulls and empty arrays
    included: 4 x max_fields + 64 of them, and a document that needs more is truncated
    there, the values past the budget unread."""
    steps = 4 * max_fields + 64
    limits = BodyLimits(max_fields=max_fields)

    def parsed(doc: Any) -> ParsedBody:
        return parse_body(JSON, json.dumps(doc).encode(), limits)

    assert not parsed([None] * (steps - 1)).truncated
    assert parsed([None] * steps).truncated
    fits = parsed([[None] * (steps - 3), "a"])
    assert fits.fields == (("", "a"),) and not fits.truncated
    over = parsed([[None] * (steps - 2), "a"])
    assert over.fields == () and over.truncated


def test_a_json_walk_begun_deep_in_the_stack_is_cut_short_not_raised() -> None:
    """The walk recurses into objects and arrays; where the interpreter's recursion limit is
    near, it returns what it read, truncated, instead of raising."""
    from wafmw.body import _json_fields

    doc: Any = ["deep"]
    for _ in range(60):
        doc = [doc]
    limits = BodyLimits(json_max_depth=256)
    assert _json_fields(["a", doc, "after"], limits) == (
        [("", "a"), ("", "deep"), ("", "after")],
        [],
        False,
    )
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 30)
    try:
        fields, names, truncated = _json_fields(["a", doc, "after"], limits)
    finally:
        sys.setrecursionlimit(limit)
    assert fields == [("", "a")] and names == [] and truncated


def test_the_object_keys_hold_every_name_parse_body_gives() -> None:
    """json_object_keys is what the engine checks before a parse for the filters that read
    only a body's names: over random documents under random limits (escaped and repeated
    keys, pretty-printed, a byte order mark), it gives every key, repeats
    too, so every name parse_body gives is among them; a body json.loads refuses gives
    None. (Inner objects come first: json.loads hands each object over when it closes.)"""
    rng = random.Random(23)
    keys = ["a", "b", "a\nb", "%0d", "x__contains", "\u00e9", "\\", '"', ":", ""]

    def document(depth: int = 0) -> Any:
        roll = rng.random()
        if depth > 4 or roll < 0.35:
            return rng.choice(["v", "line\nbreak", 1, 2.5, None, True, [], {}])
        if roll < 0.6:
            return [document(depth + 1) for _ in range(rng.randrange(5))]
        return {rng.choice(keys): document(depth + 1) for _ in range(rng.randrange(5))}

    def every_key(doc: Any) -> list[str]:
        if isinstance(doc, dict):
            return [k for key, value in doc.items() for k in [key, *every_key(value)]]
        if isinstance(doc, list):
            return [k for value in doc for k in every_key(value)]
        return []

    for _ in range(3000):
        doc = document()
        expected = every_key(doc)
        text = json.dumps(doc, indent=rng.choice([None, 2]), ensure_ascii=rng.random() < 0.5)
        if text.startswith("{") and text != "{}" and rng.random() < 0.3:
            text = '{"a": 0, "a": 1, ' + text[1:]  # a key repeated: the document keeps one
            expected = ["a", "a", *expected]
        body = (b"\xef\xbb\xbf" if rng.random() < 0.1 else b"") + text.encode()
        found = json_object_keys(body)
        assert found is not None and sorted(found) == sorted(expected), body
        limits = BodyLimits(json_max_depth=rng.choice([1, 2, 32]), max_fields=rng.choice([2, 1000]))
        assert set(parse_body(JSON, body, limits).names) <= set(found), body
    for bad in [b"{", b'{"a": }', b'{"a": 1} trailing', b"\xff{", b"[" * 100_000]:
        assert json_object_keys(bad) is None, bad[:10]


def test_the_texts_of_a_json_body_hold_every_value_and_name_parse_body_gives() -> None:
    """json_texts is what the engine checks before a parse for filters that read a body's
    values and names: over random documents without escapes under random limits (numbers
    of every form, nesting past the depth limit, pretty-printed, a byte order mark), every
    value and name parse_body gives is among them; a backslash anywhere, or a body that
    json.loads refuses, gives None."""
    rng = random.Random(29)
    words = ["a", "b c", "don't", "x' or 1=1 --", "\u00e9t\u00e9", "", ":", "{[,]}", "1"]
    numbers = ["0", "-1", "2.5", "1e5", "-0.0", "123456789012345678901234567890", "3E-2"]

    def document(depth: int = 0) -> str:
        roll = rng.random()
        if depth > 5 or roll < 0.4:
            kind = rng.random()
            if kind < 0.5:
                return json.dumps(rng.choice(words), ensure_ascii=False)
            if kind < 0.8:
                return rng.choice(numbers)
            return rng.choice(["true", "false", "null", "NaN", "-Infinity"])
        if roll < 0.7:
            return "[" + ", ".join(document(depth + 1) for _ in range(rng.randrange(5))) + "]"
        items = (
            json.dumps(rng.choice(words), ensure_ascii=False) + ": " + document(depth + 1)
            for _ in range(rng.randrange(5))
        )
        return "{" + ",\n ".join(items) + "}"

    for _ in range(3000):
        body = (b"\xef\xbb\xbf" if rng.random() < 0.1 else b"") + document().encode()
        texts = json_texts(body)
        assert texts is not None, body
        limits = BodyLimits(json_max_depth=rng.choice([1, 3, 32]), max_fields=rng.choice([2, 1000]))
        parsed = parse_body(JSON, body, limits)
        assert parsed.kind == "json", body
        assert {value for _, value in parsed.fields} | set(parsed.names) <= set(texts), body
    assert json_texts(b'{"a": "b\\u0027"}') is None  # a string to decode
    assert json_texts(b'{"a\\\\": 1}') is None
    for bad in [b"{", b'{"a": }', b'{"a" "b"}', b"[1, 2] 3", b"[" * 100_000]:
        assert json_texts(bad) is None, bad[:10]
