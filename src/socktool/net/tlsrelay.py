"""The pipe over TLS: stdin → TLS → socket and socket → TLS → stdout.

Rules (on top of the relay's in net/relay.py, which this follows option for
option):
- one thread owns the TlsLayer and the socket; stdin is read by a feeder
  thread that hands chunks over a small bounded queue, so a slow peer holds
  stdin back instead of filling memory;
- at the end of what we send, close_notify goes out, then TCP's half-close,
  and reading goes on until the peer's close_notify; when the peer closes
  first, ours answers it once we are done sending;
- a peer that ends the TCP stream without close_notify may have been cut
  short on the way: a warning, or with `strict_close` a failure (exit 1);
- we read all the time (in --send-only too, throwing it away), so closing
  never finds unread bytes that would turn our FIN into a reset.
"""

from __future__ import annotations

import errno
import os
import queue
import select
import socket
import ssl
import threading
import time

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.errors import ExpectNotMet, NetworkError, PeerReset, SocktoolError, UsageError, describe
from socktool.net.fdio import CHUNK, is_pipe, widen_pipe, write_all
from socktool.net.relay import EXPECT_WINDOW, Connection, Payload, RelayOptions, wait_seconds
from socktool.net.tls import TlsError, TlsLayer, flush, report_ragged_end
from socktool.values import format_duration

HIGH_WATER = 1024 * 1024  # ciphertext waiting for the socket before stdin is read again
CLOSE_WAIT = 2.0  # seconds a --send-only relay waits for the peer's close after its own
FINAL_FLUSH = 10.0  # seconds the last bytes and our close_notify get to leave
TLS_RECORD = 16 * 1024  # the most plaintext one record holds


def _fail(error: TlsError) -> None:
    raise error


class _Feeder:
    """The payload's chunks, read in a thread; `take` never blocks."""

    END = b""

    def __init__(self, payload: Payload):
        self.payload = payload
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self.wake_read, self._wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self._wake_write, False)
        # The reader thread may still be at a chunk when the relay closes the pipe: it must
        # never write to a closed descriptor (nor to whatever file took its number since).
        self._pipe_lock = threading.Lock()
        self._closed = False
        self.error: SocktoolError | None = None
        threading.Thread(target=self._run, name="tls-stdin", daemon=True).start()

    def _run(self) -> None:
        try:
            for chunk in self.payload.chunks():
                self.chunks.put(chunk)
                self._wake()
        except ValueError as exc:  # bad --hex-input on stdin
            self.error = UsageError("invalid stdin", str(exc))
        except OSError as exc:
            self.error = NetworkError("cannot read stdin", describe(exc))
        finally:
            self.chunks.put(None)
            self._wake()

    def _wake(self) -> None:
        with self._pipe_lock:
            if self._closed:
                return
            try:
                os.write(self._wake_write, b"x")
            except BlockingIOError:
                pass  # already awake

    def take(self) -> bytes | None:
        """A chunk; END when nothing is there yet; None at the end of the payload.

        Invariant: while the queue holds a chunk, the wake pipe holds a byte
        (it is drained only once the queue was seen empty, then looked at again).
        """
        try:
            return self.chunks.get_nowait()
        except queue.Empty:
            pass
        try:
            os.read(self.wake_read, 4096)
        except BlockingIOError:
            pass
        try:
            return self.chunks.get_nowait()
        except queue.Empty:
            return self.END

    def close(self) -> None:
        with self._pipe_lock:
            self._closed = True
            for fd in (self.wake_read, self._wake_write):
                os.close(fd)


class _StdinReader:
    """Plain stdin read in the relay's own thread, into one reused buffer: no thread
    hand-off, no allocation per chunk (the feeder's queue and its fresh 256 KiB
    bytes cost more CPU than the encryption). Same `take` as _Feeder."""

    END = _Feeder.END

    def __init__(self, fd: int):
        self.wake_read = fd  # what the relay polls: stdin itself
        if is_pipe(fd):
            widen_pipe(fd)  # a 64 KiB pipe wakes its writer and us four times per chunk
        self._buffer = bytearray(CHUNK)
        self._view = memoryview(self._buffer)
        self.error: SocktoolError | None = None

    def take(self) -> memoryview | bytes | None:
        try:
            count = os.readv(self.wake_read, [self._buffer])
        except BlockingIOError:
            return self.END
        except OSError as exc:
            self.error = NetworkError("cannot read stdin", describe(exc))
            return self.END
        return self._view[:count] if count else None

    def close(self) -> None:
        pass  # stdin is the caller's


def _stdin_source(payload: Payload) -> _Feeder | _StdinReader:
    if payload.is_plain_stream and payload.stdin_fd is not None:
        return _StdinReader(payload.stdin_fd)
    return _Feeder(payload)


