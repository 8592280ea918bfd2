"""Allow and deny lists of IP addresses and CIDR networks.

Membership is a handful of set lookups: the list keeps, for every prefix length
it contains, the set of network numbers of that length; an address is in the
list when its number shifted to one of those lengths is in the matching set.
That is at most 33 (IPv4) or 129 (IPv6) lookups and in practice a few, whatever
the size of the list.

Settings-level semantics (``ip_lists`` in the rule file):

- ``allow`` wins over ``deny``: an address in both is allowed, so an operator can
  carve an exception (a monitoring host, an office) out of a denied range.
- a denied client gets 403 before any other rule runs;
- an allowed client skips every other rule (filters, bots, rate limits) when
  ``allow_skips_rules`` is true (the default); when false, being allow-listed
  only exempts it from the deny list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .client_ip import parse_ip, parse_network

__all__ = [
    "IPList",
    "IPLists",
    "parse_ip_list",
    "parse_ip_list_text",
    "parse_ip_lists",
]

MAX_ITEMS = 100_000

_Table = tuple[tuple[int, frozenset[int]], ...]  # (shift, network numbers)


@dataclass(frozen=True, slots=True)
class IPList:
    v4: _Table = ()
    v6: _Table = ()
    size: int = 0

    def contains(self, ip: str | None) -> bool:
        """True when ``ip`` is one of the addresses or inside one of the networks."""
        if ip is None:
            return False
        addr = parse_ip(ip)
        if addr is None:
            return False
        table = self.v4 if addr.version == 4 else self.v6
        number = int(addr)
        return any((number >> shift) in numbers for shift, numbers in table)

    def __contains__(self, ip: str) -> bool:
        return self.contains(ip)

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0


def _parse_item(item: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    text = item.strip()
    if not text:
        raise ValueError(f"{where}: empty item")
    return parse_network(text, where)


def parse_ip_list(items: Sequence[str], *, name: str = "ip list") -> IPList:
    """Compile addresses and CIDR networks; raises ValueError naming the bad item."""
    if isinstance(items, str):
        raise ValueError(f"{name}: must be a list of addresses or CIDR networks")
    if len(items) > MAX_ITEMS:
        raise ValueError(f"{name}: {len(items)} items, more than the limit of {MAX_ITEMS}")
    buckets: dict[tuple[int, int], set[int]] = {}
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if not isinstance(item, str):
            raise ValueError(f"{where}: must be a string, not {type(item).__name__}")
        net = _parse_item(item, where)
        shift = net.max_prefixlen - net.prefixlen
        buckets.setdefault((net.version, shift), set()).add(int(net.network_address) >> shift)

    def table(version: int) -> _Table:
        # Most specific first: single addresses are the common case and the cheapest.
        return tuple(
            (shift, frozenset(numbers))
            for (v, shift), numbers in sorted(buckets.items(), key=lambda kv: kv[0][1])
            if v == version
        )

    size = sum(len(numbers) for numbers in buckets.values())
    return IPList(v4=table(4), v6=table(6), size=size)


def parse_ip_list_text(text: str, *, name: str = "ip list") -> IPList:
    """An IP list file: one address or network per line, ``#`` starts a comment."""
    items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return parse_ip_list([item for item in items if item], name=name)


@dataclass(frozen=True, slots=True)
class IPLists:
    allow: IPList = IPList()
    deny: IPList = IPList()
    allow_skips_rules: bool = True

    def decide(self, ip: str | None) -> Literal["allow", "deny"] | None:
        """ "allow" (skip the deny list, and the other rules if so configured),
        "deny" (answer 403 at once) or None (no opinion)."""
        if ip is None or not (self.allow or self.deny):
            return None
        if self.allow and self.allow.contains(ip):
            return "allow"
        if self.deny and self.deny.contains(ip):
            return "deny"
        return None


def parse_ip_lists(spec: Mapping[str, object]) -> IPLists:
    """Compile the ``ip_lists`` mapping: ``allow``, ``deny``, ``allow_skips_rules``.

    ``allow``/``deny`` are lists of strings here; a loader that supports list
    files reads them (see parse_ip_list_text) before calling this.
    """
    if not isinstance(spec, Mapping):
        raise ValueError("ip_lists: must be a mapping")
    allowed_keys = ("allow", "deny", "allow_skips_rules")
    for key in spec:
        if key not in allowed_keys:
            raise ValueError(f"{key}: unknown key (allowed: {', '.join(allowed_keys)})")
    lists: dict[str, IPList] = {}
    for key in ("allow", "deny"):
        raw = spec.get(key, [])
        if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
            raise ValueError(f"{key}: must be a list of addresses or CIDR networks")
        lists[key] = parse_ip_list(raw, name=key)
    skips = spec.get("allow_skips_rules", True)
    if not isinstance(skips, bool):
        raise ValueError("allow_skips_rules: must be true or false")
    return IPLists(allow=lists["allow"], deny=lists["deny"], allow_skips_rules=skips)
