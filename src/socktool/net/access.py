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
        Unix-socket clients (no host) are not filtered. An IPv4 client is
        judged as IPv4 even on a dual-stack socket (which shows it as
        ::ffff:a.b.c.d), and so is a rule written in that mapped form.
        """
        if host is None or not (self.allow or self.deny):
            return None
        address = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in map(_unmapped, self.deny) if net.version == address.version):
            return "denied by --deny"
        if self.allow and not any(
            address in net for net in map(_unmapped, self.allow) if net.version == address.version
        ):
            return "not in --allow"
        return None

    def admission(self, addr: object, clients: int, limit: int | None) -> str | None:
        """Why a client from socket address `addr` is turned away with `clients` already in, or None."""
        reason = self.refusal(addr[0] if isinstance(addr, tuple) else None)
        if reason is None and limit is not None and clients >= limit:
            reason = f"--max-clients {limit} reached"
        return reason


def _unmapped(network: Network) -> Network:
    """::ffff:10.0.0.0/104 → 10.0.0.0/8: an IPv4-mapped block means those IPv4 clients."""
    if network.version == 6 and network.prefixlen >= 96 and network.network_address.ipv4_mapped is not None:
        return ipaddress.IPv4Network((network.network_address.ipv4_mapped, network.prefixlen - 96))
    return network
