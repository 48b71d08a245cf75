"""The loop's SplicePair driven in-process: two connections joined in the kernel, their
peers on the far ends of socket pairs (unix) or loopback TCP connections."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from reliability_helpers import wait_until
from socktool.net.loop import Connection, Handler, Loop, SocketTransport, SplicePair

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


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
