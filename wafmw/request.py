"""RequestView: a lazy, read-only view of one request, each field decoded once and cached.

It does no I/O: the middleware reads the body (when some rule needs it) and hands the bytes in.
Collections are (name, value) pairs so that exclusions can drop one named argument or header.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .body import BodyLimits, ParsedBody, media_type_of, parse_body, parse_query
from .model import Target
from .transforms import apply_chain, url_decode

Pairs = tuple[tuple[str, str], ...]
# The default of what joins values for the engine's one-scan-per-chain (each group of rules
# picks its own, see engine.choose_separator). Not "\n": CRLF and command-separator rules look
# for newlines and would match at every join. A control character is rare in real values and not
# whitespace, so `\s`-based patterns cannot reach across a join.
SEPARATOR = "\x00"
_DEFAULT_BODY_LIMITS = BodyLimits()


# From this length on, each step of a value's transform chain is remembered (see transformed),
# and a text of a join is url-decoded on its own (see url_decoded).
LONG_TEXT_CHARS = 1024
URL_DECODE = ("url_decode",)

# Media types by raw Content-Type value (see RequestView.media_type); bounded in entries and
# in the length of what is remembered, forgotten wholesale when full.
_MEDIA_TYPES: dict[bytes, str] = {}
_MEDIA_TYPE_MEMORY = 256
_MEDIA_TYPE_MAX_BYTES = 256


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
_NAME = operator.itemgetter(0)


def may_have_body(view: RequestView) -> bool:
    """Whether the request may carry a body, worked out once per view (kept in
    `known_may_have_body`; the engine's memory of clean heads hands it over for a head it
    knows). A POST, PUT, PATCH or DELETE is always read: an empty body costs one receive,
    where finding Content-Length among the headers cost every such request a Python loop
    over them (HTTP/2 and HTTP/3 need no Content-Length anyway). Another method only when a
    framing header says so; Transfer-Encoding wins over Content-Length, as RFC 9112 (6.3)
    has servers frame the body: a chunked body sent with "Content-Length: 0" reaches the
    app, so it is inspected."""
    known = view.known_may_have_body
    if known is None:
        known = _frames_body(view.method, view.scope.get("headers", ()))
        view.known_may_have_body = known
    return known


def _frames_body(method: str, headers: Any) -> bool:
    if method in _BODY_METHODS:
        return True
    if _FRAMING_HEADERS.isdisjoint(map(_NAME, headers)):
        return False  # the usual GET, told with the loop in C: no framing header at all
    length: bytes | None = None
    for name, value in headers:
        if name in _FRAMING_HEADERS:
            if name == b"transfer-encoding":
                return True
            if length is None:  # the first Content-Length decides
                length = value
    return length is not None and length.strip() not in (b"", b"0")


def decode_header_value(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


class RequestView:
    __slots__ = (
        "_args",
        "_cache",
        "_client_ip",
        "_cookies",
        "_head_key",
        "_headers",
        "_parsed_body",
        "behaviour_counted",
        "body",
        "body_limits",
        "client_ip_resolver",
        "known_may_have_body",
        "known_media_type",
        "method",
        "path",
        "scope",
    )

    def __init__(
        self,
        scope: Mapping[str, Any],
        *,
        client_ip_resolver: Callable[[Mapping[str, Any]], str | None] | None = None,
        body_limits: BodyLimits | None = None,
    ) -> None:
        self.scope = scope
        # websocket scopes have no method; inspect them as the GET they arrived as.
        self.method: str = scope.get("method", "GET")
        self.path: str = scope.get("path", "/")
        self.body: bytes | None = None
        # Set by the bot detector once it counted the request in its client's behaviour.
        self.behaviour_counted = False
        # See may_have_body() and media_type; None until worked out (the engine's memory of
        # clean heads hands both over for a head it knows).
        self.known_may_have_body: bool | None = None
        self.known_media_type: str | None = None
        # Set by the middleware once it knows the ruleset (trusted proxies, body limits).
        self.client_ip_resolver = client_ip_resolver
        self.body_limits = body_limits or _DEFAULT_BODY_LIMITS
        self._headers: Pairs | None = None
        self._args: Pairs | None = None
        self._cookies: Pairs | None = None
        self._parsed_body: ParsedBody | None = None
        self._client_ip: str | bool | None = False  # False: not resolved yet
        self._head_key: tuple[Any, ...] | None = None
        self._cache: dict[Any, Any] = {}

    # -- simple fields --------------------------------------------------------------------------

    @property
    def raw_path(self) -> str:
        raw = self.scope.get("raw_path")
        if raw is None:
            return self.path
        return str(raw.decode("latin-1"))

    @property
    def query_string(self) -> bytes:
        """The raw query string."""
        return self.scope.get("query_string", b"")  # type: ignore[no-any-return]

    @property
    def query(self) -> str:
        return str(self.scope.get("query_string", b"").decode("latin-1"))

    @property
    def uri(self) -> str:
        query = self.query
        return f"{self.raw_path}?{query}" if query else self.raw_path

    @property
    def http_version(self) -> str:
        return str(self.scope.get("http_version", "1.1"))

    @property
    def head_key(self) -> tuple[Any, ...]:
        """The whole request head — request line, scheme and header pairs, as the server
        gave them — as one key, for the memories of verdicts that depend on the head alone
        (the engine's clean heads, the bot detector's verdicts). Not always hashable: ASGI
        says header pairs are bytes, but a server may give lists. The memories catch the
        TypeError and do without; testing here would hash every head once more."""
        key = self._head_key
        if key is None:
            scope = self.scope
            key = self._head_key = (
                self.method,
                scope.get("http_version"),
                scope.get("scheme"),
                self.path,
                scope.get("raw_path"),
                scope.get("query_string"),
                *scope.get("headers", ()),
            )
        return key

    def adopt_head_key(self, key: tuple[Any, ...]) -> None:
        """Take a key equal to head_key (a memory's own, found by it) in its place: memories
        that keep the same key object then find it by identity, without comparing it."""
        self._head_key = key

    @property
    def memo(self) -> dict[Any, Any]:
        """Answers about this request that a reader computes once and asks again (keyed by the
        reader's own objects, so that readers cannot collide)."""
        return self._cache

    def head_size(self) -> int:
        """Bytes in the head's path, query and headers (what a memory of heads holds)."""
        size: int | None = self._cache.get("head-size")
        if size is None:
            scope = self.scope
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) for name, value in scope.get("headers", ()))
            self._cache["head-size"] = size
        return size

    @property
    def headers(self) -> Pairs:
        if self._headers is None:
            # ASGI header names are lowercase bytes already; values may be any bytes.
            self._headers = tuple(
                (name.decode("latin-1"), decode_header_value(value))
                for name, value in self.scope.get("headers", ())
            )
        return self._headers

    def header(self, name: str) -> str | None:
        """The first value of a header (name in lowercase), or None."""
        if self._headers is not None:
            for key, value in self._headers:
                if key == name:
                    return value
            return None
        raw = self.raw_header(name.encode("latin-1"))
        return None if raw is None else decode_header_value(raw)

    def raw_header(self, name: bytes) -> bytes | None:
        """The first value of a header as the server gave it (name in lowercase bytes).
        A scan, not a dict built per request: building one costs more than the two or three
        lookups a request makes."""
        for key, value in self.scope.get("headers", ()):
            if key == name:
                found: bytes = value
                return found
        return None

    @property
    def host(self) -> str:
        return self.header("host") or ""

    @property
    def args(self) -> Pairs:
        if self._args is None:
            query = self.query
            self._args = parse_query(query) if query else ()
        return self._args

    def arg(self, name: str) -> str | None:
        for key, value in self.args:
            if key == name:
                return value
        return None

    @property
    def cookies(self) -> Pairs:
        if self._cookies is None:
            pairs: list[tuple[str, str]] = []
            for key, raw in self.scope.get("headers", ()):
                if key != b"cookie":
                    continue
                for chunk in decode_header_value(raw).split(";"):
                    name, sep, val = chunk.partition("=")
                    name = name.strip()
                    if name or sep:
                        pairs.append((name, val.strip()))
            self._cookies = tuple(pairs)
        return self._cookies

    def cookie(self, name: str) -> str | None:
        for key, value in self.cookies:
            if key == name:
                return value
        return None

    @property
    def client_ip(self) -> str | None:
        if self._client_ip is False:
            if self.client_ip_resolver is not None:
                self._client_ip = self.client_ip_resolver(self.scope)
            else:
                client = self.scope.get("client")
                self._client_ip = client[0] if client else None
        return self._client_ip  # type: ignore[return-value]

    @property
    def content_type(self) -> str | None:
        cached = self._cache.get("content-type", False)
        if cached is False:
            cached = self._cache["content-type"] = self.header("content-type")
        return cached  # type: ignore[no-any-return]

    @property
    def media_type(self) -> str:
        """The Content-Type's media type, lowercased, as parse_body reads it ("" for none).
        Found from the raw header through a bounded memory: a site receives a handful of
        Content-Type values all day, and decoding and splitting one costs more than the
        lookup."""
        cached = self.known_media_type
        if cached is None:
            raw = self.raw_header(b"content-type")
            cached = _MEDIA_TYPES.get(raw) if type(raw) is bytes else None
            if cached is None:
                cached = media_type_of(self.content_type)
                if type(raw) is bytes and len(raw) <= _MEDIA_TYPE_MAX_BYTES:
                    if len(_MEDIA_TYPES) >= _MEDIA_TYPE_MEMORY:
                        _MEDIA_TYPES.clear()
                    _MEDIA_TYPES[raw] = cached
            self.known_media_type = cached
        return cached

    @property
    def body_parsed(self) -> bool:
        """Whether the body has been parsed already (`parsed_body` then costs nothing)."""
        return self._parsed_body is not None

    @property
    def parsed_body(self) -> ParsedBody:
        if self._parsed_body is None:
            self._parsed_body = parse_body(self.content_type, self.body or b"", self.body_limits)
        return self._parsed_body

    # -- targets --------------------------------------------------------------------------------

    def items(self, kind: str) -> Pairs:
        """(name, value) pairs of one target kind; single-valued targets use the name ''."""
        cached = self._cache.get(kind)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        out: Pairs
        if kind == "path":
            out = (("", self.path),)
        elif kind == "args":
            out = self.args
        elif kind == "headers":
            out = self.headers
        elif kind == "cookies":
            out = self.cookies
        elif kind == "args_names":
            out = tuple((k, k) for k, _ in self.args)
        elif kind == "header_names":
            out = tuple((k, k) for k, _ in self.headers)
        elif kind == "cookie_names":
            out = tuple((k, k) for k, _ in self.cookies)
        elif kind == "raw_path":
            out = (("", self.raw_path),)
        elif kind == "query":
            out = (("", self.query),)
        elif kind == "uri":
            out = (("", self.uri),)
        elif kind == "method":
            out = (("", self.method),)
        elif kind == "http_version":
            out = (("", self.http_version),)
        else:
            out = self._body_items(kind)
        self._cache[kind] = out
        return out

    def _body_items(self, kind: str) -> Pairs:
        if self.body is None:
            return ()
        parsed = self.parsed_body
        if kind == "body":
            if parsed.kind in ("form", "json", "multipart", "xml"):
                return parsed.fields
            if parsed.kind == "binary":
                # Binary data is no text for the filters to read, as a multipart part's file
                # is not: `body_raw` still gives it to a rule that asks for it.
                return ()
            return (("", parsed.raw),) if parsed.raw else ()
        if kind == "body_names":
            return tuple((n, n) for n in parsed.names)
        if kind == "body_raw":
            return (("", parsed.raw),) if parsed.raw else ()
        if kind == "files":
            return tuple((f, f) for f in parsed.files)
        raise KeyError(kind)

    def target_items(self, target: Target) -> Pairs:
        if target.name is None:
            return self.items(target.kind)
        # One index per kind, built on first use, instead of a scan per named target.
        key = ("by-name", target.kind)
        index = self._cache.get(key)
        if index is None:
            grouped: dict[str, list[tuple[str, str]]] = {}
            for pair in self.items(target.kind):
                grouped.setdefault(pair[0], []).append(pair)
            index = self._cache[key] = {name: tuple(pairs) for name, pairs in grouped.items()}
        found: Pairs = index.get(target.name, ())
        return found

    def joined(self, targets: tuple[Target, ...], separator: str = SEPARATOR) -> str:
        """All values of the given targets joined by `separator`: one string to scan at once."""
        key = ("joined", targets, separator)
        text = self._cache.get(key)
        if text is None:
            text = self._cache[key] = separator.join(self.target_texts(targets, separator))
        return text

    def target_texts(self, targets: tuple[Target, ...], separator: str) -> tuple[str, ...]:
        """The values of each target joined by `separator`, a text per target that has any:
        joined by `separator` in turn, they are joined(targets, separator). Worked out once
        per request. Header values come from the decoded pairs, which the by-name index of
        named header targets reuses: each is decoded once per request."""
        key = ("texts", targets, separator)
        texts: tuple[str, ...] | None = self._cache.get(key)
        if texts is None:
            texts = self._cache[key] = tuple(
                separator.join([value for _, value in items])
                for target in targets
                if (items := self.target_items(target))
            )
        return texts

    def url_decoded(self, texts: Sequence[str], separator: str) -> str:
        """url_decode(separator.join(texts)), for a join character (see JOIN_CHARACTERS),
        which no escape spans: the decoding of the join is the join of the decodings. A long
        join is decoded text by text, each text once per request (see transformed) whichever
        join it is part of: the body's sieve and its groups' scans join the same texts (the
        raw body, the parsed values) in other orders, the head's sieve scans a URI alone
        after its join with the other new parts (and the groups' scans read its query), and
        decoding 8 KB of escapes each time cost a third of such a request (see
        benchmarks/hostile.py). Short texts are decoded together, as they were joined."""
        if sum(map(len, texts)) < LONG_TEXT_CHARS:
            return url_decode(separator.join(texts))
        decoded: list[str] = []
        short: list[str] = []  # a run of short texts, decoded together (no memory's cost)
        for text in texts:
            if len(text) < LONG_TEXT_CHARS:
                short.append(text)
                continue
            if short:
                decoded.append(url_decode(separator.join(short)))
                short = []
            path, mark, query = text.partition("?")
            if mark and len(query) >= LONG_TEXT_CHARS:
                # A URI: its query decoded as a text of its own, as the `query` target's
                # scans read it ("?" is no part of an escape either).
                decoded.append(url_decode(path + mark) + self.transformed(query, URL_DECODE))
            else:
                decoded.append(self.transformed(text, URL_DECODE))
        if short:
            decoded.append(url_decode(separator.join(short)))
        return separator.join(decoded)

    def transformed(self, value: str, chain: tuple[str, ...]) -> str:
        """`value` after the transform chain, computed once per request."""
        if not chain:
            return value
        key = ("transformed", value, chain)
        out = self._cache.get(key)
        if out is None:
            out = value
            if len(value) >= LONG_TEXT_CHARS:
                # On a long value each step costs more than remembering it, and chains meet
                # the same text at the same step: those that begin alike (url_decode,
                # html_entity_decode...), and those whose first step changed nothing (a
                # base64_decode of text that is not base64, then url_decode...).
                for name in chain:
                    step = ("step", out, name)
                    text = self._cache.get(step)
                    if text is None:
                        text = self._cache[step] = apply_chain(out, (name,))
                    out = text
            else:
                out = apply_chain(value, chain)
            self._cache[key] = out
        return out
