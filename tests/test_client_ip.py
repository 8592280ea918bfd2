from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest

from wafmw.client_ip import (
    ClientIPConfig,
    _classify,
    parse_client_ip_config,
    parse_ip,
    resolve_client_ip,
)


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 51000) if peer is not None else None,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }


PROXIES = parse_client_ip_config({"trusted_proxies": ["10.0.0.0/8", "2001:db8:ffff::/48"]})


# ------------------------------------------------------------------ configuration


def test_defaults() -> None:
    config = parse_client_ip_config({})
    assert config == ClientIPConfig()
    assert config.header == "x-forwarded-for"
    assert config.trusted_proxies == ()


def test_parse_addresses_networks_and_header() -> None:
    config = parse_client_ip_config(
        {"trusted_proxies": ["10.0.0.0/8", "192.0.2.7", "::1", "fd00::/8"], "header": "Forwarded"}
    )
    assert config.header == "forwarded"
    assert config.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("fd00::/8"),
    )


def test_ipv4_mapped_network_is_stored_as_ipv4() -> None:
    config = parse_client_ip_config({"trusted_proxies": ["::ffff:10.0.0.0/104"]})
    assert config.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"trusted_proxies": "10.0.0.0/8"}, "trusted_proxies: must be a list"),
        ({"trusted_proxies": ["10.0.0.0/8", "nope"]}, "trusted_proxies[1]: 'nope' is not"),
        ({"trusted_proxies": ["10.0.0.1/8"]}, "did you mean '10.0.0.0/8'"),
        ({"trusted_proxies": [10]}, "trusted_proxies[0]: must be a string"),
        ({"header": ""}, "header: must be a non-empty"),
        ({"header": "x forwarded"}, "header: 'x forwarded' is not a valid header name"),
        ({"trusted": []}, "trusted: unknown key"),
    ],
)
def test_parse_errors_name_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_client_ip_config(spec)
    assert message in str(info.value)


# ------------------------------------------------------------------- resolution


def test_no_trusted_proxies_returns_the_peer_and_ignores_headers() -> None:
    s = scope("203.0.113.9", ("x-forwarded-for", "1.1.1.1"))
    assert resolve_client_ip(s, ClientIPConfig()) == "203.0.113.9"


def test_no_client_in_scope() -> None:
    assert resolve_client_ip(scope(None), PROXIES) is None
    assert resolve_client_ip({"type": "http", "headers": []}, ClientIPConfig()) is None


def test_spoofed_header_from_untrusted_peer_is_ignored() -> None:
    s = scope("203.0.113.9", ("x-forwarded-for", "1.1.1.1, 10.0.0.1"))
    assert resolve_client_ip(s, PROXIES) == "203.0.113.9"


def test_trusted_peer_uses_the_rightmost_untrusted_hop() -> None:
    # The client forged "6.6.6.6"; our proxies appended the real address and themselves.
    s = scope("10.0.0.2", ("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3"))
    assert resolve_client_ip(s, PROXIES) == "198.51.100.7"


def test_trusted_peer_without_the_header_is_the_client() -> None:
    assert resolve_client_ip(scope("10.0.0.2"), PROXIES) == "10.0.0.2"


def test_all_hops_trusted_gives_the_furthest() -> None:
    s = scope("10.0.0.2", ("x-forwarded-for", "10.9.9.9, 10.1.1.1"))
    assert resolve_client_ip(s, PROXIES) == "10.9.9.9"


def test_repeated_header_fields_are_one_list() -> None:
    s = scope(
        "10.0.0.2",
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-for", "198.51.100.7, 10.0.0.9"),
    )
    assert resolve_client_ip(s, PROXIES) == "198.51.100.7"


@pytest.mark.parametrize(
    "value",
    ["garbage", "198.51.100.7, not-an-ip", "", ",,,", "unknown", "1.2.3.4.5", "\x00\xff"],
)
def test_garbage_falls_back_to_the_peer(value: str) -> None:
    s = scope("10.0.0.2", ("x-forwarded-for", value))
    assert resolve_client_ip(s, PROXIES) == "10.0.0.2"


