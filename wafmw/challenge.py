"""The challenge action: a light JavaScript proof-of-work that earns a signed, expiring pass.

Flow:

1. ``challenge_response`` answers a challenged request (403) with a small HTML page, or with
   JSON for API clients (``Accept: application/json``). Both carry a *nonce*: a server-signed
   token (HMAC-SHA256 over issue time, randomness, the client's IP and a hash of its
   User-Agent) that expires after ``nonce_ttl_s``. No server-side state is kept.
2. The page's inline script finds a counter ``s`` such that ``SHA-256(nonce ":" s)`` starts
   with ``difficulty`` zero bits (``crypto.subtle`` where the page is a secure context, a small
   built-in SHA-256 elsewhere), then requests ``config.path?n=<nonce>&s=<s>``.
3. ``verify_solution`` checks nonce signature, expiry, binding and the work, and returns the
   ``Set-Cookie`` header of the pass: ``v1.<expires>.<hmac>``, HMAC over the expiry, the
   client's IP and User-Agent hash. The script then reloads the page (as a GET).
4. ``has_valid_pass`` accepts that cookie until it expires, from the same IP (an IPv6 client
   from the same /64) and User-Agent; a tampered, expired or moved cookie is refused.

All secrets are compared in constant time; a pass never lifts a *block*, only challenges.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

__all__ = [
    "ChallengeConfig",
    "ChallengeRequest",
    "challenge_response",
    "has_valid_pass",
    "verification_response",
    "verify_solution",
]

Response = tuple[int, list[tuple[bytes, bytes]], bytes]

_VERSION: Final = "v1"
_CLOCK_SKEW: Final = 60  # seconds a token may claim to come from the future
_MAX_SOLUTION_DIGITS: Final = 16
_COOKIE_NAME: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_PATH: Final = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/-]{0,200}$")


class ChallengeRequest(Protocol):
    """What the challenge needs from a request (wafmw.request.RequestView provides it)."""

    @property
    def client_ip(self) -> str | None: ...
    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def scope(self) -> Mapping[str, Any]: ...
    def header(self, name: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ChallengeConfig:
    """Challenge settings. ``secret`` signs nonces and passes: every worker and host that
    serves the app must share it, or a pass earned on one is refused by another."""

    secret: bytes
    cookie_name: str = "wafmw_challenge"
    ttl_s: int = 3600
    difficulty: int = 14
    path: str = "/.wafmw/challenge"
    nonce_ttl_s: int = 300
    bind_ip: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) < 16:
            raise ValueError("secret: must be at least 16 bytes")
        if not _COOKIE_NAME.match(self.cookie_name):
            raise ValueError(f"cookie_name: {self.cookie_name!r} is not a valid cookie name")
        if isinstance(self.ttl_s, bool) or not 60 <= self.ttl_s <= 30 * 86400:
            raise ValueError("ttl_s: must be between 60 and 2592000 seconds")
        if isinstance(self.difficulty, bool) or not 1 <= self.difficulty <= 24:
            raise ValueError("difficulty: must be between 1 and 24 leading zero bits")
        if not _PATH.match(self.path):
            raise ValueError(f"path: {self.path!r} must be an absolute URL path")
        if isinstance(self.nonce_ttl_s, bool) or not 10 <= self.nonce_ttl_s <= 3600:
            raise ValueError("nonce_ttl_s: must be between 10 and 3600 seconds")


# ------------------------------------------------------------------------------ signing


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ip_binding(config: ChallengeConfig, client_ip: str | None) -> str:
    if not config.bind_ip:
        return "*"
    if not client_ip:
        return "-"
    try:
        address = ipaddress.ip_address(client_ip.strip("[]"))
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _ua_hash(view: ChallengeRequest) -> str:
    return hashlib.sha256((view.header("user-agent") or "").encode("utf-8")).hexdigest()[:32]


def _mac(config: ChallengeConfig, *parts: str) -> str:
    message = "|".join(parts).encode("utf-8", "surrogatepass")
    return _b64(hmac.new(config.secret, message, hashlib.sha256).digest())


def _issue_nonce(view: ChallengeRequest, config: ChallengeConfig, now: float) -> str:
    issued = str(int(now))
    rand = secrets.token_hex(8)
    binding = _ip_binding(config, view.client_ip)
    mac = _mac(config, "wafmw-nonce", _VERSION, issued, rand, binding, _ua_hash(view))
    return f"{_VERSION}.{issued}.{rand}.{mac}"


def _check_nonce(view: ChallengeRequest, config: ChallengeConfig, nonce: str, now: float) -> bool:
    parts = nonce.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit() or len(parts[1]) > 12:
        return False
    issued = int(parts[1])
    if issued > now + _CLOCK_SKEW or now - issued > config.nonce_ttl_s:
        return False
    binding = _ip_binding(config, view.client_ip)
    expected = _mac(config, "wafmw-nonce", _VERSION, parts[1], parts[2], binding, _ua_hash(view))
    return hmac.compare_digest(expected, parts[3])


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def _work_ok(nonce: str, solution: str, difficulty: int) -> bool:
    if not solution.isdigit() or not solution.isascii() or len(solution) > _MAX_SOLUTION_DIGITS:
        return False
    digest = hashlib.sha256(f"{nonce}:{solution}".encode("ascii")).digest()
    return leading_zero_bits(digest) >= difficulty


def _is_secure(view: ChallengeRequest) -> bool:
    if view.scope.get("scheme") in ("https", "wss"):
        return True
    proto = view.header("x-forwarded-proto")
    return proto is not None and proto.split(",")[0].strip().lower() == "https"


# ------------------------------------------------------------------------------ public API


def challenge_response(view: ChallengeRequest, config: ChallengeConfig, now: float) -> Response:
    """The answer to a challenged request: (status, headers, body).

    HTML with an inline proof-of-work script for browsers; JSON describing the same work for
    clients that ask for JSON and not HTML (an SPA's fetch can solve it the same way)."""
    nonce = _issue_nonce(view, config, now)
    headers: list[tuple[bytes, bytes]] = [
        (b"cache-control", b"no-store"),
        (b"x-wafmw-challenge", b"1"),
        (b"x-robots-tag", b"noindex"),
    ]
    if _wants_json(view.header("accept")):
        body = json.dumps(
            {
                "error": "challenge_required",
                "challenge": {
                    "nonce": nonce,
                    "algorithm": "sha256-leading-zero-bits",
                    "difficulty": config.difficulty,
                    "input": "<nonce>:<decimal counter>",
                    "submit": f"{config.path}?n=<nonce>&s=<counter>",
                },
            },
            separators=(",", ":"),
        ).encode("utf-8")
        headers.append((b"content-type", b"application/json"))
        return 403, headers, body
    csp_nonce = secrets.token_urlsafe(12)
    body = _page(nonce, config, csp_nonce).encode("utf-8")
    headers.append((b"content-type", b"text/html; charset=utf-8"))
    headers.append(
        (
            b"content-security-policy",
            (
                f"default-src 'none'; script-src 'nonce-{csp_nonce}'; connect-src 'self'; "
                "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'"
            ).encode("ascii"),
        )
    )
    return 403, headers, body


def verify_solution(
    view: ChallengeRequest,
    config: ChallengeConfig,
    now: float,
    params: Mapping[str, str] | None = None,
) -> tuple[bytes, bytes] | None:
    """Check a proof-of-work answer; the Set-Cookie header of a pass when it is valid.

    ``params`` holds ``n`` (the nonce) and ``s`` (the counter); by default they are read from
    the request's query string. The nonce must be one this server signed for this client's IP
    and User-Agent, not older than ``nonce_ttl_s``."""
    if params is None:
        query = view.scope.get("query_string", b"")
        text = query.decode("latin-1") if isinstance(query, bytes) else str(query)
        params = dict(parse_qsl(text[:1024]))
    nonce = params.get("n", "")
    solution = params.get("s", "")
    if not nonce or len(nonce) > 200 or not _check_nonce(view, config, nonce, now):
        return None
    if not _work_ok(nonce, solution, config.difficulty):
        return None
    expires = str(int(now) + config.ttl_s)
    binding = _ip_binding(config, view.client_ip)
    mac = _mac(config, "wafmw-pass", _VERSION, expires, binding, _ua_hash(view))
    cookie = (
        f"{config.cookie_name}={_VERSION}.{expires}.{mac}; Path=/; Max-Age={config.ttl_s}; "
        "HttpOnly; SameSite=Lax"
    )
    if _is_secure(view):
        cookie += "; Secure"
    return b"set-cookie", cookie.encode("ascii")


def has_valid_pass(view: ChallengeRequest, config: ChallengeConfig, now: float) -> bool:
    """True when the request carries an unexpired pass signed for its IP and User-Agent."""
    value = _cookie(view, config.cookie_name)
    if value is None:
        return False
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit() or len(parts[1]) > 12:
        return False
    expires = int(parts[1])
    if expires <= now or expires > now + config.ttl_s + _CLOCK_SKEW:
        return False
    binding = _ip_binding(config, view.client_ip)
    expected = _mac(config, "wafmw-pass", _VERSION, parts[1], binding, _ua_hash(view))
    return hmac.compare_digest(expected, parts[2])


def verification_response(view: ChallengeRequest, config: ChallengeConfig, now: float) -> Response:
    """The answer for a request to ``config.path``: 200 with the pass cookie, or 403."""
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
    ]
    cookie = verify_solution(view, config, now)
    if cookie is None:
        return 403, headers, b'{"ok":false,"error":"invalid or expired challenge"}'
    headers.append(cookie)
    return 200, headers, b'{"ok":true}'


