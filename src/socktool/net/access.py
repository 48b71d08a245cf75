"""Who may connect: --allow / --deny CIDR lists, checked before a byte is read."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(text: str) -> Network:
    """'10.0.0.0/8', '::1', '127.0.0.1' (a single host); ValueError names the problem."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR block (e.g. 10.0.0.0/8, ::1/128)") from None


class AccessPolicy(NamedTuple):
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    def refusal(self, host: str | None) -> str | None:
        """Why a client at `host` is turned away, or None to let it in.

        Deny wins over allow; with any --allow, only listed clients get in.
        Unix-socket clients (no host) are not filtered.
        """
        if host is None or not (self.allow or self.deny):
            return None
        address = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.deny if net.version == address.version):
            return "denied by --deny"
        if self.allow and not any(address in net for net in self.allow if net.version == address.version):
            return "not in --allow"
        return None
