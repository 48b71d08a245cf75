"""The loop: one thread, one selector, non-blocking sockets, every multi-connection mode.

The model, for whoever builds on it (tcp-listen -k / --broker / --exec, echo,
time-server, forward, the console, the ui):

- A `Loop` owns a selector and runs in one thread (`run()`). Everything it
  owns (connections, acceptors, timers, watched descriptors) is touched only
  from that thread, so none of it takes a lock.
- Other threads drive it through its thread-safe commands, which go on a
  queue and wake the loop with a byte on a pipe: `send(conn_id, data)`,
  `kick(conn_id)`, `pause_accepting()`, `resume_accepting()`, `stop()`, and
  `call(fn)` for anything else (fn then runs in the loop's thread).
- A `Connection` is one stream socket with its counters, a bounded output
  buffer and a `Handler`: what the bytes mean (relay to stdout, echo,
  daytime, broker, exec, forward pair) is the handler's business; moving
  them, counting them, timing out and closing is the connection's.
- Backpressure: `conn.write(data)` sends what the socket takes now and keeps
  the rest; once more than HIGH_WATER bytes wait, `conn.writable` is False
  and a producer stops (pauses its source) until the handler's `drained`
  runs. `pause_reading()` / `resume_reading()` stop and restart reading
  from a connection; a connection that reads nothing costs nothing.
- The bytes go through `conn.transport` (`recv_into`, `send`,
  `shutdown_write`, `close`): a plain non-blocking socket, or TLS
  (net/tlsloop.py: ssl.SSLObject + MemoryBIO) without the handlers knowing.
  A transport may hold bytes of its own (`pending`: TLS records the socket
  did not take yet; `flush()` sends them) and may not take any (`ready`
  False: a TLS handshake under way); the connection watches for writability
  while either its output can go or the transport has its own to send.
- Two plain-socket connections with nothing to look at their bytes can be
  joined by a `SplicePair`: each one's bytes go to the other through a pipe
  of that direction's own (socket → pipe → socket by splice), never through
  Python; EOF is carried on as a half-close, backpressure is the pipe's and
  EAGAIN's, and the pair's owner hears once when both ways ended or one
  failed. The connections keep their counters, idle timers and `close`.
  Once a direction has moved BULK_AFTER bytes, a pair (up to BULK_THREADS
  of them) moves both ways in two threads of its own with blocking splices,
  which keep a bulk stream's pages warm for its peers; see SplicePair.
- Other descriptors (stdin, a child's pipes, a UDP socket) are watched with
  `watch(fd, callback, write=False)`; timers are `call_later(delay, fn)`.
- Accepting: `Acceptor` takes clients off a listener (a batch per wake-up);
  out of descriptors it warns once, stops watching the listener and tries
  again when a connection closes or after RETRY_PAUSED (the one
  out-of-descriptors policy of every server).
- Signals: in the main thread the loop watches interrupts.wakeup_fd() too,
  so Ctrl-C and SIGTERM raise out of `run()` at once; `close()` then closes
  every connection (reporting each) and listener.
- A handler's exception (stdout gone, a bad --hex-input on stdin) ends
  `run()`; a socket's error ends only its connection.
"""

from __future__ import annotations

import collections
import errno
import heapq
import itertools
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.errors import NetworkError, OutputClosed, describe
from socktool.net.fdio import widen_pipe
from socktool.net.sockets import close_quietly

