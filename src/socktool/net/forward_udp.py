"""forward's engine for datagrams: `--udp` (UDP ↔ UDP) and `--udp-to-tcp`.

Each client address that sends to the listening UDP socket gets a session:
its own socket to the target (a connected UDP socket, or a TCP connection),
so the target's replies go back to that client and to no one else. A
session ends after `idle_timeout` without traffic either way (or, towards
TCP, when the target closes).

Framing between a datagram side and a stream side (here and in
`--tcp-to-udp`, which runs on the stream engine):
- a datagram becomes one write to the stream, its bytes unchanged (no line
  end is added);
- the stream is cut at line ends into datagrams: one line, without its line
  end (LF or CRLF), is one datagram; a line longer than MAX_DATAGRAM bytes
  goes as several datagrams of at most that size; at the stream's end, bytes
  after the last line end are one more datagram.
"""

from __future__ import annotations

import errno
import functools
import selectors
import socket
import time
from collections import deque
from typing import Any

from socktool.framing import LineDatagrams
from socktool.net import events as ev
from socktool.net.errors import describe
from socktool.net.faults import Shaper
from socktool.net.forward import QUEUE_LIMIT, ForwardOptions, Loop, TargetDialer
from socktool.net.loop import close_quietly
from socktool.net.tcp import Listener
from socktool.values import format_duration

DATAGRAM_BATCH = 64  # datagrams per wake-up, so one busy client cannot starve the rest
BUFFER = 65536
LISTENER = "listener"
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class _Session:
    __slots__ = (
        "addr",
        "closed",
        "conn",
        "connecting",
        "datagrams_in",
        "datagrams_out",
        "down",
        "down_shaper",
        "framer",
        "last_activity",
        "mask",
        "peer",
        "pending",
        "pending_bytes",
        "sock",
        "started",
        "up",
        "up_shaper",
        "warned",
    )

    def __init__(self, addr: Any, conn: int, peer: str, sock: socket.socket, now: float):
        self.addr = addr
        self.conn = conn
        self.peer = peer
        self.sock = sock
        self.started = self.last_activity = now
        self.up = 0  # bytes from the client
        self.down = 0  # bytes to the client
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.connecting = False
        self.pending: deque[memoryview] = deque()  # towards a TCP target: writes waiting for room
        self.pending_bytes = 0
        self.framer: LineDatagrams | None = None
        self.up_shaper: Shaper | None = None
        self.down_shaper: Shaper | None = None
        self.mask = 0
        self.closed = False
        self.warned = False


