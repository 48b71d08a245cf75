"""TLS peers and certificates for the tests: a trustme CA and its files,
`openssl s_server` on a port it reports, and a Python TLS server thread for
the cases no real peer produces on demand (an end without close_notify)."""

from __future__ import annotations

import contextlib
import datetime
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import trustme

from conftest import need, serve_each


class Pki(NamedTuple):
    ca: trustme.CA
    ca_file: Path
    cert: Path  # localhost + 127.0.0.1, by the CA
    key: Path
    client_cert: Path  # a client certificate by the same CA
    client_key: Path
    fingerprint: str  # of `cert`, sha256:HEX


def write_leaf(leaf: trustme.LeafCert, cert: Path, key: Path) -> None:
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))


def make_pki(directory: Path) -> Pki:
    import hashlib

    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ca.issue_cert("localhost", "127.0.0.1")
    write_leaf(server, directory / "cert.pem", directory / "key.pem")
    client = ca.issue_cert("client.test")
    write_leaf(client, directory / "client.pem", directory / "client-key.pem")
    der = ssl.PEM_cert_to_DER_cert(server.cert_chain_pems[0].bytes().decode())
    return Pki(
        ca,
        ca_file,
        directory / "cert.pem",
        directory / "key.pem",
        directory / "client.pem",
        directory / "client-key.pem",
        "sha256:" + hashlib.sha256(der).hexdigest(),
    )


def expired_leaf(pki: Pki, directory: Path) -> tuple[Path, Path]:
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = pki.ca.issue_cert(
        "localhost",
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=10),
        not_after=now - datetime.timedelta(days=1),
    )
    cert, key = directory / "expired.pem", directory / "expired-key.pem"
    write_leaf(leaf, cert, key)
    return cert, key


class SServer:
    """`openssl s_server -www` (answers GET / with a page, then closes) on a port it reports."""

    def __init__(self, cert: Path, key: Path, *extra: str):
        need("openssl")
        self.popen = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(cert), "-key", str(key), "-www", *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.popen.stdout is not None
        for line in self.popen.stdout:  # "ACCEPT 127.0.0.1:PORT" comes first
            match = re.match(rb"ACCEPT .*:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        else:
            raise AssertionError("openssl s_server did not report its port")

    def __enter__(self) -> SServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.popen.kill()
        self.popen.wait(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def python_tls_server(pki: Pki, payload: bytes, *, close_notify: bool) -> int:
    """A client gets `payload`, then the connection ends with or without close_notify.

    Clients whose handshake fails are dropped and the next one is served:
    other tests scan loopback ports, and a scanner must not use up this server."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.cert), str(pki.key))
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            while True:
                raw, _ = server.accept()
                try:
                    tls = ctx.wrap_socket(raw, server_side=True)
                except (OSError, ValueError):
                    raw.close()
                    continue
                with tls:
                    try:
                        tls.sendall(payload)
                        if close_notify:
                            tls.unwrap().close()
                        # else: close() sends no close_notify (CPython does not call SSL_shutdown there)
                    except OSError:
                        pass
                return

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


@contextlib.contextmanager
def tls_server(
    cert: Path, key: Path, serve: Callable[[ssl.SSLSocket], None], client_ca: Path | None = None
) -> Iterator[int]:
    """serve_each for TLS: `serve` gets each client after its handshake; a client whose
    handshake or session fails (a scanner from another test, a client that left) is dropped."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED

    def handshake(conn: socket.socket) -> None:
        conn.settimeout(10)
        with ctx.wrap_socket(conn, server_side=True) as tls:  # ssl.SSLError is an OSError
            serve(tls)

    with serve_each(handshake) as port:
        yield port