READ_CHUNK = 256 * 1024  # one recv per readiness event, into the loop's one buffer
SPLICE_CHUNK = 1024 * 1024  # one splice per readiness event (Connection.splice_to); at most a pipeful
PIPE_DEFAULT = 64 * 1024  # a new pipe's size (Linux)
PIPE_BULK = 1024 * 1024  # SplicePair: a bulk direction's pipe (the default pipe-max-size)
BULK_AFTER = 1024 * 1024  # ... once it moved this much
SPLICE_ROUNDS = 8  # SplicePair: pipefuls per wake-up while both ends take them
BULK_THREADS = 4  # SplicePair: pairs at once (in the process) whose bulk moves in threads of its own
# ... the longest a thread's blocking splice waits without progress before it looks whether its pair ended,
THREAD_WAKE = 0.25
# ... and the most one of its writes moves (a peer that reads slowly but steadily never times it out)
THREAD_WRITE = 64 * 1024
BULK_LOWAT = 256 * 1024  # a threaded TCP read in bulk wakes once this much waits (SO_RCVLOWAT) ...
BULK_WAIT = 0.002  # ... or this long after it started waiting (the tail of a burst; the kernel rounds up to its tick)
BULK_AGAIN = 64 * 1024  # a quiet direction whose read returns this much is in bulk again
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_BLOCKING_SPLICE = getattr(os, "SPLICE_F_MOVE", 1)
HIGH_WATER = 1024 * 1024  # bytes waiting in a connection's output before `writable` is False
LOW_WATER = 256 * 1024  # ... and the level under which `drained` runs again
# Accepting: how many per wake-up (a flood of clients cannot starve the
# others), how long to wait before trying again when out of descriptors.
ACCEPT_BATCH = 128
RETRY_PAUSED = 1.0
# The kernel caps this at net.core.somaxconn; a thousand clients connecting
# at once must not have their SYNs dropped (a one-second retry each).
BACKLOG = 4096
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() failures that concern only the connection being accepted (it left already).
CLIENT_GONE = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.EINTR,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
    }
)

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class Handler:
    """What a connection does with its bytes. Every method runs in the loop's thread.

    `received` gets a view of the loop's read buffer, valid during the call
    only: copy (`bytes(data)`) what you keep.
    """

    def connected(self, conn: Connection) -> None:
        """The connection is registered; write a greeting, start timers."""

    def received(self, conn: Connection, data: memoryview) -> None:
        """Bytes from the peer."""

    def eof(self, conn: Connection) -> None:
        """The peer will send nothing more. Default: close once the output is sent."""
        conn.close_when_sent("closed by peer")

    def output_blocked(self, conn: Connection) -> None:
        """With `conn.splice_to` set: the pipe is full. Pause reading until it has room."""

    def drained(self, conn: Connection) -> None:
        """What waited in the output buffer is down to LOW_WATER or less (`conn.buffered`
        says how much is left; 0 when all is sent): a paused producer may go on."""

    def closed(self, conn: Connection, reason: str) -> None:
        """The socket is closed; `reason` says why."""


