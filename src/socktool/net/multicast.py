"""Multicast: group addresses, the interface they use, joining them.

Rule: with no interface named, multicast is sent and joined on the loopback
interface, so a debugging session never talks to the LAN by surprise.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from typing import NamedTuple

from socktool.net.errors import NetworkError, UsageError, describe
from socktool.values import is_number, parse_integer


def parse_group(text: str) -> str:
    """A multicast group address (IPv4 224.0.0.0/4 or IPv6 ff00::/8); ValueError otherwise."""
    text = text.strip().strip("[]")
    try:
        group = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if not group.is_multicast:
        raise ValueError(f"{text} is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)")
    return str(group)


def is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_multicast
    except ValueError:
        return False


def loopback_index() -> int:
    for name in ("lo", "lo0"):
        try:
            return socket.if_nametoindex(name)
        except OSError:
            continue
    for index, name in socket.if_nameindex():
        if name.startswith("lo"):
            return index
    raise NetworkError("no loopback interface found", hint="name the multicast interface with --interface")


MAX_INTERFACE = 2**31 - 1  # the kernel's interface index is an int


def parse_interface_number(text: str) -> int:
    """An interface index as --interface takes it: 1 to MAX_INTERFACE (ValueError otherwise)."""
    number = parse_integer(text)
    if not 1 <= number <= MAX_INTERFACE:
        raise ValueError(f"interface number {text} is out of range (1-{MAX_INTERFACE})")
    return number


def check_interface(text: str) -> str:
    """--interface's value, checked where it can be without the network: a number is in range."""
    if is_number(text):
        parse_interface_number(text)
    return text


class Interface(NamedTuple):
    """Where multicast goes out and is joined: an index, and for IPv4 maybe an address."""

    index: int  # type: ignore[assignment]  # a field that shadows tuple.index
    address: str | None = None  # IPv4 address of the interface, when known

    @classmethod
    def find(cls, spec: str | None) -> Interface:
        if spec is None:
            return cls(loopback_index(), "127.0.0.1")
        try:
            return cls(0, str(ipaddress.IPv4Address(spec)))
        except ValueError:
            pass
        if is_number(spec):
            try:
                return cls(parse_interface_number(spec))
            except ValueError as exc:
                raise UsageError("invalid --interface", str(exc)) from None
        try:
            return cls(socket.if_nametoindex(spec))
        except OSError:
            raise UsageError(f"no network interface {spec!r}", hint="give a name such as lo or eth0") from None

    def ipv4_request(self, group: str | None = None) -> bytes:
        """struct ip_mreqn: a membership request, or with no group an IP_MULTICAST_IF value."""
        multiaddr = socket.inet_aton(group or "0.0.0.0")
        if self.address is not None:
            return multiaddr + socket.inet_aton(self.address) + struct.pack("@i", 0)
        return multiaddr + socket.inet_aton("0.0.0.0") + struct.pack("@i", self.index)

    def ipv6_index(self) -> int:
        if self.index == 0:
            raise UsageError("IPv6 multicast needs an interface name, not an IPv4 address", hint="e.g. --interface lo")
        return self.index


def join_groups(sock: socket.socket, groups: Iterable[str], interface: Interface) -> None:
    for group in groups:
        try:
            if ipaddress.ip_address(group).version == 4:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, interface.ipv4_request(group))
            else:
                if sock.family != socket.AF_INET6:
                    raise UsageError(f"cannot join {group}", "the socket is IPv4 (-4 or an IPv4 address)")
                request = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", interface.ipv6_index())
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)
        except OSError as exc:
            raise NetworkError(f"cannot join multicast group {group}", describe(exc)) from exc


def set_sending_interface(sock: socket.socket, spec: str | None) -> None:
    """Send multicast out of the interface `spec` names (default: loopback), looped back to us too."""
    interface = Interface.find(spec)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, interface.ipv6_index())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface.ipv4_request())
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
