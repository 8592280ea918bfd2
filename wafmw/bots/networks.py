"""IP network sets for verified crawlers: parsed at load, looked up by binary search."""

from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

__all__ = ["NetworkSet", "client_key", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# An IPv4 address exactly as `str(IPv4Address)` writes it (no leading zeros, no spaces).
_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


@lru_cache(maxsize=4096)
def parse_ip(text: str) -> IPAddress | None:
    """An address, with IPv4-mapped IPv6 (``::ffff:1.2.3.4``) unmapped; None if not an address."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_key(text: str | None) -> str | None:
    """The identity a client's behaviour is counted under: the IPv4 address, or the /64 of an
    IPv6 address (one subscriber usually holds a whole /64 and rotates addresses inside it)."""
    if not text:
        return None
    if _CANONICAL_V4.fullmatch(text) is not None:
        return text  # what the parse below gives back, without building an address object
    address = parse_ip(text)
    if address is None:
        return text[:64]
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True, slots=True)
class NetworkSet:
    """Merged, sorted [start, end] integer ranges per IP version."""

    v4_starts: tuple[int, ...]
    v4_ends: tuple[int, ...]
    v6_starts: tuple[int, ...]
    v6_ends: tuple[int, ...]
    count: int  # networks as written, before merging

    @classmethod
    def build(
        cls, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    ) -> NetworkSet:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for net in networks:
            span = (int(net.network_address), int(net.broadcast_address))
            (v4 if net.version == 4 else v6).append(span)
        m4, m6 = _merge(v4), _merge(v6)
        return cls(
            tuple(s for s, _ in m4),
            tuple(e for _, e in m4),
            tuple(s for s, _ in m6),
            tuple(e for _, e in m6),
            len(networks),
        )

    def __contains__(self, address: object) -> bool:
        if isinstance(address, ipaddress.IPv4Address):
            starts, ends = self.v4_starts, self.v4_ends
        elif isinstance(address, ipaddress.IPv6Address):
            starts, ends = self.v6_starts, self.v6_ends
        else:
            return False
        value = int(address)
        index = bisect.bisect_right(starts, value) - 1
        return index >= 0 and value <= ends[index]


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
