"""The pipe's sessions: one connection between stdin/stdout and a socket.

tcp-connect dials, tcp-listen without -k takes one client; then both run a
Relay (net/relay.py, with its splice fast path) and report the connection's
life: Connected, then Closed and Stats whatever happened. The CLI builds
the options and the sink and calls `run()`; nothing else.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from socktool.net import events as ev
from socktool.net import tcp
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.errors import Terminated, TimedOut
from socktool.net.relay import Connection, Payload, Relay, RelayOptions
from socktool.net.sockets import BoundSocket, bind, close_quietly
from socktool.values import format_duration

if TYPE_CHECKING:  # pragma: no cover - the loop is imported only by the listening side; TLS only when used
    from socktool.net.hub import Hub, ListenOptions
    from socktool.net.proxy import ProxyConfig
    from socktool.net.tls import TlsLayer
    from socktool.net.tlsconfig import ClientTls


class DialOptions(NamedTuple):
    family: int = socket.AF_UNSPEC
    timeout: float | None = 10.0
    source: str | None = None
    source_port: int | None = None
    socket_options: tcp.SocketOptions = tcp.SocketOptions()
    zero: bool = False  # -z: connect, close, done (with tls: once the handshake and checks pass)
    tls: ClientTls | None = None
    proxy: ProxyConfig | None = None


class Session:
    """One relayed connection; `totals()` may be read from another thread (--progress)."""

    def __init__(self, payload: Payload, relay: RelayOptions, sink: ev.Sink = ev.ignore):
        self.payload = payload
        self.relay = relay
        self.sink = sink
        self.conn: Connection | None = None
        # TLS: the handshake and checks for a connection (net/tls.py), and whether an
        # end without close_notify fails; None for plain TCP.
        self.secure: Callable[[Connection], TlsLayer] | None = None
        self.strict_close = False

    def counters(self) -> tuple[int, int]:
        conn = self.conn
        return (conn.sent, conn.received) if conn is not None else (0, 0)

    def _relay(self, conn: Connection, *, zero: bool = False) -> None:
        self.conn = conn
        self.sink(conn.connected_event())
        layer = None
        if self.secure is not None:
            try:
                layer = self.secure(conn)
            except BaseException:
                conn.sock.close()
                raise
        if zero:
            if layer is not None:
                from socktool.net.tls import end_quietly

                end_quietly(conn, layer)
            conn.sock.close()
            return
        reason = "error"
        try:
            if layer is not None:
                from socktool.net.tlsrelay import TlsRelay

                relay = TlsRelay(conn, layer, self.payload, self.relay, self.sink, strict_close=self.strict_close)
                reason = relay.run()
            else:
                reason = Relay(conn, self.payload, self.relay, self.sink).run()
        except (KeyboardInterrupt, Terminated):
            reason = "interrupted"  # (not "error": the user asked for the end)
            raise
        finally:
            conn.sock.close()
            self.sink(conn.closed_event(reason))
            self.sink(
                ev.Stats(
                    sent=conn.sent, received=conn.received, duration=time.monotonic() - conn.started, connections=1
                )
            )


class Dial(Session):
    """tcp-connect: dial `endpoint`, relay, report."""

    def __init__(
        self, endpoint: Endpoint, options: DialOptions, payload: Payload, relay: RelayOptions, sink: ev.Sink = ev.ignore
    ):
        super().__init__(payload, relay, sink)
        self.endpoint = endpoint
        self.options = options

    def run(self) -> None:
        o = self.options
        if o.tls is not None:
            self._secure_with(o.tls)  # bad --ca/--cert files fail before any connect
        if o.proxy is not None:
            from socktool.net.proxy import connect as connect_through

            sock = connect_through(o.proxy, self.endpoint, timeout=o.timeout)
            o.socket_options.apply(sock)
            peer = str(self.endpoint)
            local = sockaddr_text(sock.getsockname())
            self._relay(Connection(sock, 1, peer, local), zero=o.zero)
            return
        sock = tcp.connect(
            self.endpoint,
            family=o.family,
            timeout=o.timeout,
            source=o.source,
            source_port=o.source_port,
            options=o.socket_options,
            sink=self.sink,
        )
        peer = str(self.endpoint) if self.endpoint.is_unix else sockaddr_text(sock.getpeername())
        local = "" if sock.family == socket.AF_UNIX else sockaddr_text(sock.getsockname())
        self._relay(Connection(sock, 1, peer, local), zero=o.zero)

    def _secure_with(self, opts: ClientTls) -> None:
        from socktool.net import tls

        context, sink = tls.client_context(opts), self.sink
        self.secure = lambda conn: tls.start_client(context, opts, conn, sink)
        self.strict_close = opts.strict_close


class AcceptOne(Session):
    """tcp-listen without -k: the first client let in, relayed; the listener closes when it comes."""

    def __init__(
        self,
        endpoint: Endpoint,
        payload: Payload,
        relay: RelayOptions,
        options: ListenOptions,
        sink: ev.Sink = ev.ignore,
    ):
        super().__init__(payload, relay, sink)
        self.endpoint = endpoint
        self.options = options

    def run(self) -> None:
        o = self.options
        fingerprint = ""
        if o.tls is not None:
            from socktool.net import tls

            identity = tls.server_context(o.tls, self.endpoint.host)  # bad files fail before the bind
            self.secure = lambda conn: tls.start_server(identity, conn, self.sink)
            self.strict_close = o.tls.strict_close
            fingerprint = identity.fingerprint
        with bind(self.endpoint, family=o.family, reuse_addr=o.reuse_addr) as listener:
            self.sink(ev.Listening(listener.address, tls_fingerprint=fingerprint))
            conn = self._first_client(listener)
            listener.sock.close()  # like nc: one client, no one else queues up (the unix file goes at the end)
            self._relay(conn)

    def _first_client(self, listener: BoundSocket) -> Connection:
        """Accept on the loop (its one acceptor and out-of-descriptors policy) until a client is let in."""
        from socktool.net.hub import peer_host
        from socktool.net.loop import Acceptor, Loop

        sink, o = self.sink, self.options
        loop = Loop(sink)
        chosen: list[Connection] = []

        def on_client(sock: socket.socket, addr: object) -> None:
            peer = sockaddr_text(addr)
            reason = o.access.refusal(peer_host(addr))
            if reason is not None:
                sink(ev.Rejected(peer, reason))  # first: a refused peer finds it written
                close_quietly(sock)
                return
            o.socket_options.apply(sock)
            chosen.append(Connection(sock, 1, peer, sockaddr_text(sock.getsockname()), inbound=True))
            acceptor.close()
            loop.stop()

        def no_client() -> None:
            timeout = format_duration(o.first_client_timeout or 0)
            raise TimedOut(f"no client connected to {listener.address}", f"within {timeout}")

        acceptor = Acceptor(loop, listener.sock, listener.address, on_client)
        if o.first_client_timeout is not None:
            loop.call_later(o.first_client_timeout, no_client)
        try:
            loop.run()
        finally:
            loop.close()
        return chosen[0]


def listen_engine(
    endpoint: Endpoint, payload: Payload, relay: RelayOptions, options: ListenOptions, sink: ev.Sink = ev.ignore
) -> Hub | AcceptOne:
    """tcp-listen's engine: the pipe for one client, the loop for many (or for --exec)."""
    if options.keep_open or options.exec_argv is not None:
        from socktool.net.hub import Hub

        return Hub(endpoint, payload, relay, options, sink)
    return AcceptOne(endpoint, payload, relay, options, sink)


__all__ = ["AcceptOne", "Dial", "DialOptions", "Session", "listen_engine"]
