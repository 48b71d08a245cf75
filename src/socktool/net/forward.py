"""forward's engine for streams, on the loop (net/loop.py): every client of a TCP or
unix listener is paired with a new connection to the target, and the two relay
to each other.

A pair is two loop `Connection`s, each with a `_Side` handler that hands what
it reads to the pair's `_Flow` for that direction. Rules:
- bytes go through untouched and in order; backpressure is the loop's: when a
  destination holds more than HIGH_WATER unsent bytes (or a shaped direction
  holds QUEUE_LIMIT not yet due), its source stops being read until the
  destination drains, so the sender is slowed by the kernel and one slow
  peer never holds up the others;
- half-close is carried through: when one side stops sending (EOF), the other
  side's write half is shut down once everything before the EOF is written,
  and the other direction goes on until it ends too;
- with --proxy the connection to the target is made by net/proxy.py, whose
  handshake blocks: it runs in a thread of its own per pending connect
  (bounded by the connect timeout), which hands the socket back to the
  loop's thread with `loop.call`; the loop never waits for a proxy;
- a reset is carried through as a reset; a target that refuses, cannot be
  reached or does not answer within the connect timeout closes that client
  (with a warning) and the relay goes on;
- TLS on either side (--tls-listen, --tls-target) is that connection's
  transport (net/tlsloop.py): the pair sees plaintext; a handshake that
  fails or does not finish within its timeout closes the pair;
- with nothing looking at the bytes (no view, no JSON, no recording, no
  faults, no TLS) the two connections are joined by the loop's `SplicePair`:
  the bytes move by splice through a pipe per direction and never enter
  Python;
- every socket and pipe is closed when its pair ends, and all of them when
  the relay stops.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from socktool.frames import FrameTooLarge, Framing
from socktool.framing import FramedDatagrams, LineDatagrams, datagrams_to_stream, stream_to_datagrams
from socktool.net import events as ev
from socktool.net.access import AccessPolicy
from socktool.net.address import Endpoint, resolve, sockaddr_text
from socktool.net.errors import BindError, ResolveError, SocktoolError, describe
from socktool.net.events import DOWNSTREAM, UPSTREAM
from socktool.net.faults import CLOSE, RESET, FaultPlan, Shaper
from socktool.net.loop import (
    BACKLOG,
    Acceptor,
    Connection,
    Handler,
    Loop,
    SocketTransport,
    SplicePair,
    Timer,
    Transport,
    close_quietly,
)
from socktool.net.proxy import ProxyConfig
from socktool.net.proxy import connect as proxy_connect
from socktool.net.sockets import BoundSocket, bind, is_loopback, unpace, unpace_local
from socktool.net.tcp import SocketOptions
from socktool.net.tlsconfig import ClientTls, ServerTls
from socktool.values import format_duration

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.tls import ServerIdentity
    from socktool.net.tlsloop import TlsClient

QUEUE_LIMIT = 256 * 1024  # bytes a shaped (faulty) direction may hold before its source waits
REPLY_QUIET = 1.0  # --tcp-to-udp: after the client's EOF, replies are relayed until a second passes without one
SIOCOUTQ = 0x5411  # bytes a socket has not yet had acknowledged (Linux)
RESET_REASON = describe(ConnectionResetError(errno.ECONNRESET, ""))


class ForwardOptions(NamedTuple):
    target: Endpoint
    family: int = socket.AF_UNSPEC
    connect_timeout: float = 10.0
    source: str | None = None  # local address for connections to the target
    socket_options: SocketOptions = SocketOptions()
    max_clients: int | None = None
    access: AccessPolicy = AccessPolicy()
    idle_timeout: float | None = None
    emit_data: bool = False  # Data events for a view, --json or --record
    faults: FaultPlan = FaultPlan()
    listen_datagrams: bool = False  # --udp, --udp-to-tcp: clients are UDP addresses, a session each
    target_datagrams: bool = False  # --udp, --tcp-to-udp: the target is UDP
    tls_listen: ServerTls | None = None  # --tls-listen: clients speak TLS to us (net/tlsloop.py)
    tls_target: ClientTls | None = None  # --tls-target: we speak TLS to the target
    proxy: ProxyConfig | None = None  # --proxy: the target is reached through it
    framing: Framing | None = None  # --frame with a bridge: its stream side's messages are the datagrams
    max_frame: int | None = None


class TargetDialer:
    """Where and how connections to the target are made: resolved once, at start."""

    def __init__(self, options: ForwardOptions, kind: int = socket.SOCK_STREAM):
        self.options = options
        self.kind = kind
        target = options.target
        if target.path is not None:
            self.candidates: list[tuple[int, Any]] = [(socket.AF_UNIX, target.path)]
        else:
            self.candidates = resolve(target.host, target.port, family=options.family, kind=kind)
        self._sources: dict[int, Any] = {}
        if options.source is not None:
            for family in {fam for fam, _ in self.candidates}:
                self._sources[family] = self._source_address(family)

    def _source_address(self, family: int) -> Any:
        source = self.options.source
        try:
            return resolve(source, 0, family=family, passive=True)[0][1]
        except ResolveError as exc:
            raise BindError(f"cannot use source address {source!r}", exc.detail) from None

    def open(self, family: int) -> socket.socket:
        """A non-blocking socket of `family`, bound to --source, with the socket options."""
        sock = socket.socket(family, self.kind)
        sock.setblocking(False)
        try:
            if family in self._sources:
                sock.bind(self._sources[family])
            if self.kind == socket.SOCK_STREAM:
                self.options.socket_options.apply(sock)
        except OSError as exc:
            sock.close()
            raise BindError(f"cannot bind source {self.options.source}", describe(exc)) from exc
        return sock


class _Side(Handler):
    """The handler of one connection of a pair: what it reads goes to the other one."""

    __slots__ = ("forwarder", "pair", "role")

    def __init__(self, forwarder: Forwarder, pair: _Pair, role: str):
        self.forwarder = forwarder
        self.pair = pair
        self.role = role  # "client" or "target"

    def connected(self, conn: Connection) -> None:
        if self.role == "client":
            conn.pause_reading()  # until the target is connected

    def received(self, conn: Connection, data: memoryview) -> None:
        self.forwarder._received(self.pair.outflow(self.role), data)

    def eof(self, conn: Connection) -> None:
        self.forwarder._end_of_stream(self.pair.outflow(self.role))

    def drained(self, conn: Connection) -> None:
        flow = self.pair.inflow(self.role)
        if flow is not None:
            self.forwarder._pump(flow)

    def closed(self, conn: Connection, reason: str) -> None:
        self.forwarder._side_closed(self.pair, self.role, reason)


class _Flow:
    """One direction of a pair: bytes read from `src`, written to `dst`."""

    __slots__ = (
        "direction",
        "dst",
        "encoder",
        "eof",
        "framer",
        "pair",
        "queue",
        "queued",
        "shaper",
        "shut",
        "src",
        "timer",
    )

    def __init__(self, pair: _Pair, src: Connection, dst: Connection, direction: str):
        self.pair = pair
        self.src = src
        self.dst = dst
        self.direction = direction
        self.queue: deque[list[Any]] = deque()  # [due, bytes, end]: shaped or framed bytes not yet written
        self.queued = 0
        self.eof = False
        self.shut = False  # the destination's write half is shut down (or asked to be)
        self.shaper: Shaper | None = None
        self.framer: LineDatagrams | FramedDatagrams | None = None  # a stream cut into datagrams (--tcp-to-udp)
        self.encoder: Callable[[bytes], bytes] | None = None  # a datagram framed for the stream (--frame)
        self.timer: Timer | None = None


class _Pair:
    __slots__ = (
        "candidates",
        "client",
        "closed",
        "conn",
        "connecting",
        "down",
        "finishing",
        "peer",
        "reason",
        "splice",
        "started",
        "target",
        "up",
    )

    def __init__(self, conn: int, peer: str):
        self.conn = conn
        self.peer = peer
        self.started = time.monotonic()
        self.client: Connection | None = None
        self.target: Connection | None = None
        self.connecting: socket.socket | None = None  # the target socket while it connects
        self.up: _Flow | None = None
        self.down: _Flow | None = None
        self.closed = False
        self.finishing = False  # both ways ended: each side closes once its output is sent
        self.reason = ""
        self.candidates: list[tuple[int, Any]] = []
        self.splice: SplicePair | None = None  # the fast path: the two joined in the kernel

    def outflow(self, role: str) -> _Flow:
        flow = self.up if role == "client" else self.down
        assert flow is not None, "a side reads only once the pair is connected"
        return flow

    def inflow(self, role: str) -> _Flow | None:
        return self.down if role == "client" else self.up

    def flows(self) -> tuple[_Flow, ...]:
        return tuple(flow for flow in (self.up, self.down) if flow is not None)


class Forwarder:
    """Relays every client of `listener` to the target until interrupted."""

    def __init__(
        self,
        listener: BoundSocket,
        options: ForwardOptions,
        sink: ev.Sink = ev.ignore,
        identity: ServerIdentity | None = None,
    ):
        self.listener = listener
        self.options = options
        self.sink = sink
        self.loop = Loop(sink)
        kind = socket.SOCK_DGRAM if options.target_datagrams else socket.SOCK_STREAM
        self.dialer = TargetDialer(options, kind)
        self.target_text = str(options.target)
        self.acceptor = Acceptor(self.loop, listener.sock, listener.address, self._accepted)
        self.pairs: dict[int, _Pair] = {}
        self.connections = 0
        self.sent = 0  # to clients, over pairs that ended
        self.received = 0  # from clients, over pairs that ended
        self.identity = identity  # --tls-listen: our certificate (made before the bind)
        self.tls_client: TlsClient | None = None
        if options.tls_target is not None:
            from socktool.net.tlsloop import TlsClient

            self.tls_client = TlsClient(options.tls_target, sink)
        self.splice = (
            identity is None
            and self.tls_client is None
            and not options.emit_data
            and not options.faults.active
            and not options.target_datagrams
            and hasattr(os, "splice")
        )
        self._started = time.monotonic()
        self._stopping = False
        self._closed = False

    def serve(self) -> None:
        """Announce, then relay until interrupted; every socket is closed on the way out."""
        try:
            fingerprint = self.identity.fingerprint if self.identity is not None else ""
            self.sink(ev.Listening(self.listener.address, "tcp", tls_fingerprint=fingerprint))
            self.sink(
                ev.Notice(
                    f"forwarding to {self.target_text}" + (" (--tcp-to-udp)" if self.options.target_datagrams else "")
                )
            )
            self.loop.run()
        finally:
            self.close()

    # -- clients and targets ------------------------------------------------
    def _accepted(self, sock: socket.socket, addr: object) -> None:
        peer = sockaddr_text(addr)
        reason = self.options.access.admission(addr, len(self.pairs), self.options.max_clients)
        if reason is not None:
            self.sink(ev.Rejected(peer, reason))  # first: a refused peer finds it written
            close_quietly(sock)
            return
        self.options.socket_options.apply(sock)
        unpace_local(sock)  # a client on this host, through a listener on all addresses
        self.connections += 1
        pair = _Pair(self.connections, peer)
        self.pairs[pair.conn] = pair
        local = self.listener.address if self.listener.path is not None else sockaddr_text(sock.getsockname())
        transport: Transport = SocketTransport(sock)
        if self.identity is not None:
            from socktool.net.tlsloop import expect_handshake, serve_tls

            transport = serve_tls(sock, self.identity, self.sink, peer=lambda: (pair.conn, peer))
        client = Connection(self.loop, transport, _Side(self, pair, "client"), peer=peer, local=local)
        pair.client = self.loop.add(client)
        if self.identity is not None:
            expect_handshake(client, self.identity.settings.handshake_timeout)
        if self.options.idle_timeout is not None:
            client.set_idle_timeout(self.options.idle_timeout)
        self.sink(ev.Connected(pair.conn, peer, local, True))
        if self.options.proxy is not None:
            self._dial_through_proxy(pair, self.options.proxy)
            return
        pair.candidates = list(self.dialer.candidates)
        self._dial(pair)

    def _dial_through_proxy(self, pair: _Pair, proxy: ProxyConfig) -> None:
        loop, target, timeout = self.loop, self.options.target, self.options.connect_timeout

        def dial() -> None:  # in its own thread: nothing here touches the loop's state
            try:
                sock = proxy_connect(proxy, target, timeout=timeout)
            except (SocktoolError, OSError) as exc:
                detail = (exc.detail or exc.what) if isinstance(exc, SocktoolError) else describe(exc)
                loop.call(lambda: None if pair.closed else self._target_failed(pair, detail))
                return
            loop.call(lambda: self._proxied(pair, sock))

        threading.Thread(target=dial, name=f"forward proxy #{pair.conn}", daemon=True).start()

    def _proxied(self, pair: _Pair, sock: socket.socket) -> None:
        if pair.closed or self._closed:  # the client left meanwhile
            close_quietly(sock)
            return
        sock.setblocking(False)
        self.options.socket_options.apply(sock)
        self._target_connected(pair, sock)

    def _dial(self, pair: _Pair, last_error: str | None = None) -> None:
        """Connect to the next address of the target; with none left, give up on the client."""
        if pair.closed:
            return
        if not pair.candidates:
            self._target_failed(pair, last_error or "no address")
            return
        family, sockaddr = pair.candidates.pop(0)
        try:
            sock = self.dialer.open(family)
        except BindError as exc:
            self._target_failed(pair, str(exc))
            return
        if is_loopback(sockaddr[0]):
            unpace(sock)
        code = sock.connect_ex(sockaddr)
        if code not in (0, errno.EINPROGRESS):
            close_quietly(sock)
            self._dial(pair, _connect_failure(code))
            return
        pair.connecting = sock
        fd = sock.fileno()
        timer = self.loop.call_later(self.options.connect_timeout, lambda: self._connect_timed_out(pair, sock))

        def done() -> None:
            self.loop.unwatch(fd)
            timer.cancel()
            self._connect_done(pair, sock)

        self.loop.watch(fd, done, write=True)

    def _connect_timed_out(self, pair: _Pair, sock: socket.socket) -> None:
        if pair.connecting is not sock:
            return
        self.loop.unwatch(sock.fileno())
        close_quietly(sock)
        pair.connecting = None
        self._dial(pair, f"timed out after {format_duration(self.options.connect_timeout)}")

    def _connect_done(self, pair: _Pair, sock: socket.socket) -> None:
        pair.connecting = None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code or pair.closed:
            close_quietly(sock)
            self._dial(pair, _connect_failure(code))
            return
        self._target_connected(pair, sock)

    def _target_connected(self, pair: _Pair, sock: socket.socket) -> None:
        client = pair.client
        assert client is not None
        unpace_local(sock)  # a target on an address of this host's own, or a proxy on it
        transport: Transport = SocketTransport(sock)
        if self.tls_client is not None:
            from socktool.net.tlsloop import expect_handshake

            try:
                transport = self.tls_client.transport(sock, peer=lambda: (pair.conn, self.target_text))
            except OSError as exc:  # the hello could not be sent: the target left already
                close_quietly(sock)
                self._target_failed(pair, describe(exc))
                return
        target = Connection(self.loop, transport, _Side(self, pair, "target"), peer=self.target_text, inbound=False)
        pair.up = up = _Flow(pair, client, target, UPSTREAM)
        pair.target = self.loop.add(target)
        pair.down = down = _Flow(pair, target, client, DOWNSTREAM)
        if self.tls_client is not None:
            expect_handshake(target, self.tls_client.settings.handshake_timeout)
        if self.options.target_datagrams:
            up.framer = stream_to_datagrams(self.options.framing, self.options.max_frame)
            down.encoder = datagrams_to_stream(self.options.framing)
        faults = self.options.faults
        for flow in (up, down):
            flow_faults = faults.for_direction(flow.direction)
            if flow_faults.active:
                flow.shaper = Shaper(flow_faults, faults.rng(pair.conn, flow.direction))
                if flow_faults.chunk:
                    _no_delay(flow.dst)  # a segment per write
        self.sink(ev.Notice(f"#{pair.conn} connected to {self.target_text}"))
        if self.splice:
            self._start_splicing(pair)
        else:
            client.resume_reading()

    def _target_failed(self, pair: _Pair, detail: str) -> None:
        self.sink(ev.Notice(f"#{pair.conn} {pair.peer}: cannot connect to {self.target_text}: {detail}", warning=True))
        self._close_pair(pair, f"target: {detail}")

    # -- moving bytes through the loop's connections ----------------------------
    def _received(self, flow: _Flow, data: memoryview) -> None:
        if self.options.emit_data:
            pair = flow.pair
            self.sink(ev.Data(pair.conn, pair.peer, flow.direction, bytes(data)))
        if flow.framer is not None:
            self._to_datagrams(flow, bytes(data))
        elif flow.encoder is not None:
            if flow.shaper is not None and flow.shaper.drops():
                return
            try:
                framed = flow.encoder(bytes(data))
            except ValueError as exc:
                self._cannot_frame(flow, str(exc))
                return
            shaped = flow.shaper.schedule(framed, time.monotonic()) if flow.shaper is not None else None
            self._queue(flow, shaped or [(0.0, framed, None)])
        elif flow.shaper is not None:
            self._queue(flow, flow.shaper.schedule(bytes(data), time.monotonic()))
        else:
            flow.dst.write(data)
            if not flow.dst.writable:
                flow.src.pause_reading()  # until the destination drains

    def _to_datagrams(self, flow: _Flow, data: bytes, *, last: bool = False) -> None:
        """--tcp-to-udp: the client's bytes cut into datagrams for the target. Faults act on
        the datagrams (drop, delay, jitter, rate: each whole), except --reset-after and
        --close-after, which count the client's bytes: the datagrams of exactly the first N
        go (the rest after the last message as at the stream's end), then the client's
        connection is reset or closed."""
        framer, shaper = flow.framer, flow.shaper
        assert framer is not None
        end = None
        if shaper is not None:
            data, end = shaper.limit(data)
        try:
            datagrams = framer.feed(data)
        except FrameTooLarge as exc:
            self._cannot_frame(flow, f"{exc}; no datagram carries it")
            return
        if end is not None or last:
            datagrams += framer.close()
        now = time.monotonic()
        segments: list[Any] = []
        for datagram in datagrams:
            if shaper is None:
                segments.append((0.0, datagram, None))
            elif (segment := shaper.schedule_datagram(datagram, now)) is not None:
                segments.append(segment)
        if end is not None:
            segments.append((0.0, b"", end))  # after the datagrams before it, in order
        self._queue(flow, segments)

    def _cannot_frame(self, flow: _Flow, detail: str) -> None:
        pair = flow.pair
        side = "client" if flow is pair.up else "target"
        self.sink(ev.Notice(f"#{pair.conn} {pair.peer}: --frame: {detail}", warning=True))
        self._close_pair(pair, f"{side}: {detail}")

    def _queue(self, flow: _Flow, segments: list[Any]) -> None:
        for due, data, end in segments:
            flow.queue.append([due, data, end])
            flow.queued += len(data)
        self._pump(flow)

    def _pump(self, flow: _Flow) -> None:
        """Write what is due while the destination takes it; pass an EOF on once all is written;
        read the source again when there is room."""
        if flow.pair.closed:
            return
        queue, dst = flow.queue, flow.dst
        now = time.monotonic()
        while queue and dst.writable:
            due, data, end = queue[0]
            if due > now:
                self._wake_at(flow, due)
                break
            queue.popleft()
            flow.queued -= len(data)
            dst.write(data)
            if end is not None:
                self._end_by_fault(flow, end)
                return
        if flow.eof:
            if not queue and not flow.shut:
                self._shut_down(flow)
            return
        if dst.writable and flow.queued < QUEUE_LIMIT:
            flow.src.resume_reading()
        else:
            flow.src.pause_reading()

    def _wake_at(self, flow: _Flow, due: float) -> None:
        if flow.timer is not None and not flow.timer.cancelled and flow.timer.when <= due:
            return
        if flow.timer is not None:
            flow.timer.cancel()

        def wake() -> None:
            flow.timer = None
            self._pump(flow)

        flow.timer = self.loop.call_later(max(0.0, due - time.monotonic()), wake)

    def _end_of_stream(self, flow: _Flow) -> None:
        flow.eof = True
        if flow.framer is not None:
            if flow.shaper is not None and flow.shaper.ended:  # cut by a fault: nothing more goes
                return
            self._to_datagrams(flow, b"", last=True)
            dropped = flow.framer.dropped
            if dropped:
                pair = flow.pair
                self.sink(
                    ev.Notice(
                        f"#{pair.conn} {pair.peer}: --frame: {dropped} B of an incomplete message at the end dropped",
                        True,
                    )
                )
        else:
            self._pump(flow)

    def _shut_down(self, flow: _Flow) -> None:
        """Everything before the EOF is written: pass the EOF on (half-close)."""
        flow.shut = True
        flow.dst.shutdown_write()
        pair = flow.pair
        if flow.framer is not None:  # a UDP target never ends: replies come until it falls quiet
            self._close_when_quiet(pair)
        elif all(f.shut for f in pair.flows()):
            first = pair.up if pair.down is flow else pair.down
            assert first is not None
            self._finish(pair, f"closed by {'client' if first is pair.up else 'target'}")

    def _finish(self, pair: _Pair, reason: str) -> None:
        """Both ways ended: each side closes once its output is sent."""
        pair.finishing = True
        pair.reason = reason
        for conn in (pair.client, pair.target):
            if conn is not None:
                conn.close_when_sent(reason)

    def _close_when_quiet(self, pair: _Pair) -> None:
        target = pair.target
        if pair.closed or target is None:
            return
        quiet = self.options.idle_timeout or REPLY_QUIET
        due = target.last_activity + quiet
        if pair.down is not None and pair.down.queue:  # replies held by a fault are still to come
            due = max(due, time.monotonic() + 0.05)
        if time.monotonic() >= due:
            self._finish(pair, "closed by client")
        else:
            self.loop.call_later(due - time.monotonic(), lambda: self._close_when_quiet(pair))

    def _end_by_fault(self, flow: _Flow, end: str) -> None:
        pair = flow.pair
        limit = "--reset-after" if end == RESET else "--close-after"
        reason = f"{limit} reached ({flow.direction})"
        sides = [conn for conn in (pair.client, pair.target) if conn is not None]
        for conn in sides:
            conn.pause_reading()
            if end == CLOSE:
                conn.shutdown_write()
        # Wait until the peers have the bytes: a reset discards what the kernel still holds.
        if (end == RESET and (flow.dst.buffered or _unacknowledged(flow.dst))) or any(c.buffered for c in sides):
            self.loop.call_later(0.001, lambda: None if pair.closed else self._end_by_fault(flow, end))
            return
        if end == CLOSE:
            for conn in sides:
                _discard_input(conn)  # a close with unread bytes would send a reset
        self._close_pair(pair, reason, reset=end == RESET)

    def _side_closed(self, pair: _Pair, role: str, reason: str) -> None:
        """One connection of the pair closed: a side that failed takes the other with it."""
        if pair.closed:
            return
        if pair.finishing:
            others = [c for c in (pair.client, pair.target) if c is not None and not c.closed]
            if not others:
                self._close_pair(pair, pair.reason)
            return
        target = pair.target
        if role == "target" and target is not None and not target.transport.ready and not self._stopping:
            # TLS to the target did not come up: like a target that refused, that client goes.
            client = pair.client
            if client is not None:
                _discard_input(client)  # what it sent meanwhile: closing over unread bytes would reset it
            self._target_failed(pair, reason)
            return
        if self._stopping:
            reason = "relay stopped"
        elif reason != "idle timeout":
            reason = f"{role}: {reason}"
        self._close_pair(pair, reason, reset=RESET_REASON in reason)

    # -- the splice path --------------------------------------------------------------
    def _start_splicing(self, pair: _Pair) -> None:
        client, target = pair.client, pair.target
        assert client is not None and target is not None
        pair.splice = SplicePair(client, target, lambda conn, error: self._splice_ended(pair, conn, error))

    def _splice_ended(self, pair: _Pair, conn: Connection, error: OSError | None) -> None:
        role = "client" if conn is pair.client else "target"
        if error is None:
            self._close_pair(pair, f"closed by {role}")
            return
        reason = describe(error)
        self._close_pair(pair, f"{role}: {reason}", reset=reason == RESET_REASON)

    # -- ending ------------------------------------------------------------------------------
    def _close_pair(self, pair: _Pair, reason: str, *, reset: bool = False) -> None:
        if pair.closed:
            return
        pair.closed = True
        if pair.splice is not None:
            pair.splice.close()
        if pair.connecting is not None:
            if not self._closed:
                self.loop.unwatch(pair.connecting.fileno())
            close_quietly(pair.connecting)
            pair.connecting = None
        for conn in (pair.client, pair.target):
            if conn is not None and not conn.closed:
                if reset:
                    _reset_on_close(conn)
                conn.close(reason)
        for flow in pair.flows():
            if flow.timer is not None:
                flow.timer.cancel()
        self.pairs.pop(pair.conn, None)
        client = pair.client
        sent, received = (client.sent, client.received) if client is not None else (0, 0)
        self.sent += sent
        self.received += received
        self.sink(ev.Closed(pair.conn, pair.peer, reason, sent, received, time.monotonic() - pair.started))

    def totals(self) -> ev.Stats:
        live = [pair.client for pair in self.pairs.values() if pair.client is not None]
        sent = self.sent + sum(c.sent for c in live)
        received = self.received + sum(c.received for c in live)
        return ev.Stats(sent, received, time.monotonic() - self._started, self.connections)

    def close(self) -> None:
        """Close every pair and the listener (idempotent); report the totals."""
        if self._closed:
            return
        self._stopping = True
        self._closed = True
        try:
            for pair in list(self.pairs.values()):
                self._close_pair(pair, "relay stopped")
        finally:  # even if reporting failed (stdout gone): nothing left open
            for pair in self.pairs.values():
                if pair.splice is not None:
                    pair.splice.close()
                if pair.connecting is not None:
                    close_quietly(pair.connecting)
            self.loop.close()
            self.listener.close()
        self.sink(self.totals())


def run_forward(endpoint: Endpoint, options: ForwardOptions, sink: ev.Sink) -> None:
    """Bind `endpoint` and relay its clients to the target until interrupted."""
    identity = None
    if options.tls_listen is not None:
        from socktool.net.tls import server_context

        identity = server_context(options.tls_listen, endpoint.host)  # bad files fail before the bind
    if options.listen_datagrams:  # no SO_REUSEADDR on UDP: another process could bind the same port
        listener = bind(endpoint, family=options.family, kind=socket.SOCK_DGRAM, reuse_addr=False)
    else:
        listener = bind(endpoint, family=options.family, backlog=BACKLOG)
        if listener.path is None and is_loopback(listener.sock.getsockname()[0]):
            unpace(listener.sock)  # its clients are on this host
    with listener:  # closed (and a unix socket file removed) whatever happens next
        if options.listen_datagrams:
            from socktool.net.forward_udp import DatagramForwarder

            DatagramForwarder(listener, options, sink).serve()
        else:
            Forwarder(listener, options, sink, identity).serve()


def _connect_failure(code: int) -> str:
    if code == errno.ECONNREFUSED:
        return "connection refused"
    if code == errno.EAGAIN:
        return "its accept queue is full"
    return describe(OSError(code, os.strerror(code)))


def _socket_of(conn: Connection) -> socket.socket | None:
    transport = conn.transport
    return transport.sock if isinstance(transport, SocketTransport) else None


def _no_delay(conn: Connection) -> None:
    sock = _socket_of(conn)
    if sock is not None and sock.family != socket.AF_UNIX and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reset_on_close(conn: Connection) -> None:
    """Make close() send a reset (RST) rather than a FIN."""
    sock = _socket_of(conn)
    if sock is None or sock.family == socket.AF_UNIX:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _discard_input(conn: Connection) -> None:
    sock = _socket_of(conn)
    try:
        while sock is not None and sock.recv(65536):
            pass
    except OSError:
        pass


def _unacknowledged(conn: Connection) -> int:
    sock = _socket_of(conn)
    if sock is None or sock.family == socket.AF_UNIX:
        return 0
    try:
        import fcntl

        (count,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0"))
        return int(count)
    except OSError:
        return 0


__all__ = ["ForwardOptions", "Forwarder", "TargetDialer", "run_forward"]