class TlsRelay:
    """Runs one TLS connection's two directions; `run` returns why it ended."""

    def __init__(
        self,
        conn: Connection,
        layer: TlsLayer,
        payload: Payload,
        options: RelayOptions,
        sink: ev.Sink = ev.ignore,
        *,
        strict_close: bool = False,
    ):
        self.conn = conn
        self.layer = layer
        self.payload = payload
        self.options = options
        self.sink = sink
        self.strict_close = strict_close
        self._out = bytearray()  # ciphertext for the socket
        self._view = memoryview(bytearray(CHUNK))  # plaintext
        self._wire = bytearray(CHUNK)  # ciphertext
        self._wire_view = memoryview(self._wire)
        self._window = b""
        self._peer_closed_at: float | None = None
        self._ragged = False  # the socket ended without the peer's close_notify
        self._stdin_done = not options.send
        self._stdin_at = time.monotonic()
        self._send_failed = False
        self._shut_wr = False

    # -- the loop -----------------------------------------------------------
    def run(self) -> str:
        sock, opts = self.conn.sock, self.options
        sock.setblocking(False)
        if opts.receive and opts.output_fd is not None and is_pipe(opts.output_fd):
            widen_pipe(opts.output_fd)  # as stdin: fewer wake-ups of the reader per megabyte
        feeder = _stdin_source(self.payload) if opts.send else None
        wakeup = interrupts.wakeup_fd()
        expect_deadline = time.monotonic() + opts.expect_timeout if opts.expect and opts.expect_timeout else None
        poller = select.poll()
        try:
            while True:
                reason = self._finished(feeder)
                if reason is not None:
                    break
                reading = self._peer_closed_at is None
                want_stdin = feeder is not None and not self._stdin_done and len(self._out) < HIGH_WATER
                fds = {sock.fileno(): (select.POLLIN if reading else 0) | (select.POLLOUT if self._out else 0)}
                if want_stdin and feeder is not None:
                    fds[feeder.wake_read] = select.POLLIN
                if wakeup is not None:
                    fds[wakeup] = select.POLLIN
                poller = select.poll()
                for fd, mask in fds.items():
                    if mask:
                        poller.register(fd, mask)
                timeout = self._poll_timeout(expect_deadline)
                ready = dict(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))
                if wakeup is not None and ready.get(wakeup):
                    interrupts.drain()  # the handler ran and did not raise
                events = ready.get(sock.fileno(), 0)
                if reading and events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    reason = self._receive()
                    if reason is not None:
                        break
                if self._out and events & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                    self._send_out()
                if want_stdin and feeder is not None and ready.get(feeder.wake_read):
                    self._take_stdin(feeder)
                reason = self._timed_out(expect_deadline)
                if reason is not None:
                    break
            self._close(feeder)
            return reason
        finally:
            if feeder is not None:
                feeder.close()

    def _poll_timeout(self, expect_deadline: float | None) -> float | None:
        lingering = self._peer_closed_at is not None and self.options.linger is not None
        return wait_seconds(self.conn, self.options, expect_deadline, self._linger_end() if lingering else None)

    def _linger_end(self) -> float:
        assert self._peer_closed_at is not None
        if not self.options.receive:
            return self._peer_closed_at
        if self.options.linger is None:  # --keep-sending: until stdin ends
            return float("inf")
        return max(self._peer_closed_at, self._stdin_at) + self.options.linger

    def _finished(self, feeder: _Feeder | _StdinReader | None) -> str | None:
        if feeder is not None and feeder.error is not None:
            raise feeder.error
        if self._peer_closed_at is None:
            if not self.options.receive and self._stdin_done and not self._out and self.layer.close_sent:
                return self._wait_for_peer_close()
            return None
        if self._stdin_done or self._send_failed or time.monotonic() >= self._linger_end():
            if not self.options.receive:
                return "sent everything"
            return "closed by peer"
        return None

    def _timed_out(self, expect_deadline: float | None) -> str | None:
        opts, now = self.options, time.monotonic()
        if expect_deadline is not None and now >= expect_deadline:
            raise ExpectNotMet(
                f"no match for {self._pattern()}",
                f"nothing matched within {format_duration(opts.expect_timeout or 0)}",
            )
        if opts.idle_timeout is not None and now - self.conn.last_activity >= opts.idle_timeout:
            self.sink(ev.Notice(f"no traffic for {format_duration(opts.idle_timeout)}; closing"))
            return "idle timeout"
        return None

    # -- socket → TLS → stdout ------------------------------------------------
    def _receive(self) -> str | None:
        sock = self.conn.sock
        try:
            count = sock.recv_into(self._wire)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == errno.ECONNRESET:
                raise PeerReset(
                    f"connection to {self.conn.peer} reset by peer", f"after {self.conn.received} bytes received"
                ) from exc
            raise NetworkError(f"receiving from {self.conn.peer} failed", describe(exc)) from exc
        self.layer.feed(self._wire_view[:count])
        try:
            reason = self._deliver()
        except ssl.SSLEOFError:
            self._ragged = True
            reason = None
        except ssl.SSLError as exc:
            raise TlsError(f"TLS session with {self.conn.peer} failed", str(exc.reason or exc).lower()) from None
        self._queue_out()
        if self.layer.close_received or self._ragged or not count:
            self._peer_closed_at = time.monotonic()
            self._warn_if_ragged()
            if self.options.expect is not None and reason is None:
                raise ExpectNotMet(f"no match for {self._pattern()}", "the peer closed the connection first")
        return reason

    def _deliver(self) -> str | None:
        """Everything the layer can decrypt now, a buffer-full at a time (one write per
        buffer, not per 16 KiB record)."""
        layer, view = self.layer, self._view
        room = len(view) - TLS_RECORD
        while True:
            filled = 0
            try:
                while filled <= room and (n := layer.read_into(view[filled:])):
                    filled += n
            except ssl.SSLEOFError:
                # The end without close_notify, behind bytes already decrypted (held across our
                # close_notify by TlsLayer.close): those go out first.
                if filled and (reason := self._output(view[:filled])) is not None:
                    return reason
                raise
            if not filled:
                return None
            reason = self._output(view[:filled])
            if reason is not None:
                return reason

    def _output(self, data: memoryview) -> str | None:
        opts, conn = self.options, self.conn
        conn.count_received(len(data))
        if not opts.receive:
            return None  # --send-only: read to keep the connection clean, show nothing
        if opts.output_fd is not None:
            write_all(opts.output_fd, data)
        if opts.emit_data:
            self.sink(ev.Data(conn.conn, conn.peer, ev.RECEIVED, bytes(data)))
        if opts.expect is not None:
            self._window = (self._window + bytes(data))[-EXPECT_WINDOW:]
            if opts.expect.search(self._window):
                return "expected data received"
        return None

    def _warn_if_ragged(self) -> None:
        if not self._ragged or self.layer.close_received:
            return
        report_ragged_end(self.conn.peer, self.sink, _fail if self.strict_close else None)

    def _pattern(self) -> str:
        assert self.options.expect is not None
        return "/" + self.options.expect.pattern.decode(errors="replace") + "/"

    # -- stdin → TLS → socket -------------------------------------------------
    def _take_stdin(self, feeder: _Feeder | _StdinReader) -> None:
        chunk = feeder.take()
        if chunk is None:
            self._stdin_done = True
            if self.options.half_close:
                self._send_close_notify()
            return
        if not chunk or self._send_failed:
            return
        self._stdin_at = time.monotonic()
        try:
            self.layer.write(chunk)
        except ssl.SSLError:  # the session is over (the peer's end came): as a send to a gone peer
            self._send_failed = True
            self._out.clear()
            return
        self.conn.count_sent(len(chunk))
        if self.options.emit_data:
            self.sink(ev.Data(self.conn.conn, self.conn.peer, ev.SENT, bytes(chunk)))
        self._send_fresh()

    def _send_fresh(self) -> None:
        """The layer's new ciphertext: straight to the socket when nothing waits before it
        (no copy into `_out`), the rest queued."""
        if self._out or self._send_failed:
            self._queue_out()
            self._send_out()
            return
        pending = self.layer.pending()
        try:
            sent = self.conn.sock.send(pending)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._send_error(exc)
            return
        if sent < len(pending):
            self._out += memoryview(pending)[sent:]

    def _send_close_notify(self) -> None:
        if not self.layer.close_sent:
            self.layer.close()
            self._queue_out()
            self._shut_wr = True
            self._send_out()

    def _queue_out(self) -> None:
        pending = self.layer.pending()
        if pending and not self._send_failed:
            self._out += pending

    def _send_out(self) -> None:
        try:
            while self._out:
                sent = self.conn.sock.send(self._out)
                del self._out[:sent]
        except BlockingIOError:
            return
        except OSError as exc:
            self._send_error(exc)
            return
        if self._shut_wr:
            self._shut_wr = False
            try:
                self.conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _send_error(self, exc: OSError) -> None:
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
            raise NetworkError(f"cannot send to {self.conn.peer}", describe(exc)) from exc
        self._send_failed = True  # the peer is gone: the receiving side reports how
        self._out.clear()

    # -- the end --------------------------------------------------------------
    def _wait_for_peer_close(self) -> str:
        """--send-only: all sent and closed; give the peer a moment to close too."""
        deadline = time.monotonic() + CLOSE_WAIT
        waiter = interrupts.Waiter(self.conn.sock.fileno())
        while self._peer_closed_at is None and waiter.wait(max(0.0, deadline - time.monotonic())):
            self._receive()
            if time.monotonic() >= deadline:
                break
        return "sent everything"

    def _close(self, feeder: _Feeder | _StdinReader | None) -> None:
        """Our close_notify (when not sent yet) and every byte still queued, within FINAL_FLUSH."""
        if self._send_failed:
            return
        if not self.layer.close_sent:
            self.layer.close()
            self._queue_out()
        if self._out:
            try:
                flush(self.conn.sock, bytes(self._out), time.monotonic() + FINAL_FLUSH)
            except OSError:
                pass  # the peer left first; what it missed, it reports
            self._out.clear()


__all__ = ["TlsRelay"]
