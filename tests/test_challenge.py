"""The challenge: issue, solve the proof-of-work, verify, pass with the cookie; refusals.

The solver script itself is run under Node (when installed) with both of its hash paths
(crypto.subtle and the built-in SHA-256), and its answer is verified by the server code.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from wafmw.challenge import (
    ChallengeConfig,
    challenge_response,
    challenge_script,
    has_valid_pass,
    leading_zero_bits,
    verification_response,
    verify_solution,
)
from wafmw.request import RequestView

UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
NOW = 1_790_000_000.0
CONFIG = ChallengeConfig(secret=b"0123456789abcdef0123456789abcdef", difficulty=12)


def view(
    *,
    ip: str = "198.51.100.7",
    ua: str = UA,
    accept: str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    cookie: str | None = None,
    path: str = "/account",
    query: str = "",
    scheme: str = "https",
) -> RequestView:
    headers: list[tuple[bytes, bytes]] = [
        (b"host", b"shop.example.com"),
        (b"user-agent", ua.encode()),
        (b"accept", accept.encode()),
    ]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query.encode(),
        "scheme": scheme,
        "headers": headers,
        "client": (ip, 40000),
    }
    return RequestView(scope)


def nonce_from(body: bytes) -> str:
    found = re.search(rb'var N = "([A-Za-z0-9._-]+)"', body)
    assert found is not None
    return found.group(1).decode()


def solve(nonce: str, difficulty: int) -> str:
    counter = 0
    while True:
        digest = hashlib.sha256(f"{nonce}:{counter}".encode()).digest()
        if leading_zero_bits(digest) >= difficulty:
            return str(counter)
        counter += 1


def cookie_value(set_cookie: tuple[bytes, bytes]) -> str:
    name, value = set_cookie
    assert name == b"set-cookie"
    first = value.decode().split(";", 1)[0]
    return first  # "wafmw_challenge=v1.…"


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


def earn_pass(**kwargs: Any) -> str:
    _, _, body = challenge_response(view(**kwargs), CONFIG, NOW)
    nonce = nonce_from(body)
    query = f"n={nonce}&s={solve(nonce, CONFIG.difficulty)}"
    set_cookie = verify_solution(view(query=query, **kwargs), CONFIG, NOW + 2)
    assert set_cookie is not None
    return cookie_value(set_cookie)


def test_round_trip_page_solve_verify_pass() -> None:
    status, headers, body = challenge_response(view(), CONFIG, NOW)
    assert status == 403
    assert header(headers, b"content-type") == b"text/html; charset=utf-8"
    assert header(headers, b"cache-control") == b"no-store"
    csp = header(headers, b"content-security-policy")
    assert csp is not None and b"script-src 'nonce-" in csp
    csp_nonce = re.search(rb"'nonce-([^']+)'", csp)
    assert csp_nonce is not None and b'<script nonce="' + csp_nonce.group(1) + b'">' in body
    assert b"<noscript>" in body and CONFIG.path.encode() in body
    assert len(body) < 12_000

    assert not has_valid_pass(view(), CONFIG, NOW)
    nonce = nonce_from(body)
    solution = solve(nonce, CONFIG.difficulty)
    verify = view(path=CONFIG.path, query=f"n={nonce}&s={solution}")
    set_cookie = verify_solution(verify, CONFIG, NOW + 3)
    assert set_cookie is not None
    text = set_cookie[1].decode()
    assert text.startswith("wafmw_challenge=v1.")
    for attribute in ("Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Lax", "Secure"):
        assert attribute in text
    cookie = cookie_value(set_cookie)
    assert has_valid_pass(view(cookie=cookie), CONFIG, NOW + 10)
    assert has_valid_pass(view(cookie=f"theme=dark; {cookie}; x=1"), CONFIG, NOW + 3500)


def test_verification_endpoint_response() -> None:
    _, _, body = challenge_response(view(), CONFIG, NOW)
    nonce = nonce_from(body)
    good = view(path=CONFIG.path, query=f"n={nonce}&s={solve(nonce, CONFIG.difficulty)}")
    status, headers, answer = verification_response(good, CONFIG, NOW + 1)
    assert status == 200 and json.loads(answer) == {"ok": True}
    assert header(headers, b"set-cookie") is not None
    status, headers, answer = verification_response(view(query=f"n={nonce}&s=1"), CONFIG, NOW)
    assert status == 403 and header(headers, b"set-cookie") is None
    assert json.loads(answer)["ok"] is False


def test_plain_http_cookie_is_not_secure() -> None:
    _, _, body = challenge_response(view(scheme="http"), CONFIG, NOW)
    nonce = nonce_from(body)
    query = f"n={nonce}&s={solve(nonce, CONFIG.difficulty)}"
    set_cookie = verify_solution(view(query=query, scheme="http"), CONFIG, NOW)
    assert set_cookie is not None and b"Secure" not in set_cookie[1]


def test_tampered_cookie_is_refused() -> None:
    cookie = earn_pass()
    name, value = cookie.split("=", 1)
    version, expires, mac = value.split(".")
    later = f"{name}={version}.{int(expires) + 86400}.{mac}"  # extend the expiry
    flipped = f"{name}={version}.{expires}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"
    for bad in (later, flipped, f"{name}=", f"{name}=garbage", f"{name}=v1.x.y", f"{name}=v2.1.2"):
        assert not has_valid_pass(view(cookie=bad), CONFIG, NOW + 5), bad
    other_key = ChallengeConfig(secret=b"another secret of 32 bytes......", difficulty=12)
    assert not has_valid_pass(view(cookie=cookie), other_key, NOW + 5)


def test_expired_cookie_is_refused() -> None:
    cookie = earn_pass()
    assert has_valid_pass(view(cookie=cookie), CONFIG, NOW + CONFIG.ttl_s - 10)
    assert not has_valid_pass(view(cookie=cookie), CONFIG, NOW + CONFIG.ttl_s + 10)


def test_cookie_from_another_ip_or_user_agent_is_refused() -> None:
    cookie = earn_pass()
    assert not has_valid_pass(view(cookie=cookie, ip="203.0.113.50"), CONFIG, NOW + 5)
    assert not has_valid_pass(view(cookie=cookie, ua=UA + " extra"), CONFIG, NOW + 5)
    assert not has_valid_pass(view(cookie=cookie, ua="curl/8.5.0"), CONFIG, NOW + 5)


def test_ipv6_pass_holds_within_the_64() -> None:
    cookie = earn_pass(ip="2001:db8:1:2::10")
    assert has_valid_pass(view(cookie=cookie, ip="2001:db8:1:2:abcd::99"), CONFIG, NOW + 5)
    assert not has_valid_pass(view(cookie=cookie, ip="2001:db8:1:3::10"), CONFIG, NOW + 5)


def test_unbound_ip_pass() -> None:
    loose = ChallengeConfig(secret=CONFIG.secret, difficulty=12, bind_ip=False)
    _, _, body = challenge_response(view(), loose, NOW)
    nonce = nonce_from(body)
    query = f"n={nonce}&s={solve(nonce, 12)}"
    set_cookie = verify_solution(view(query=query, ip="203.0.113.1"), loose, NOW)
    assert set_cookie is not None
    assert has_valid_pass(view(cookie=cookie_value(set_cookie), ip="192.0.2.9"), loose, NOW)


@pytest.mark.parametrize(
    "case",
    ["wrong-work", "other-ip", "other-ua", "expired-nonce", "future-nonce", "forged", "junk"],
)
def test_bad_solutions_are_refused(case: str) -> None:
    _, _, body = challenge_response(view(), CONFIG, NOW)
    nonce = nonce_from(body)
    solution = solve(nonce, CONFIG.difficulty)
    kwargs: dict[str, Any] = {}
    now = NOW + 1
    if case == "wrong-work":
        solution = next(
            str(c)
            for c in range(10**6)
            if leading_zero_bits(hashlib.sha256(f"{nonce}:{c}".encode()).digest()) < 12
        )
    elif case == "other-ip":
        kwargs["ip"] = "203.0.113.50"
    elif case == "other-ua":
        kwargs["ua"] = "python-requests/2.32.3"
    elif case == "expired-nonce":
        now = NOW + CONFIG.nonce_ttl_s + 1
    elif case == "future-nonce":
        now = NOW - 3600
    elif case == "forged":
        version, issued, rand, mac = nonce.split(".")
        nonce = f"{version}.{issued}.{'0' * len(rand)}.{mac}"
        solution = solve(nonce, CONFIG.difficulty)
    elif case == "junk":
        nonce, solution = "not-a-nonce", "1"
    assert verify_solution(view(query=f"n={nonce}&s={solution}", **kwargs), CONFIG, now) is None
    for params in ({"n": nonce}, {"s": solution}, {"n": nonce, "s": "-1"}, {"n": nonce, "s": ""}):
        assert verify_solution(view(), CONFIG, now, params=params) is None


def test_api_clients_get_json() -> None:
    status, headers, body = challenge_response(view(accept="application/json"), CONFIG, NOW)
    assert status == 403
    assert header(headers, b"content-type") == b"application/json"
    data = json.loads(body)
    assert data["error"] == "challenge_required"
    challenge = data["challenge"]
    assert challenge["difficulty"] == 12 and challenge["algorithm"] == "sha256-leading-zero-bits"
    # a client that can run code may solve it the same way
    nonce = challenge["nonce"]
    params = {"n": nonce, "s": solve(nonce, 12)}
    assert verify_solution(view(accept="application/json"), CONFIG, NOW, params=params) is not None
    # browsers that accept JSON among HTML still get the page
    _, headers, _ = challenge_response(view(accept="text/html, application/json"), CONFIG, NOW)
    assert header(headers, b"content-type") == b"text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": b"short"}, "secret"),
        ({"cookie_name": "bad name"}, "cookie_name"),
        ({"ttl_s": 5}, "ttl_s"),
        ({"difficulty": 0}, "difficulty"),
        ({"difficulty": 25}, "difficulty"),
        ({"path": "relative"}, "path"),
        ({"nonce_ttl_s": 1}, "nonce_ttl_s"),
    ],
)
def test_config_is_validated(kwargs: dict[str, Any], message: str) -> None:
    params: dict[str, Any] = {"secret": b"x" * 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        ChallengeConfig(**params)


def test_leading_zero_bits() -> None:
    assert leading_zero_bits(b"\x80") == 0
    assert leading_zero_bits(b"\x00\x01") == 15
    assert leading_zero_bits(b"\x00\x00") == 16
    assert leading_zero_bits(b"\x0f\xff") == 4


_NODE_HARNESS = """
const script = require("fs").readFileSync(0, "utf8");
const useSubtle = process.argv[2] === "subtle";
let fetched = null, replaced = null;
const sandbox = {
  TextEncoder, Promise, Uint8Array, Int32Array, Math, encodeURIComponent,
  crypto: useSubtle ? globalThis.crypto : undefined,
  fetch: (url, opts) => { fetched = {url, opts}; return Promise.resolve({ok: true}); },
  location: {href: "https://shop.example.com/account?x=1",
             replace: (u) => { replaced = u; }},
  document: {getElementById: () => null},
};
sandbox.window = sandbox;
const vm = require("vm");
vm.runInNewContext(script, sandbox);
const started = Date.now();
(function wait() {
  if (replaced !== null || Date.now() - started > 20000) {
    console.log(JSON.stringify({fetched, replaced}));
  } else { setTimeout(wait, 5); }
})();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
@pytest.mark.parametrize("mode", ["subtle", "fallback"])
def test_the_page_script_solves_the_challenge_under_node(mode: str) -> None:
    node = shutil.which("node")
    assert node is not None
    _, _, body = challenge_response(view(), CONFIG, NOW)
    nonce = nonce_from(body)
    script = challenge_script(nonce, CONFIG)
    assert script in body.decode()
    result = subprocess.run(
        [node, "-e", _NODE_HARNESS, mode],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcome = json.loads(result.stdout)
    assert outcome["replaced"] == "https://shop.example.com/account?x=1"
    url = urlsplit(outcome["fetched"]["url"])
    assert url.path == CONFIG.path
    assert outcome["fetched"]["opts"]["credentials"] == "same-origin"
    params = dict(parse_qsl(url.query))
    assert params["n"] == nonce
    set_cookie = verify_solution(view(query=url.query), CONFIG, NOW + 1)
    assert set_cookie is not None
    assert has_valid_pass(view(cookie=cookie_value(set_cookie)), CONFIG, NOW + 2)
