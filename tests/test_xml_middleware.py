"""XML bodies through the real middleware and the shipped rules: each attribute value and text
run is a value of its own, the sieve sees values that differ from the raw text, and the whole
document still reaches the rules that read the raw body."""

from __future__ import annotations

import pytest

from tests.asgi import EchoApp, call, post_scope
from wafmw import WAFMiddleware

pytestmark = pytest.mark.anyio


async def _send(body: bytes, content_type: str = "application/xml") -> tuple[int, EchoApp]:
    app = EchoApp()
    waf = WAFMiddleware(app)  # the shipped ruleset, paranoia 1
    result = await call(waf, post_scope("/api/orders", body, content_type), [body])
    return result.status, app


@pytest.mark.parametrize(
    "body",
    [
        # A value that is a whole command line: rule 932105 is anchored to a value's start,
        # which the raw document (starting with "<?xml") never offered it.
        b'<?xml version="1.0"?><order><item cmd="whoami"/></order>',
        b"<order><item>c99 -wrapper sh,-c,id</item></order>",
        # The same value behind a character reference, in CDATA, across a comment: not a
        # substring of the raw body, so the sieve must scan the parsed values too.
        b'<order><item cmd="&#119;hoami"/></order>',
        b"<order><item>who<![CDATA[ami]]></item></order>",
        b"<order><item>who<!-- split -->ami</item></order>",
    ],
)
async def test_attack_in_an_xml_value_is_blocked(body: bytes) -> None:
    status, app = await _send(body)
    assert status == 403 and app.calls == 0


async def test_xxe_document_is_still_blocked() -> None:
    body = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    status, app = await _send(body)
    assert status == 403 and app.calls == 0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<order id="42">\n  <item sku="A-1" qty="2">'
            b"Who am I? &amp; other stories</item>\n  <note><![CDATA[Leave at the door]]></note>"
            b"\n</order>",
            "application/xml",
        ),
        (
            b'<?xml version="1.0"?>\n<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/'
            b'soap-envelope" xmlns:m="https://shop.example.com/stock">\n <soap:Header/>\n'
            b" <soap:Body>\n  <m:GetStockPrice>\n   <m:StockName>IBM</m:StockName>\n"
            b"  </m:GetStockPrice>\n </soap:Body>\n</soap:Envelope>",
            "application/soap+xml; charset=utf-8",
        ),
    ],
)
async def test_benign_xml_reaches_the_app_byte_for_byte(body: bytes, content_type: str) -> None:
    status, app = await _send(body, content_type)
    assert status == 200 and app.received == body
