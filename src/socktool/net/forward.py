"""forward's engine for streams: every client of a TCP or unix listener is paired
with a new connection to the target, and the two relay to each other.

One thread, one selector, non-blocking sockets. Rules:
- bytes go through untouched and in order; each direction holds at most one
  read's worth of bytes (QUEUE_LIMIT with faults), and while they wait for
  room in the destination its source is not read: backpressure reaches the
  sender through the kernel, and one slow peer never holds up the others;
- half-close is carried through: when one side stops sending (EOF), the other
  side's write half is shut down once everything before the EOF is written,
  and the other direction goes on until it ends too;
- a reset is carried through as a reset; a target that refuses, cannot be
  reached or does not answer within the connect timeout closes that client
  (with a warning) and the relay goes on;
- with nothing looking at the bytes (no view, no JSON, no recording, no
  faults) they move by splice through a pipe per direction and never enter
  Python;
- every socket and pipe is closed when its pair ends, and all of them when
  the relay stops.
"""

from __future__ import annotations

import errno
import heapq
import os
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from socktool.framing import LineDatagrams
from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.access import AccessPolicy
from socktool.net.address import Endpoint, resolve, sockaddr_text
from socktool.net.errors import BindError, ResolveError, describe
from socktool.net.events import DOWNSTREAM, UPSTREAM
from socktool.net.faults import CLOSE, RESET, FaultPlan, Shaper
from socktool.net.fdio import SPLICE_F_NONBLOCK, widen_pipe
from socktool.net.loop import BACKLOG, close_quietly
from socktool.net.serving import ACCEPT, Acceptor
from socktool.net.tcp import Listener, SocketOptions, listen
from socktool.values import format_duration

CHUNK = 64 * 1024  # one read of the copying path
SPLICE_CHUNK = 1024 * 1024
QUEUE_LIMIT = 256 * 1024  # bytes a shaped (faulty) direction may hold before its source waits
WIDEN_AFTER = 1024 * 1024  # a direction that moved this much is bulk: give its pipe 1 MiB
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | SPLICE_F_NONBLOCK
REPLY_QUIET = 1.0  # --tcp-to-udp: after the client's EOF, replies are relayed until a second passes without one
SIOCOUTQ = 0x5411  # bytes a socket has not yet had acknowledged (Linux)
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
WAKEUP = "wakeup"
ROLES = {UPSTREAM: ("client", "target"), DOWNSTREAM: ("target", "client")}


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
    target_datagrams: bool = False  # --tcp-to-udp: the target is UDP, one datagram a line