class Transport(Protocol):
    """The byte path of a connection: a plain socket, or TLS over one."""

    @property
    def pending(self) -> int: ...  # bytes of its own still to send (0 for a plain socket)
    @property
    def ready(self) -> bool: ...  # takes data to send (False during a TLS handshake)
    @property
    def ended(self) -> bool: ...  # the next recv_into is the end (0) though the socket may not say so
    def fileno(self) -> int: ...
    def recv_into(self, buffer: bytearray | memoryview) -> int: ...
    def send(self, data: bytes | memoryview) -> int: ...
    def flush(self) -> None: ...  # send `pending`; BlockingIOError while some is left
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class SocketTransport:
    """A non-blocking stream socket as it is."""

    __slots__ = ("sock",)
    pending = 0
    ready = True
    ended = False

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.sock = sock

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_into(self, buffer: bytearray | memoryview) -> int:
        return self.sock.recv_into(buffer)

    def send(self, data: bytes | memoryview) -> int:
        return self.sock.send(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        close_quietly(self.sock)


class Timer:
    """A call_later handle."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Connection:
    """One stream socket in the loop: counters, a bounded output buffer, a handler."""

    __slots__ = (
        "_after_sent",
        "_drain_due",
        "_eof",
        "_events",
        "_idle",
        "_idle_timer",
        "_out",
        "_out_size",
        "_reading",
        "_write_shut",
        "closed",
        "context",
        "handler",
        "id",
        "inbound",
        "last_activity",
        "last_progress",
        "local",
        "loop",
        "peer",
        "received",
        "sent",
        "splice",
        "splice_to",
        "started",
        "transport",
    )

    def __init__(
        self,
        loop: Loop,
        transport: Transport,
        handler: Handler,
        *,
        peer: str,
        local: str = "",
        inbound: bool = True,
    ):
        self.loop = loop
        self.id = 0  # numbered by Loop.add
        self.peer = peer
        self.local = local
        self.inbound = inbound
        self.transport = transport
        self.handler = handler
        self.sent = 0
        self.received = 0
        self.started = self.last_activity = self.last_progress = time.monotonic()
        self.closed = False
        self.context: object = None  # the handler's own per-connection state
        self._out: collections.deque[memoryview] = collections.deque()
        self._out_size = 0
        self._reading = True
        self._events = 0
        self._after_sent: str | None = None  # close with this reason once the output is sent
        self._write_shut = False  # shut the write side once the output is sent
        self._drain_due = False
        self._idle_timer: Timer | None = None
        self._idle: float | None = None
        self._eof = False  # the peer sent EOF: reading never resumes
        # A pipe the bytes read go to by splice, in the kernel, instead of to `received`
        # (a plain socket only; the handler's `output_blocked` runs when the pipe is full).
        self.splice_to: int | None = None
        self.splice: SplicePair | None = None  # joined to another connection in the kernel

    # -- what handlers call --------------------------------------------------
    @property
    def buffered(self) -> int:
        """Bytes written but not yet taken by the socket."""
        return self._out_size

    @property
    def writable(self) -> bool:
        """False while more than HIGH_WATER bytes wait: stop producing until `drained`."""
        return self._out_size <= HIGH_WATER

    def write(self, data: bytes | memoryview) -> None:
        """Send `data` in order after what waits; keep what the socket does not take now."""
        if self.closed or self._write_shut or not data:
            return
        view = memoryview(data)
        if not self._out:
            try:
                sent = self.transport.send(view)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return
            if sent:
                self._count_sent(sent)
            if sent == len(view):
                return
            view = view[sent:]
        if view.obj is self.loop.buffer:  # the read buffer is reused: keep a copy
            view = memoryview(bytes(view))
        self._out.append(view)
        self._out_size += len(view)
        self._drain_due = True
        self._update()

    def shutdown_write(self) -> None:
        """Half-close once everything written is sent."""
        if self.closed or self._write_shut:
            return
        self._write_shut = True
        if not self._out:
            self._shut_now()

    def close_when_sent(self, reason: str) -> None:
        """Close once everything written is sent (at once if nothing waits)."""
        if self.closed:
            return
        if not self._out and not self.transport.pending:
            self.close(reason)
            return
        self._after_sent = reason
        self._reading = False
        self._update()

    def pause_reading(self) -> None:
        if self._reading and not self.closed:
            self._reading = False
            self._update()

    def resume_reading(self) -> None:
        if self.splice is not None:  # its pair reads it
            return
        if not self._reading and not self.closed and self._after_sent is None and not self._eof:
            self._reading = True
            self._update()
            if self.transport.ended:  # no readiness event will come for it
                self.loop.call_later(0, self._read_end)

    @property
    def reading(self) -> bool:
        return self._reading

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close after `seconds` without a byte either way (None: never)."""
        self._idle = seconds
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if seconds is not None and not self.closed:
            self._idle_timer = self.loop.call_later(seconds, self._check_idle)

    def close(self, reason: str) -> None:
        """Close now (what waits is dropped) and tell the handler why."""
        if self.closed:
            return
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self.splice is not None:
            self.splice._wake_reader(self)  # its thread sees the end before the descriptor goes
        self.loop._forget(self)
        self.transport.close()
        self._out.clear()
        self._out_size = 0
        self.handler.closed(self, reason)

    def connected_event(self) -> ev.Connected:
        return ev.Connected(self.id, self.peer, self.local, self.inbound)

    def closed_event(self, reason: str) -> ev.Closed:
        return ev.Closed(self.id, self.peer, reason, self.sent, self.received, time.monotonic() - self.started)

    # -- what the loop calls -------------------------------------------------
    def _on_ready(self, mask: int) -> None:
        if self.splice is not None:
            self.splice._ready(self, mask)
            return
        if mask & _WRITE:
            self._flush()
            if self.closed:
                return
        if mask & _READ and self._reading:
            self._read()

    def _read(self) -> None:
        loop = self.loop
        try:
            if self.splice_to is not None:
                count = os.splice(self.transport.fileno(), self.splice_to, SPLICE_CHUNK, flags=_SPLICE_FLAGS)
            else:
                count = self.transport.recv_into(loop.buffer)
        except BlockingIOError:
            if self.splice_to is not None:  # readable, yet nothing moved: the pipe is full
                self.handler.output_blocked(self)
            else:  # a transport's own traffic (a TLS handshake) may want the socket now
                self._update()
            return
        except OSError as exc:
            if self.splice_to is not None and exc.errno == errno.EPIPE:  # a socket read says ECONNRESET
                raise OutputClosed from exc
            self._fail(exc)
            return
        if not count:
            self._eof = True
            self._reading = False
            self._update()
            self.handler.eof(self)
            return
        self.received += count
        self.last_activity = loop.now
        if self.splice_to is None:
            self.handler.received(self, loop.view[:count])
            self._update()  # the transport may have its own to send, or have become ready
            self._read_end()

    def _read_end(self) -> None:
        """The transport ended with the bytes just read (TLS close_notify on an open socket): read the end."""
        if self.transport.ended and self._reading and not self.closed:
            self._read()

    def _flush(self) -> None:
        out = self._out
        if self.transport.pending:
            try:
                self.transport.flush()
            except BlockingIOError:
                self._update()
                return
            except OSError as exc:
                self._fail(exc)
                return
        while out:
            head = out[0]
            try:
                sent = self.transport.send(head)
            except BlockingIOError:
                break
            except OSError as exc:
                self._fail(exc)
                return
            self._count_sent(sent)
            self._out_size -= sent
            if sent < len(head):
                out[0] = head[sent:]
                break
            out.popleft()
        if not out and not self.transport.pending:
            if self._after_sent is not None:
                self.close(self._after_sent)
                return
            if self._write_shut:
                self._shut_now()
        self._update()
        if self._drain_due and self._out_size <= LOW_WATER:
            self._drain_due = False
            self.handler.drained(self)

    def _count_sent(self, count: int) -> None:
        self.sent += count
        self.last_activity = self.last_progress = self.loop.now

    def _shut_now(self) -> None:
        try:
            self.transport.shutdown_write()
        except OSError:
            pass  # the peer left already; reading tells
        self._update()  # TLS: close_notify may wait for room
        if self.transport.ended:  # TLS: plaintext read out ahead of our close_notify, for the handler
            self.loop.call_later(0, self._read_end)

    def _fail(self, exc: OSError) -> None:
        self.close(describe(_as_peer_reset(exc)))

    def _update(self) -> None:
        if self.closed:
            return
        if self.splice is not None:
            events = self.splice._events(self)
        else:
            transport = self.transport
            writing = (self._out and transport.ready) or transport.pending
            events = (_READ if self._reading else 0) | (_WRITE if writing else 0)
        if events != self._events:
            self.loop._set_events(self, self._events, events)
            self._events = events

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self.closed or self._idle is None:
            return
        left = self.last_activity + self._idle - time.monotonic()
        if left > 0:
            self._idle_timer = self.loop.call_later(left, self._check_idle)
        else:
            self.close("idle timeout")


def _as_peer_reset(exc: OSError) -> OSError:
    """EPIPE from a socket write means the peer reset the connection: say that."""
    if exc.errno == errno.EPIPE:
        return ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
    return exc


class _Channel:
    """One direction of a SplicePair: `src` → pipe → `dst`."""

    __slots__ = ("blocked", "capacity", "dst", "eof", "in_pipe", "pipe_r", "pipe_w", "shut", "src", "threaded")

    def __init__(self, src: Connection, dst: Connection):
        self.src = src
        self.dst = dst
        self.pipe_r = self.pipe_w = -1  # made when the source first turns readable: an idle pair holds none
        self.capacity = PIPE_DEFAULT  # what the pipe holds now
        self.in_pipe = 0  # bytes read from src, not yet written to dst
        self.eof = False  # src sent its last byte
        self.shut = False  # ... and dst's write half is shut down after it
        self.blocked = False  # dst had no room for what waits in the pipe
        self.threaded = False  # a thread of its own moves it (and owns its pipe)

    def took(self, count: int, now: float) -> bool:
        """`count` bytes went from src into the pipe; True when they carried the
        direction past BULK_AFTER (its pipe is widened then)."""
        src = self.src
        before = src.received
        src.received = before + count
        src.last_activity = now
        self.in_pipe = count
        if before < BULK_AFTER <= src.received:
            self.capacity = widen_pipe(self.pipe_w, PIPE_BULK) or self.capacity
            return True
        return False

    def gave(self, moved: int, now: float) -> None:
        """`moved` bytes went from the pipe to dst."""
        self.in_pipe -= moved
        dst = self.dst
        dst.sent += moved
        dst.last_activity = dst.last_progress = now


class SplicePair:
    """Two plain-socket connections joined in the kernel: what one receives, the other
    sends, by splice through a pipe per direction; nothing enters Python.

    Rules:
    - a direction reads its source only while its pipe is empty: a destination
      that takes nothing (EAGAIN) leaves the bytes in the pipe, the source is
      no longer read, and its sender is slowed by the kernel; the destination's
      writability restarts it;
    - a wake-up moves up to SPLICE_ROUNDS pipefuls while both ends take them
      (no trip through the selector per pipeful), then lets the others run;
    - a pipe starts at the kernel's default and is widened to PIPE_BULK once
      its direction has moved BULK_AFTER bytes (fewer wake-ups for a bulk
      transfer; a thousand idle or chatty pairs keep small pipes, within the
      user's pipe-user-pages limits);
    - EOF from one side is passed on as a half-close once the pipe is empty;
    - once a direction has moved BULK_AFTER bytes, and fewer than BULK_THREADS
      pairs of the process do so already, the pair leaves the selector: its
      sockets turn blocking and each direction gets a thread that splices
      with blocking calls (the GIL released) until its EOF, an error, or the
      pair's close. Measured on loopback, a blocking splice hands on each
      burst as it arrives and keeps a 2 GiB stream at 0.9-1.0x the rate of
      a direct connection, where the selector's wake-ups let megabytes pile
      up in the socket buffers, gone cold in cache by the time the receiver
      copies them (0.76x; bench/results/forward.md). A thread looks whether
      the pair was closed between calls: a read is woken by the close, a
      write moves at most THREAD_WRITE bytes and gives up after THREAD_WAKE
      seconds without progress (so the counters and idle timers see a slow
      reader's progress too); the loop still owns the connections, their
      counters and idle timers; a process short of descriptors or threads
      keeps the pair in the loop;
    - `on_end(conn, error)` runs once: with the side that ended first and None
      when both ways ended, or with the side that failed and its error (EPIPE
      on a write is a reset by that peer). The owner then closes the
      connections (and with them, `close()` of this pair).
    """

    __slots__ = ("_closed", "_ended", "a", "b", "channels", "on_end", "threaded")

    def __init__(self, a: Connection, b: Connection, on_end: Callable[[Connection, OSError | None], None]):
        for conn in (a, b):
            assert isinstance(conn.transport, SocketTransport) and not conn._out, "splice needs a plain, idle socket"
        self.a = a
        self.b = b
        self.on_end = on_end
        self.channels = (_Channel(a, b), _Channel(b, a))
        self._ended = False
        self._closed = False
        self.threaded = False  # both ways move in threads of their own
        for conn in (a, b):
            conn.splice = self
            conn._reading = False  # the connection's own read path stays unused
            conn._update()

    def _ready(self, conn: Connection, mask: int) -> None:
        if self.threaded:  # an event read before the pair left the selector
            return
        inward, outward = self._channels_of(conn)
        if mask & _WRITE and inward.blocked and self._flush(inward):
            self._fill(inward)  # its source may hold more than the pipe took
        if mask & _READ and not self._ended:
            self._fill(outward)
        if not self._ended:
            self.a._update()
            self.b._update()

    def _events(self, conn: Connection) -> int:
        if self._ended or self.threaded:
            return 0
        inward, outward = self._channels_of(conn)
        reading = not outward.eof and not outward.in_pipe
        return (_READ if reading else 0) | (_WRITE if inward.blocked else 0)

    def _channels_of(self, conn: Connection) -> tuple[_Channel, _Channel]:
        """(the direction that writes to `conn`, the one that reads it)."""
        to_a, from_a = self.channels[1], self.channels[0]
        return (to_a, from_a) if conn is self.a else (from_a, to_a)

    def _fill(self, ch: _Channel) -> None:
        """Read `ch.src` into the pipe and on to `ch.dst` while both take bytes."""
        if ch.eof or ch.in_pipe or self._ended or self.threaded:
            return
        if ch.pipe_w < 0:
            ch.pipe_r, ch.pipe_w = os.pipe()
        src, src_fd = ch.src, ch.src.transport.fileno()
        for _ in range(SPLICE_ROUNDS):
            try:
                count = os.splice(src_fd, ch.pipe_w, SPLICE_CHUNK, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                return
            except OSError as exc:
                self._end(src, exc)
                return
            if not count:
                ch.eof = True
                self._flush(ch)
                return
            if ch.took(count, self.loop_now) and _bulk_threads.acquire(blocking=False):
                if self._to_threads():
                    return
                _bulk_threads.release()
            if not self._flush(ch) or count < ch.capacity:
                return  # the destination is full, or the source had no more than this

    def _flush(self, ch: _Channel) -> bool:
        """Write what waits in the pipe to `ch.dst`; True once it is all out."""
        dst, dst_fd = ch.dst, ch.dst.transport.fileno()
        while ch.in_pipe:
            try:
                moved = os.splice(ch.pipe_r, dst_fd, ch.in_pipe, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                ch.blocked = True
                return False
            except OSError as exc:
                self._end(dst, exc)
                return False
            ch.gave(moved, self.loop_now)
        ch.blocked = False
        if ch.eof and not ch.shut and self._shut(ch):
            return False  # that half-close ended the pair
        return True

    def _shut(self, ch: _Channel) -> bool:
        """Pass `ch`'s EOF on as a half-close; True when that ended the pair (both ways shut)."""
        ch.shut = True
        ch.dst.shutdown_write()
        if not all(c.shut for c in self.channels):
            return False
        self._end(self.b if self.channels[0] is ch else self.a, None)  # the other way ended first
        return True

    @property
    def loop_now(self) -> float:
        return self.a.loop.now

    def _end(self, conn: Connection, error: OSError | None) -> None:
        if self._ended:
            return
        self._ended = True
        for side in (self.a, self.b):
            side._update()  # unwatched: nothing more moves
        self.on_end(conn, None if error is None else _as_peer_reset(error))

    # -- bulk: both ways in threads of their own ------------------------------
    def _to_threads(self) -> bool:
        """Leave the selector for blocking sockets and a thread per direction still open.

        False (and the pair goes on in the loop as before) when the process is
        out of descriptors or threads.
        """
        channels = [ch for ch in self.channels if not ch.shut]
        # Each thread has its own copies of the descriptors: the owner may close
        # the connections while a call still blocks, and a number closed there
        # could be reused by a new socket before the thread looks.
        ends: list[tuple[socket.socket, socket.socket]] = []
        go = threading.Event()  # the threads start moving bytes once all of them run
        started = 0
        try:
            for ch in channels:
                src = socket.socket(fileno=os.dup(ch.src.transport.fileno()))
                try:
                    ends.append((src, socket.socket(fileno=os.dup(ch.dst.transport.fileno()))))
                except OSError:
                    src.close()
                    raise
            for ch, (src, dst) in zip(channels, ends, strict=True):
                name = f"splice {ch.src.peer} -> {ch.dst.peer}"
                threading.Thread(target=self._pump, args=(ch, src, dst, go), name=name, daemon=True).start()
                started += 1
        except (OSError, RuntimeError):  # EMFILE; "can't start new thread"
            go.set()  # a thread that started sees the pair still in the loop, closes its ends, leaves
            for src, dst in ends[started:]:
                src.close()
                dst.close()
            return False
        self.threaded = True
        for ch in channels:
            ch.threaded = True
        try:
            for conn in (self.a, self.b):
                conn._update()  # unwatched
                sock = conn.transport.sock  # type: ignore[attr-defined]
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(THREAD_WAKE))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(THREAD_WAKE))
                os.set_blocking(sock.fileno(), True)
        finally:
            go.set()  # whatever happened: no thread waits forever (an error reaches them as one)
        return True

    def _pump(self, ch: _Channel, src_sock: socket.socket, dst_sock: socket.socket, go: threading.Event) -> None:
        """A direction's thread: src → pipe → dst with blocking splices, until EOF, error or close.

        A TCP source is read in bulk: a read wakes once BULK_LOWAT bytes wait,
        or BULK_WAIT after it began to wait, with what came (a wake-up per
        quarter MiB instead of per segment: about half the relay's CPU). A
        read that waited BULK_WAIT for nothing makes the direction quiet:
        woken by every byte again, until a read brings BULK_AGAIN bytes.
        """
        go.wait()
        if not self.threaded:  # the other thread could not start: the loop goes on with the pair
            src_sock.close()
            dst_sock.close()
            return
        src, dst, loop = ch.src, ch.dst, ch.src.loop
        src_fd, dst_fd = src_sock.fileno(), dst_sock.fileno()
        failed = src  # the side an OSError concerns
        error: OSError | None = None
        try:
            reading = _ThreadReading(src_sock)
            if ch.pipe_w < 0:
                ch.pipe_r, ch.pipe_w = os.pipe()
            while not self._closed:
                try:
                    if ch.in_pipe:
                        failed = dst
                        moved = os.splice(ch.pipe_r, dst_fd, min(ch.in_pipe, THREAD_WRITE), flags=_BLOCKING_SPLICE)
                        ch.gave(moved, time.monotonic())
                        continue
                    if ch.eof:
                        break
                    failed = src
                    count = os.splice(src_fd, ch.pipe_w, SPLICE_CHUNK, flags=_BLOCKING_SPLICE)
                except BlockingIOError:  # a time-out: look whether the pair was closed
                    if failed is src:
                        reading.waited_for_nothing()
                    continue
                if not count:
                    ch.eof = True
                    continue
                reading.got(count)
                ch.took(count, time.monotonic())
        except OSError as exc:
            error = exc
        finally:
            src_sock.close()
            dst_sock.close()
            for fd in (ch.pipe_r, ch.pipe_w):
                if fd >= 0:
                    os.close(fd)
            ch.pipe_r = ch.pipe_w = -1
        if error is not None:
            loop.call(lambda: self._end(failed, error))
        elif ch.eof:
            loop.call(lambda: self._pumped(ch))

    def _pumped(self, ch: _Channel) -> None:
        """In the loop: a thread moved its direction to EOF; pass the half-close on."""
        if not self._ended:
            self._shut(ch)

    def close(self) -> None:
        """Close the pipes (their bytes are dropped); the connections are the owner's. Idempotent.

        A direction's thread closes its own pipe and descriptors when it sees
        this: at once when it waits to read, after its write otherwise.
        """
        if self._closed:
            return
        self._closed = True
        self._ended = True
        if self.threaded:  # stays set: nothing of the loop's touches the pair again
            _bulk_threads.release()
            for conn in (self.a, self.b):
                self._wake_reader(conn)
        self._close_pipes()

    def _wake_reader(self, conn: Connection) -> None:
        """A threaded pair: end the blocking read of `conn`'s thread (before its socket closes)."""
        if self.threaded:
            try:  # EBADF once the connection closed its socket
                conn.transport.sock.shutdown(socket.SHUT_RD)  # type: ignore[attr-defined]
            except OSError:
                pass

    def _close_pipes(self) -> None:
        for ch in self.channels:
            if ch.threaded:  # its thread's
                continue
            for fd in (ch.pipe_r, ch.pipe_w):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:  # closed already, by a close that a signal cut short
                        pass
            ch.pipe_r = ch.pipe_w = -1
            ch.in_pipe = 0


_bulk_threads = threading.BoundedSemaphore(BULK_THREADS)


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))


