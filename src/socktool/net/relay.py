"""The relay: stdin → socket and socket → stdout at the same time.

Rules of the pipe (tcp-connect and tcp-listen alike):
- bytes are moved untouched unless the user asked for a translation
  (--hex-input, --crlf); the raw path uses splice/sendfile or a reused buffer;
- at the end of what we send, the write side is shut down (half-close) and
  reading goes on until the peer closes, unless `half_close` is off;
- when the peer closes, the relay ends even if stdin is still open: at once
  when stdin is a terminal, else as soon as stdin has had nothing to read
  for `linger` seconds (so a peer that only half-closed still gets a file we
  are sending, to the last byte; a peer that really closed makes the next
  send fail, which ends the relay too); with `linger` None (--keep-sending)
  only when stdin ends or a send fails;
- with `quit_after` (--quit-after, nc's -q), the relay ends that long after
  the end of what we send, whether the peer has closed or not;
- everything received before a failure has already been written out.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.errors import (
    ExpectNotMet,
    NetworkError,
    OutputClosed,
    PeerReset,
    SocktoolError,
    UsageError,
    describe,
)
from socktool.net.fdio import (
    CHUNK,
    defer_to_producer,
    is_pipe,
    room_to_write,
    send_all,
    sendfile_loop,
    splice_loop,
    widen_pipe,
    write_all,
)
from socktool.values import CrlfEncoder, HexDecoder, format_duration

EXPECT_WINDOW = 64 * 1024


class Payload(NamedTuple):
    """What we send: stdin, or fixed messages (--send), maybe translated and repeated."""

    stdin_fd: int | None = 0
    messages: tuple[bytes, ...] = ()  # already decoded and translated by the CLI
    hex_input: bool = False
    crlf: bool = False
    repeat: int = 1
    interval: float = 0.0
    # --send with placeholders ({seq}, {time}, ...): (message, its number from 1) -> the bytes, at send time
    render: Callable[[bytes, int], bytes] | None = None

    def message(self, part: bytes, seq: int) -> bytes:
        """A --send message as it goes out: filled in when it is a template."""
        return part if self.render is None or not self.messages else self.render(part, seq)

    @property
    def is_plain_stream(self) -> bool:
        """stdin sent as it is: the kernel may move it (splice/sendfile)."""
        return not self.messages and not self.hex_input and not self.crlf and self.repeat == 1

    def chunks(self) -> Iterator[bytes]:
        if self.messages or self.repeat > 1:
            body = self.messages or (b"".join(self._stdin_chunks()),)
            templated = self.render is not None and bool(self.messages)
            seq = 0
            for round_ in range(self.repeat):
                if round_ and self.interval:
                    time.sleep(self.interval)
                if not templated:  # no placeholders: the parts go out as they are
                    yield from body
                    continue
                for part in body:
                    seq += 1
                    yield self.message(part, seq)
        else:
            yield from self._stdin_chunks()

    def _stdin_chunks(self) -> Iterator[bytes]:
        if self.stdin_fd is None:
            return
        hex_decoder = HexDecoder() if self.hex_input else None
        crlf = CrlfEncoder() if self.crlf else None
        stdin = interrupts.Waiter(self.stdin_fd)
        while True:
            stdin.wait_ready()
            chunk = os.read(self.stdin_fd, CHUNK)
            if not chunk:
                break
            if hex_decoder is not None:
                chunk = hex_decoder.feed(chunk)
            if crlf is not None:
                chunk = crlf.feed(chunk)
            if chunk:
                yield chunk
        if hex_decoder is not None:
            hex_decoder.close()


class RelayOptions(NamedTuple):
    send: bool = True  # False with --recv-only: stdin is not read
    receive: bool = True  # False with --send-only: stop once the payload is sent
    half_close: bool = True  # --no-shutdown turns it off
    output_fd: int | None = 1  # raw payload goes here; None when a view draws it
    emit_data: bool = False  # Data events for a view or --json
    summarize_sent: bool = False  # with emit_data: what we send is one Moved event at the end, not Data
    idle_timeout: float | None = None
    expect: re.Pattern[bytes] | None = None
    expect_timeout: float | None = None
    linger: float | None = 0.5  # see the module rules; 0 when stdin is a terminal, None with --keep-sending
    quit_after: float | None = None  # see the module rules


class Connection:
    """One relayed socket and its counters (each written by one thread only)."""

    __slots__ = ("conn", "inbound", "last_activity", "local", "peer", "received", "sent", "sock", "started")

    def __init__(self, sock: socket.socket, conn: int, peer: str, local: str = "", inbound: bool = False):
        self.sock = sock
        self.conn = conn
        self.peer = peer
        self.local = local
        self.inbound = inbound
        self.sent = 0
        self.received = 0
        self.started = self.last_activity = time.monotonic()

    def count_sent(self, n: int) -> None:
        self.sent += n
        self.last_activity = time.monotonic()

    def count_received(self, n: int) -> None:
        self.received += n
        self.last_activity = time.monotonic()

    def connected_event(self) -> ev.Connected:
        return ev.Connected(self.conn, self.peer, self.local, self.inbound)

    def closed_event(self, reason: str) -> ev.Closed:
        return ev.Closed(self.conn, self.peer, reason, self.sent, self.received, time.monotonic() - self.started)


def wait_seconds(conn: Connection, options: RelayOptions, *deadlines: float | None) -> float | None:
    """Seconds until the idle timeout or the first of the deadlines (monotonic) comes; None when none is set."""
    now = time.monotonic()
    waits = [deadline - now for deadline in deadlines if deadline is not None]
    if options.idle_timeout is not None:
        waits.append(conn.last_activity + options.idle_timeout - now)
    return min(waits) if waits else None


class Relay:
    """Runs the two directions of one connection; `run` returns why it ended."""

    def __init__(
        self,
        conn: Connection,
        payload: Payload,
        options: RelayOptions,
        sink: ev.Sink = ev.ignore,
        output_lock: threading.Lock | None = None,
    ):
        self.conn = conn
        self.payload = payload
        self.options = options
        self.sink = sink
        self.output_lock = output_lock
        self._send_error: BaseException | None = None
        self._window = b""  # the latest received bytes, searched for --expect
        self.send_done = threading.Event()
        self._quit = False  # set when --quit-after ended the receiving

    # -- the whole relay ------------------------------------------------
    def run(self) -> str:
        opts = self.options
        if opts.send and not opts.receive:
            self._send()
            self._raise_send_error()
            return "sent everything"
        if opts.send:
            threading.Thread(target=self._send, name=f"send-{self.conn.conn}", daemon=True).start()
        try:
            reason = self._receive()
        except OSError as exc:
            self._raise_send_error()
            raise self._receive_error(exc) from exc
        if self._quit:
            return f"stdin ended {format_duration(opts.quit_after or 0)} ago (--quit-after)"
        if opts.send and reason == "closed by peer":
            self._finish_sending()
        self._raise_send_error()
        if reason == "idle timeout" and opts.expect is not None:  # -i ended the wait before a match
            raise ExpectNotMet(
                f"no match for {self._pattern()}", f"no traffic for {format_duration(opts.idle_timeout or 0)}"
            )
        return reason

    def _finish_sending(self) -> None:
        """The peer sent EOF: let what stdin still delivers reach it (see the rules).

        stdin counts as idle only while no byte went out, it has nothing to
        read *and* the socket could take more: a slow producer or a peer slow
        to read is not an idle stdin.
        """
        linger, fd = self.options.linger, self.payload.stdin_fd
        if linger is None and not self.send_done.is_set():
            self.sink(ev.Notice(f"{self.conn.peer} has finished sending; sending until stdin ends (--keep-sending)"))
        if fd is None or self.payload.messages or linger is None:
            while not self.send_done.wait(0.1):  # fixed messages end by themselves (or fail to send)
                pass  # (a bounded wait: an interrupt is noticed between two)
            return
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self.conn.sock, select.POLLOUT)
        idle_since: float | None = None
        sent = self.conn.sent
        while not self.send_done.wait(min(0.05, linger)):
            ready = dict(poller.poll(0))
            moving, sent = self.conn.sent != sent, self.conn.sent
            if moving or ready.get(fd, 0) or not ready.get(self.conn.sock.fileno(), 0) & select.POLLOUT:
                idle_since = None
                continue
            now = time.monotonic()
            idle_since = idle_since or now
            if now - idle_since >= linger:
                return

    def _raise_send_error(self) -> None:
        error = self._send_error
        if error is not None:
            raise error

    # -- stdin → socket ---------------------------------------------------
    def _send(self) -> None:
        conn = self.conn
        try:
            self._send_payload()
            # With --expect the peer may answer only while it can still read (or hang up
            # at our EOF): the write side stays open until the match or the timeout.
            if self.options.half_close and self.options.expect is None:
                if self.options.emit_data and self.options.linger == 0:  # stdin is a terminal: Ctrl-D
                    # (said before the EOF goes out, so before anything the peer answers to it)
                    self.sink(ev.Notice("end of input: sent EOF (half-close); the peer may still answer"))
                conn.sock.shutdown(socket.SHUT_WR)
        except ValueError as exc:  # bad --hex-input on stdin
            self._send_error = UsageError("invalid stdin", str(exc))
            self._wake_receiver()
        except OutputClosed as exc:  # the reader of stdout left while a sent chunk was shown
            self._send_error = exc
            self._wake_receiver()
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                self._send_error = NetworkError(f"cannot send to {conn.peer}", describe(exc))
                self._wake_receiver()
            # A reset or a closed peer is the receiver's to report.
        finally:
            self.send_done.set()
            if self.options.quit_after is not None and self._send_error is None:
                timer = threading.Timer(self.options.quit_after, self._stop_receiving)
                timer.daemon = True
                timer.start()

    def _stop_receiving(self) -> None:
        """--quit-after has passed: the receiving side sees an end (a read shutdown) and the relay ends."""
        self._quit = True
        try:
            self.conn.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # the connection ended meanwhile

    def _send_payload(self) -> None:
        sock, conn, opts = self.conn.sock, self.conn, self.options
        if not self._send_by_kernel():
            show = opts.emit_data and not opts.summarize_sent
            with room_to_write(sock.fileno()) as (room, _flags):
                for chunk in self.payload.chunks():
                    if show:  # reported as it is handed to the socket: before any reply to it
                        self.sink(ev.Data(conn.conn, conn.peer, ev.SENT, chunk))
                    send_all(sock, chunk, room)
                    conn.count_sent(len(chunk))
        if opts.emit_data and opts.summarize_sent and conn.sent:
            self.sink(ev.Moved(conn.conn, conn.peer, ev.SENT, conn.sent, "stdin"))

    def _send_by_kernel(self) -> bool:
        """Move stdin to the socket with splice/sendfile when nothing needs to see it."""
        payload = self.payload
        shown = self.options.emit_data and not self.options.summarize_sent
        if not payload.is_plain_stream or payload.stdin_fd is None or shown:
            return False
        fd, sock_fd = payload.stdin_fd, self.conn.sock.fileno()
        if is_pipe(fd):
            widen_pipe(fd)
            defer_to_producer()
            return splice_loop(fd, sock_fd, self.conn.count_sent)
        return sendfile_loop(fd, sock_fd, self.conn.count_sent)

    def _wake_receiver(self) -> None:
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- socket → stdout --------------------------------------------------
    def _receive(self) -> str:
        opts = self.options
        if (
            opts.output_fd is not None
            and not opts.emit_data
            and opts.expect is None
            and opts.idle_timeout is None
            and self.output_lock is None
            and is_pipe(opts.output_fd)
        ):
            widen_pipe(opts.output_fd)
            if splice_loop(self.conn.sock.fileno(), opts.output_fd, self.conn.count_received, src_is_socket=True):
                return "closed by peer"
        return self._receive_loop()

    def _receive_loop(self) -> str:
        sock = self.conn.sock
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        opts = self.options
        expect_deadline = time.monotonic() + opts.expect_timeout if opts.expect and opts.expect_timeout else None
        timed = opts.idle_timeout is not None or expect_deadline is not None
        waiter = interrupts.Waiter(sock.fileno())
        # In the main thread, an empty socket is waited for in the Waiter (see interrupts).
        flags = socket.MSG_DONTWAIT if interrupts.wakeup_fd() is not None and not timed else 0
        # Raw path (no view, no --expect, one writer): bytes go straight to the output.
        raw_fd = opts.output_fd if not opts.emit_data and opts.expect is None and self.output_lock is None else None
        conn = self.conn
        while True:
            if timed and not waiter.wait(wait_seconds(self.conn, opts, expect_deadline)):
                reason = self._timed_out(expect_deadline)
                if reason:
                    return reason
                continue
            try:
                n = sock.recv_into(buffer, 0, flags)
            except BlockingIOError:
                waiter.wait()
                continue
            if not n:
                return self._end_of_stream()
            if raw_fd is not None:
                conn.count_received(n)
                write_all(raw_fd, view[:n])
                continue
            if self._deliver(view[:n]):
                return "expected data received"

    def _timed_out(self, expect_deadline: float | None) -> str:
        """Nothing came in the wait: why the relay ends now, or "" to wait on."""
        opts = self.options
        if expect_deadline is not None and time.monotonic() >= expect_deadline:
            raise ExpectNotMet(
                f"no match for {self._pattern()}",
                f"nothing matched within {format_duration(opts.expect_timeout or 0)}",
            )
        if self._idle_expired():
            self.sink(ev.Notice(f"no traffic for {format_duration(opts.idle_timeout or 0)}; closing"))
            return "idle timeout"
        return ""

    def _end_of_stream(self) -> str:
        if self._send_error is not None:
            return "send failed"
        if self.options.expect is not None:
            raise ExpectNotMet(f"no match for {self._pattern()}", "the peer closed the connection first")
        return "closed by peer"

    def _deliver(self, data: memoryview) -> bool:
        """Hand received bytes on (stdout, the sink); True once --expect matched."""
        opts, conn = self.options, self.conn
        conn.count_received(len(data))
        if opts.output_fd is not None:
            if self.output_lock is None:
                write_all(opts.output_fd, data)
            else:
                with self.output_lock:
                    write_all(opts.output_fd, data)
        if opts.emit_data:
            self.sink(ev.Data(conn.conn, conn.peer, ev.RECEIVED, bytes(data)))
        if opts.expect is None:
            return False
        self._window = (self._window + bytes(data))[-EXPECT_WINDOW:]
        return opts.expect.search(self._window) is not None

    def _idle_expired(self) -> bool:
        idle = self.options.idle_timeout
        return idle is not None and time.monotonic() - self.conn.last_activity >= idle

    def _pattern(self) -> str:
        assert self.options.expect is not None
        return "/" + self.options.expect.pattern.decode(errors="replace") + "/"

    def _receive_error(self, exc: OSError) -> SocktoolError:
        if exc.errno == errno.ECONNRESET:
            return PeerReset(
                f"connection to {self.conn.peer} reset by peer",
                f"after {self.conn.received} bytes received",
            )
        return NetworkError(f"receiving from {self.conn.peer} failed", describe(exc))


__all__ = ["Connection", "Payload", "Relay", "RelayOptions"]
