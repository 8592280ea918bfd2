"""RequestView: joins of targets, and their url-decoding shared across joins."""

from __future__ import annotations

import random

from wafmw.body import BodyLimits
from wafmw.casetest import case_scope
from wafmw.model import Case, Target
from wafmw.request import RequestView
from wafmw.transforms import JOIN_CHARACTERS, url_decode

UNITS = (
    Target("args"),
    Target("args_names"),
    Target("headers"),
    Target("headers", "x-note"),
    Target("cookies"),
    Target("body"),
    Target("body_names"),
    Target("body_raw"),
    Target("files"),
)


def _view(query: str, body: str, headers: tuple[tuple[str, str], ...] = ()) -> RequestView:
    method = "POST" if body else "GET"
    scope, data = case_scope(Case(method, "/p" + (f"?{query}" if query else ""), headers, body))
    view = RequestView(scope, body_limits=BodyLimits())
    if data:
        view.body = data
    return view


def test_target_texts_join_to_the_joined_targets() -> None:
    """Joined text by text, or value by value: the same text (empty values included)."""
    rng = random.Random(5)
    views = [
        _view("a=1&b=%41&b=2", "x=%2F..&y=&z=w", (("x-note", "n1"), ("cookie", "c=d; e=f"))),
        _view("", "", ()),  # no args, no body, one header (host)
        _view("q=", "only=", (("x-note", ""),)),  # empty values are texts too
    ]
    for view in views:
        for _ in range(200):
            units = tuple(rng.sample(UNITS, rng.randrange(1, len(UNITS))))
            sep = rng.choice(JOIN_CHARACTERS)
            flat = sep.join(value for unit in units for _, value in view.target_items(unit))
            assert sep.join(view.target_texts(units, sep)) == view.joined(units, sep) == flat


def test_url_decoded_is_url_decode_of_the_join_whatever_the_order_and_length() -> None:
    rng = random.Random(9)
    # Escapes whole and cut, %u escapes, nested ones, join characters inside a text, a "?"
    # (a URI's query is decoded on its own), and texts long enough to be decoded text by text.
    fragments = [
        "%2F",
        "%2",
        "%",
        "%u0041",
        "%25",
        "%2541",
        "\\",
        "a",
        "\x01",
        "%c0%af",
        "é",
        "1",
        "?",
    ]
    for _ in range(300):
        texts = [
            "".join(rng.choice(fragments) for _ in range(rng.choice((3, 40, 700))))
            for _ in range(rng.randrange(1, 5))
        ]
        sep = rng.choice(JOIN_CHARACTERS)
        view = _view("", "")
        expected = url_decode(sep.join(texts))
        assert view.url_decoded(texts, sep) == expected
        # The same texts in another order, as another join reads them: still exact, from
        # what the view remembered.
        reordered = texts[::-1]
        assert view.url_decoded(reordered, sep) == url_decode(sep.join(reordered))