class DatagramForwarder(Loop):
    """Relays each client address of a UDP listener to the target, a session each."""

    def __init__(
        self, listener: Listener, options: ForwardOptions, sink: ev.Sink = ev.ignore, *, to_stream: bool = False
    ):
        super().__init__(sink)
        self.listener = listener
        self.options = options
        self.to_stream = to_stream
        self.kind = socket.SOCK_STREAM if to_stream else socket.SOCK_DGRAM
        self.dialer = TargetDialer(options, kind=self.kind)
        self.target_text = str(options.target)
        self.sessions: dict[Any, _Session] = {}
        self.connections = 0
        self.sent = self.received = 0  # of sessions that ended
        self.datagrams_in = self.datagrams_out = 0
        self._rejected: set[Any] = set()
        self._buffer = bytearray(BUFFER)
        self._view = memoryview(self._buffer)
        self._closed = False
        listener.sock.setblocking(False)
        self.selector.register(listener.sock, _READ, LISTENER)
        idle = options.idle_timeout
        assert idle is not None, "datagram sessions always end after some idle time"
        self.timers.at(time.monotonic() + min(idle / 4, 1.0), self._sweep_idle)

    def serve(self) -> None:
        try:
            self.run()
        finally:
            self.close()

    def ready(self, data: Any, mask: int) -> None:
        if data is LISTENER:
            self._from_clients()
            return
        session: _Session = data
        if mask & _WRITE:
            if session.connecting:
                self._connect_done(session)
            else:
                self._write_pending(session)
        if mask & _READ and not session.closed:
            self._from_target(session)

    # -- client → target -----------------------------------------------------------
    def _from_clients(self) -> None:
        sock = self.listener.sock
        for _ in range(DATAGRAM_BATCH):
            try:
                size, addr = sock.recvfrom_into(self._buffer)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error for an earlier reply to some client
            session = self.sessions.get(addr) or self._open(addr)
            if session is None:
                continue
            data = bytes(self._view[:size])
            now = time.monotonic()
            session.last_activity = now
            session.up += size
            session.datagrams_in += 1
            if self.options.emit_data:
                self.sink(ev.Data(session.conn, session.peer, ev.UPSTREAM, data))
            shaper = session.up_shaper
            if shaper is not None:
                if shaper.drops():
                    continue
                for segment in shaper.schedule(data, now):
                    self.timers.at(segment.due, functools.partial(self._to_target, session, segment.data))
            else:
                self._to_target(session, data)

    def _open(self, addr: Any) -> _Session | None:
        peer = _peer(addr)
        reason = self.options.access.refusal(addr[0] if isinstance(addr, tuple) else None)
        limit = self.options.max_clients
        if reason is None and limit is not None and len(self.sessions) >= limit:
            reason = f"--max-clients {limit} reached"
        if reason is not None:
            if addr not in self._rejected and len(self._rejected) < 4096:  # say it once per client
                self._rejected.add(addr)
                self.sink(ev.Rejected(peer, reason))
            return None
        family, sockaddr = self.dialer.candidates[0]
        try:
            sock = self.dialer.open(family, self.kind)
        except OSError as exc:
            self.sink(ev.Notice(f"{peer}: {exc}", warning=True))
            return None
        self.connections += 1
        now = time.monotonic()
        session = _Session(addr, self.connections, peer, sock, now)
        self.sessions[addr] = session
        self.sink(ev.Connected(session.conn, peer, self.listener.address, True))
        faults = self.options.faults
        for direction in (ev.UPSTREAM, ev.DOWNSTREAM):
            direction_faults = faults.for_direction(direction)
            if direction_faults.active:
                shaper = Shaper(direction_faults, faults.rng(session.conn, direction))
                if direction == ev.UPSTREAM:
                    session.up_shaper = shaper
                else:
                    session.down_shaper = shaper
        code = sock.connect_ex(sockaddr)
        if self.to_stream:
            session.framer = LineDatagrams()
            if code not in (0, errno.EINPROGRESS):
                self._target_failed(session, describe(OSError(code, errno.errorcode.get(code, str(code)))))
                return None
            session.connecting = True
            self._watch(session, _WRITE)
            timeout = self.options.connect_timeout
            self.timers.at(now + timeout, lambda: self._connect_timed_out(session))
        else:
            self._watch(session, _READ)
        return session

    def _to_target(self, session: _Session, data: bytes) -> None:
        if session.closed:
            return
        if self.to_stream:
            if session.pending_bytes + len(data) > QUEUE_LIMIT:
                if not session.warned:
                    session.warned = True
                    self.sink(
                        ev.Notice(f"#{session.conn}: the target is not reading; dropping datagrams", warning=True)
                    )
                return
            session.pending.append(memoryview(data))
            session.pending_bytes += len(data)
            if not session.connecting:
                self._write_pending(session)
            return
        try:
            session.sock.send(data)
        except BlockingIOError:
            pass  # no room: UDP may drop, and so do we
        except OSError as exc:
            self._target_failed(session, describe(exc))

    def _write_pending(self, session: _Session) -> None:
        pending, sock = session.pending, session.sock
        while pending:
            head = pending[0]
            try:
                sent = sock.send(head)
            except BlockingIOError:
                break
            except OSError as exc:
                self._close(session, f"target: {describe(exc)}")
                return
            session.pending_bytes -= sent
            if sent < len(head):
                pending[0] = head[sent:]
                continue
            pending.popleft()
        self._watch(session, _READ | (_WRITE if pending else 0))

    # -- target → client -----------------------------------------------------------
    def _from_target(self, session: _Session) -> None:
        sock = session.sock
        for _ in range(DATAGRAM_BATCH):
            try:
                size = sock.recv_into(self._buffer)
            except BlockingIOError:
                return
            except OSError as exc:
                self._target_failed(session, describe(exc))
                return
            session.last_activity = time.monotonic()
            data = bytes(self._view[:size])
            if session.framer is None:
                self._reply(session, data)
                continue
            if not size:
                for datagram in session.framer.close():
                    self._reply(session, datagram)
                self._close(session, "closed by target")
                return
            for datagram in session.framer.feed(data):
                self._reply(session, datagram)
            if session.closed:
                return

    def _reply(self, session: _Session, data: bytes) -> None:
        if self.options.emit_data:
            self.sink(ev.Data(session.conn, session.peer, ev.DOWNSTREAM, data))
        shaper = session.down_shaper
        if shaper is not None:
            if shaper.drops():
                return
            for segment in shaper.schedule(data, time.monotonic()):
                self.timers.at(segment.due, functools.partial(self._send_to_client, session, segment.data))
            return
        self._send_to_client(session, data)

    def _send_to_client(self, session: _Session, data: bytes) -> None:
        try:
            self.listener.sock.sendto(data, session.addr)
        except OSError:
            return  # no room, or the client's port is gone: a datagram may be lost
        session.down += len(data)
        session.datagrams_out += 1

    # -- connecting (towards TCP) ------------------------------------------------
    def _connect_done(self, session: _Session) -> None:
        code = session.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._target_failed(session, describe(OSError(code, errno.errorcode.get(code, str(code)))))
            return
        session.connecting = False
        self.sink(ev.Notice(f"#{session.conn} connected to {self.target_text}"))
        self._write_pending(session)

    def _connect_timed_out(self, session: _Session) -> None:
        if not session.closed and session.connecting:
            self._target_failed(session, f"timed out after {format_duration(self.options.connect_timeout)}")

    def _target_failed(self, session: _Session, detail: str) -> None:
        self.sink(ev.Notice(f"#{session.conn} {session.peer}: {self.target_text}: {detail}", warning=True))
        self._close(session, f"target: {detail}")

    # -- the selector and the end ---------------------------------------------------
    def _watch(self, session: _Session, mask: int) -> None:
        if mask == session.mask:
            return
        if not session.mask:
            self.selector.register(session.sock, mask, session)
        elif not mask:
            self.selector.unregister(session.sock)
        else:
            self.selector.modify(session.sock, mask, session)
        session.mask = mask

    def _close(self, session: _Session, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        if not self._closed:  # when stopping, a signal may have cut a selector call short: leave it
            self._watch(session, 0)
        close_quietly(session.sock)
        self.sessions.pop(session.addr, None)
        self._rejected.discard(session.addr)
        self.sent += session.down
        self.received += session.up
        self.datagrams_in += session.datagrams_in
        self.datagrams_out += session.datagrams_out
        duration = time.monotonic() - session.started
        self.sink(ev.Closed(session.conn, session.peer, reason, session.down, session.up, duration))

    def _sweep_idle(self) -> None:
        idle = self.options.idle_timeout
        assert idle is not None
        now = time.monotonic()
        for session in [s for s in self.sessions.values() if now - s.last_activity >= idle]:
            self._close(session, f"idle for {format_duration(idle)}")
        self.timers.at(now + min(idle / 4, 1.0), self._sweep_idle)

    def totals(self) -> ev.Stats:
        live = list(self.sessions.values())
        return ev.Stats(
            self.sent + sum(s.down for s in live),
            self.received + sum(s.up for s in live),
            time.monotonic() - self.started,
            self.connections,
            self.datagrams_in + sum(s.datagrams_in for s in live),
            self.datagrams_out + sum(s.datagrams_out for s in live),
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for session in list(self.sessions.values()):
                self._close(session, "relay stopped")
        finally:
            for session in self.sessions.values():
                close_quietly(session.sock)
            self.listener.close()
            self.selector.close()
        self.sink(self.totals())


def _peer(addr: Any) -> str:
    from socktool.net.address import sockaddr_text

    return sockaddr_text(addr)


__all__ = ["DatagramForwarder"]
