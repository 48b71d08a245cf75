"""forward's engine for datagrams, on the loop (net/loop.py): `--udp` (UDP ↔ UDP)
and `--udp-to-tcp`.

Each client address that sends to the listening UDP socket gets a session:
its own socket to the target (a connected UDP socket, or a TCP connection
that is a loop `Connection`), so the target's replies go back to that client
and to no one else. A session ends after `idle_timeout` without traffic
either way (or, towards TCP, when the target closes).

Framing between datagrams and a stream (socktool.framing): a datagram
becomes one write to the stream, its bytes unchanged; the stream is cut into
datagrams at line ends (one line, without its line end, is one datagram).
UDP may drop: a datagram that finds no room (a full socket buffer, a TCP
target that does not read) is dropped, and the first such drop in a session
is reported.
"""

from __future__ import annotations

import errno
import functools
import socket
import time
from typing import Any

from socktool.frames import FrameTooLarge
from socktool.framing import FramedDatagrams, LineDatagrams, datagrams_to_stream, stream_to_datagrams
from socktool.net import events as ev
from socktool.net.address import sockaddr_text
from socktool.net.errors import describe
from socktool.net.faults import Shaper
from socktool.net.forward import ForwardOptions, TargetDialer
from socktool.net.loop import Connection, Handler, Loop, SocketTransport, Timer
from socktool.net.sockets import BoundSocket, close_quietly
from socktool.values import format_duration

DATAGRAM_BATCH = 64  # datagrams per wake-up, so one busy client cannot starve the rest
BUFFER = 65536


class _Session:
    __slots__ = (
        "addr",
        "closed",
        "conn",
        "datagrams_in",
        "datagrams_out",
        "down",
        "down_shaper",
        "framer",
        "last_activity",
        "peer",
        "sock",
        "started",
        "stream",
        "timer",
        "up",
        "up_shaper",
        "waiting",
        "warned",
    )

    def __init__(self, addr: Any, conn: int, peer: str, sock: socket.socket, now: float):
        self.addr = addr
        self.conn = conn
        self.peer = peer
        self.sock = sock  # towards the target (UDP, or TCP until connected)
        self.stream: Connection | None = None  # the TCP target once connected (--udp-to-tcp)
        self.started = self.last_activity = now
        self.up = 0  # bytes from the client
        self.down = 0  # bytes to the client
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.waiting: list[bytes] = []  # datagrams for a TCP target still connecting
        self.framer: LineDatagrams | FramedDatagrams | None = None
        self.up_shaper: Shaper | None = None
        self.down_shaper: Shaper | None = None
        self.timer: Timer | None = None  # the connect timeout
        self.closed = False
        self.warned = False


class _TargetStream(Handler):
    """The handler of a session's TCP connection: each line back is a datagram to the client."""

    __slots__ = ("forwarder", "session")

    def __init__(self, forwarder: DatagramForwarder, session: _Session):
        self.forwarder = forwarder
        self.session = session

    def received(self, conn: Connection, data: memoryview) -> None:
        session = self.session
        session.last_activity = time.monotonic()
        assert session.framer is not None
        try:
            datagrams = session.framer.feed(bytes(data))
        except FrameTooLarge as exc:
            self.forwarder.sink(ev.Notice(f"#{session.conn}: --frame: {exc}; no datagram carries it", warning=True))
            self.forwarder._close(session, f"target: {exc}")
            return
        for datagram in datagrams:
            self.forwarder._reply(session, datagram)

    def eof(self, conn: Connection) -> None:
        session = self.session
        assert session.framer is not None
        for datagram in session.framer.close():
            self.forwarder._reply(session, datagram)
        self.forwarder._close(session, "closed by target")

    def closed(self, conn: Connection, reason: str) -> None:
        self.forwarder._close(self.session, f"target: {reason}")


