"""TLS as a transport of the loop (net/loop.py): the handshake without blocking
anyone, then records in and out through a TlsLayer (net/tls.py).

Rules:
- the handshake runs as the client's bytes come in; until it is done the
  transport is not `ready` (the connection keeps what handlers write) and a
  client that never speaks costs nothing but its descriptor, until the
  handshake timeout closes it;
- a read never leaves decrypted bytes behind in the layer: at most
  len(buffer) - HEADROOM bytes of ciphertext are read at a time, so every
  record they complete fits in the caller's buffer (the loop only calls
  again when the socket is readable);
- `shutdown_write` sends close_notify, then TCP's half-close once it is
  out; `close` sends close_notify too, if the socket takes it at once.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from collections.abc import Callable
from contextlib import suppress

from socktool.net import events as ev
from socktool.net.loop import Connection, close_quietly
from socktool.net.tls import (
    INSECURE_WARNING,
    ServerIdentity,
    TlsError,
    TlsLayer,
    check_server,
    client_context,
    client_verification,
    handshake_failure,
    report_ragged_end,
    session_event,
)
from socktool.net.tlsconfig import ClientTls
from socktool.values import format_duration

HEADROOM = 40 * 1024  # a partial record carried over (≤ 16 KiB + overhead) and then some

_wires = threading.local()  # each loop thread's ciphertext buffer, shared by its transports


def _wire(size: int) -> memoryview:
    """A buffer of `size` for one socket read, fed to a layer before the next read: one per
    thread, not one per connection (a fresh 200 KiB bytearray per client was ~0.15 ms of
    a 0.7 ms handshake)."""
    wire: memoryview | None = getattr(_wires, "view", None)
    if wire is None or len(wire) != size:
        wire = _wires.view = memoryview(bytearray(size))
    return wire


class TlsTransport:
    """The loop's Transport over a TlsLayer (server side)."""

    def __init__(
        self,
        sock: socket.socket,
        layer: TlsLayer,
        *,
        on_ready: Callable[[TlsTransport], None],
        on_ragged_end: Callable[[TlsTransport], None],
    ):
        sock.setblocking(False)
        self.sock = sock
        self.layer = layer
        self.on_ready = on_ready
        self.on_ragged_end = on_ragged_end
        self.ready = False
        self._ragged = False
        self._out = bytearray()  # records the socket has not taken
        self._shut_after_flush = False
        self._shut_when_ready = False  # a half-close asked for during the handshake

    @property
    def pending(self) -> int:
        return len(self._out)

    @property
    def ended(self) -> bool:
        """The next read needs no socket: the peer's close_notify came (that read is the end,
        whether the socket closed or not), or plaintext is held (TlsLayer.close)."""
        return self.layer.close_received or self.layer.holding

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- in ---------------------------------------------------------------------
    def recv_into(self, buffer: bytearray | memoryview) -> int:
        if self.layer.close_received:
            return 0
        if self.layer.holding:
            return self.layer.read_into(buffer)
        wire = _wire(max(len(buffer) - HEADROOM, 4096))
        count = self.sock.recv_into(wire)  # BlockingIOError and OSError go to the loop
        layer = self.layer
        layer.feed(wire[:count])
        if not self.ready:
            self._handshake(count)
        view = memoryview(buffer)
        filled = 0
        try:
            while filled < len(view) and (n := layer.read_into(view[filled:])):
                filled += n
        except ssl.SSLEOFError:
            if not self._ragged:
                self._ragged = True
                self.on_ragged_end(self)
            return filled  # then 0 (EOF) on the next call, from the socket
        except ssl.SSLError as exc:
            raise OSError(errno.EPROTO, f"TLS: {exc.reason or exc}") from None
        self._queue()
        if filled or not count or layer.close_received:
            return filled
        raise BlockingIOError  # a record not complete yet: nothing for the handler

    def _handshake(self, count: int) -> None:
        try:
            done = self.layer.handshake()
        except ssl.SSLError as exc:
            self._queue()
            self._send_some()  # the alert, if the socket takes it
            raise OSError(errno.EPROTO, f"TLS handshake failed: {handshake_failure(exc)}") from None
        self._queue()
        self._send_some()
        if not done:
            if not count:
                who = "client" if self.layer.obj.server_side else "server"
                raise OSError(errno.EPROTO, f"the {who} closed the connection during the TLS handshake")
            raise BlockingIOError
        self.on_ready(self)  # may refuse the peer (a client's pins): then never ready
        self.ready = True
        if self._shut_when_ready:
            self.shutdown_write()

    def start(self) -> None:
        """A client speaks first: its hello goes out now (the rest as the server answers)."""
        self.layer.handshake()  # False: the server's answer is needed
        self._queue()
        self._send_some()

    # -- out --------------------------------------------------------------------
    def send(self, data: bytes | memoryview) -> int:
        if not self.ready:
            raise BlockingIOError
        self.flush()  # what waits goes first; BlockingIOError if it cannot
        self.layer.write(data)
        self._queue()
        self._send_some()
        return len(data)  # taken: what the socket did not take now waits in `pending`

    def flush(self) -> None:
        self._send_some()
        if self._out:
            raise BlockingIOError

    def _queue(self) -> None:
        records = self.layer.pending()
        if records:
            self._out += records

    def _send_some(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except BlockingIOError:
                return
            del self._out[:sent]
        if self._shut_after_flush:
            self._shut_after_flush = False
            self.sock.shutdown(socket.SHUT_WR)

    def shutdown_write(self) -> None:
        if not self.ready:
            self._shut_when_ready = True
            return
        if self.layer.close_sent:
            return
        self.layer.close()
        self._queue()
        self._shut_after_flush = True
        self._send_some()

    def close(self) -> None:
        with suppress(OSError):
            if self.ready and not self.layer.close_sent:
                self.layer.close()
                self._queue()
            if self._out:
                self.sock.send(self._out)  # once, without waiting: the loop is closing it
        close_quietly(self.sock)


def serve_tls(
    sock: socket.socket,
    identity: ServerIdentity,
    sink: ev.Sink,
    *,
    peer: Callable[[], tuple[int, str]],
    strict: Callable[[TlsError], None] | None = None,
) -> TlsTransport:
    """A server-side transport for an accepted client; `peer()` says (conn id, peer) once it is known.

    Reports the session (a Tls event) when the handshake is done, and a
    client that ends without close_notify: a warning, or with `strict`
    (--strict-close, one client) the failure handed to it."""
    verified = "client-ca" if identity.settings.client_ca is not None else ""

    def ready(transport: TlsTransport) -> None:
        conn, who = peer()
        sink(session_event(conn, who, transport.layer, verified))

    def ragged(transport: TlsTransport) -> None:
        report_ragged_end(peer()[1], sink, strict)

    layer = TlsLayer(identity.context, server_side=True)
    return TlsTransport(sock, layer, on_ready=ready, on_ragged_end=ragged)


class TlsClient:
    """What a loop needs to put TLS in front of its outgoing connections: one context for all."""

    def __init__(self, settings: ClientTls, sink: ev.Sink):
        self.settings = settings
        self.context = client_context(settings)  # bad files fail here, before anything is bound
        self.sink = sink
        if settings.insecure:
            sink(ev.Notice(INSECURE_WARNING, warning=True))

    def transport(self, sock: socket.socket, *, peer: Callable[[], tuple[int, str]]) -> TlsTransport:
        """A client-side transport on a connected socket; its hello is sent at once.

        The checks the handshake does not make (pins, --min-days) fail the
        connection as a socket error would; a session that passes is reported."""
        settings, sink = self.settings, self.sink

        def ready(transport: TlsTransport) -> None:
            conn, who = peer()
            try:
                check_server(transport.layer, settings, who)
            except TlsError as exc:
                detail = exc.detail if exc.what.startswith("TLS handshake") else f"{exc.what}: {exc.detail}"
                raise OSError(errno.EPROTO, detail) from None
            sink(session_event(conn, who, transport.layer, client_verification(settings)))

        def ragged(transport: TlsTransport) -> None:
            report_ragged_end(peer()[1], sink)

        layer = TlsLayer(self.context, server_side=False, server_name=settings.server_name)
        transport = TlsTransport(sock, layer, on_ready=ready, on_ragged_end=ragged)
        transport.start()
        return transport


def expect_handshake(conn: Connection, timeout: float) -> None:
    """Close `conn` if its TLS handshake is not done within `timeout`."""

    def overdue() -> None:
        if not conn.closed and not conn.transport.ready:
            conn.close(f"no TLS handshake within {format_duration(timeout)}")

    conn.loop.call_later(timeout, overdue)