class Timers:
    """Callbacks due at a monotonic time, in order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, when: float, callback: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, callback))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)[2]()


class Loop:
    """The selector, the timers and the signal wake-up every forward mode shares."""

    def __init__(self, sink: ev.Sink):
        self.sink = sink
        self.selector = selectors.DefaultSelector()
        self.timers = Timers()
        self.started = time.monotonic()
        self.stopped = False
        wakeup = interrupts.wakeup_fd()
        if wakeup is not None:  # so that a signal is never missed while the loop waits
            self.selector.register(wakeup, _READ, WAKEUP)

    def run(self) -> None:
        select, timers = self.selector.select, self.timers
        while not self.stopped:
            due = self.wait_until()
            wait = None if due is None else max(0.0, due - time.monotonic())
            for key, mask in select(wait):
                if key.data is WAKEUP:
                    interrupts.drain()
                else:
                    self.ready(key.data, mask)
            now = time.monotonic()
            timers.run_due(now)
            self.tick(now)

    def tick(self, now: float) -> None:
        """After each wake-up, for what is not a timer."""

    def wait_until(self) -> float | None:
        return self.timers.next_due()

    def ready(self, data: Any, mask: int) -> None:
        raise NotImplementedError


class _End:
    """One socket of a pair: the client's or the target's."""

    __slots__ = ("connecting", "fd", "inflow", "mask", "outflow", "pair", "role", "sock")

    def __init__(self, sock: socket.socket, pair: _Pair, role: str):
        self.sock = sock
        self.pair = pair
        self.fd = sock.fileno()
        self.role = role  # "client" or "target"
        self.outflow: _Flow  # what this end sends
        self.inflow: _Flow  # what is written to it
        self.mask = 0
        self.connecting = False


class _Flow:
    """One direction of a pair: bytes read from `src`, written to `dst`."""

    __slots__ = (
        "blocked",
        "direction",
        "dst",
        "eof",
        "framer",
        "in_pipe",
        "pair",
        "pipe",
        "queue",
        "queued",
        "read",
        "shaper",
        "shut",
        "src",
        "timer_due",
        "written",
    )

    def __init__(self, pair: _Pair, src: _End, dst: _End, direction: str):
        self.pair = pair
        self.src = src
        self.dst = dst
        self.direction = direction
        src.outflow = self
        dst.inflow = self
        self.queue: deque[list[Any]] = deque()  # [due, memoryview, end]
        self.queued = 0
        self.blocked = False  # the destination had no room: wait for it to be writable
        self.eof = False
        self.shut = False  # the destination's write half is shut down
        self.read = 0
        self.written = 0
        self.shaper: Shaper | None = None
        self.framer: LineDatagrams | None = None  # a stream cut into datagrams (--tcp-to-udp)
        self.pipe: tuple[int, int] | None = None  # the splice path's (read end, write end)
        self.in_pipe = 0
        self.timer_due: float | None = None

    def may_read(self) -> bool:
        if self.eof or self.dst.connecting or self.src.connecting:
            return False
        if self.shaper is not None:
            return self.queued < QUEUE_LIMIT
        return not self.in_pipe and not self.queue

    def close_pipe(self) -> None:
        pipe, self.pipe = self.pipe, None
        for fd in pipe or ():
            try:
                os.close(fd)
            except OSError:  # closed already, by a close that a signal cut short
                pass


class _Pair:
    __slots__ = ("candidates", "client", "closed", "conn", "down", "last_activity", "peer", "started", "target", "up")

    def __init__(self, conn: int, peer: str, client: socket.socket, now: float):
        self.conn = conn
        self.peer = peer
        self.started = self.last_activity = now
        self.client = _End(client, self, "client")
        self.target: _End | None = None
        self.up: _Flow | None = None
        self.down: _Flow | None = None
        self.closed = False
        self.candidates: list[tuple[int, Any]] = []

    def flows(self) -> tuple[_Flow, ...]:
        return tuple(flow for flow in (self.up, self.down) if flow is not None)


class TargetDialer:
    """Where and how connections to the target are made: resolved once, at start."""

    def __init__(self, options: ForwardOptions, kind: int = socket.SOCK_STREAM):
        self.options = options
        target = options.target
        if target.path is not None:
            self.candidates: list[tuple[int, Any]] = [(socket.AF_UNIX, target.path)]
        else:
            self.candidates = resolve(target.host, target.port, family=options.family, kind=kind)
        self.kind = kind
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

    def open(self, family: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A non-blocking socket of `family`, bound to --source, with the socket options."""
        sock = socket.socket(family, kind)
        sock.setblocking(False)
        try:
            if family in self._sources:
                sock.bind(self._sources[family])
            if kind == socket.SOCK_STREAM:
                self.options.socket_options.apply(sock)
        except OSError as exc:
            sock.close()
            raise BindError(f"cannot bind source {self.options.source}", describe(exc)) from exc
        return sock


