"""The echo server (RFC 862): whatever a client sends comes back, over TCP and UDP.

One thread, one selector, non-blocking sockets: thousands of clients cost a
few hundred bytes each, not a thread each.

Rules:
- bytes come back exactly as they came, in order, to the client that sent them;
- a client whose echo cannot be sent yet (it does not read) has its unsent
  bytes kept and is not read from until they are gone: one read's worth of
  memory at most per client, and the others are served meanwhile;
- a client that half-closes gets everything echoed, then the connection is closed;
- every client's socket is closed as it leaves, and all of them when the
  server stops (SIGINT/SIGTERM propagate out of `serve`).
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import NamedTuple

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.errors import describe
from socktool.net.serving import ACCEPT, DATAGRAMS, TcpUdpService, close_quietly, peer_text
from socktool.net.tcp import Listener

CHUNK = 64 * 1024
DATAGRAM_MAX = 65535
DATAGRAM_BATCH = 64  # datagrams per wake-up, so UDP cannot starve TCP clients
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class EchoOptions(NamedTuple):
    max_clients: int | None = None  # TCP clients at once; more are turned away
    idle_timeout: float | None = None  # close a TCP client after this long without traffic


class _Client:
    __slots__ = ("conn", "last", "peer", "pending", "received", "sent", "sock", "started")

    def __init__(self, sock: socket.socket, conn: int, peer: str, now: float):
        self.sock = sock
        self.conn = conn
        self.peer = peer
        self.started = self.last = now
        self.received = 0
        self.sent = 0
        self.pending: memoryview | None = None  # echo not yet sent; reading waits for it


class EchoServer(TcpUdpService):
    def __init__(
        self,
        tcp: Listener | None,
        udp: Listener | None,
        options: EchoOptions = EchoOptions(),
        sink: ev.Sink = ev.ignore,
    ):
        # sent/received count clients that left and datagrams; totals() adds live clients.
        super().__init__(tcp, udp, sink)
        self.options = options
        self.clients: dict[int, _Client] = {}
        self._buffer = bytearray(CHUNK)
        self._view = memoryview(self._buffer)
        self._dgram_buffer = bytearray(DATAGRAM_MAX)
        self._dgram_view = memoryview(self._dgram_buffer)

    def serve(self) -> None:
        """Echo until interrupted; every socket is closed on the way out."""
        try:
            self._loop()
        finally:
            self.close()

    def _loop(self) -> None:
        select = self.selector.select
        idle = self.options.idle_timeout
        sweep_every = min(idle / 4, 1.0) if idle else None
        next_sweep = time.monotonic() + sweep_every if sweep_every else None
        acceptor = self.acceptor
        while True:
            wait = None
            if next_sweep is not None:
                wait = max(0.0, next_sweep - time.monotonic())
            if acceptor is not None and acceptor.paused_until is not None:
                until = max(0.0, acceptor.paused_until - time.monotonic())
                wait = until if wait is None else min(wait, until)
            ready = select(wait)
            now = time.monotonic()
            for key, mask in ready:
                client = key.data
                if client.__class__ is _Client:
                    if mask & _WRITE:
                        self._flush(client, now)
                    else:
                        self._echo(client, now)
                elif client is ACCEPT:
                    self._accept(now)
                elif client is DATAGRAMS:
                    self._datagrams()
                else:
                    interrupts.drain()
            if next_sweep is not None and now >= next_sweep:
                assert idle is not None and sweep_every is not None
                self._close_idle(now - idle)
                next_sweep = now + sweep_every
            if acceptor is not None:
                acceptor.tick(now)

    # -- TCP ---------------------------------------------------------------
    def _accept(self, now: float) -> None:
        assert self.acceptor is not None
        self.acceptor.accept(now, self._add_client)

    def _add_client(self, sock: socket.socket, addr: object) -> None:
        assert self.tcp is not None
        peer = peer_text(self.tcp, addr)
        limit = self.options.max_clients
        if limit is not None and len(self.clients) >= limit:
            close_quietly(sock)
            self.sink(ev.Rejected(peer, f"--max-clients {limit} reached"))
            return
        sock.setblocking(False)
        if self.tcp.path is None:
            # Echoes are small replies; Nagle would hold one back waiting for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        client = _Client(sock, self.connections, peer, time.monotonic())
        self.clients[sock.fileno()] = client
        self.selector.register(sock, _READ, client)
        self.sink(ev.Connected(client.conn, peer, self.tcp.address, True))

    def _echo(self, client: _Client, now: float) -> None:
        sock = client.sock
        try:
            count = sock.recv_into(self._buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(client, describe(exc))
            return
        if not count:
            # Nothing is pending (reading stops while something is), so all is echoed.
            self._drop(client, "closed by peer")
            return
        client.received += count
        client.last = now
        try:
            sent = sock.send(self._view[:count])
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._drop(client, describe(exc))
            return
        client.sent += sent
        if sent < count:
            client.pending = memoryview(bytes(self._view[sent:count]))
            self.selector.modify(sock, _WRITE, client)

    def _flush(self, client: _Client, now: float) -> None:
        pending = client.pending
        assert pending is not None
        try:
            sent = client.sock.send(pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(client, describe(exc))
            return
        client.sent += sent
        client.last = now
        if sent < len(pending):
            client.pending = pending[sent:]
        else:
            client.pending = None
            self.selector.modify(client.sock, _READ, client)

    def _close_idle(self, cutoff: float) -> None:
        for client in [c for c in self.clients.values() if c.last < cutoff]:
            self._drop(client, "idle timeout")

    def _drop(self, client: _Client, reason: str) -> None:
        sock = client.sock
        self.clients.pop(sock.fileno(), None)
        self.selector.unregister(sock)
        close_quietly(sock)
        self.sent += client.sent
        self.received += client.received
        self.sink(
            ev.Closed(client.conn, client.peer, reason, client.sent, client.received, time.monotonic() - client.started)
        )
        if self.acceptor is not None:
            self.acceptor.client_left()

    # -- UDP ---------------------------------------------------------------
    def _datagrams(self) -> None:
        assert self.udp is not None
        sock = self.udp.sock
        view = self._dgram_view
        refuses = self.loop_guard.refuses  # type: ignore[union-attr]
        for _ in range(DATAGRAM_BATCH):
            try:
                size, addr = sock.recvfrom_into(self._dgram_buffer)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error queued for an earlier reply; nothing to do
            if refuses(addr):
                continue
            self.datagrams_in += 1
            self.received += size
            sent = 0
            if addr:  # an unbound unix datagram client has no address to answer
                try:
                    sent = sock.sendto(view[:size], addr)
                    self.datagrams_out += 1
                    self.sent += sent
                except OSError:
                    pass  # send buffer full or peer gone: UDP may drop, and so do we
            self.sink(ev.Served("udp", peer_text(self.udp, addr), size, sent, self.datagrams_in))

    # -- the end -------------------------------------------------------------
    def totals(self) -> ev.Stats:
        stats = super().totals()
        return stats._replace(
            sent=stats.sent + sum(c.sent for c in self.clients.values()),
            received=stats.received + sum(c.received for c in self.clients.values()),
        )

    def close(self) -> None:
        """Close every client and the listeners (idempotent); report the totals."""
        if self._closed:
            return
        self._closed = True
        try:
            for client in list(self.clients.values()):
                self._drop(client, "server stopped")
        finally:  # even if reporting failed (stdout gone): no socket or unix file left behind
            for client in self.clients.values():
                close_quietly(client.sock)
            self.close_listeners()
        self.sink(self.totals())


__all__ = ["EchoOptions", "EchoServer"]