# ------------------------------------------------------------------------------ helpers


def _cookie(view: ChallengeRequest, name: str) -> str | None:
    for key, value in view.headers:
        if key != "cookie":
            continue
        for chunk in value.split(";"):
            cname, sep, cvalue = chunk.partition("=")
            if sep and cname.strip() == name:
                return cvalue.strip()
    return None


def _wants_json(accept: str | None) -> bool:
    if not accept:
        return False
    accept = accept.lower()
    return "json" in accept and "text/html" not in accept


def _js_string(value: str) -> str:
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


_SHA256_K: Final = (
    "0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,"
    "0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,"
    "0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,"
    "0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,"
    "0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,"
    "0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,"
    "0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,"
    "0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2"
)
_SHA256_H: Final = (
    "0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19"
)

# The solver. crypto.subtle exists only in secure contexts (HTTPS, localhost); elsewhere a
# small synchronous SHA-256 does the work. Hashes are computed in batches of 64.
_SCRIPT: Final = """(function () {
"use strict";
var N = %(nonce)s, D = %(difficulty)d, P = %(path)s;
var K = [%(k)s];
function sha256(m) {
  var l = m.length, n = ((l + 9 + 63) >> 6) << 6, b = new Uint8Array(n), w = new Int32Array(64);
  b.set(m); b[l] = 0x80;
  var bits = l * 8; b[n - 4] = bits >>> 24; b[n - 3] = bits >>> 16; b[n - 2] = bits >>> 8;
  b[n - 1] = bits;
  var h = [%(h)s];
  for (var o = 0; o < n; o += 64) {
    for (var i = 0; i < 16; i++) {
      w[i] = (b[o + 4*i] << 24) | (b[o + 4*i + 1] << 16) | (b[o + 4*i + 2] << 8) | b[o + 4*i + 3];
    }
    for (i = 16; i < 64; i++) {
      var x = w[i - 15], y = w[i - 2];
      var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    var a = h[0], c = h[1], d = h[2], e = h[3], f = h[4], g = h[5], k = h[6], j = h[7];
    for (i = 0; i < 64; i++) {
      var S1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7));
      var t1 = (j + S1 + ((f & g) ^ (~f & k)) + K[i] + w[i]) | 0;
      var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      var t2 = (S0 + ((a & c) ^ (a & d) ^ (c & d))) | 0;
      j = k; k = g; g = f; f = (e + t1) | 0; e = d; d = c; c = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + c) | 0; h[2] = (h[2] + d) | 0; h[3] = (h[3] + e) | 0;
    h[4] = (h[4] + f) | 0; h[5] = (h[5] + g) | 0; h[6] = (h[6] + k) | 0; h[7] = (h[7] + j) | 0;
  }
  var out = new Uint8Array(32);
  for (i = 0; i < 8; i++) {
    out[4*i] = h[i] >>> 24; out[4*i + 1] = h[i] >>> 16; out[4*i + 2] = h[i] >>> 8;
    out[4*i + 3] = h[i];
  }
  return out;
}
function zeros(h) {
  var z = 0;
  for (var i = 0; i < h.length; i++) {
    var v = h[i];
    if (v === 0) { z += 8; continue; }
    while ((v & 0x80) === 0) { z++; v <<= 1; }
    break;
  }
  return z;
}
var enc = new TextEncoder();
var subtle = (typeof crypto !== "undefined" && crypto.subtle) || null;
function hash(c) {
  var data = enc.encode(N + ":" + c);
  if (subtle) {
    return subtle.digest("SHA-256", data).then(function (r) { return new Uint8Array(r); });
  }
  return Promise.resolve(sha256(data));
}
async function solve() {
  for (var c = 0; ; c += 64) {
    var batch = [];
    for (var i = 0; i < 64; i++) batch.push(hash(c + i));
    var hs = await Promise.all(batch);
    for (i = 0; i < 64; i++) if (zeros(hs[i]) >= D) return c + i;
  }
}
function fail() {
  var el = document.getElementById("wafmw-msg");
  if (el) el.textContent = "The check did not succeed. Please reload the page.";
}
solve().then(function (s) {
  return fetch(P + "?n=" + encodeURIComponent(N) + "&s=" + s,
               {credentials: "same-origin", cache: "no-store"});
}).then(function (r) {
  if (r.ok) location.replace(location.href); else fail();
}).catch(fail);
})();"""

_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Checking your browser</title>
<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;
color:#222}</style></head>
<body><h1>One moment…</h1>
<p id="wafmw-msg">Your browser is completing a short check. This page reloads by itself.</p>
<noscript><p>This check needs JavaScript. Please enable it and reload the page.</p></noscript>
<script nonce="%(csp)s">%(script)s</script>
</body></html>
"""


def challenge_script(nonce: str, config: ChallengeConfig) -> str:
    """The solver script alone (what the page embeds); tests run it under Node."""
    return _SCRIPT % {
        "nonce": _js_string(nonce),
        "difficulty": config.difficulty,
        "path": _js_string(config.path),
        "k": _SHA256_K,
        "h": _SHA256_H,
    }


def _page(nonce: str, config: ChallengeConfig, csp_nonce: str) -> str:
    return _PAGE % {"csp": csp_nonce, "script": challenge_script(nonce, config)}