class Forwarder(Loop):
    """Relays every client of `listener` to the target until stopped."""

    def __init__(self, listener: Listener, options: ForwardOptions, sink: ev.Sink = ev.ignore):
        super().__init__(sink)
        self.listener = listener
        self.options = options
        kind = socket.SOCK_DGRAM if options.target_datagrams else socket.SOCK_STREAM
        self.dialer = TargetDialer(options, kind)
        self.target_text = str(options.target)
        self.acceptor = Acceptor(listener, self.selector, ACCEPT, sink)
        self.pairs: dict[int, _Pair] = {}
        self.connections = 0
        self.sent = 0  # to clients, over pairs that ended
        self.received = 0  # from clients, over pairs that ended
        self.splice = (
            not options.emit_data
            and not options.faults.active
            and not options.target_datagrams
            and hasattr(os, "splice")
        )
        self._buffer = bytearray(CHUNK)
        self._view = memoryview(self._buffer)
        idle = options.idle_timeout
        if idle is not None:
            self.timers.at(time.monotonic() + min(idle / 4, 1.0), self._sweep_idle)
        self._closed = False

    def serve(self) -> None:
        """Relay until interrupted; every socket is closed on the way out."""
        listener = self.listener.sock
        listener.setblocking(False)
        try:
            self.run()
        finally:
            self.close()

    def wait_until(self) -> float | None:
        due = self.timers.next_due()
        paused = self.acceptor.paused_until
        if paused is not None:
            due = paused if due is None else min(due, paused)
        return due

    def ready(self, data: Any, mask: int) -> None:
        if data is ACCEPT:
            self.acceptor.accept(time.monotonic(), self._accepted)
            return
        end: _End = data
        pair = end.pair
        if pair.closed:  # closed by an earlier event of the same wake-up
            return
        if mask & _WRITE:
            if end.connecting:
                self._connect_done(pair, end)
            else:
                self._flush(end.inflow)
        if mask & _READ and not pair.closed:
            self._read(end.outflow)

    def tick(self, now: float) -> None:
        self.acceptor.tick(now)

    # -- clients and targets ------------------------------------------------
    def _accepted(self, sock: socket.socket, addr: object) -> None:
        peer = sockaddr_text(addr)
        reason = self.options.access.refusal(addr[0] if isinstance(addr, tuple) else None)
        limit = self.options.max_clients
        if reason is None and limit is not None and len(self.pairs) >= limit:
            reason = f"--max-clients {limit} reached"
        if reason is not None:
            close_quietly(sock)
            self.sink(ev.Rejected(peer, reason))
            return
        sock.setblocking(False)
        self.options.socket_options.apply(sock)
        self.connections += 1
        pair = _Pair(self.connections, peer, sock, time.monotonic())
        self.pairs[pair.conn] = pair
        local = self.listener.address if self.listener.path is not None else sockaddr_text(sock.getsockname())
        self.sink(ev.Connected(pair.conn, peer, local, True))
        pair.candidates = list(self.dialer.candidates)
        self._dial(pair)

    def _dial(self, pair: _Pair, last_error: str | None = None) -> None:
        """Connect to the next address of the target; with none left, give up on the client."""
        if not pair.candidates:
            self._target_failed(pair, last_error or "no address")
            return
        family, sockaddr = pair.candidates.pop(0)
        try:
            sock = self.dialer.open(family, self.dialer.kind)
        except BindError as exc:
            self._target_failed(pair, str(exc))
            return
        code = sock.connect_ex(sockaddr)
        target = _End(sock, pair, "target")
        pair.target = target
        if code in (0, errno.EINPROGRESS):
            target.connecting = True
            self._watch(target, _WRITE)
            deadline = time.monotonic() + self.options.connect_timeout
            self.timers.at(deadline, lambda: self._connect_timed_out(pair, target))
            return
        close_quietly(sock)
        pair.target = None
        self._dial(pair, _connect_failure(code))

    def _connect_timed_out(self, pair: _Pair, target: _End) -> None:
        if pair.closed or pair.target is not target or not target.connecting:
            return
        self._unwatch(target)
        close_quietly(target.sock)
        pair.target = None
        self._dial(pair, f"timed out after {format_duration(self.options.connect_timeout)}")

    def _connect_done(self, pair: _Pair, target: _End) -> None:
        code = target.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._unwatch(target)
            close_quietly(target.sock)
            pair.target = None
            self._dial(pair, _connect_failure(code))
            return
        target.connecting = False
        up = _Flow(pair, pair.client, target, UPSTREAM)
        down = _Flow(pair, target, pair.client, DOWNSTREAM)
        pair.up, pair.down = up, down
        if self.options.target_datagrams:
            up.framer = LineDatagrams()
        faults = self.options.faults
        for flow in (up, down):
            flow_faults = faults.for_direction(flow.direction)
            if flow_faults.shapes_bytes:
                flow.shaper = Shaper(flow_faults, faults.rng(pair.conn, flow.direction))
                if flow_faults.chunk and flow.dst.sock.family != socket.AF_UNIX:
                    flow.dst.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a segment per write
        self.sink(ev.Notice(f"#{pair.conn} connected to {self.target_text}"))
        self._update(pair.client)
        self._update(target)

    def _target_failed(self, pair: _Pair, detail: str) -> None:
        self.sink(ev.Notice(f"#{pair.conn} {pair.peer}: cannot connect to {self.target_text}: {detail}", warning=True))
        self._close_pair(pair, f"target: {detail}")

    # -- moving bytes ---------------------------------------------------------
    def _read(self, flow: _Flow) -> None:
        if not flow.may_read():
            return
        if self.splice:
            self._splice_in(flow)
            return
        try:
            count = flow.src.sock.recv_into(self._buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            self._failed(flow.pair, flow.src, exc)
            return
        now = time.monotonic()
        flow.pair.last_activity = now
        if not count:
            if flow.src.sock.type != socket.SOCK_DGRAM:  # an empty datagram is not an end
                self._end_of_stream(flow)
            return
        flow.read += count
        data = self._view[:count]
        if self.options.emit_data:
            pair = flow.pair
            self.sink(ev.Data(pair.conn, pair.peer, flow.direction, bytes(data)))
        if flow.framer is not None:
            self._queue_now(flow, flow.framer.feed(bytes(data)))
            return
        if flow.shaper is not None:
            for segment in flow.shaper.schedule(bytes(data), now):
                flow.queue.append([segment.due, memoryview(segment.data), segment.end])
                flow.queued += len(segment.data)
            self._flush(flow)
            return
        try:
            sent = flow.dst.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._failed(flow.pair, flow.dst, exc)
            return
        flow.written += sent
        if sent < count:
            rest = memoryview(bytes(data[sent:]))
            flow.queue.append([0.0, rest, None])
            flow.queued += len(rest)
            flow.blocked = True
            self._update(flow.dst)
            self._update(flow.src)

    def _splice_in(self, flow: _Flow) -> None:
        if flow.pipe is None:
            flow.pipe = os.pipe()
        try:
            count = os.splice(flow.src.fd, flow.pipe[1], SPLICE_CHUNK, flags=SPLICE_FLAGS)
        except BlockingIOError:
            return
        except OSError as exc:
            self._failed(flow.pair, flow.src, exc)
            return
        flow.pair.last_activity = time.monotonic()
        if not count:
            self._end_of_stream(flow)
            return
        if flow.read < WIDEN_AFTER <= flow.read + count:
            widen_pipe(flow.pipe[1])
        flow.read += count
        flow.in_pipe += count
        self._flush(flow)

    def _flush(self, flow: _Flow) -> None:
        """Write what the direction holds, as far as the destination takes it (and it is due)."""
        pair = flow.pair
        was_blocked = flow.blocked
        try:
            finished = self._flush_pipe(flow) if flow.pipe is not None else self._flush_queue(flow)
        except OSError as exc:
            self._failed(pair, flow.dst, exc)
            return
        if pair.closed:
            return
        if finished and flow.eof and not flow.shut:
            self._shut_down(flow)
            if pair.closed:
                return
        if flow.blocked != was_blocked or finished:
            self._update(flow.dst)
            self._update(flow.src)

    def _flush_pipe(self, flow: _Flow) -> bool:
        assert flow.pipe is not None
        while flow.in_pipe:
            try:
                moved = os.splice(flow.pipe[0], flow.dst.fd, flow.in_pipe, flags=SPLICE_FLAGS)
            except BlockingIOError:
                flow.blocked = True
                return False
            flow.in_pipe -= moved
            flow.written += moved
        flow.blocked = False
        return True

    def _flush_queue(self, flow: _Flow) -> bool:
        queue, sock = flow.queue, flow.dst.sock
        now = time.monotonic()
        while queue:
            head = queue[0]
            due, data, end = head
            if due > now:
                self._wake_flow_at(flow, due)
                flow.blocked = False
                return False
            if data:
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    flow.blocked = True
                    return False
                flow.written += sent
                flow.queued -= sent
                if sent < len(data):
                    head[1] = data[sent:]
                    continue
            queue.popleft()
            if end is not None:
                self._end_by_fault(flow, end)
                return False
        flow.blocked = False
        return True

    def _wake_flow_at(self, flow: _Flow, due: float) -> None:
        if flow.timer_due is not None and flow.timer_due <= due:
            return
        flow.timer_due = due

        def wake() -> None:
            if flow.timer_due == due:
                flow.timer_due = None
            if not flow.pair.closed:
                self._flush(flow)

        self.timers.at(due, wake)

    def _queue_now(self, flow: _Flow, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            flow.queue.append([0.0, memoryview(datagram), None])
            flow.queued += len(datagram)
        self._flush(flow)

    def _end_of_stream(self, flow: _Flow) -> None:
        flow.eof = True
        if flow.framer is not None:
            flow.queue.extend([0.0, memoryview(datagram), None] for datagram in flow.framer.close())
        self._flush(flow)
        if not flow.pair.closed:
            self._update(flow.src)

    def _shut_down(self, flow: _Flow) -> None:
        """Everything before the EOF is written: pass the EOF on (half-close)."""
        flow.shut = True
        try:
            flow.dst.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the destination has gone; its own read reports how
        pair = flow.pair
        if flow.framer is not None:  # a UDP target never ends: replies come until it falls quiet
            self._close_when_quiet(pair)
        elif all(f.shut for f in pair.flows()):
            first = pair.up if pair.down is flow else pair.down
            assert first is not None
            self._close_pair(pair, f"closed by {first.src.role}" if first.eof else "closed")

    def _close_when_quiet(self, pair: _Pair) -> None:
        quiet = self.options.idle_timeout or REPLY_QUIET
        due = pair.last_activity + quiet
        if time.monotonic() >= due:
            self._close_pair(pair, "closed by client")
        elif not pair.closed:
            self.timers.at(due, lambda: self._close_when_quiet(pair))

    def _end_by_fault(self, flow: _Flow, end: str) -> None:
        pair = flow.pair
        limit = "--reset-after" if end == RESET else "--close-after"
        reason = f"{limit} reached ({flow.direction})"
        if end == CLOSE:
            for side in (pair.client, pair.target):
                if side is not None:
                    _close_gracefully(side.sock)
            self._close_pair(pair, reason)
            return
        # A reset discards what the kernel still holds: wait until the peer has the bytes.
        if _unacknowledged(flow.dst.sock):
            self.timers.at(time.monotonic() + 0.001, lambda: self._end_by_fault(flow, end) if not pair.closed else None)
            self._unwatch(flow.src)
            return
        self._close_pair(pair, reason, reset=True)

    def _failed(self, pair: _Pair, end: _End, exc: OSError) -> None:
        """A socket error on one side: the other side learns of it the same way."""
        reset = exc.errno in (errno.ECONNRESET, errno.EPIPE)
        self._close_pair(pair, f"{end.role}: {describe(exc)}", reset=reset)

    # -- the selector -----------------------------------------------------------
    def _update(self, end: _End) -> None:
        if end.connecting:
            return
        mask = _READ if end.outflow.may_read() else 0
        if end.inflow.blocked:
            mask |= _WRITE
        self._watch(end, mask)

    def _watch(self, end: _End, mask: int) -> None:
        if mask == end.mask:
            return
        if not mask:
            self.selector.unregister(end.sock)
        elif not end.mask:
            self.selector.register(end.sock, mask, end)
        else:
            self.selector.modify(end.sock, mask, end)
        end.mask = mask

    def _unwatch(self, end: _End) -> None:
        self._watch(end, 0)

    # -- ending --------------------------------------------------------------------
    def _close_pair(self, pair: _Pair, reason: str, *, reset: bool = False) -> None:
        if pair.closed:
            return
        pair.closed = True
        for end in (pair.client, pair.target):
            if end is None:
                continue
            if not self._closed:  # when stopping, a signal may have cut a selector call short: leave it
                self._unwatch(end)
            if reset:
                _reset_on_close(end.sock)
            close_quietly(end.sock)
        for flow in pair.flows():
            flow.close_pipe()
        self.pairs.pop(pair.conn, None)
        sent = pair.down.written if pair.down is not None else 0
        received = pair.up.read if pair.up is not None else 0
        self.sent += sent
        self.received += received
        self.sink(ev.Closed(pair.conn, pair.peer, reason, sent, received, time.monotonic() - pair.started))
        self.acceptor.client_left()

    def _sweep_idle(self) -> None:
        idle = self.options.idle_timeout
        assert idle is not None
        now = time.monotonic()
        for pair in [p for p in self.pairs.values() if now - p.last_activity >= idle]:
            self._close_pair(pair, "idle timeout")
        self.timers.at(now + min(idle / 4, 1.0), self._sweep_idle)

    def totals(self) -> ev.Stats:
        live = [pair for pair in self.pairs.values()]
        sent = self.sent + sum(p.down.written for p in live if p.down is not None)
        received = self.received + sum(p.up.read for p in live if p.up is not None)
        return ev.Stats(sent, received, time.monotonic() - self.started, self.connections)

    def close(self) -> None:
        """Close every pair and the listener (idempotent); report the totals."""
        if self._closed:
            return
        self._closed = True
        try:
            for pair in list(self.pairs.values()):
                self._close_pair(pair, "relay stopped")
        finally:  # even if reporting failed (stdout gone): nothing left open
            for pair in self.pairs.values():
                for end in (pair.client, pair.target):
                    if end is not None:
                        close_quietly(end.sock)
                for flow in pair.flows():
                    flow.close_pipe()
            self.listener.close()
            self.selector.close()
        self.sink(self.totals())


def open_listener(endpoint: Endpoint, family: int, *, datagrams: bool) -> Listener:
    """forward's listening socket: TCP (or unix stream) with a deep accept queue, or UDP."""
    if datagrams:  # no SO_REUSEADDR on UDP: another process could bind the same port
        return listen(endpoint, family=family, kind=socket.SOCK_DGRAM, reuse_addr=False)
    return listen(endpoint, family=family, backlog=BACKLOG)


def _connect_failure(code: int) -> str:
    if code == errno.ECONNREFUSED:
        return "connection refused"
    if code == errno.EAGAIN:
        return "its accept queue is full"
    return describe(OSError(code, os.strerror(code)))


def _reset_on_close(sock: socket.socket) -> None:
    """Make close() send a reset (RST) rather than a FIN."""
    if sock.family == socket.AF_UNIX:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _close_gracefully(sock: socket.socket) -> None:
    """Send a FIN even if the peer sent more than we read (close would send a reset)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(CHUNK):
            pass
    except OSError:
        pass


def _unacknowledged(sock: socket.socket) -> int:
    if sock.family == socket.AF_UNIX:
        return 0
    try:
        import fcntl

        (count,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0"))
        return int(count)
    except OSError:
        return 0


__all__ = ["ForwardOptions", "Forwarder", "Loop", "TargetDialer", "Timers", "open_listener"]
