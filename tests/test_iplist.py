from __future__ import annotations

import time

import pytest

from wafmw.iplist import IPList, parse_ip_list, parse_ip_list_text, parse_ip_lists


def test_addresses_and_networks() -> None:
    lst = parse_ip_list(["192.0.2.1", "10.0.0.0/8", "2001:db8::/32", "::1"])
    assert lst.contains("192.0.2.1")
    assert not lst.contains("192.0.2.2")
    assert lst.contains("10.255.1.2")
    assert not lst.contains("11.0.0.1")
    assert lst.contains("2001:db8:1234::5")
    assert not lst.contains("2001:db9::1")
    assert lst.contains("::1")
    assert "10.1.1.1" in lst
    assert len(lst) == 4


def test_ipv4_mapped_addresses_match_ipv4_entries() -> None:
    lst = parse_ip_list(["10.0.0.0/8", "::ffff:192.0.2.0/120"])
    assert lst.contains("::ffff:10.1.2.3")
    assert lst.contains("192.0.2.77")


def test_not_an_address_is_never_listed() -> None:
    lst = parse_ip_list(["0.0.0.0/0", "::/0"])
    assert lst.contains("8.8.8.8")
    assert lst.contains("2001:db8::1")
    assert not lst.contains("not-an-ip")
    assert not lst.contains("")
    assert not lst.contains(None)


def test_empty_list() -> None:
    lst = parse_ip_list([])
    assert not lst
    assert not lst.contains("1.2.3.4")
    assert lst == IPList()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["1.2.3.4", "nope"], "ip list[1]: 'nope' is not an IP address or CIDR network"),
        (["10.0.0.1/8"], "did you mean '10.0.0.0/8'"),
        (["1.2.3.4/33"], "ip list[0]: '1.2.3.4/33' is not"),
        ([""], "ip list[0]: empty item"),
        ([42], "ip list[0]: must be a string"),
    ],
)
def test_errors_name_the_item(items: list[object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ip_list(items)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_list_file_text() -> None:
    text = "# office\n192.0.2.0/24   # main\n\n2001:db8::1\n"
    lst = parse_ip_list_text(text)
    assert lst.contains("192.0.2.200")
    assert lst.contains("2001:db8::1")
    assert len(lst) == 2


def test_membership_is_fast_for_a_large_list() -> None:
    items = [f"10.{i // 256}.{i % 256}.0/24" for i in range(50_000)]
    items += [f"2001:db8:{i:x}::/48" for i in range(10_000)]
    lst = parse_ip_list(items)
    assert lst.contains("10.100.3.9")
    assert not lst.contains("11.0.0.1")
    started = time.perf_counter()
    for _ in range(10_000):
        lst.contains("10.100.3.9")
    per_call = (time.perf_counter() - started) / 10_000
    assert per_call < 50e-6  # a few set lookups, not a scan of 60,000 networks


def test_settings_semantics_allow_wins_over_deny() -> None:
    lists = parse_ip_lists({"allow": ["10.1.0.0/16"], "deny": ["10.0.0.0/8", "192.0.2.0/24"]})
    assert lists.allow_skips_rules is True
    assert lists.decide("10.1.2.3") == "allow"
    assert lists.decide("10.2.0.1") == "deny"
    assert lists.decide("192.0.2.9") == "deny"
    assert lists.decide("198.51.100.1") is None
    assert lists.decide(None) is None


def test_settings_allow_skips_rules_false() -> None:
    lists = parse_ip_lists({"allow": ["10.1.0.0/16"], "allow_skips_rules": False})
    assert lists.allow_skips_rules is False
    assert lists.decide("10.1.0.1") == "allow"
    assert parse_ip_lists({}).decide("10.1.0.1") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"allow": "10.0.0.0/8"}, "allow: must be a list"),
        ({"deny": ["x"]}, "deny[0]: 'x' is not"),
        ({"allow_skips_rules": "yes"}, "allow_skips_rules: must be true or false"),
        ({"block": []}, "block: unknown key"),
    ],
)
def test_settings_errors(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ip_lists(spec)
    assert message in str(info.value)
