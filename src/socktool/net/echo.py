"""The echo server (RFC 862): whatever a client sends comes back, over TCP and UDP.

One thread, one selector, non-blocking sockets: thousands of clients cost
about a kilobyte each, not a thread each.

Rules:
- bytes come back exactly as they came, in order, to the client that sent them;
- a client whose echo cannot be sent yet (it does not read) has its unsent
  bytes kept and is not read from until they are gone: one read's worth of
  memory at most per client, and the others are served meanwhile;
- a client that half-closes gets everything echoed, then the connection is closed;
- every client's socket is closed as it leaves, and all of them when the
  server stops (SIGINT/SIGTERM propagate out of `serve`).

It runs on the loop (net/loop.py) through net/service.py; an `Echo` handler
per TCP client, and the UDP socket answered datagram by datagram.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, NamedTuple

from socktool.net import events as ev
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.loop import Connection, Handler, SocketTransport, Transport
from socktool.net.service import Service, ServiceKinds
from socktool.net.sockets import close_quietly

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.tlsconfig import ServerTls


class EchoOptions(NamedTuple):
    max_clients: int | None = None  # TCP clients at once; more are turned away
    idle_timeout: float | None = None  # close a TCP client after this long without traffic
    tls: ServerTls | None = None  # TLS on the TCP side (UDP stays as it is)


class Echo(Handler):
    """A TCP client of the echo server: what it sends is written back; while the
    echo waits for room, the client is not read (memory: one read's worth)."""

    __slots__ = ("server",)

    def __init__(self, server: EchoServer):
        self.server = server

    def connected(self, conn: Connection) -> None:
        self.server.sink(conn.connected_event())
        if self.server.options.idle_timeout is not None:
            conn.set_idle_timeout(self.server.options.idle_timeout)

    def received(self, conn: Connection, data: memoryview) -> None:
        conn.write(data)
        if conn.buffered:
            conn.pause_reading()

    def drained(self, conn: Connection) -> None:
        if not conn.buffered:
            conn.resume_reading()

    def closed(self, conn: Connection, reason: str) -> None:
        self.server.client_left(conn.sent, conn.received)
        self.server.sink(conn.closed_event(reason))


class EchoServer(Service):
    def __init__(
        self,
        endpoint: Endpoint,
        kinds: ServiceKinds = ServiceKinds(),
        options: EchoOptions = EchoOptions(),
        sink: ev.Sink = ev.ignore,
    ):
        super().__init__(endpoint, kinds, sink)
        self.options = options
        self.handler = Echo(self)
        self.tls = None
        if options.tls is not None:
            from socktool.net.tls import server_context

            self.tls = server_context(options.tls, endpoint.host)  # bad files fail before the bind
            self.tls_fingerprint = self.tls.fingerprint

    def on_client(self, sock: socket.socket, addr: object) -> None:
        assert self.tcp is not None
        peer = sockaddr_text(addr)
        limit = self.options.max_clients
        if limit is not None and len(self.loop.connections) >= limit:
            self.sink(ev.Rejected(peer, f"--max-clients {limit} reached"))  # first: a refused peer finds it written
            close_quietly(sock)
            return
        if self.tcp.path is None:
            # Echoes are small replies; Nagle would hold one back waiting for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        if self.tls is None:
            transport: Transport = SocketTransport(sock)
        else:
            from socktool.net.tlsloop import serve_tls

            transport = serve_tls(sock, self.tls, self.sink, peer=lambda: (conn.id, peer))
        conn = Connection(self.loop, transport, self.handler, peer=peer, local=self.tcp.address)
        self.loop.add(conn)
        if self.tls is not None:
            from socktool.net.tlsloop import expect_handshake

            expect_handshake(conn, self.tls.settings.handshake_timeout)

    def on_datagram(self, sock: socket.socket, size: int, addr: object) -> None:
        sent = self.reply(sock, self.datagram_view[:size], addr)  # the reply is the request: 1x
        self.sink(ev.Served("udp", sockaddr_text(addr), size, sent, self.datagrams_in))


__all__ = ["EchoOptions", "EchoServer"]