def test_garbage_left_of_the_client_does_not_matter() -> None:
    s = scope("10.0.0.2", ("x-forwarded-for", "garbage, 198.51.100.7"))
    assert resolve_client_ip(s, PROXIES) == "198.51.100.7"


def test_ipv6_peer_and_hops() -> None:
    s = scope("2001:db8:ffff::1", ("x-forwarded-for", "2001:db8:1::abcd, 2001:db8:ffff::2"))
    assert resolve_client_ip(s, PROXIES) == "2001:db8:1::abcd"


def test_ipv6_hop_is_normalised() -> None:
    s = scope("10.0.0.2", ("x-forwarded-for", "2001:DB8:0:0:0:0:0:1"))
    assert resolve_client_ip(s, PROXIES) == "2001:db8::1"


def test_ipv4_mapped_peer_is_trusted_as_ipv4() -> None:
    s = scope("::ffff:10.0.0.2", ("x-forwarded-for", "198.51.100.7"))
    assert resolve_client_ip(s, PROXIES) == "198.51.100.7"


def test_untrusted_ipv6_peer_with_header() -> None:
    s = scope("2001:db8:1::1", ("x-forwarded-for", "10.0.0.1"))
    assert resolve_client_ip(s, PROXIES) == "2001:db8:1::1"


def test_ports_in_x_forwarded_for_are_dropped() -> None:
    s = scope("10.0.0.2", ("x-forwarded-for", "[2001:db8:1::1]:443, 198.51.100.7:8080"))
    assert resolve_client_ip(s, PROXIES) == "198.51.100.7"
    s = scope("10.0.0.2", ("x-forwarded-for", "[2001:db8:1::1]:443, 10.0.0.3:1"))
    assert resolve_client_ip(s, PROXIES) == "2001:db8:1::1"


def test_custom_single_value_header() -> None:
    config = parse_client_ip_config({"trusted_proxies": ["10.0.0.0/8"], "header": "X-Real-IP"})
    s = scope("10.0.0.2", ("x-real-ip", "198.51.100.7"), ("x-forwarded-for", "6.6.6.6"))
    assert resolve_client_ip(s, config) == "198.51.100.7"


# --------------------------------------------------------------- RFC 7239 Forwarded

FORWARDED = parse_client_ip_config(
    {"trusted_proxies": ["10.0.0.0/8", "2001:db8:ffff::/48"], "header": "forwarded"}
)


