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
from collections.abc import Callable
from contextlib import suppress

from socktool.net import events as ev
from socktool.net.loop import close_quietly
from socktool.net.tls import ServerIdentity, TlsLayer, handshake_failure, session_event

HEADROOM = 40 * 1024  # a partial record carried over (≤ 16 KiB + overhead) and then some


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
        self._wire = bytearray()

    @property
    def pending(self) -> int:
        return len(self._out)

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- in ---------------------------------------------------------------------
    def recv_into(self, buffer: bytearray | memoryview) -> int:
        size = max(len(buffer) - HEADROOM, 4096)
        if len(self._wire) != size:
            self._wire = bytearray(size)
        count = self.sock.recv_into(self._wire)  # BlockingIOError and OSError go to the loop
        layer = self.layer
        layer.feed(memoryview(self._wire)[:count])
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
                raise OSError(errno.EPROTO, "the client closed the connection during the TLS handshake")
            raise BlockingIOError
        self.ready = True
        self.on_ready(self)
        if self._shut_when_ready:
            self.shutdown_write()

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
    sock: socket.socket, identity: ServerIdentity, sink: ev.Sink, *, peer: Callable[[], tuple[int, str]]
) -> TlsTransport:
    """A server-side transport for an accepted client; `peer()` says (conn id, peer) once it is known.

    Reports the session (a Tls event) when the handshake is done, and a
    client that ends without close_notify (a warning)."""
    verified = "client-ca" if identity.settings.client_ca is not None else ""

    def ready(transport: TlsTransport) -> None:
        conn, who = peer()
        sink(session_event(conn, who, transport.layer, verified))

    def ragged(transport: TlsTransport) -> None:
        _conn, who = peer()
        sink(ev.Notice(f"{who} closed the connection without TLS close_notify: the data may be cut short", True))

    layer = TlsLayer(identity.context, server_side=True)
    return TlsTransport(sock, layer, on_ready=ready, on_ragged_end=ragged)
