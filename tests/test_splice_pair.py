"""The loop's SplicePair driven in-process: two connections joined in the kernel, their
peers on the far ends of socket pairs (unix) or loopback TCP connections."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from reliability_helpers import wait_until
from socktool.net import loop as loop_module
from socktool.net.loop import BULK_AFTER, BULK_THREADS, Connection, Handler, Loop, SocketTransport, SplicePair

MiB = 1024 * 1024


class Joined:
    """A loop in a thread with connections A and B joined; `left`/`right` are their peers."""

    def __init__(self, kind: str):
        self.loop = Loop()
        self.ended: list[tuple[str, OSError | None]] = []
        self.closed: list[str] = []
        ends = [_tcp_pair() if kind == "tcp" else socket.socketpair() for _ in range(2)]
        (self.left, a_sock), (self.right, b_sock) = ends
        self.a = Connection(self.loop, SocketTransport(a_sock), _Recorder(self.closed, "a"), peer="a")
        self.b = Connection(self.loop, SocketTransport(b_sock), _Recorder(self.closed, "b"), peer="b")
        self.pair: SplicePair | None = None
        ready = threading.Event()

        def join() -> None:
            self.loop.add(self.a)
            self.loop.add(self.b)
            self.pair = SplicePair(self.a, self.b, self._on_end)
            ready.set()

        self.loop.call(join)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()
        assert ready.wait(5)

    def _on_end(self, conn: Connection, error: OSError | None) -> None:
        self.ended.append((conn.peer, error))
        assert self.pair is not None
        self.pair.close()
        self.a.close("ended")
        self.b.close("ended")

    def wait_ended(self, timeout: float = 10) -> tuple[str, OSError | None]:
        wait_until(lambda: self.ended, timeout, what="the pair to end", step=0.005)
        return self.ended[0]

    def __enter__(self) -> Joined:
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.stop()
        self.thread.join(5)
        if self.pair is not None:
            self.pair.close()  # the loop has stopped: its threads (if any) end, their slot is free
        self.loop.close()
        for sock in (self.left, self.right):
            sock.close()


class _Recorder(Handler):
    def __init__(self, closed: list[str], name: str):
        self.log = closed
        self.name = name

    def closed(self, conn: Connection, reason: str) -> None:
        self.log.append(self.name)


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.create_connection(server.getsockname(), timeout=10)
        accepted, _ = server.accept()
    accepted.settimeout(None)
    return peer, accepted


def _send_then_shut(sock: socket.socket, data: bytes) -> threading.Thread:
    def run() -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _read_to_eof(sock: socket.socket, into: list[bytes]) -> threading.Thread:
    def run() -> None:
        sock.settimeout(20)
        while chunk := sock.recv(MiB):
            into.append(chunk)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_both_ways_at_once_every_byte_in_order_and_half_close_carried(kind):
    up, down = os.urandom(8 * MiB), os.urandom(6 * MiB)
    with Joined(kind) as joined:
        got_right: list[bytes] = []
        got_left: list[bytes] = []
        readers = [_read_to_eof(joined.right, got_right), _read_to_eof(joined.left, got_left)]
        _send_then_shut(joined.left, up).join(20)
        readers[0].join(20)  # right sees the EOF after the last byte, while its own way is open
        assert hashlib.sha256(b"".join(got_right)).digest() == hashlib.sha256(up).digest()
        assert not joined.ended
        _send_then_shut(joined.right, down).join(20)
        readers[1].join(20)
        assert hashlib.sha256(b"".join(got_left)).digest() == hashlib.sha256(down).digest()
        assert joined.wait_ended() == ("a", None)  # A's side ended first
        assert joined.a.received == joined.b.sent == len(up)
        assert joined.b.received == joined.a.sent == len(down)


@pytest.mark.timeout(30)
def test_a_destination_that_takes_nothing_stops_the_source_being_read():
    with Joined("unix") as joined:
        joined.left.setblocking(False)
        accepted = 0
        chunk = b"x" * 65536
        deadline = time.monotonic() + 10
        stalled_since = None
        while time.monotonic() < deadline:  # send until the kernel takes no more for a while
            try:
                accepted += joined.left.send(chunk)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5:
                    break
                time.sleep(0.01)
        assert stalled_since is not None, "the sender was never held back"
        assert accepted < 64 * MiB  # socket buffers and one pipe, not an unbounded queue
        joined.left.setblocking(True)
        joined.left.shutdown(socket.SHUT_WR)
        got: list[bytes] = []
        _read_to_eof(joined.right, got).join(20)
        assert len(b"".join(got)) == accepted


@pytest.mark.timeout(30)
def test_a_peer_that_resets_ends_the_pair_with_a_reset_on_its_side():
    with Joined("tcp") as joined:
        joined.right.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        joined.right.close()  # a reset towards B
        deadline = time.monotonic() + 10
        while not joined.ended:  # A's bytes now fail on B (or B's read says so)
            assert time.monotonic() < deadline
            try:
                joined.left.send(b"y" * 1024)
            except OSError:
                break
            time.sleep(0.01)
        side, error = joined.wait_ended()
        assert side == "b"
        assert isinstance(error, ConnectionResetError)


@pytest.mark.timeout(30)
def test_an_idle_pair_holds_no_pipe_and_closing_it_closes_its_pipes():
    with Joined("unix") as joined:
        assert joined.pair is not None
        assert all(ch.pipe_r < 0 for ch in joined.pair.channels)
        joined.left.sendall(b"hello")
        assert joined.right.recv(5) == b"hello"
        pipe_fds = [ch.pipe_r for ch in joined.pair.channels if ch.pipe_r >= 0]
        assert len(pipe_fds) == 1  # only the way that carried a byte
        joined.loop.call(lambda: joined._on_end(joined.a, None))
        joined.wait_ended()
        wait_until(lambda: not any(_is_open(fd) for fd in pipe_fds), 5, what="its pipes to close", step=0.01)


def _the_end_is_carried(joined: Joined, size: int) -> None:
    """`size` bytes and an EOF from left reach right; right's EOF then ends the pair, A's side first."""
    up = os.urandom(size)
    got: list[bytes] = []
    reader = _read_to_eof(joined.right, got)
    _send_then_shut(joined.left, up).join(20)
    reader.join(20)
    assert b"".join(got) == up
    joined.right.shutdown(socket.SHUT_WR)
    assert joined.wait_ended() == ("a", None)


def _splice_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("splice ")]


def _free_thread_slots() -> int:
    return loop_module._bulk_threads._value  # type: ignore[attr-defined]


def _move(sender: socket.socket, receiver: socket.socket, size: int) -> bytes:
    """Send `size` random bytes one way (the way stays open) and read them all on the other end."""
    data = os.urandom(size)
    sending = threading.Thread(target=sender.sendall, args=(data,), daemon=True)
    sending.start()
    got = bytearray()
    receiver.settimeout(20)
    while len(got) < size:
        chunk = receiver.recv(MiB)
        assert chunk, "EOF before the bytes arrived"
        got += chunk
    sending.join(20)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    return data


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_bulk_pair_moves_in_two_threads_both_ways_and_they_end_with_its_close(kind):
    free = _free_thread_slots()
    with Joined(kind) as joined:
        assert joined.pair is not None
        _move(joined.left, joined.right, 1024)
        assert not joined.pair.threaded and not _splice_threads()  # a small pair stays on the loop
        _move(joined.left, joined.right, BULK_AFTER + MiB)
        assert joined.pair.threaded
        assert sorted(t.name for t in _splice_threads()) == ["splice a -> b", "splice b -> a"]
        assert _free_thread_slots() == free - 1
        _move(joined.right, joined.left, 3 * MiB)  # the other way, by its thread
        _move(joined.left, joined.right, 5)
        counts = lambda: (joined.a.received, joined.b.sent, joined.b.received, joined.a.sent)  # noqa: E731
        up, down = 1024 + BULK_AFTER + MiB + 5, 3 * MiB
        # A thread counts a write once its splice returns, which may be after the peer read the bytes.
        wait_until(lambda: counts() == (up, up, down, down), 5, what=f"the counts (now {counts()})", step=0.01)
        pipe_fds = [ch.pipe_r for ch in joined.pair.channels]
        assert all(fd >= 0 for fd in pipe_fds)
        joined.loop.call(lambda: joined._on_end(joined.a, None))  # both threads wait to read now
        joined.wait_ended()
        wait_until(lambda: not _splice_threads(), 5, what="the threads to end", step=0.01)
        assert _free_thread_slots() == free
        assert not any(_is_open(fd) for fd in pipe_fds)


@pytest.mark.timeout(60)
def test_small_messages_after_a_burst_are_not_held_back_by_the_bulk_reads(monkeypatch):
    # A bulk read waits for BULK_LOWAT bytes, at most BULK_WAIT; a quiet one for any byte. Either
    # way a lone byte goes on at once, not when a thread's THREAD_WAKE time-out comes round.
    monkeypatch.setattr(loop_module, "THREAD_WAKE", 5.0)
    with Joined("tcp") as joined:
        assert joined.pair is not None
        _move(joined.left, joined.right, BULK_AFTER + 3 * MiB)
        assert joined.pair.threaded
        for _ in range(20):
            started = time.monotonic()
            joined.left.sendall(b"!")
            assert joined.right.recv(1) == b"!"
            joined.right.sendall(b"?")  # and the other way, quiet from the start
            assert joined.left.recv(1) == b"?"
            assert time.monotonic() - started < 2.0
        wait_until(lambda: joined.b.sent == BULK_AFTER + 3 * MiB + 20, 5, what="the count", step=0.01)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("short_of", ["descriptors", "threads"])
def test_short_of_descriptors_or_threads_a_bulk_pair_goes_on_in_the_loop(monkeypatch, short_of):
    free = _free_thread_slots()
    if short_of == "descriptors":

        def dup(fd: int) -> int:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        monkeypatch.setattr(loop_module.os, "dup", dup)
    else:
        real_start = threading.Thread.start
        splice_starts: list[str] = []

        def start(thread: threading.Thread) -> None:
            if thread.name.startswith("splice "):
                splice_starts.append(thread.name)
                if len(splice_starts) % 2 == 0:  # each try: the first one runs already
                    raise RuntimeError("can't start new thread")
            real_start(thread)

        monkeypatch.setattr(threading.Thread, "start", start)
    with Joined("tcp") as joined:
        assert joined.pair is not None
        _move(joined.left, joined.right, BULK_AFTER + 2 * MiB)
        _move(joined.right, joined.left, BULK_AFTER + 2 * MiB)
        assert not joined.pair.threaded
        assert _free_thread_slots() == free
        wait_until(lambda: not _splice_threads(), 5, what="a started thread to leave", step=0.01)
        _the_end_is_carried(joined, MiB)


@pytest.mark.timeout(60)
def test_a_slow_steady_reader_is_activity_for_the_idle_timer_and_a_close_still_ends_the_threads_soon():
    with Joined("tcp") as joined:
        assert joined.pair is not None
        _move(joined.left, joined.right, BULK_AFTER + MiB)
        assert joined.pair.threaded
        joined.loop.call(lambda: joined.b.set_idle_timeout(1.0))
        stop = threading.Event()

        def send_much() -> None:
            with contextlib.suppress(OSError):  # reset once the pair closes over unread bytes
                joined.left.sendall(os.urandom(32 * MiB))

        threading.Thread(target=send_much, daemon=True).start()

        def read_slowly() -> None:  # 4 KiB every 10 ms: 400 KB/s, a 1 MiB write would take 2.6 s
            joined.right.settimeout(10)
            while not stop.wait(0.01):
                try:
                    if not joined.right.recv(4096):
                        return
                except OSError:
                    return

        reader = threading.Thread(target=read_slowly, daemon=True)
        reader.start()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # three idle periods of reading
            assert "b" not in joined.closed, "the idle timer closed a connection whose peer was reading"
            time.sleep(0.05)
        started = time.monotonic()
        joined.loop.call(lambda: joined._on_end(joined.a, None))
        joined.wait_ended()
        wait_until(lambda: not _splice_threads(), 5, what="the threads to end", step=0.01)
        assert time.monotonic() - started < 1.5  # one capped write of the thread, not the whole pipe
        stop.set()
        reader.join(5)


@pytest.mark.timeout(60)
def test_a_threaded_pair_ends_while_its_thread_waits_for_a_peer_that_reads_nothing():
    with Joined("unix") as joined:
        assert joined.pair is not None
        _move(joined.left, joined.right, BULK_AFTER + MiB)
        assert joined.pair.threaded
        joined.left.setblocking(False)
        with pytest.raises(BlockingIOError):  # right reads nothing: A's thread waits for room on B
            while True:
                joined.left.send(b"z" * 65536)
        started = time.monotonic()
        joined.loop.call(lambda: joined._on_end(joined.a, None))
        joined.wait_ended()
        wait_until(lambda: not _splice_threads(), 5, what="the threads to end", step=0.01)
        assert time.monotonic() - started < 2  # THREAD_WAKE, with room for a loaded machine


@pytest.mark.timeout(60)
def test_a_reset_while_threaded_ends_the_pair_with_a_reset_on_its_side():
    with Joined("tcp") as joined:
        assert joined.pair is not None
        _move(joined.left, joined.right, BULK_AFTER + MiB)
        assert joined.pair.threaded
        joined.right.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        joined.right.close()  # a reset towards B
        joined.left.setblocking(False)
        deadline = time.monotonic() + 10
        while not joined.ended:
            assert time.monotonic() < deadline
            try:
                joined.left.send(b"y" * 1024)
            except BlockingIOError:
                pass
            except OSError:
                break
            time.sleep(0.01)
        side, error = joined.wait_ended()
        assert side == "b"
        assert isinstance(error, ConnectionResetError)
        wait_until(lambda: not _splice_threads(), 5, what="the threads to end", step=0.01)


@pytest.mark.timeout(90)
def test_past_bulk_threads_pairs_the_rest_move_on_the_loop_every_byte_and_half_close():
    pairs = [Joined("unix") for _ in range(BULK_THREADS + 1)]
    try:
        for joined in pairs:
            _move(joined.left, joined.right, BULK_AFTER + MiB)
        assert sum(bool(j.pair and j.pair.threaded) for j in pairs) == BULK_THREADS
        assert _free_thread_slots() == 0
        for joined in pairs:  # threaded or not, the end is carried
            _the_end_is_carried(joined, 2 * MiB)
    finally:
        for joined in pairs:
            joined.__exit__()
    wait_until(lambda: not _splice_threads(), 5, what="the threads to end", step=0.01)
    assert _free_thread_slots() == BULK_THREADS


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
