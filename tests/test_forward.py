"""forward LISTEN TARGET: the relay as a user runs it, against real peers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import Proc, free_port, need, one_line_error, run, serve_once
from reliability_helpers import Collector, filtered_listener, recv_exactly, wait_until
from test_echo import connect_many, enough_descriptors, ping_pong  # noqa: F401 - the fixture, for the load test

MB = 1 << 20
# The test's clients connect from this address and forward admits only it: other tests on the
# machine scan loopback ports, and a stray connection must not take a one-client target's place.
CLIENT_IP = "127.0.0.3"
# ... and forward connects to one-client targets from this one, which they wait for (a port
# scan of another test may connect to the target too).
TARGET_SIDE_IP = "127.0.0.4"


@contextlib.contextmanager
def echo_server():
    with Proc("echo", "--tcp-only", "127.0.0.1:0", stdout=subprocess.DEVNULL) as proc:
        yield proc.wait_listening()


@contextlib.contextmanager
def forwarding(
    target: str, *extra: str, listen: str = "127.0.0.1:0", stdout=subprocess.DEVNULL, verbose=True, only_ours=True
):
    """A running `socktool forward` and its port (0 for a unix listener); with `only_ours`
    it admits only clients from CLIENT_IP."""
    admit = ["--allow", CLIENT_IP] if only_ours else []
    if only_ours and not target.startswith("unix:") and "-s" not in extra and "--proxy" not in extra:
        admit += ["-s", TARGET_SIDE_IP]
    with Proc("forward", *(["-v"] if verbose else []), listen, target, *admit, *extra, stdout=stdout) as proc:
        port = proc.wait_listening()
        try:
            yield proc, port
        except BaseException:
            proc.popen.terminate()
            print("forward's stderr:\n" + proc.stderr)  # pytest shows it with the failure
            raise
        proc.popen.terminate()
        assert proc.wait(10) == 143, proc.stderr


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(CLIENT_IP, 0))


def read_to_end(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


class OneShotServer:
    """A stream server for one client: runs `serve(conn)` in a thread."""

    def __init__(self, serve, family=socket.AF_INET, address=("127.0.0.1", 0), peer_ip=TARGET_SIDE_IP):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self.error: BaseException | None = None
        self.peer: object = None

        def main():
            try:
                while True:  # the client from `peer_ip`: a stray connection is closed
                    conn, self.peer = self.sock.accept()
                    if family != socket.AF_INET or self.peer[0] == peer_ip:
                        break
                    conn.close()
                with conn:
                    conn.settimeout(10)
                    serve(conn)
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def join(self) -> None:
        self.thread.join(10)
        self.sock.close()
        assert not self.thread.is_alive(), "the server is still waiting"
        if self.error is not None:
            raise self.error


# -- real peers --------------------------------------------------------------------------


def test_nc_through_forward_to_echo_gets_5mb_back_intact(tmp_path):
    need("nc")
    data = os.urandom(5 * MB)
    (tmp_path / "in").write_bytes(data)
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}") as (proc, port):
        with open(tmp_path / "in", "rb") as stdin:
            out = subprocess.run(
                ["nc", "-N", "-s", CLIENT_IP, "127.0.0.1", str(port)], stdin=stdin, capture_output=True, timeout=30
            )
        proc.wait_for(r"closed #1 .*closed by client")
    assert hashlib.sha256(out.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_curl_through_forward_gets_the_page_and_json_shows_request_and_response(tmp_path):
    need("curl")
    (tmp_path / "index.html").write_text("hello through the relay\n")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_accepting(port)
        with forwarding(f"127.0.0.1:{port}", "--json", stdout=subprocess.PIPE) as (proc, fport):
            events = Collector(proc.popen.stdout)
            page = subprocess.run(
                ["curl", "-s", "--max-time", "10", "--interface", CLIENT_IP, f"http://127.0.0.1:{fport}/index.html"],
                capture_output=True,
                timeout=20,
            )
            events.wait_until(lambda data: b'"event":"closed"' in data, what="the closed event")
    finally:
        server.terminate()
        server.wait(5)
    assert page.stdout == b"hello through the relay\n"
    records = [json.loads(line) for line in bytes(events.data).splitlines()]
    data = [r for r in records if r["event"] == "data"]
    up = b"".join(bytes.fromhex(r["hex"]) for r in data if r["direction"] == "upstream")
    down = b"".join(bytes.fromhex(r["hex"]) for r in data if r["direction"] == "downstream")
    assert up.startswith(b"GET /index.html HTTP/1.1\r\n")
    assert down.startswith(b"HTTP/1.0 200 OK\r\n") and down.endswith(b"hello through the relay\n")
    assert {r["conn"] for r in data} == {1}


def _wait_accepting(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing accepts on {port}"
            time.sleep(0.02)


def test_tcp_to_a_unix_stream_server(tmp_sock_dir):
    path = str(tmp_sock_dir / "app.sock")

    def serve(conn):
        request = read_to_end(conn)
        conn.sendall(b"unix says: " + request)

    server = OneShotServer(serve, socket.AF_UNIX, path)
    with forwarding(f"unix:{path}") as (_proc, port), connect(port) as client:
        client.sendall(b"ping")
        client.shutdown(socket.SHUT_WR)
        assert read_to_end(client) == b"unix says: ping"
    server.join()


def test_a_unix_listener_to_a_tcp_server(tmp_sock_dir):
    path = str(tmp_sock_dir / "front.sock")
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}", listen=f"unix:{path}"):
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(path)
            client.sendall(b"over unix")
            assert recv_exactly(client, 9) == b"over unix"
    assert not os.path.exists(path), "the socket file is removed when forward ends"


def test_socat_client_through_forward(tmp_path):
    need("socat")
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}") as (_proc, port):
        out = subprocess.run(
            ["socat", "-t", "5", "-", f"TCP:127.0.0.1:{port},bind={CLIENT_IP}"],
            input=b"socat line\n",
            capture_output=True,
            timeout=20,
        )
    assert out.stdout == b"socat line\n"


# -- half-close ------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ("--json",)], ids=["splice", "copy"])
def test_client_half_close_reaches_the_target_which_still_answers(extra):
    def serve(conn):
        request = read_to_end(conn)  # EOF arrives: the client half-closed
        conn.sendall(b"after EOF: " + request)

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}", *extra) as (proc, port), connect(port) as client:
        client.sendall(b"question")
        client.shutdown(socket.SHUT_WR)
        assert read_to_end(client) == b"after EOF: question"
        proc.wait_for(r"closed #1 .*\(closed by client\)")
    server.join()


@pytest.mark.parametrize("extra", [(), ("--json",)], ids=["splice", "copy"])
def test_target_half_close_reaches_the_client_which_still_sends(extra):
    got = []

    def serve(conn):
        conn.sendall(b"banner")
        conn.shutdown(socket.SHUT_WR)
        got.append(read_to_end(conn))

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}", *extra) as (_proc, port), connect(port) as client:
        assert read_to_end(client) == b"banner"  # EOF from the target came through
        client.sendall(b"still talking")
        client.shutdown(socket.SHUT_WR)
        server.join()
    assert got == [b"still talking"]


def test_nc_half_close_gets_the_whole_reply():
    need("nc")

    def serve(conn):
        request = read_to_end(conn)
        conn.sendall(request.upper())

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}") as (_proc, port):
        out = subprocess.run(
            ["nc", "-N", "-s", CLIENT_IP, "127.0.0.1", str(port)], input=b"shout\n", capture_output=True, timeout=20
        )
    server.join()
    assert out.stdout == b"SHOUT\n"


def test_a_target_reset_resets_the_client():
    def serve(conn):
        conn.recv(10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}") as (proc, port), connect(port) as client:
        client.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            client.recv(10)
        proc.wait_for(r"closed #1 .*target: connection reset by peer")
    server.join()


# -- many clients, failures, limits ---------------------------------------------------------


def test_a_refused_target_closes_that_client_and_the_relay_goes_on():
    dead = free_port()
    with forwarding(f"127.0.0.1:{dead}") as (proc, port):
        for _ in range(2):
            with connect(port) as client:
                assert read_to_end(client) == b""
        proc.wait_for(r"warning: #2 .*cannot connect to 127\.0\.0\.1:\d+: connection refused")
        assert proc.popen.poll() is None, "forward keeps running"


def test_target_coming_up_later_is_used_by_the_next_client():
    port_holder = socket.socket()
    port_holder.bind(("127.0.0.1", 0))
    target = port_holder.getsockname()[1]
    with forwarding(f"127.0.0.1:{target}") as (proc, port):
        with connect(port) as client:
            assert read_to_end(client) == b""
        proc.wait_for("connection refused")
        port_holder.listen(1)
        with connect(port) as client:
            conn, _ = port_holder.accept()
            with conn:
                conn.sendall(b"up now")
                assert recv_exactly(client, 6) == b"up now"
    port_holder.close()


def test_connect_timeout_closes_the_client():
    listener, filler = filtered_listener()
    target = listener.getsockname()[1]
    try:
        with forwarding(f"127.0.0.1:{target}", "-w", "300ms") as (proc, port), connect(port) as client:
            assert read_to_end(client) == b""
            proc.wait_for(r"cannot connect to .*timed out after 300ms")
    finally:
        filler.close()
        listener.close()


def test_max_clients_turns_away_the_extra_client():
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}", "--max-clients", "1") as (proc, port):
        with connect(port) as first:
            first.sendall(b"a")
            assert recv_exactly(first, 1) == b"a"
            with connect(port) as second:
                assert read_to_end(second) == b""
            proc.wait_for(r"rejected .*--max-clients 1 reached")
            first.sendall(b"b")
            assert recv_exactly(first, 1) == b"b"


def test_deny_turns_a_client_away_before_any_byte():
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}", "--deny", "127.0.0.0/8") as (proc, port):
        with connect(port) as client:
            assert read_to_end(client) == b""
        proc.wait_for(r"rejected .*denied by --deny")


def test_idle_timeout_closes_a_silent_pair():
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}", "-i", "300ms") as (proc, port), connect(port) as client:
        client.sendall(b"x")
        assert recv_exactly(client, 1) == b"x"
        assert read_to_end(client) == b""
        proc.wait_for(r"closed #1 .*\(idle timeout\)")


@pytest.mark.timeout(60)
def test_a_bulk_pair_moves_in_two_threads_every_byte_and_still_ends_on_the_idle_timeout():
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}", "-i", "1s") as (proc, port), connect(port) as client:
        tasks = f"/proc/{proc.popen.pid}/task"
        assert len(os.listdir(tasks)) == 1  # the loop alone
        data = os.urandom(4 * MB)  # past 1 MiB one way: the pair leaves the loop for two threads
        sender = threading.Thread(target=client.sendall, args=(data,), daemon=True)
        sender.start()
        echoed = recv_exactly(client, len(data))
        sender.join(10)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()
        assert len(os.listdir(tasks)) == 3  # the loop and the pair's two threads
        client.sendall(b"still here")  # a small message after the bulk, by the threads at once
        assert recv_exactly(client, 10) == b"still here"
        assert read_to_end(client) == b""  # then silence: the loop's idle timer closes the pair
        proc.wait_for(r"closed #1 .*\(idle timeout\)")
        wait_until(lambda: len(os.listdir(tasks)) == 1, 5, what="the threads to end")


def test_source_address_is_used_for_the_target_side():
    def serve(conn):
        conn.sendall(b"ok")

    server = OneShotServer(serve, peer_ip="127.0.0.2")
    with forwarding(f"127.0.0.1:{server.port}", "-s", "127.0.0.2") as (_proc, port), connect(port) as client:
        assert read_to_end(client) == b"ok"
    server.join()
    assert server.peer[0] == "127.0.0.2"


def test_a_thousand_clients_twenty_round_trips_each_every_byte_checked():
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}", verbose=False, only_ours=False) as (_proc, port):
        socks = connect_many(port, 1000)
        try:
            good, errors = ping_pong(socks, rounds=20, size=64, deadline=time.monotonic() + 50)
        finally:
            for sock in socks:
                sock.close()
    assert errors == 0
    assert good == 1000 * 20


# -- what users see --------------------------------------------------------------------------


def test_record_rebuilds_both_directions_exactly(tmp_path):
    upstream = os.urandom(300_000)
    downstream = os.urandom(200_000)

    def serve(conn):
        assert recv_exactly(conn, len(upstream)) == upstream
        conn.sendall(downstream)

    server = OneShotServer(serve)
    recording = tmp_path / "session.jsonl"
    with forwarding(f"127.0.0.1:{server.port}", "--record", str(recording)) as (proc, port):
        with connect(port) as client:
            client.sendall(upstream)
            assert recv_exactly(client, len(downstream)) == downstream
        proc.wait_for(r"closed #1")
    server.join()
    records = [json.loads(line) for line in recording.read_text().splitlines()]
    rebuilt = {"upstream": bytearray(), "downstream": bytearray()}
    for record in records:
        if record["event"] == "data":
            rebuilt[record["direction"]] += bytes.fromhex(record["hex"])
    assert hashlib.sha256(rebuilt["upstream"]).digest() == hashlib.sha256(upstream).digest()
    assert hashlib.sha256(rebuilt["downstream"]).digest() == hashlib.sha256(downstream).digest()
    assert [r["event"] for r in records][:2] == ["listening", "notice"]
    assert records[-1]["event"] == "stats"


def test_view_labels_both_directions_of_each_connection():
    with (
        echo_server() as echo,
        forwarding(f"127.0.0.1:{echo}", "--view", "--no-color", stdout=subprocess.PIPE) as (
            proc,
            port,
        ),
    ):
        view = Collector(proc.popen.stdout)
        with connect(port) as client:
            client.sendall(b"look at me\n")
            assert recv_exactly(client, 11) == b"look at me\n"
        view.wait_until(lambda data: b"closed" in data, what="the closed line")
    text = bytes(view.data).decode()
    assert "#1" in text
    assert "client → target" in text and "client ← target" in text
    assert "look at me\\n" in text


def test_hex_view_draws_both_directions_as_hex_rows():
    with (
        echo_server() as echo,
        forwarding(f"127.0.0.1:{echo}", "--view", "--hex", "--no-color", stdout=subprocess.PIPE) as (proc, port),
    ):
        view = Collector(proc.popen.stdout)
        with connect(port) as client:
            client.sendall(b"look\n")
            assert recv_exactly(client, 5) == b"look\n"
        view.wait_until(lambda data: b"closed" in data, what="the closed line")
    text = bytes(view.data).decode()
    assert "client → target" in text and "client ← target" in text
    assert text.count("6c 6f 6f 6b 0a") == 2, text  # "look\n", each way, as hex
    assert "look\\n" not in text  # not the text view's escapes


# -- faults -------------------------------------------------------------------------------------


def _round_trip_time(port: int, rounds: int = 5) -> float:
    with connect(port) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.sendall(b"warm")
        recv_exactly(client, 4)
        started = time.monotonic()
        for _ in range(rounds):
            client.sendall(b"ping")
            assert recv_exactly(client, 4) == b"ping"
        return (time.monotonic() - started) / rounds


def test_delay_adds_its_time_to_each_round_trip():
    with echo_server() as echo:
        with forwarding(f"127.0.0.1:{echo}") as (_proc, port):
            plain = _round_trip_time(port)
        with forwarding(f"127.0.0.1:{echo}", "--delay", "100ms", "--upstream") as (_proc, port):
            delayed = _round_trip_time(port)
    assert 0.080 <= delayed - plain <= 0.120, (plain, delayed)


@pytest.mark.slow
def test_rate_moves_4mib_in_about_4_seconds():
    data = os.urandom(4 * MB)

    def serve(conn):
        assert recv_exactly(conn, len(data)) == data
        conn.sendall(b"done")

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}", "--rate", "1MiB/s") as (_proc, port), connect(port) as client:
        started = time.monotonic()
        client.sendall(data)
        assert recv_exactly(client, 4) == b"done"
        took = time.monotonic() - started
    server.join()
    assert 3.5 <= took <= 4.5, took


def test_chunk_1_delivers_one_byte_per_read():
    reads = []

    def serve(conn):
        while len(b"".join(reads)) < 10:
            reads.append(conn.recv(65536))

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}", "--chunk", "1", "--chunk-delay", "50ms") as (_p, port):
        with connect(port) as client:
            client.sendall(b"0123456789")
            server.join()
    assert reads == [bytes([b]) for b in b"0123456789"]


def test_reset_after_resets_after_exactly_that_many_bytes():
    def serve(conn):
        conn.recv(10)  # the client is connected: a reset cannot land before its connect returns
        conn.sendall(os.urandom(5000))
        time.sleep(0.5)

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}", "--reset-after", "1000", "--downstream") as (proc, port):
        with connect(port) as client:
            client.sendall(b"go")
            got = bytearray()
            with pytest.raises(ConnectionResetError):
                while chunk := client.recv(65536):
                    got += chunk
        assert len(got) == 1000
        proc.wait_for(r"--reset-after reached \(downstream\)")
    server.join()


def test_close_after_closes_after_exactly_that_many_bytes():
    def serve(conn):
        conn.sendall(b"x" * 5000)

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}", "--close-after", "1234") as (_proc, port), connect(port) as client:
        assert read_to_end(client) == b"x" * 1234
    server.join()


# -- usage -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream"], "which fault"),
        (["--seed", "3"], "--seed goes with --jitter"),
        (["--chunk-delay", "5ms"], "give --chunk N"),
        (["--hex"], "--hex"),
        (["--rate", "fast"], "not a rate"),
    ],
)
def test_options_that_cannot_apply_are_usage_errors(args, message):
    result = run("forward", "127.0.0.1:0", "127.0.0.1:9", *args)
    assert result.returncode == 2
    assert message in one_line_error(result.stderr)


# -- --record on the other commands --------------------------------------------------------


def _recorded(path) -> dict[str, bytes]:
    """The bytes of each direction in a recording (data and datagram records)."""
    out: dict[str, bytearray] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "hex" in record:
            out.setdefault(record["direction"], bytearray()).extend(bytes.fromhex(record["hex"]))
    return {direction: bytes(data) for direction, data in out.items()}


def test_tcp_connect_record_keeps_both_directions_and_stdout_stays_raw(tmp_path):
    reply = os.urandom(100_000)
    port = serve_once(reply)
    recording = tmp_path / "connect.jsonl"
    result = run("tcp-connect", f"127.0.0.1:{port}", "--record", str(recording), input=b"request bytes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply
    assert _recorded(recording) == {"sent": b"request bytes", "received": reply}


def test_tcp_listen_record_keeps_both_directions_of_its_client(tmp_path):
    recording, payload = tmp_path / "listen.jsonl", tmp_path / "payload"
    payload.write_bytes(b"to the client")
    with (
        payload.open("rb") as stdin,
        Proc("tcp-listen", "127.0.0.1:0", "--record", str(recording), stdin=stdin) as listener,
    ):
        port = listener.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"from the client")
            client.shutdown(socket.SHUT_WR)
            assert recv_exactly(client, 13) == b"to the client"
        assert listener.wait() == 0
        assert listener.popen.stdout.read() == b"from the client"
    assert _recorded(recording) == {"sent": b"to the client", "received": b"from the client"}


def test_udp_listen_and_udp_send_record_their_datagrams(tmp_path):
    listen_record, send_record = tmp_path / "listen.jsonl", tmp_path / "send.jsonl"
    with Proc("udp-listen", "127.0.0.1:0", "--count", "1", "--echo", "--record", str(listen_record)) as listener:
        port = listener.wait_listening()
        result = run("udp-send", "--wait", f"127.0.0.1:{port}", "ping", "--record", str(send_record))
        assert listener.wait(10) == 0
    assert result.stdout == b"ping"
    assert _recorded(send_record) == {"sent": b"ping", "received": b"ping"}
    assert _recorded(listen_record) == {"received": b"ping", "sent": b"ping"}
