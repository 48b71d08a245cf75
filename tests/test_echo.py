"""socktool echo: RFC 862 over TCP and UDP, against Python peers and nc, under load."""

from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Proc, free_port, need, one_line_error, run
from reliability_helpers import LimitedProc

MB = 1024 * 1024


@pytest.fixture(autouse=True, scope="module")
def enough_descriptors():
    """The load tests open thousands of client sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def round_trip(port: int, message: bytes, host: str = "127.0.0.1") -> bytes:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(message)
        return recv_exactly(sock, len(message))


def udp_round_trip(port: int, message: bytes, host: str = "127.0.0.1") -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(message, (host, port))
        data, _ = sock.recvfrom(65535)
        return data


def status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(predicate, timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def connect_many(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def ping_pong(socks: list[socket.socket], rounds: int, size: int, deadline: float) -> tuple[int, int]:
    """Every socket does `rounds` round trips of `size` bytes, each a different
    message; returns (round trips whose reply matched, errors)."""
    pool = os.urandom(1 << 16)

    def message(conn: int, round_: int) -> bytes:
        start = (conn * 7919 + round_ * 104729) % (len(pool) - size)
        return pool[start : start + size]

    poller = select.epoll(len(socks))
    state: dict[int, list] = {}
    for conn, sock in enumerate(socks):
        expected = message(conn, 0)
        sock.send(expected)
        state[sock.fileno()] = [sock, conn, 0, expected, bytearray()]
        poller.register(sock.fileno(), select.EPOLLIN)
    good = errors = 0
    active = len(socks)
    try:
        while active:
            left = deadline - time.monotonic()
            if left <= 0:
                return good, errors + active
            for fd, _ in poller.poll(min(left, 1.0)):
                entry = state[fd]
                try:
                    data = entry[0].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # the server closed a client it should be serving
                    errors += 1
                    poller.unregister(fd)
                    active -= 1
                    continue
                got = entry[4]
                got += data
                if len(got) < size:
                    continue
                if bytes(got) == entry[3]:
                    good += 1
                else:
                    errors += 1
                got.clear()
                entry[2] += 1
                if entry[2] == rounds:
                    poller.unregister(fd)
                    active -= 1
                    continue
                entry[3] = message(entry[1], entry[2])
                entry[0].send(entry[3])
    finally:
        poller.close()
    return good, errors


@pytest.fixture
def echo_server():
    """A running `socktool echo -v` on a loopback port (TCP and UDP)."""
    with Proc("echo", "-v", "127.0.0.1:0") as proc:
        proc.port = proc.wait_listening()
        yield proc


# -- what a user sees -------------------------------------------------------------
def test_tcp_client_gets_its_message_back_exactly(echo_server):
    assert round_trip(echo_server.port, b"This is the message.") == b"This is the message."


def test_udp_client_gets_its_datagram_back_on_the_same_port(echo_server):
    assert udp_round_trip(echo_server.port, b"This is a UDP message.") == b"This is a UDP message."
    echo_server.wait_for(r"udp #1 127\.0\.0\.1:\d+: 22 B in, 22 B out")


def test_status_lines_show_each_client_with_bytes_and_duration(echo_server):
    round_trip(echo_server.port, b"x" * 1000)
    echo_server.wait_for(r"connection from #1 127\.0\.0\.1:\d+")
    closed = echo_server.wait_for(r"closed #1 127\.0\.0\.1:\d+ \(closed by peer\): (.*)")
    assert re.match(r"1000 B sent, 1000 B received in \d+ms", closed[1]), closed[0]


def test_listens_on_tcp_and_udp_and_says_so(echo_server):
    echo_server.wait_for(rf"listening on 127\.0\.0\.1:{echo_server.port} \(tcp\)")
    echo_server.wait_for(rf"listening on 127\.0\.0\.1:{echo_server.port} \(udp\)")


def test_nc_gets_5mb_of_random_bytes_back_intact(echo_server, tmp_path):
    need("nc")
    payload = os.urandom(5 * MB)
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    with open(source, "rb") as stdin:
        result = subprocess.run(
            ["nc", "-N", "127.0.0.1", str(echo_server.port)], stdin=stdin, capture_output=True, timeout=30
        )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == len(payload)
    assert result.stdout == payload
    echo_server.wait_for(r"closed #1 .*\(closed by peer\): 5\.0 MiB sent, 5\.0 MiB received")


def test_python_peer_that_half_closes_gets_everything_back(echo_server):
    payload = os.urandom(3 * MB)
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        received = bytearray()
        view = memoryview(payload)
        sock.setblocking(False)
        while view:  # send and read at once, as an echo client must
            _, writable, _ = select.select([sock], [sock], [], 5)
            if writable:
                try:
                    view = view[sock.send(view[:65536]) :]
                except BlockingIOError:
                    pass
            try:
                received += sock.recv(1 << 20)
            except BlockingIOError:
                pass
        sock.shutdown(socket.SHUT_WR)
        sock.setblocking(True)
        while chunk := sock.recv(1 << 20):
            received += chunk
    assert bytes(received) == payload


def test_stalled_client_does_not_delay_another(echo_server):
    stalled = socket.create_connection(("127.0.0.1", echo_server.port), timeout=5)
    stalled.setblocking(False)
    pushed = bytearray()
    chunk = os.urandom(65536)
    deadline = time.monotonic() + 5
    # Send without ever reading until every buffer on the way is full.
    while time.monotonic() < deadline:
        try:
            pushed += chunk[: stalled.send(chunk)]
        except BlockingIOError:
            if not select.select([], [stalled], [], 0.3)[1]:
                break
    assert len(pushed) > 65536
    started = time.monotonic()
    assert round_trip(echo_server.port, b"still served?") == b"still served?"
    assert time.monotonic() - started < 1.0
    # The stalled client still gets its bytes, all of them, in order.
    stalled.setblocking(True)
    stalled.settimeout(5)
    stalled.shutdown(socket.SHUT_WR)
    back = bytearray()
    while piece := stalled.recv(1 << 20):
        back += piece
    stalled.close()
    assert bytes(back) == bytes(pushed)


def test_max_clients_turns_away_extra_clients():
    with Proc("echo", "-v", "--tcp-only", "--max-clients", "2", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        second = socket.create_connection(("127.0.0.1", port), timeout=5)
        proc.wait_for(r"connection from #2")
        third = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            assert third.recv(100) == b""
        except ConnectionResetError:
            pass
        proc.wait_for(r"rejected 127\.0\.0\.1:\d+: --max-clients 2 reached")
        for sock in (first, second):
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
        first.close()
        proc.wait_for(r"closed #1")
        assert round_trip(port, b"room again") == b"room again"
        second.close()
        third.close()


def test_idle_timeout_closes_a_silent_client_but_not_a_busy_one():
    with Proc("echo", "-v", "--tcp-only", "--idle-timeout", "400ms", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        silent = socket.create_connection(("127.0.0.1", port), timeout=5)
        busy = socket.create_connection(("127.0.0.1", port), timeout=5)
        started = time.monotonic()
        for _ in range(8):  # 1.2s of traffic every 150ms
            busy.sendall(b"tick")
            assert recv_exactly(busy, 4) == b"tick"
            time.sleep(0.15)
        assert silent.recv(10) == b""  # closed by the server
        assert 0.4 <= time.monotonic() - started
        proc.wait_for(r"closed #1 .*\(idle timeout\)")
        busy.sendall(b"alive")
        assert recv_exactly(busy, 5) == b"alive"
        silent.close()
        busy.close()


def test_json_events_describe_clients_and_datagrams():
    with Proc("echo", "--json", "-v", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        assert round_trip(port, b"hello") == b"hello"
        assert udp_round_trip(port, b"dgram") == b"dgram"
        proc.wait_for(r"udp #1 ")
        proc.wait_for(r"closed #1 ")
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait() == 143
        records = [json.loads(line) for line in proc.popen.stdout.read().splitlines()]
    events = [r.get("event") for r in records]
    assert events[:2] == ["listening", "listening"]
    assert {r["kind"] for r in records[:2]} == {"tcp", "udp"}
    closed = next(r for r in records if r.get("event") == "closed")
    assert (closed["sent"], closed["received"], closed["reason"]) == (5, 5, "closed by peer")
    served = next(r for r in records if r.get("event") == "served")
    assert (served["kind"], served["received"], served["sent"]) == ("udp", 5, 5)
    stats = records[-1]
    assert stats["event"] == "stats" and stats["connections"] == 1 and stats["datagrams_in"] == 1


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_closes_every_client_and_exits(signum, status):
    with Proc("echo", "-v", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        proc.wait_for(r"connection from #3")
        proc.popen.send_signal(signum)
        assert proc.wait() == status
        for sock in clients:
            assert sock.recv(10) == b""
            sock.close()
        assert "Traceback" not in proc.stderr
        assert proc.stderr.count("(server stopped)") == 3
        assert re.search(r"total: 3 connections", proc.stderr)


def test_descriptors_are_released_as_clients_leave(echo_server):
    pid = echo_server.popen.pid
    round_trip(echo_server.port, b"the loop is running")
    echo_server.wait_for(r"closed #1")
    before = open_descriptors(pid)
    socks = connect_many(echo_server.port, 200)
    wait_until(lambda: open_descriptors(pid) >= before + 200, what="200 clients accepted")
    for sock in socks:
        sock.close()
    wait_until(lambda: open_descriptors(pid) == before, what="descriptors released")


def test_out_of_descriptors_warns_once_and_serves_waiting_clients_later():
    with LimitedProc(32, "echo", "-v", "--tcp-only", "127.0.0.1:0") as proc:
        popen = proc.popen
        port = proc.wait_listening()
        socks = connect_many(port, 40)  # the kernel queues those the server cannot take
        proc.wait_for(r"warning: cannot accept more clients on .*: too many open files")
        accepted = len([line for line in proc.lines if "connection from" in line])
        assert 20 < accepted < 40
        # Paused, not spinning on the connection it cannot take.
        used = cpu_seconds(popen.pid)
        time.sleep(1.0)
        assert cpu_seconds(popen.pid) - used < 0.3
        for sock in socks[:accepted]:
            sock.close()
        good, errors = ping_pong(socks[accepted:], 2, 32, time.monotonic() + 15)
        assert (good, errors) == (2 * (40 - accepted), 0)
        for sock in socks[accepted:]:
            sock.close()
        assert popen.poll() is None
        assert sum("warning:" in line for line in proc.lines) == 1


def test_tcp_only_serves_no_udp_and_udp_only_no_tcp():
    with Proc("echo", "--tcp-only", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        assert round_trip(port, b"tcp") == b"tcp"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))  # the UDP port is free: nobody serves it
    with Proc("echo", "--udp-only", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        assert udp_round_trip(port, b"udp") == b"udp"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)


def test_tcp_only_and_udp_only_together_is_a_usage_error():
    result = run("echo", "--tcp-only", "--udp-only", "127.0.0.1:0")
    assert result.returncode == 2
    assert "--tcp-only and --udp-only" in one_line_error(result.stderr)


def test_port_in_use_is_one_error_line_naming_it():
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        result = run("echo", f"127.0.0.1:{port}")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "address already in use" in line and f"tcp port {port}" in line


def udp_port_free_for_tcp() -> socket.socket:
    """A bound UDP socket whose port number nothing uses for TCP right now."""
    while True:
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind(("127.0.0.1", 0))
        try:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(holder.getsockname())
            return holder
        except OSError:
            holder.close()


def test_udp_port_in_use_is_one_error_line_too():
    with udp_port_free_for_tcp() as holder:
        port = holder.getsockname()[1]
        result = run("echo", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"udp port {port}" in one_line_error(result.stderr)


def test_quiet_prints_nothing_on_stderr(tmp_path):
    with Proc("echo", "-q", "--tcp-only", f"127.0.0.1:{free_port()}") as proc:
        port = int(proc.args[-1].rsplit(":", 1)[1])
        wait_until(lambda: _accepts(port), what="the server to accept")
        assert round_trip(port, b"shh") == b"shh"
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait() == 143
        assert proc.stderr == ""


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_unix_socket_echo(tmp_sock_dir):
    path = tmp_sock_dir / "echo.sock"
    with Proc("echo", "--tcp-only", f"unix:{path}") as proc:
        proc.wait_for(r"listening on unix:")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(b"over unix")
            assert recv_exactly(sock, 9) == b"over unix"


def test_unix_socket_needs_tcp_only_or_udp_only(tmp_sock_dir):
    result = run("echo", f"unix:{tmp_sock_dir / 'x.sock'}")
    assert result.returncode == 2
    assert "--tcp-only or --udp-only" in one_line_error(result.stderr)


def test_ipv6_loopback():
    if not socket.has_ipv6 or not _can_bind_ipv6():
        pytest.skip("no IPv6 loopback")
    with Proc("echo", "[::1]:0") as proc:
        port = proc.wait_listening()
        assert round_trip(port, b"six", host="::1") == b"six"
        assert udp_round_trip(port, b"six", host="::1") == b"six"


def _can_bind_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_help_names_the_default_port():
    result = run("echo", "--help")
    assert result.returncode == 0
    assert b"9999" in result.stdout


# -- load -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(30)
def test_1000_concurrent_clients_20_round_trips_every_byte_checked():
    with Proc("echo", "--tcp-only", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        socks = connect_many(port, 1000)
        try:
            good, errors = ping_pong(socks, 20, 64, time.monotonic() + 20)
        finally:
            for sock in socks:
                sock.close()
        assert (good, errors) == (20_000, 0)
        assert proc.popen.poll() is None


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_5000_connections_held_at_once_in_150mb():
    with Proc("echo", "--tcp-only", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        pid = proc.popen.pid
        socks = connect_many(port, 5000)
        try:
            good, errors = ping_pong(socks, 1, 64, time.monotonic() + 20)
            assert (good, errors) == (5000, 0)
            assert open_descriptors(pid) >= 5000  # all of them held at once
            rss_mb = status_field(pid, "VmRSS") / 1024
            assert rss_mb <= 150, f"server RSS {rss_mb:.0f} MB"
        finally:
            for sock in socks:
                sock.close()
        wait_until(lambda: open_descriptors(pid) < 100, what="descriptors released")