class _ThreadReading:
    """How a SplicePair thread waits for its TCP source: in bulk (woken once
    BULK_LOWAT bytes wait, at most BULK_WAIT late) or at every byte."""

    __slots__ = ("bulk", "sock", "tcp")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self.bulk = False
        self._set(self.tcp)

    def waited_for_nothing(self) -> None:
        """A read timed out empty: in bulk, the direction has gone quiet."""
        if self.bulk:
            self._set(False)

    def got(self, count: int) -> None:
        if not self.bulk and self.tcp and count >= BULK_AGAIN:
            self._set(True)

    def _set(self, bulk: bool) -> None:
        if bulk or self.bulk:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, BULK_LOWAT if bulk else 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(BULK_WAIT if bulk else THREAD_WAKE))
        self.bulk = bulk


Callback = Callable[[], None]


class Loop:
    """One selector in one thread; see the module's docstring for the model."""

    def __init__(self, sink: ev.Sink = ev.ignore):
        self.sink = sink
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}
        self.buffer = bytearray(READ_CHUNK)
        self.view = memoryview(self.buffer)
        self.now = time.monotonic()
        self.acceptors: list[Acceptor] = []
        self._ids = itertools.count(1)
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_seq = itertools.count()
        self._commands: collections.deque[Callback] = collections.deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.selector.register(self._wake_read, _READ, self._run_commands)
        self._signals: int | None = None
        self._always_ready: dict[int, Callback] = {}  # regular files: epoll cannot watch them
        self._stopping = False
        self._closed = False

    # -- thread-safe commands --------------------------------------------------
    def call(self, fn: Callback) -> None:
        """Run `fn` in the loop's thread, soon. Safe from any thread."""
        self._commands.append(fn)
        wake = self._wake_write
        if wake < 0:
            return  # closed: nothing will run it
        try:
            os.write(wake, b"\0")
        except OSError:
            pass  # a full pipe is an awake loop

    def send(self, conn_id: int, data: bytes) -> None:
        """Write `data` to connection `conn_id` (ignored if it is gone)."""
        self.call(lambda: self._with(conn_id, lambda conn: conn.write(data)))

    def kick(self, conn_id: int, reason: str = "kicked") -> None:
        """Close connection `conn_id` now."""
        self.call(lambda: self._with(conn_id, lambda conn: conn.close(reason)))

    def pause_accepting(self) -> None:
        """Stop taking new clients (they wait in the kernel's queue) until `resume_accepting`."""
        self.call(self._pause_accepting)

    def resume_accepting(self) -> None:
        self.call(self._resume_accepting)

    def stop(self) -> None:
        """End `run()` after the current round. Safe from any thread."""
        self.call(self._stop)

    # -- in the loop's thread --------------------------------------------------
    def add(self, conn: Connection) -> Connection:
        """Register a new connection (numbered here) and call its handler's `connected`."""
        conn.id = next(self._ids)
        self.connections[conn.id] = conn
        conn._events = _READ
        self.selector.register(conn.transport.fileno(), _READ, conn)
        conn.handler.connected(conn)
        return conn

    def next_id(self) -> int:
        """The number the next connection will get (for a client turned away, to log it)."""
        return next(self._ids)

    def watch(self, fd: int, callback: Callback, *, write: bool = False) -> None:
        """Call `callback` whenever `fd` is readable (or writable); a regular file always is."""
        try:
            self.selector.register(fd, _WRITE if write else _READ, callback)
        except PermissionError:  # epoll refuses regular files and /dev/null: always ready
            self._always_ready[fd] = callback

    def unwatch(self, fd: int) -> None:
        if self._always_ready.pop(fd, None) is None:
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._timer_seq), timer))
        return timer

    def run(self) -> None:
        """Serve until `stop()` (or an exception: an interrupt, stdout gone)."""
        wakeup = interrupts.wakeup_fd()
        if wakeup is not None and self._signals is None:
            self.selector.register(wakeup, _READ, interrupts.drain)
            self._signals = wakeup
        select = self.selector.select
        while not self._stopping:
            ready = select(self._timeout())
            self.now = time.monotonic()
            for key, mask in ready:
                target = key.data
                if target.__class__ is Connection:
                    target._on_ready(mask)
                else:
                    target()
            if self._always_ready:
                for callback in list(self._always_ready.values()):
                    callback()
            if self._timers:
                self._run_timers()

    def close(self) -> None:
        """Close every connection (each reported by its handler) and acceptor; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for conn in list(self.connections.values()):
                conn.close("server stopped")
        finally:
            for conn in list(self.connections.values()):
                conn.transport.close()
            for acceptor in self.acceptors:
                acceptor.close()
            self.selector.close()
            wake, self._wake_write = self._wake_write, -1  # its number may be reused: never write to it again
            os.close(self._wake_read)
            os.close(wake)

    # -- inside ------------------------------------------------------------------
    def _timeout(self) -> float | None:
        if self._commands or self._always_ready:
            return 0
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        if not timers:
            return None
        return max(0.0, timers[0][0] - time.monotonic())

    def _run_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()

    def _run_commands(self) -> None:
        try:
            os.read(self._wake_read, 4096)
        except BlockingIOError:
            pass
        while self._commands:
            self._commands.popleft()()

    def _stop(self) -> None:
        self._stopping = True

    def _pause_accepting(self) -> None:
        for acceptor in self.acceptors:
            acceptor.pause()

    def _resume_accepting(self) -> None:
        for acceptor in self.acceptors:
            acceptor.resume()

    def _with(self, conn_id: int, action: Callable[[Connection], None]) -> None:
        conn = self.connections.get(conn_id)
        if conn is not None:
            action(conn)

    def _set_events(self, conn: Connection, old: int, new: int) -> None:
        fd = conn.transport.fileno()
        if not old:
            self.selector.register(fd, new, conn)
        elif not new:
            self.selector.unregister(fd)
        else:
            self.selector.modify(fd, new, conn)

    def _forget(self, conn: Connection) -> None:
        self.connections.pop(conn.id, None)
        if conn._events:
            try:
                self.selector.unregister(conn.transport.fileno())
            except (KeyError, ValueError):
                pass
            conn._events = 0
        for acceptor in self.acceptors:
            acceptor.client_left()


class Acceptor:
    """Takes clients off a non-blocking listening socket and hands each to `on_client`.

    The one accept loop of every server: a batch per wake-up; out of
    descriptors, a warning once, the listener unwatched (the waiting clients
    stay in the kernel's queue) and watched again when a connection closes
    or RETRY_PAUSED later. `pause()` / `resume()` are the controllers'.
    """

    def __init__(
        self,
        loop: Loop,
        sock: socket.socket,
        address: str,
        on_client: Callable[[socket.socket, object], None],
    ):
        self.loop = loop
        self.sock = sock
        self.address = address
        self.on_client = on_client
        self._watching = False
        self._paused = False  # by a controller
        self._retry: Timer | None = None  # out of descriptors: when to try again
        self._warned = False
        sock.setblocking(False)
        loop.acceptors.append(self)
        self._watch()

    def _watch(self) -> None:
        if not self._watching and not self._paused and self._retry is None:
            self.loop.selector.register(self.sock, _READ, self._accept)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            self.loop.selector.unregister(self.sock)
            self._watching = False

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._watching:  # on_client paused us, or closed the listener
                return
            try:
                client, addr = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._out_of_descriptors(exc)
                    return
                if exc.errno in CLIENT_GONE:
                    continue
                raise NetworkError(f"accept on {self.address} failed", describe(exc)) from exc
            self.on_client(client, addr)

    def _out_of_descriptors(self, exc: OSError) -> None:
        self._unwatch()
        if self._retry is None:
            self._retry = self.loop.call_later(RETRY_PAUSED, self._try_again)
        if not self._warned:
            self._warned = True
            self.loop.sink(
                ev.Notice(
                    f"cannot accept more clients on {self.address}: {describe(exc)}; "
                    "new clients wait until one leaves (raise 'ulimit -n' to serve more)",
                    warning=True,
                )
            )

    def _try_again(self) -> None:
        self._retry = None
        self._watch()

    def client_left(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._try_again()

    def pause(self) -> None:
        self._paused = True
        self._unwatch()

    def resume(self) -> None:
        self._paused = False
        self._watch()

    def close(self) -> None:
        """Stop accepting (the listening socket itself belongs to whoever bound it)."""
        self._paused = True
        if self._retry is not None:
            self._retry.cancel()
        try:
            self._unwatch()
        except (KeyError, ValueError, OSError):
            self._watching = False


__all__ = [
    "BACKLOG",
    "HIGH_WATER",
    "LOW_WATER",
    "Acceptor",
    "Connection",
    "Handler",
    "Loop",
    "SocketTransport",
    "SplicePair",
    "Timer",
    "Transport",
]