def test_forwarded_basic() -> None:
    s = scope("10.0.0.2", ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"))
    assert resolve_client_ip(s, FORWARDED) == "192.0.2.60"


def test_forwarded_ipv6_with_port_and_quotes() -> None:
    s = scope("10.0.0.2", ("forwarded", 'For="[2001:db8:cafe::17]:4711"'))
    assert resolve_client_ip(s, FORWARDED) == "2001:db8:cafe::17"


def test_forwarded_ipv4_with_port() -> None:
    s = scope("10.0.0.2", ("forwarded", 'for="192.0.2.43:47011"'))
    assert resolve_client_ip(s, FORWARDED) == "192.0.2.43"


def test_forwarded_walks_right_to_left() -> None:
    value = 'for=6.6.6.6, for=198.51.100.7;proto=https, for="[2001:db8:ffff::9]"'
    s = scope("10.0.0.2", ("forwarded", value))
    assert resolve_client_ip(s, FORWARDED) == "198.51.100.7"


def test_forwarded_quoted_comma_does_not_split() -> None:
    value = 'for=198.51.100.7;host="a,b", for=10.0.0.5'
    s = scope("10.0.0.2", ("forwarded", value))
    assert resolve_client_ip(s, FORWARDED) == "198.51.100.7"


@pytest.mark.parametrize(
    "value", ["for=unknown", "for=_hidden", "proto=https", "for=", 'for="[::1', "garbage"]
)
def test_forwarded_unusable_falls_back_to_peer(value: str) -> None:
    s = scope("10.0.0.2", ("forwarded", value))
    assert resolve_client_ip(s, FORWARDED) == "10.0.0.2"


def test_forwarded_ignored_from_untrusted_peer() -> None:
    s = scope("203.0.113.9", ("forwarded", "for=1.1.1.1"))
    assert resolve_client_ip(s, FORWARDED) == "203.0.113.9"


def test_x_forwarded_for_ignored_when_forwarded_is_configured() -> None:
    s = scope("10.0.0.2", ("x-forwarded-for", "1.1.1.1"))
    assert resolve_client_ip(s, FORWARDED) == "10.0.0.2"


def test_very_long_header_is_bounded() -> None:
    value = ", ".join(["10.0.0.1"] * 10_000)
    s = scope("10.0.0.2", ("x-forwarded-for", "198.51.100.7, " + value))
    # Only the last 64 hops are walked; all trusted, so the furthest of those.
    assert resolve_client_ip(s, PROXIES) == "10.0.0.1"


def test_remembered_answers_are_keyed_by_peer_and_header_and_bounded() -> None:
    from wafmw import client_ip

    config = parse_client_ip_config({"trusted_proxies": ["10.0.0.0/8"]})
    cases = [
        (scope("10.0.0.2", ("x-forwarded-for", "198.51.100.7")), "198.51.100.7"),
        (scope("10.0.0.2", ("x-forwarded-for", "198.51.100.8")), "198.51.100.8"),
        (scope("10.0.0.3", ("x-forwarded-for", "198.51.100.8")), "198.51.100.8"),
        (scope("203.0.113.9", ("x-forwarded-for", "198.51.100.7")), "203.0.113.9"),
        (scope("10.0.0.2", ("x-forwarded-for", "198.51.100.7, 10.0.0.5")), "198.51.100.7"),
        (
            scope("10.0.0.2", ("x-forwarded-for", "10.0.0.5"), ("x-forwarded-for", "1.2.3.4")),
            "1.2.3.4",
        ),
        (scope("10.0.0.2", ("x-forwarded-for", "unknown")), "10.0.0.2"),
    ]
    for _ in range(2):  # the second round answers from the memories
        for s, expected in cases:
            assert resolve_client_ip(s, config) == expected
    assert len(config.resolved) == 6  # the untrusted peer's header is never read
    for i in range(2 * client_ip._MEMORY):
        s = scope("10.0.0.2", ("x-forwarded-for", f"198.51.{i >> 8}.{i & 255}"))
        assert resolve_client_ip(s, config) == f"198.51.{i >> 8}.{i & 255}"
        assert len(config.resolved) <= client_ip._MEMORY
        assert len(config.classified) <= client_ip._MEMORY
    # A header too long to remember is walked each time, and answered the same.
    long = ", ".join(["10.0.0.1"] * 60)
    s = scope("10.0.0.2", ("x-forwarded-for", "198.51.100.9, " + long))
    assert resolve_client_ip(s, config) == resolve_client_ip(s, config) == "198.51.100.9"
    assert ("10.0.0.2", s["headers"][0][1]) not in config.resolved


def test_the_ipv4_fast_path_classifies_as_the_address_parser_does() -> None:
    """_classify checks IPv4 addresses in their usual spelling without ipaddress; for every
    text it must give what parse_ip and the trusted networks give."""
    config = parse_client_ip_config(
        {"trusted_proxies": ["10.0.0.0/8", "192.168.1.7", "::ffff:172.16.0.0/108", "fd00::/8"]}
    )
    rng = random.Random(5)
    texts = ["01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4 ", " 1.2.3.4", "256.1.1.1", "0x1.2.3.4"]
    texts += ["1.2.3.4\x00", "", "1.2.3.4.5", "١.2.3.4", "::ffff:10.1.2.3", "fd00::1", "unknown"]
    for _ in range(3000):
        common = [0, 7, 10, 16, 31, 168, 172, 192, 255, rng.randrange(256)]
        texts.append(".".join(str(rng.choice(common)) for _ in range(4)))
    for text in texts:
        config.classified.clear()
        addr = parse_ip(text)
        expected = (
            None if addr is None else str(addr),
            addr is not None and any(addr in net for net in config.trusted_proxies),
        )
        assert _classify(text, config) == expected, text
        assert _classify(text, config) == expected, text  # and from the memory
