"""Load and soak, bounded in count and time: thousands of connections leave no
descriptor or memory behind, idle clients do not block a new one, and a
mixed TCP/UDP soak against echo gets every byte back.

The soak runs for SOCKTOOL_SOAK_SECONDS (default 30).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import Proc
from reliability_helpers import Collector, descriptors, error_lines, recv_exactly, rss_kib, wait_until

SEQUENTIAL = 2000
WARM_UP = 200  # connections before the baseline: lazy imports and allocator pools settle
RSS_SLACK_KIB = 3 * 1024  # what 1,800 more connections may add to the server's memory: nothing that grows
SOAK_SECONDS = float(os.environ.get("SOCKTOOL_SOAK_SECONDS", "30"))


def _echo_once(port: int, n: int) -> None:
    message = struct.pack("!I", n) * 8
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(message)
        assert recv_exactly(sock, len(message)) == message


@pytest.mark.slow
def test_2000_sequential_connections_to_echo_leave_no_descriptors_or_memory_behind():
    with Proc("echo", "--tcp-only", "127.0.0.1:0") as echo:
        port = echo.wait_listening()
        pid = echo.popen.pid
        for n in range(WARM_UP):
            _echo_once(port, n)
        fds, rss = settled_descriptors(pid), rss_kib(pid)
        for n in range(WARM_UP, SEQUENTIAL):
            _echo_once(port, n)
        wait_until(lambda: descriptors(pid) <= fds, what=f"descriptors back to {fds}")
        grown = rss_kib(pid) - rss
        assert grown <= RSS_SLACK_KIB, f"echo grew by {grown} KiB over {SEQUENTIAL - WARM_UP} connections"
        echo.popen.send_signal(signal.SIGINT)
        assert echo.wait() == 130
        assert error_lines(echo.stderr) == []


@pytest.mark.slow
def test_2000_sequential_connections_to_a_keep_open_listener_leave_no_descriptors_or_memory_behind():
    with Proc("tcp-listen", "-k", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        pid = listener.popen.pid
        out = Collector(listener.popen.stdout)

        def connect(n: int) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"{n}\n".encode())

        def lines_from(count: int):
            return lambda data: data.count(b"\n") >= count

        for n in range(WARM_UP):
            connect(n)
        out.wait_until(lines_from(WARM_UP), what="the warm-up clients' lines")
        wait_until(lambda: threading_settled(pid), what="client threads gone")
        fds, rss = settled_descriptors(pid), rss_kib(pid)
        for n in range(WARM_UP, SEQUENTIAL):
            connect(n)
        out.wait_until(lines_from(SEQUENTIAL), timeout=30, what="every client's line")
        wait_until(lambda: descriptors(pid) <= fds, what=f"descriptors back to {fds}")
        wait_until(lambda: threading_settled(pid), what="client threads gone")
        grown = rss_kib(pid) - rss
        assert grown <= RSS_SLACK_KIB, f"tcp-listen grew by {grown} KiB over {SEQUENTIAL - WARM_UP} connections"
        listener.popen.send_signal(signal.SIGTERM)
        assert listener.wait() == 143
        assert sorted(map(int, out.result().split())) == list(range(SEQUENTIAL))
        assert error_lines(listener.stderr) == []


def settled_descriptors(pid: int) -> int:
    """The descriptor count once it has stopped changing (the last client's close is seen)."""
    counts = [descriptors(pid)]
    while len(counts) < 4 or len(set(counts[-4:])) > 1:
        time.sleep(0.05)
        counts.append(descriptors(pid))
    return counts[-1]


def threading_settled(pid: int) -> bool:
    """Only the main thread and the stdin reader are left (client threads have ended)."""
    return len(os.listdir(f"/proc/{pid}/task")) <= 2


# -- idle clients do not block a new one -----------------------------------------------------
def test_50_idle_connections_do_not_block_a_new_echo_client():
    with Proc("echo", "--tcp-only", "127.0.0.1:0") as echo:
        port = echo.wait_listening()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
        try:
            started = time.monotonic()
            _echo_once(port, 7)
            assert time.monotonic() - started < 2
            for n, sock in enumerate(idle):  # and each idle client is still served
                message = f"idle {n}".encode()
                sock.sendall(message)
                assert recv_exactly(sock, len(message)) == message
        finally:
            for sock in idle:
                sock.close()


def test_50_idle_connections_do_not_block_a_new_client_of_a_keep_open_listener():
    with Proc("tcp-listen", "-k", "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        out = Collector(listener.popen.stdout)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
        try:
            listener.wait_for("connection from #50 ")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as fresh:
                fresh.sendall(b"newcomer\n")
            out.wait_until(lambda data: b"newcomer\n" in data, timeout=2, what="the newcomer's line")
            for n, sock in enumerate(idle):
                sock.sendall(f"idle {n}\n".encode())
            out.wait_until(lambda data: data.count(b"\n") == 51, what="every idle client's line")
        finally:
            for sock in idle:
                sock.close()
    assert sorted(bytes(out.data).splitlines()) == sorted([b"newcomer"] + [f"idle {n}".encode() for n in range(50)])


# -- the soak ---------------------------------------------------------------------------------
class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes_checked = 0
        self.round_trips = 0
        self.connections = 0
        self.datagrams = 0
        self.udp_resends = 0
        self.failures: list[str] = []

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def _tcp_worker(port: int, seed: int, deadline: float, tally: Tally, churn: bool) -> None:
    rng = random.Random(seed)
    pool = rng.randbytes(1 << 17)
    try:
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                tally.add(connections=1)
                for _ in range(rng.randint(1, 4) if churn else 1 << 30):
                    if time.monotonic() >= deadline:
                        break
                    size = rng.choice((1, 7, 100, 1460, 4096, 65536)) + rng.randrange(64)
                    start = rng.randrange(len(pool) - size)
                    message = pool[start : start + size]
                    sock.sendall(message)
                    echoed = recv_exactly(sock, size)
                    if echoed != message:
                        tally.fail(f"tcp: {size} bytes came back different")
                        return
                    tally.add(bytes_checked=size, round_trips=1)
    except OSError as exc:
        tally.fail(f"tcp: {exc}")


def _udp_worker(port: int, seed: int, deadline: float, tally: Tally) -> None:
    rng = random.Random(seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            body = rng.randbytes(rng.choice((0, 16, 512, 1400, 8192, 60000)))
            datagram = struct.pack("!Q", sequence) + body
            for _attempt in range(5):
                sock.sendto(datagram, ("127.0.0.1", port))
                try:
                    while True:  # a late reply to an earlier resend is skipped
                        reply = sock.recv(65535)
                        if reply[:8] == datagram[:8]:
                            break
                except TimeoutError:
                    tally.add(udp_resends=1)
                    continue
                if reply != datagram:
                    tally.fail(f"udp: datagram {sequence} came back different")
                    return
                tally.add(bytes_checked=len(datagram), datagrams=1)
                break
            else:
                tally.fail(f"udp: no echo of datagram {sequence} in 5 tries")
                return


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 60)
def test_mixed_tcp_and_udp_soak_against_echo_gets_every_byte_back():
    with Proc("echo", "127.0.0.1:0") as echo:
        port = echo.wait_listening()
        pid = echo.popen.pid
        _echo_once(port, 0)
        fds = settled_descriptors(pid)
        tally = Tally()
        deadline = time.monotonic() + SOAK_SECONDS
        workers = [threading.Thread(target=_tcp_worker, args=(port, n, deadline, tally, False)) for n in range(3)]
        workers += [threading.Thread(target=_tcp_worker, args=(port, 10 + n, deadline, tally, True)) for n in range(3)]
        workers += [threading.Thread(target=_udp_worker, args=(port, 20 + n, deadline, tally)) for n in range(2)]
        for worker in workers:
            worker.start()
        rss_samples = []
        while time.monotonic() < deadline:
            time.sleep(1)
            rss_samples.append(rss_kib(pid))
        for worker in workers:
            worker.join(30)
        assert tally.failures == []
        assert echo.popen.poll() is None
        assert tally.round_trips > 1000 and tally.datagrams > 500 and tally.connections > 100, vars(tally)
        assert tally.udp_resends <= tally.datagrams // 100, vars(tally)  # loopback UDP loses next to nothing
        wait_until(lambda: descriptors(pid) <= fds, what="every soak connection released")
        # Memory levels off: the second half of the soak adds no more than the slack.
        half = len(rss_samples) // 2
        assert max(rss_samples[half:]) - rss_samples[half] <= RSS_SLACK_KIB, rss_samples
        echo.popen.send_signal(signal.SIGTERM)
        assert echo.wait() == 143
        assert error_lines(echo.stderr) == []
    print(
        f"soak {SOAK_SECONDS:.0f}s: {tally.bytes_checked:,} bytes checked, {tally.round_trips:,} TCP round trips "
        f"over {tally.connections:,} connections, {tally.datagrams:,} datagrams ({tally.udp_resends} resent)"
    )
