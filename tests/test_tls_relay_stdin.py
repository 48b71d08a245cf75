"""The TLS pipe's stdin path, driven in-process: plain stdin is read by the relay
itself into one reused buffer (no feeder thread), and must still deliver every
byte in order and hold stdin back while the peer does not read."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
import time

import pytest

from socktool.net.fdio import CHUNK
from socktool.net.relay import Connection, Payload, RelayOptions
from socktool.net.tls import TlsLayer, handshake
from socktool.net.tlsrelay import HIGH_WATER, TlsRelay, _stdin_source, _StdinReader
from tls_helpers import Pki, make_pki

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pki(tmp_path) -> Pki:
    return make_pki(tmp_path)


class Peer:
    """The far end: a blocking TLS server on one end of a socketpair, reading only when told."""

    def __init__(self, sock: socket.socket, pki: Pki):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.cert, pki.key)
        self.sock = sock
        self.ctx = ctx
        self.reading = threading.Event()
        self.received = hashlib.sha256()
        self.count = 0
        self.clean_end = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.ctx.wrap_socket(self.sock, server_side=True) as tls:
            self.reading.wait()
            while data := tls.recv(64 * 1024):  # b"": the client's close_notify
                self.received.update(data)
                self.count += len(data)
            self.clean_end = True
            tls.unwrap()  # ours back: the relay waits for it


def start(pki: Pki) -> tuple[Connection, TlsLayer, Peer]:
    mine, theirs = socket.socketpair()
    peer = Peer(theirs, pki)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    layer = TlsLayer(ctx, server_side=False)
    handshake(mine, layer, 10.0, "peer")
    return Connection(mine, 1, "peer"), layer, peer


def pattern(size: int) -> bytes:
    """Bytes whose order shows: a counter, not zeros."""
    return b"".join(i.to_bytes(4, "big") for i in range(size // 4))


def test_plain_stdin_is_read_by_the_relay_itself_and_anything_else_by_the_feeder():
    r, w = os.pipe()
    try:
        assert isinstance(_stdin_source(Payload(stdin_fd=r)), _StdinReader)
        feeder = _stdin_source(Payload(stdin_fd=r, crlf=True))
        assert not isinstance(feeder, _StdinReader)
        os.close(w)
        w = -1
        while feeder.take() is not None:  # to its end, so its thread is done with r
            time.sleep(0.001)
        feeder.close()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_stdin_in_uneven_pieces_arrives_whole_and_in_order(pki: Pki):
    data = pattern(3 * CHUNK + 12_345 * 4)
    conn, layer, peer = start(pki)
    peer.reading.set()
    r, w = os.pipe()

    def write_uneven() -> None:
        sizes, at = [1, 7, 16 * 1024 + 1, CHUNK, 5, CHUNK * 2], 0
        while at < len(data):
            step = sizes[at % len(sizes)]
            at += os.write(w, data[at : at + step])
        os.close(w)

    writer = threading.Thread(target=write_uneven, daemon=True)
    writer.start()
    try:
        reason = TlsRelay(conn, layer, Payload(stdin_fd=r), RelayOptions(receive=False, output_fd=None)).run()
    finally:
        os.close(r)
        conn.sock.close()
    peer.thread.join(10)
    assert reason == "sent everything"
    assert peer.clean_end and peer.count == len(data) == conn.sent
    assert peer.received.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_peer_that_does_not_read_holds_stdin_back_and_then_gets_every_byte(pki: Pki):
    total = 64 * CHUNK  # 16 MiB: far more than the socket buffers and HIGH_WATER hold
    conn, layer, peer = start(pki)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    r, w = os.pipe()
    written = [0]
    block = bytes(range(256)) * (CHUNK // 256)

    def write_all_of_it() -> None:
        while written[0] < total:
            written[0] += os.write(w, block[: total - written[0]])
        os.close(w)

    relay = TlsRelay(conn, layer, Payload(stdin_fd=r), RelayOptions(receive=False, output_fd=None))
    result: list[str] = []
    runner = threading.Thread(target=lambda: result.append(relay.run()), daemon=True)
    threading.Thread(target=write_all_of_it, daemon=True).start()
    runner.start()
    try:
        # Wait until the relay has stopped taking stdin (its output over HIGH_WATER), then
        # until it stays stopped: nothing more is taken while the peer does not read.
        deadline = time.monotonic() + 30
        while len(relay._out) < HIGH_WATER and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(relay._out) >= HIGH_WATER
        sent = conn.sent
        time.sleep(0.2)
        assert conn.sent == sent < total
        assert len(relay._out) < HIGH_WATER + 2 * CHUNK  # bounded: at most one chunk's records past the mark
        peer.reading.set()
        runner.join(30)
    finally:
        peer.reading.set()
        runner.join(30)
        os.close(r)
        conn.sock.close()
    peer.thread.join(10)
    assert result == ["sent everything"]
    assert peer.clean_end and peer.count == total
    assert peer.received.hexdigest() == hashlib.sha256(block * (total // len(block))).hexdigest()
