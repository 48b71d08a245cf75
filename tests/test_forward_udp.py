"""forward --udp, --udp-to-tcp, --tcp-to-udp: sessions per client and the framing rule."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time

import pytest

from conftest import Proc, one_line_error, run
from reliability_helpers import recv_exactly
from test_forward import CLIENT_IP, TARGET_SIDE_IP, OneShotServer, connect, forwarding, read_to_end


class UdpServer:
    """A UDP target on loopback: answers each datagram with `reply(data, addr)` (None: no answer)
    and keeps what it received, in order."""

    def __init__(self, reply=lambda data, addr: data):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.received: list[bytes] = []
        self.senders: set = set()
        self._reply = reply
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[0] != TARGET_SIDE_IP:
                continue  # not from forward: another test's probe
            self.received.append(data)
            self.senders.add(addr)
            answer = self._reply(data, addr)
            if answer is not None:
                self.sock.sendto(answer, addr)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close()


@contextlib.contextmanager
def udp_server(reply=lambda data, addr: data):
    server = UdpServer(reply)
    try:
        yield server
    finally:
        server.close()


def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((CLIENT_IP, 0))
    sock.settimeout(5)
    return sock


def test_udp_send_wait_through_forward_to_echo_gets_its_reply():
    with Proc("echo", "--udp-only", "127.0.0.1:0", stdout=subprocess.DEVNULL) as echo:
        echo_port = echo.wait_listening()
        with forwarding(f"127.0.0.1:{echo_port}", "--udp") as (_proc, port):
            result = run("udp-send", "--wait", "-s", CLIENT_IP, f"127.0.0.1:{port}", "through the relay")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"through the relay"


def test_two_clients_get_only_their_own_replies():
    with (
        udp_server(lambda data, addr: b"for " + data) as server,
        forwarding(f"127.0.0.1:{server.port}", "--udp") as (proc, port),
    ):
        first, second = client(), client()
        with first, second:
            for round_ in range(5):
                first.sendto(b"first %d" % round_, ("127.0.0.1", port))
                second.sendto(b"second %d" % round_, ("127.0.0.1", port))
                assert first.recvfrom(100) == (b"for first %d" % round_, ("127.0.0.1", port))
                assert second.recvfrom(100) == (b"for second %d" % round_, ("127.0.0.1", port))
        proc.wait_for(r"connection from #2 ")
    assert len(server.senders) == 2, "one socket towards the target per client"


def test_a_udp_session_ends_after_the_idle_timeout():
    with udp_server() as server, forwarding(f"127.0.0.1:{server.port}", "--udp", "-i", "300ms") as (proc, port):
        with client() as sock:
            sock.sendto(b"hi", ("127.0.0.1", port))
            assert sock.recv(10) == b"hi"
            proc.wait_for(r"closed #1 .*\(idle for 300ms\): 2 B sent, 2 B received")
            sock.sendto(b"again", ("127.0.0.1", port))
            assert sock.recv(10) == b"again"
            proc.wait_for(r"connection from #2 ")  # a new session, with a new socket to the target
    assert len(server.senders) == 2


def test_udp_to_tcp_one_datagram_is_one_write_and_each_line_back_a_datagram():
    got = []

    def serve(conn):
        got.append(conn.recv(100))
        conn.sendall(b"first line\r\nsecond line\npartial")

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}", "--udp-to-tcp") as (_proc, port), client() as sock:
        sock.sendto(b"one datagram, no line end", ("127.0.0.1", port))
        replies = [sock.recv(100) for _ in range(3)]
        server.join()
    assert got == [b"one datagram, no line end"]
    assert replies == [b"first line", b"second line", b"partial"]  # the rest once the target closed


def test_tcp_to_udp_each_line_is_one_datagram_and_each_datagram_back_one_write():
    with (
        udp_server(lambda data, addr: b"<" + data + b">") as server,
        forwarding(f"127.0.0.1:{server.port}", "--tcp-to-udp") as (_proc, port),
        connect(port) as tcp,
    ):
        tcp.sendall(b"alpha\r\nbeta\nno end")
        tcp.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        while len(server.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        reply = read_to_end(tcp)
    assert server.received == [b"alpha", b"beta", b"no end"]
    assert reply.startswith(b"<alpha><beta>")


def test_tcp_to_udp_with_frame_len16_each_message_is_a_datagram_and_each_datagram_back_a_message():
    """--frame len16: the stream's messages (a 0x0A inside one is no line end) are the datagrams; a reply
    datagram comes back with its length header; an incomplete message at the end is dropped, said on stderr."""
    messages = [b"a\nb", b"x" * 1000, b"z"]
    stream = b"".join(len(m).to_bytes(2, "big") + m for m in messages) + b"\x00\x09part"
    with (
        udp_server(lambda data, addr: b"<" + data + b">") as server,
        forwarding(f"127.0.0.1:{server.port}", "--tcp-to-udp", "--frame", "len16") as (proc, port),
        connect(port) as tcp,
    ):
        for i in range(0, len(stream), 7):  # in pieces that cut headers and messages
            tcp.sendall(stream[i : i + 7])
        tcp.shutdown(socket.SHUT_WR)
        reply = read_to_end(tcp)
        proc.wait_for(r"#1 .*--frame: 6 B of an incomplete message at the end dropped")
    assert server.received == messages
    assert reply == b"".join((len(m) + 2).to_bytes(2, "big") + b"<" + m + b">" for m in messages)


def test_tcp_to_udp_a_message_larger_than_max_frame_closes_that_client():
    with (
        udp_server() as server,
        forwarding(f"127.0.0.1:{server.port}", "--tcp-to-udp", "--frame", "line", "--max-frame", "8") as (proc, port),
        connect(port) as tcp,
    ):
        tcp.sendall(b"short\n")
        assert recv_exactly(tcp, 6) == b"short\n"  # echoed, framed
        tcp.sendall(b"y" * 20 + b"\n")
        assert read_to_end(tcp) == b""
        proc.wait_for(r"warning: #1 .*--frame: a 20-byte message is larger than --max-frame \(8\)")
    assert server.received == [b"short"]


def test_udp_to_tcp_with_frame_len8_a_datagram_is_one_message_and_each_message_back_a_datagram():
    got = []

    def serve(conn):
        got.append(recv_exactly(conn, 4))
        conn.sendall(b"\x02hi\x00\x05hello")

    server = OneShotServer(serve)
    with forwarding(f"127.0.0.1:{server.port}", "--udp-to-tcp", "--frame", "len8") as (_proc, port), client() as sock:
        sock.sendto(b"abc", ("127.0.0.1", port))
        replies = [sock.recv(100) for _ in range(3)]
        server.join()
    assert got == [b"\x03abc"]
    assert replies == [b"hi", b"", b"hello"]


def test_a_target_that_refuses_datagrams_ends_that_session_and_the_relay_goes_on():
    with (
        udp_server() as server,
        forwarding(f"127.0.0.1:{server.port}", "--udp") as (proc, port),
    ):
        server.close()  # the port is closed now: an ICMP port unreachable answers
        with client() as sock:
            sock.sendto(b"1", ("127.0.0.1", port))
            time.sleep(0.05)
            sock.sendto(b"2", ("127.0.0.1", port))
            proc.wait_for(r"warning: #1 .*connection refused")
        assert proc.popen.poll() is None


def _dropped_pattern(seed: str) -> list[bytes]:
    with (
        udp_server(lambda data, addr: None) as server,
        forwarding(f"127.0.0.1:{server.port}", "--udp", "--drop", "50%", "--seed", seed, "--upstream") as (_p, port),
        client() as sock,
    ):
        for index in range(200):
            sock.sendto(b"%03d" % index, ("127.0.0.1", port))
            time.sleep(0.0005)
        sock.sendto(b"end", ("127.0.0.1", port))  # dropped or not, then wait for the rest
        deadline = time.monotonic() + 5
        last = -1
        while time.monotonic() < deadline and last != len(server.received):
            last = len(server.received)
            time.sleep(0.2)
        return [data for data in server.received if data != b"end"]


def test_drop_drops_about_that_share_and_the_same_seed_drops_the_same_datagrams():
    first = _dropped_pattern("7")
    second = _dropped_pattern("7")
    assert 60 <= len(first) <= 140, len(first)
    assert first == second


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--drop", "0.1"], "use it with --udp"),
        (["--udp", "--rate", "1k"], "--rate shapes a byte stream"),
        (["--udp", "-w", "1s"], "nothing connects to the target over TCP"),
        (["--udp", "--nodelay"], "TCP option"),
        (["--udp", "--udp-to-tcp"], "cannot be used together"),
        (["--tcp-to-udp", "--chunk", "1"], "whole datagrams"),
        (["--udp", "--drop", "2"], "between 0 and 1"),
    ],
)
def test_datagram_options_that_cannot_apply_are_usage_errors(args, message):
    result = run("forward", "127.0.0.1:0", "127.0.0.1:9", *args)
    assert result.returncode == 2
    assert message in one_line_error(result.stderr)


def test_udp_forwarding_to_a_unix_path_is_a_usage_error():
    result = run("forward", "--udp", "127.0.0.1:0", "unix:/tmp/nothing.sock")
    assert result.returncode == 2
    assert "not a unix: path" in one_line_error(result.stderr)


# -- who gets a session, in every mode (tests/test_option_pairs.py) --------------------------
def _knock(mode: str, port: int, source_ip: str) -> socket.socket:
    """A client from `source_ip` says hello: a datagram, or a connection and a line."""
    if mode in ("--udp", "--udp-to-tcp"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source_ip, 0))
        sock.settimeout(10)
        sock.sendto(b"hello\n", ("127.0.0.1", port))
        return sock
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source_ip, 0))
    sock.sendall(b"hello\n")
    return sock


@pytest.mark.parametrize("mode", ["tcp", "--udp", "--udp-to-tcp", "--tcp-to-udp"])
def test_allow_deny_and_max_clients_decide_who_gets_a_session_in_every_mode(mode):
    streams = mode in ("tcp", "--udp-to-tcp")  # the target side
    held: list[socket.socket] = []

    def serve(conn):  # a stream target: answers, then holds the session open until the client leaves
        conn.sendall(b"served\n")
        read_to_end(conn)

    server = OneShotServer(serve) if streams else None
    rules = ["--allow", "127.0.0.0/29", "--deny", "127.0.0.5/32", "--max-clients", "1"]
    flags = [] if mode == "tcp" else [mode]
    with contextlib.ExitStack() as stack:
        target = server.port if server is not None else stack.enter_context(udp_server(lambda d, a: b"served")).port
        proc, port = stack.enter_context(forwarding(f"127.0.0.1:{target}", *flags, *rules))
        first = _knock(mode, port, CLIENT_IP)  # in --allow: served, and holds the one place
        held.append(first)
        assert first.recv(100).rstrip(b"\n") == b"served"
        for source_ip, reason in (
            ("127.0.0.9", "not in --allow"),
            ("127.0.0.5", "denied by --deny"),
            ("127.0.0.2", "--max-clients 1 reached"),
        ):
            held.append(_knock(mode, port, source_ip))
            proc.wait_for(rf"rejected {source_ip}:\d+.*{reason}")
        for sock in held:
            sock.close()
    if server is not None:
        server.join()
