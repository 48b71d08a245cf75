"""What the user asked of TLS, as plain values (no `ssl` import: the CLI builds
these at start-up, and `ssl` is paid for only by a command that uses TLS).

Rule: a client verifies unless told otherwise. `pins` replace the CA and name
checks (exactly a certificate with one of those SHA-256 fingerprints is
accepted, self-signed or not); `insecure` turns every check off.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_PIN = re.compile(r"sha256:((?:[0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2})")
TLS_VERSIONS = ("1.2", "1.3")
HANDSHAKE_TIMEOUT = 10.0


class ClientTls(NamedTuple):
    server_name: str | None  # what SNI sends and the certificate must match; None: no SNI
    check_name: str | None  # the name the certificate must match (differs from server_name with --no-sni)
    ca: str | None = None
    pins: tuple[str, ...] = ()  # lower-case hex, no colons
    insecure: bool = False
    cert: str | None = None
    key: str | None = None
    alpn: tuple[str, ...] = ()
    tls_min: str | None = None
    ciphers: str | None = None
    min_days: int | None = None
    strict_close: bool = False
    handshake_timeout: float = HANDSHAKE_TIMEOUT


class ServerTls(NamedTuple):
    cert: str | None = None  # None (with key None): an ephemeral self-signed certificate
    key: str | None = None
    client_ca: str | None = None
    alpn: tuple[str, ...] = ()
    tls_min: str | None = None
    ciphers: str | None = None
    strict_close: bool = False
    handshake_timeout: float = HANDSHAKE_TIMEOUT


def parse_pin(text: str) -> str:
    """`sha256:HEX` (colons between bytes allowed, any case) -> 64 lower-case hex digits."""
    match = _PIN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected sha256: and 64 hex digits (as a socktool server prints), got {text!r}")
    return match.group(1).replace(":", "").lower()


def parse_alpn(text: str) -> tuple[str, ...]:
    protocols = tuple(part.strip() for part in text.split(","))
    if not all(protocols) or any(len(p.encode()) > 255 for p in protocols):
        raise ValueError(f"expected a comma-separated list of protocol names, like h2,http/1.1: {text!r}")
    return protocols


def parse_tls_version(text: str) -> str:
    if text not in TLS_VERSIONS:
        raise ValueError(f"expected one of {', '.join(TLS_VERSIONS)}, got {text!r}")
    return text


def format_fingerprint(hex_digest: str) -> str:
    return f"sha256:{hex_digest}"
