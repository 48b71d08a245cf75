"""Dialling out through a SOCKS or HTTP CONNECT proxy.

The handshakes are python-socks' (its sync API), imported only when a proxy
is used; this module parses the URL, maps the library's errors to ours, and
reports the proxy's own words (auth failed, host unreachable, refused by the
target) in one line, exit 1.
"""

from __future__ import annotations

import socket
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from socktool.net.address import Endpoint
from socktool.net.errors import ConnectError, UsageError

SCHEMES = ("socks5", "socks5h", "socks4", "socks4a", "http")


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
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.sync import Proxy

    if target.host is None:
        raise UsageError(f"cannot reach {target} through a proxy", "a proxy connects to HOST:PORT only")
    kind = {
        "socks5": ProxyType.SOCKS5,
        "socks5h": ProxyType.SOCKS5,
        "socks4": ProxyType.SOCKS4,
        "socks4a": ProxyType.SOCKS4,
        "http": ProxyType.HTTP,
    }[proxy.scheme]
    client = Proxy(
        kind, proxy.host, proxy.port, username=proxy.username, password=proxy.password, rdns=proxy.remote_dns
    )
    what = f"cannot connect to {target} through {proxy}"
    try:
        sock = client.connect(target.host, target.port, timeout=timeout)
    except ProxyTimeoutError:
        raise ConnectError(what, "the proxy did not answer in time") from None
    except ProxyConnectionError as exc:
        detail = f"cannot reach the proxy: {(exc.strerror or str(exc)).lower()}"
        raise ConnectError(what, detail) from None
    except ProxyError as exc:
        raise ConnectError(what, f"the proxy says: {exc}") from None
    except OSError as exc:  # a name the proxy was not asked to resolve (socks5/socks4), or the link broke
        raise ConnectError(what, (exc.strerror or str(exc)).lower()) from None
    sock.settimeout(None)
    return sock