class DatagramForwarder:
    """Relays each client address of a UDP listener to the target, a session each."""

    def __init__(self, listener: BoundSocket, options: ForwardOptions, sink: ev.Sink = ev.ignore):
        self.listener = listener
        self.options = options
        self.sink = sink
        self.loop = Loop(sink)
        self.to_stream = to_stream = not options.target_datagrams  # --udp-to-tcp
        self.encode = datagrams_to_stream(options.framing) if to_stream else None  # --frame: a datagram, framed
        self.dialer = TargetDialer(options, socket.SOCK_STREAM if to_stream else socket.SOCK_DGRAM)
        self.target_text = str(options.target)
        self.sessions: dict[Any, _Session] = {}
        self.connections = 0
        self.sent = self.received = 0  # of sessions that ended
        self.datagrams_in = self.datagrams_out = 0
        self._rejected: set[Any] = set()
        self._buffer = bytearray(BUFFER)
        self._view = memoryview(self._buffer)
        self._started = time.monotonic()
        self._closed = False
        listener.sock.setblocking(False)
        self.loop.watch(listener.sock.fileno(), self._from_clients)
        idle = options.idle_timeout
        assert idle is not None, "datagram sessions always end after some idle time"
        self.loop.call_later(min(idle / 4, 1.0), self._sweep_idle)

    def serve(self) -> None:
        try:
            self.sink(ev.Listening(self.listener.address, "udp"))
            mode = " (--udp-to-tcp)" if self.to_stream else " (--udp)"
            self.sink(ev.Notice(f"forwarding to {self.target_text}{mode}"))
            self.loop.run()
        finally:
            self.close()

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
            if shaper is None:
                self._to_target(session, data)
            elif not shaper.drops():
                for segment in shaper.schedule(data, now):
                    delay = max(0.0, segment.due - time.monotonic())
                    self.loop.call_later(delay, functools.partial(self._to_target, session, segment.data))

    def _open(self, addr: Any) -> _Session | None:
        peer = sockaddr_text(addr)
        reason = self.options.access.admission(addr, len(self.sessions), self.options.max_clients)
        if reason is not None:
            if addr not in self._rejected and len(self._rejected) < 4096:  # say it once per client
                self._rejected.add(addr)
                self.sink(ev.Rejected(peer, reason))
            return None
        family, sockaddr = self.dialer.candidates[0]
        try:
            sock = self.dialer.open(family)
        except OSError as exc:
            self.sink(ev.Notice(f"{peer}: {exc}", warning=True))
            return None
        self.connections += 1
        session = _Session(addr, self.connections, peer, sock, time.monotonic())
        self.sessions[addr] = session
        self.sink(ev.Connected(session.conn, peer, self.listener.address, True))
        faults = self.options.faults
        if faults.upstream.active:
            session.up_shaper = Shaper(faults.upstream, faults.rng(session.conn, ev.UPSTREAM))
        if faults.downstream.active:
            session.down_shaper = Shaper(faults.downstream, faults.rng(session.conn, ev.DOWNSTREAM))
        code = sock.connect_ex(sockaddr)
        if not self.to_stream:
            self.loop.watch(sock.fileno(), functools.partial(self._from_target, session))
            return session
        session.framer = stream_to_datagrams(self.options.framing, self.options.max_frame)
        if code not in (0, errno.EINPROGRESS):
            self._target_failed(session, describe(OSError(code, errno.errorcode.get(code, str(code)))))
            return None
        self.loop.watch(sock.fileno(), functools.partial(self._connect_done, session), write=True)
        session.timer = self.loop.call_later(self.options.connect_timeout, lambda: self._connect_timed_out(session))
        return session

    def _to_target(self, session: _Session, data: bytes) -> None:
        if session.closed:
            return
        if self.encode is not None:
            try:
                data = self.encode(data)
            except ValueError as exc:
                self._dropped(session, f"--frame: {exc}")
                return
        stream = session.stream
        if self.to_stream and stream is None:  # still connecting
            self._hold(session, data)
        elif stream is not None:
            if stream.writable:
                stream.write(data)
            else:
                self._dropped(session, "the target is not reading")
        else:
            try:
                session.sock.send(data)
            except BlockingIOError:
                self._dropped(session, "no room towards the target")
            except OSError as exc:
                self._target_failed(session, describe(exc))

    def _hold(self, session: _Session, data: bytes) -> None:
        if sum(map(len, session.waiting)) + len(data) > BUFFER * 4:
            self._dropped(session, "the target is still connecting")
        else:
            session.waiting.append(data)

    def _dropped(self, session: _Session, why: str) -> None:
        if not session.warned:
            session.warned = True
            self.sink(ev.Notice(f"#{session.conn}: {why}; dropping datagrams", warning=True))

    # -- target → client -----------------------------------------------------------
    def _from_target(self, session: _Session) -> None:
        sock = session.sock
        for _ in range(DATAGRAM_BATCH):
            if session.closed:
                return
            try:
                size = sock.recv_into(self._buffer)
            except BlockingIOError:
                return
            except OSError as exc:
                self._target_failed(session, describe(exc))
                return
            session.last_activity = time.monotonic()
            self._reply(session, bytes(self._view[:size]))

    def _reply(self, session: _Session, data: bytes) -> None:
        if self.options.emit_data:
            self.sink(ev.Data(session.conn, session.peer, ev.DOWNSTREAM, data))
        shaper = session.down_shaper
        if shaper is None:
            self._send_to_client(session, data)
        elif not shaper.drops():
            for segment in shaper.schedule(data, time.monotonic()):
                delay = max(0.0, segment.due - time.monotonic())
                self.loop.call_later(delay, functools.partial(self._send_to_client, session, segment.data))

    def _send_to_client(self, session: _Session, data: bytes) -> None:
        try:
            self.listener.sock.sendto(data, session.addr)
        except OSError:
            return  # no room, or the client's port is gone: a datagram may be lost
        session.down += len(data)
        session.datagrams_out += 1

    # -- connecting (towards TCP) ------------------------------------------------
    def _connect_done(self, session: _Session) -> None:
        sock = session.sock
        self.loop.unwatch(sock.fileno())
        if session.timer is not None:
            session.timer.cancel()
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._target_failed(session, describe(OSError(code, errno.errorcode.get(code, str(code)))))
            return
        self.sink(ev.Notice(f"#{session.conn} connected to {self.target_text}"))
        self.options.socket_options.apply(sock)
        stream = Connection(
            self.loop, SocketTransport(sock), _TargetStream(self, session), peer=self.target_text, inbound=False
        )
        session.stream = self.loop.add(stream)
        waiting, session.waiting = session.waiting, []
        for data in waiting:
            stream.write(data)

    def _connect_timed_out(self, session: _Session) -> None:
        if not session.closed and session.stream is None:
            self.loop.unwatch(session.sock.fileno())
            self._target_failed(session, f"timed out after {format_duration(self.options.connect_timeout)}")

    def _target_failed(self, session: _Session, detail: str) -> None:
        self.sink(ev.Notice(f"#{session.conn} {session.peer}: {self.target_text}: {detail}", warning=True))
        self._close(session, f"target: {detail}")

    # -- the end ---------------------------------------------------------------------
    def _close(self, session: _Session, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        if session.timer is not None:
            session.timer.cancel()
        if session.stream is not None:
            session.stream.close(reason)  # its handler's `closed` finds the session closed
        else:
            if not self._closed:  # when stopping, a signal may have cut a selector call short: leave it
                self.loop.unwatch(session.sock.fileno())
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
        self.loop.call_later(min(idle / 4, 1.0), self._sweep_idle)

    def totals(self) -> ev.Stats:
        live = list(self.sessions.values())
        return ev.Stats(
            self.sent + sum(s.down for s in live),
            self.received + sum(s.up for s in live),
            time.monotonic() - self._started,
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
            self.loop.close()
            self.listener.close()
        self.sink(self.totals())


__all__ = ["DatagramForwarder"]
