"""Dialling out through a SOCKS or HTTP CONNECT proxy.

The SOCKS handshakes are python-socks' (its sync API), imported only when a
proxy is used. HTTP CONNECT is done here: python-socks reads the proxy's
reply with one recv() and drops whatever came after the header, which loses
the first bytes of a server that speaks first (SMTP, SSH, a greeting) when
they arrive in the same segment. This module parses the URL, maps errors to
ours, and reports the proxy's own words (auth failed, host unreachable,
refused by the target) in one line, exit 1.
"""

from __future__ import annotations

import base64
import socket
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from socktool.net.address import Endpoint
from socktool.net.errors import ConnectError, UsageError, describe


class ProxyFailed(ConnectError):
    """The proxy itself failed us: it cannot be reached, refused our credentials, or is not
    speaking its protocol. Nothing was learnt about the target (portscan --proxy stops)."""


class TargetRefused(ConnectError):
    """The proxy's reply: the target refused the connection (SOCKS5 reply 5; SOCKS4's "rejected
    or failed", which is all it says; an HTTP proxy's 5xx, e.g. ncat's 504 for a refused port)."""


class TargetUnreachable(ConnectError):
    """The proxy's reply: the target cannot be reached (SOCKS5 replies 2, 3, 4, 6; HTTP 403),
    or no reply in time (the proxy may still be trying a target that does not answer)."""


_SOCKS5_REFUSED = {5}
_SOCKS5_UNREACHABLE = {2, 3, 4, 6}  # not allowed by the ruleset, network / host unreachable, TTL expired
_SOCKS4_REJECTED = 0x5B

SCHEMES = ("socks5", "socks5h", "socks4", "socks4a", "http")
_END = b"\r\n\r\n"
MAX_REPLY_HEAD = 16 * 1024


class ProxyConfig(NamedTuple):
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def remote_dns(self) -> bool:
        """The proxy resolves the target's name (socks5h, socks4a; CONNECT always sends the name)."""
        return self.scheme in ("socks5h", "socks4a", "http")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_proxy_url(url: str, auth: str | None = None) -> ProxyConfig:
    """`SCHEME://[USER:PASS@]HOST:PORT`; `auth` (USER:PASS, --proxy-auth) overrides the URL's."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a proxy URL: {url!r} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unknown proxy scheme in {url!r}: use one of {', '.join(s + '://' for s in SCHEMES)}")
    if not parts.hostname or port is None:
        raise ValueError(f"the proxy URL needs a host and a port: {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a proxy URL is SCHEME://HOST:PORT, nothing after: {url!r}")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if auth is not None:
        username, sep, password = auth.partition(":")
        if not sep:
            raise ValueError("--proxy-auth is USER:PASS")
    if scheme.startswith("socks4") and password:
        raise ValueError("SOCKS4 has a user id but no password")
    return ProxyConfig(scheme, parts.hostname, port, username, password)


def connect(proxy: ProxyConfig, target: Endpoint, *, timeout: float | None) -> socket.socket:
    """A blocking socket to `target`, through `proxy`."""
    if target.host is None:
        raise UsageError(f"cannot reach {target} through a proxy", "a proxy connects to HOST:PORT only")
    if proxy.scheme == "http":
        return _http_connect(proxy, target.host, target.port, timeout, f"cannot connect to {target} through {proxy}")
    return _socks_connect(proxy, target.host, target.port, timeout, f"cannot connect to {target} through {proxy}")


def _http_connect(proxy: ProxyConfig, host: str, port: int, timeout: float | None, what: str) -> socket.socket:
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        raise ProxyFailed(what, f"cannot reach the proxy: {describe(exc)}") from None
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if proxy.username is not None:
            token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
            request += f"Proxy-Authorization: Basic {token}\r\n"
        sock.sendall((request + "\r\n").encode())
        status = _reply_head(sock).split(b"\r\n", 1)[0].decode("latin-1")
        parts = status.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProxyFailed(what, f"the proxy's reply is not HTTP: {status[:80]!r}")
        code = int(parts[1])
        if not 200 <= code < 300:
            raise _http_reply_error(code)(what, f"the proxy says: {' '.join(parts[1:])}")
    except TimeoutError:
        sock.close()
        raise TargetUnreachable(what, "the proxy did not answer in time") from None
    except OSError as exc:
        sock.close()
        raise ConnectError(what, f"talking to the proxy: {describe(exc)}") from None
    except ConnectError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def _reply_head(sock: socket.socket) -> bytes:
    """The reply up to its blank line, and not a byte more: what follows is the target's."""
    head = bytearray()
    while not head.endswith(_END):
        matched = next((k for k in (3, 2, 1) if head.endswith(_END[:k])), 0)
        chunk = sock.recv(len(_END) - matched)  # cannot reach past the end of the head
        if not chunk:
            raise ConnectionResetError(0, "the proxy closed the connection")
        head += chunk
        if len(head) > MAX_REPLY_HEAD:
            raise OSError(0, "the proxy's reply header is too long")
    return bytes(head)


def _socks_connect(proxy: ProxyConfig, host: str, port: int, timeout: float | None, what: str) -> socket.socket:
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.sync import Proxy

    kind = {
        "socks5": ProxyType.SOCKS5,
        "socks5h": ProxyType.SOCKS5,
        "socks4": ProxyType.SOCKS4,
        "socks4a": ProxyType.SOCKS4,
    }[proxy.scheme]
    client = Proxy(
        kind, proxy.host, proxy.port, username=proxy.username, password=proxy.password, rdns=proxy.remote_dns
    )
    try:
        sock = client.connect(host, port, timeout=timeout)
    except ProxyTimeoutError:
        raise TargetUnreachable(what, "the proxy did not answer in time") from None
    except ProxyConnectionError as exc:
        detail = f"cannot reach the proxy: {(exc.strerror or str(exc)).lower()}"
        raise ProxyFailed(what, detail) from None
    except ProxyError as exc:
        raise _socks_reply_error(proxy.scheme, exc.error_code)(what, f"the proxy says: {exc}") from None
    except OSError as exc:  # a name the proxy was not asked to resolve (socks5/socks4), or the link broke
        raise ConnectError(what, (exc.strerror or str(exc)).lower()) from None
    sock.settimeout(None)
    return sock


def _http_reply_error(code: int) -> type[ConnectError]:
    """What an HTTP proxy's refusal of CONNECT says of the target, by its status code."""
    if code == 407:
        return ProxyFailed  # our credentials
    if code == 403:
        return TargetUnreachable
    return TargetRefused if code >= 500 else ConnectError


def _socks_reply_error(scheme: str, code: int | None) -> type[ConnectError]:
    """What a SOCKS proxy's refusal says of the target, by its reply code (None: no reply to a
    connect request, so the proxy failed us: credentials, a garbled answer)."""
    if code is None:
        return ProxyFailed
    if scheme.startswith("socks4"):
        return TargetRefused if code == _SOCKS4_REJECTED else ProxyFailed  # 0x5C, 0x5D: identd
    if code in _SOCKS5_REFUSED:
        return TargetRefused
    return TargetUnreachable if code in _SOCKS5_UNREACHABLE else ConnectError
