"""What echo and time-server share, on the loop (net/loop.py): one port bound
for TCP and UDP at once, the UDP socket watched in the loop with the loop
guard (net/udpguard.py), the counters their totals report, and one end.

A service serves until interrupted; `serve()` closes every client (each
reported) and both listeners on the way out, then reports the totals.
"""

from __future__ import annotations

import socket
import time
from typing import Any, NamedTuple

from socktool.net import events as ev
from socktool.net.address import Endpoint
from socktool.net.errors import BindError, UsageError
from socktool.net.fdio import raise_open_file_limit
from socktool.net.loop import BACKLOG, Acceptor, Loop
from socktool.net.sockets import BoundSocket, bind
from socktool.net.udp import DatagramBuffer, widen_send_buffer
from socktool.net.udpguard import LoopGuard

DATAGRAM_BATCH = 64  # datagrams per wake-up, so UDP cannot starve TCP clients


class ServiceKinds(NamedTuple):
    """Which sockets a service binds."""

    tcp: bool = True
    udp: bool = True
    family: int = socket.AF_UNSPEC


def bind_service(
    endpoint: Endpoint, *, family: int, tcp: bool, udp: bool
) -> tuple[BoundSocket | None, BoundSocket | None]:
    """Bind the TCP listener and the UDP socket of a service on one port, non-blocking.

    With port 0 the UDP socket takes the port TCP got (trying again with a new
    port if that one is taken for UDP), so one number serves both. The UDP
    socket is bound without SO_REUSEADDR: with it, anyone on the host could
    bind the same port and take the clients' datagrams.
    """
    if endpoint.is_unix and tcp and udp:
        raise UsageError(
            f"cannot serve TCP and UDP on {endpoint}",
            "a unix socket is one or the other",
            "add --tcp-only or --udp-only",
        )
    attempts = 10 if endpoint.port == 0 and tcp and udp else 1
    for attempt in range(attempts):
        stream = bind(endpoint, family=family, backlog=BACKLOG) if tcp else None
        try:
            port = stream.port if stream is not None and not endpoint.is_unix else endpoint.port
            dgram = (
                bind(endpoint._replace(port=port), family=family, kind=socket.SOCK_DGRAM, reuse_addr=False)
                if udp
                else None
            )
        except BindError:
            if stream is not None:
                stream.close()
            if attempt + 1 < attempts:
                continue
            raise
        for listener in (stream, dgram):
            if listener is not None:
                listener.sock.setblocking(False)
        if dgram is not None and endpoint.is_unix:
            widen_send_buffer(dgram.sock)  # so that any datagram a client can send can be echoed whole
        return stream, dgram
    raise AssertionError("unreachable")  # pragma: no cover


class Service:
    """A TCP listener and a UDP socket on one port (either may be off), served by one loop.

    Subclasses answer: `on_client(sock, addr)` for each accepted TCP client,
    `on_datagram(sock, size, addr)` for each datagram in `self.datagram_view`
    (the loop guard has let it through).
    """

    tcp: BoundSocket | None = None  # bound by serve()
    udp: BoundSocket | None = None
    tls_fingerprint = ""  # a TLS service's certificate, announced with the TCP listener

    def __init__(self, endpoint: Endpoint, kinds: ServiceKinds, sink: ev.Sink):
        self.endpoint = endpoint
        self.kinds = kinds
        self.sink = sink
        self.loop = Loop(sink)
        self.started = time.monotonic()
        self.connections = 0
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.sent = 0  # by clients that left, and datagrams
        self.received = 0
        self.loop_guard: LoopGuard | None = None
        self._closed = False

    def serve(self) -> None:
        """Bind, announce, serve until interrupted; every socket is closed on the way out."""
        raise_open_file_limit()
        kinds = self.kinds
        try:
            self.tcp, self.udp = bind_service(self.endpoint, family=kinds.family, tcp=kinds.tcp, udp=kinds.udp)
            for listener, kind in ((self.tcp, "tcp"), (self.udp, "udp")):
                if listener is not None:
                    fingerprint = self.tls_fingerprint if kind == "tcp" else ""
                    self.sink(ev.Listening(listener.address, kind, tls_fingerprint=fingerprint))
            self._start()
            self.loop.run()
        finally:
            self.close()

    def _start(self) -> None:
        tcp, udp = self.tcp, self.udp
        if tcp is not None:
            Acceptor(self.loop, tcp.sock, tcp.address, self.on_client)
        if udp is not None:
            self.inbox = DatagramBuffer(udp.sock)
            own_ports = (udp.port, tcp.port if tcp is not None else 0)
            self.loop_guard = LoopGuard(udp.address, own_ports, self.sink)
            self.loop.watch(udp.sock.fileno(), self._datagrams)

    @property
    def datagram_view(self) -> memoryview:
        """The datagram being answered (whole: a unix socket's buffer grows to fit it)."""
        return self.inbox.view

    def on_client(self, sock: socket.socket, addr: object) -> None:
        raise NotImplementedError

    def on_datagram(self, sock: socket.socket, size: int, addr: object) -> None:
        raise NotImplementedError

    def _datagrams(self) -> None:
        assert self.udp is not None and self.loop_guard is not None
        sock, recvfrom, refuses = self.udp.sock, self.inbox.recvfrom, self.loop_guard.refuses
        for _ in range(DATAGRAM_BATCH):
            try:
                size, addr = recvfrom(0)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error queued for an earlier reply; nothing to do
            if refuses(addr):
                continue
            self.datagrams_in += 1
            self.received += size
            self.on_datagram(sock, size, addr)

    def reply(self, sock: socket.socket, data: bytes | memoryview, addr: Any) -> int:
        """Send one reply datagram; 0 if it could not go (UDP may drop, and so do we)."""
        if not addr:  # an unbound unix datagram client has no address to answer
            return 0
        try:
            sent: int = sock.sendto(data, addr)
        except OSError:
            return 0
        self.datagrams_out += 1
        self.sent += sent
        return sent

    def client_left(self, sent: int, received: int) -> None:
        self.sent += sent
        self.received += received

    def totals(self) -> ev.Stats:
        live = list(self.loop.connections.values())
        return ev.Stats(
            self.sent + sum(c.sent for c in live),
            self.received + sum(c.received for c in live),
            time.monotonic() - self.started,
            self.connections,
            self.datagrams_in,
            self.datagrams_out,
            self.loop_guard.dropped if self.loop_guard is not None else 0,
        )

    def close(self) -> None:
        """Close every client (each reported) and both listeners (idempotent); report the totals."""
        if self._closed:
            return
        self._closed = True
        try:
            self.loop.close()
        finally:  # even if reporting failed (stdout gone): no socket or unix file left behind
            for listener in (self.tcp, self.udp):
                if listener is not None:
                    listener.close()
        self.sink(self.totals())


__all__ = ["Service", "ServiceKinds", "bind_service"]
