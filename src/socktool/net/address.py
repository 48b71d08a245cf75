"""Addresses: the one parser for every command's HOST:PORT, and resolution.

Forms: `HOST:PORT`, `[IPV6]:PORT`, `unix:PATH`; listeners also take `PORT`
and `:PORT` (all interfaces). Ports are 1-65535; a listener also takes 0.
A port may be a service name (`http`), a listener's lone PORT included.
Parsing is pure; `resolve` is the only function here that asks the system.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import NamedTuple

from socktool.net.errors import ResolveError, describe
from socktool.values import printable

MAX_PORT = 65535


class Endpoint(NamedTuple):
    """A parsed address. `host` is None for "all interfaces"; `path` is set for unix:."""

    host: str | None = None
    port: int = 0
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return format_hostport(self.host or "", self.port)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_port(text: str, *, allow_zero: bool = False) -> int:
    """A port number (ASCII digits), or a service name (`http`, `ssh`) as the system knows it."""
    text = text.strip()
    if not text:
        raise ValueError("missing port")
    if not (text.isascii() and text.isdigit()):
        from socktool.net.ports import SERVICE_NAME_HINT, service_port  # reads /etc/services: only for names

        named = service_port(text)
        if named is None:
            raise ValueError(f"port {text!r} is not a number or a known service name ({SERVICE_NAME_HINT})")
        return named
    port = int(text)
    low = 0 if allow_zero else 1
    if not low <= port <= MAX_PORT:
        raise ValueError(f"port {port} is out of range ({low}-{MAX_PORT})")
    return port


def parse_endpoint(text: str, *, listener: bool = False) -> Endpoint:
    """Parse one address; raises ValueError naming what is wrong."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("unix: address needs a path, e.g. unix:/tmp/app.sock")
        return Endpoint(path=path)
    if listener and (text.isdigit() or (text.startswith(":") and text[1:].isdigit())):
        return Endpoint(port=parse_port(text.lstrip(":"), allow_zero=True))
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        if not host:
            raise ValueError(f"{text!r}: empty IPv6 address in brackets")
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            if not listener:
                raise ValueError(f"{text!r}: expected HOST:PORT")
            try:  # a listener's port alone may be a service name too (`tcp-listen http-alt`)
                return Endpoint(port=parse_port(text, allow_zero=True))
            except ValueError:
                raise ValueError(
                    f"{text!r}: expected [HOST:]PORT (PORT: a number, or a service name such as http)"
                ) from None
        if ":" in host:
            raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:{port_text}")
        if not host:
            if listener:
                return Endpoint(port=parse_port(port_text, allow_zero=True))
            raise ValueError(f"{text!r}: missing host before ':'")
    return Endpoint(host=host, port=parse_port(port_text, allow_zero=listener))


def parse_listen_endpoint(text: str) -> Endpoint:
    return parse_endpoint(text, listener=True)


def parse_connect_endpoint(text: str) -> Endpoint:
    return parse_endpoint(text, listener=False)


def family_for(*, ipv4: bool = False, ipv6: bool = False) -> int:
    """-4 / -6 as the address family to resolve and bind with; neither: either family."""
    if ipv4:
        return socket.AF_INET
    if ipv6:
        return socket.AF_INET6
    return socket.AF_UNSPEC


def resolve(
    host: str | None,
    port: int,
    *,
    family: int = socket.AF_UNSPEC,
    kind: int = socket.SOCK_STREAM,
    passive: bool = False,
) -> list[tuple[int, tuple]]:
    """(family, sockaddr) pairs for host:port, in the order to try them."""
    flags = socket.AI_PASSIVE if passive else 0
    try:
        # ASCII names go as bytes: a str is IDNA-encoded first, which costs an import.
        name = host.encode("ascii") if host is not None and host.isascii() else host
        infos = socket.getaddrinfo(name, port, family, kind, 0, flags)
    except UnicodeError as exc:  # a label over 63 characters, an empty label
        raise ResolveError(f"cannot resolve {host!r}", "not a valid host name") from exc
    except socket.gaierror as exc:
        name = host if host is not None else "*"
        if exc.errno == socket.EAI_ADDRFAMILY or (exc.errno == socket.EAI_NODATA and family):
            detail = f"no {'IPv6' if family == socket.AF_INET6 else 'IPv4'} address"
        else:
            detail = describe(exc)
        raise ResolveError(f"cannot resolve {name!r}", detail, "check the name, or use an IP address") from exc
    seen: list[tuple[int, tuple]] = []
    for fam, _type, _proto, _canon, sockaddr in infos:
        if (fam, sockaddr) not in seen:
            seen.append((fam, sockaddr))
    return seen


def sockaddr_text(sockaddr: object) -> str:
    """'127.0.0.1:80', '[::1]:80', 'unix:/path', 'unix:@name' (Linux's abstract names) or
    'unix:(unnamed)': the one way a peer or a local address is printed."""
    if isinstance(sockaddr, tuple):
        host = sockaddr[0]
        if host.startswith("::ffff:") and "." in host:
            host = host[len("::ffff:") :]
        return format_hostport(host, sockaddr[1])
    if isinstance(sockaddr, bytes):
        if sockaddr.startswith(b"\0"):
            return "unix:@" + printable(sockaddr[1:].decode(errors="surrogateescape"))
        sockaddr = sockaddr.decode(errors="surrogateescape")
    # A client's unix path is chosen by the client: never print its control characters raw.
    return f"unix:{printable(str(sockaddr))}" if sockaddr else "unix:(unnamed)"
