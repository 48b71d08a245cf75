"""Options, and pairs of options, that had no test showing them at work (see tests/test_option_pairs.py).

Most run socktool as a user does. Socket options a peer cannot see (keepalive,
TCP_NODELAY, SO_REUSEADDR) are read off the socket itself, with the command
run in this process up to the moment its socket is set up.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import Proc, command, free_port, run
from socktool.cli import boundary
from socktool.net import interrupts, tcp
from test_udp import _SO_TIMESTAMPNS, arrival_times, nothing_arrives, udp_socket

# -- -4 / -6 --------------------------------------------------------------------------------
FAMILY_CASES = {
    "tcp-connect": (["tcp-connect", "{v4}:9"], ["tcp-connect", "[{v6}]:9"]),
    "tcp-listen": (["tcp-listen", "{v4}:0"], ["tcp-listen", "[{v6}]:0"]),
    "udp-send": (["udp-send", "{v4}:9", "x"], ["udp-send", "[{v6}]:9", "x"]),
    "udp-listen": (["udp-listen", "{v4}:0"], ["udp-listen", "[{v6}]:0"]),
    "echo": (["echo", "{v4}:0"], ["echo", "[{v6}]:0"]),
    "time-server": (["time-server", "{v4}:0"], ["time-server", "[{v6}]:0"]),
    "forward": (["forward", "{v4}:0", "{v4}:9"], ["forward", "[{v6}]:0", "{v4}:9"]),
    "portscan": (["portscan", "{v4}", "9"], ["portscan", "{v6}", "9"]),
    "wait": (["wait", "-w", "200ms", "{v4}:9"], ["wait", "-w", "200ms", "[{v6}]:9"]),
    "ping": (["ping", "-c", "1", "{v4}:9"], ["ping", "-c", "1", "[{v6}]:9"]),
}


def _fill(args: list[str]) -> list[str]:
    return [arg.format(v4="127.0.0.1", v6="::1") for arg in args]


@pytest.mark.parametrize("name", list(FAMILY_CASES))
def test_family_flags_refuse_an_address_of_the_other_family(name):
    ipv4_args, ipv6_args = FAMILY_CASES[name]
    only_v6 = run(*_fill(ipv4_args[:1]), "-6", *_fill(ipv4_args[1:]))
    only_v4 = run(*_fill(ipv6_args[:1]), "-4", *_fill(ipv6_args[1:]))
    assert only_v6.returncode == only_v4.returncode == 1
    assert "no IPv6 address" in only_v6.stderr.decode()
    assert "no IPv4 address" in only_v4.stderr.decode()


# -- tcp-connect / tcp-listen relay options -----------------------------------------------
class Peer:
    """A loopback TCP server for one client: `handle(conn)` runs in a thread; what it returns is kept."""

    def __init__(self, handle):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.result: object = None
        self._thread = threading.Thread(target=self._serve, args=(handle,), daemon=True)
        self._thread.start()

    def _serve(self, handle) -> None:
        with self.server:
            conn, _ = self.server.accept()
            with conn:
                conn.settimeout(20)
                self.result = handle(conn)

    def join(self) -> object:
        self._thread.join(20)
        return self.result


def read_to_end(conn: socket.socket) -> bytes:
    data = bytearray()
    while chunk := conn.recv(65536):
        data += chunk
    return bytes(data)


def test_recv_only_sends_nothing_of_stdin():
    def greet_then_listen(conn):
        conn.sendall(b"hi")
        conn.shutdown(socket.SHUT_WR)
        return read_to_end(conn)  # until socktool closes: all it ever sent

    peer = Peer(greet_then_listen)
    result = run("tcp-connect", "--recv-only", f"127.0.0.1:{peer.port}", input=b"secret\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi"
    assert peer.join() == b""


def test_hex_input_send_crlf_and_repeat_together():
    peer = Peer(read_to_end)
    args = ["--send", "61 0a", "--send", "62", "--hex-input", "--crlf", "--repeat", "2"]
    result = run("tcp-connect", *args, f"127.0.0.1:{peer.port}")
    assert result.returncode == 0, result.stderr
    assert peer.join() == b"a\r\nb" * 2


def test_idle_timeout_ends_an_expect_wait_unmet():
    peer = Peer(read_to_end)  # says nothing, holds the connection open until socktool leaves
    result = run("tcp-connect", "--recv-only", "--expect", "ready", "-i", "200ms", f"127.0.0.1:{peer.port}")
    assert result.returncode == 1
    line = result.stderr.decode()
    assert "no match for /ready/" in line and "no traffic for 200ms" in line


def test_hex_view_in_a_pipe_with_view():
    peer = Peer(read_to_end)
    result = run("tcp-connect", "--view", "--hex", "--no-color", "--send", "hi", f"127.0.0.1:{peer.port}")
    assert result.returncode == 0, result.stderr
    assert "68 69" in result.stdout.decode() and "|hi|" in result.stdout.decode()


@pytest.mark.parametrize(
    "mode", [[], ["-k"], ["--broker"], ["--exec", "cat"]], ids=["one client", "-k", "--broker", "--exec"]
)
def test_listen_timeout_gives_up_without_a_client(mode):
    result = run("tcp-listen", *mode, "-w", "200ms", "127.0.0.1:0")
    assert result.returncode == 1
    assert "no client connected" in result.stderr.decode() and "within 200ms" in result.stderr.decode()


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "payload"
    path.write_bytes(b"x" * 300_000)
    return path


@pytest.mark.parametrize("name", ["tcp-connect", "tcp-listen"])
def test_progress_draws_a_transfer_bar_on_stderr(name, big_file):
    if name == "tcp-connect":
        peer = Peer(read_to_end)
        with big_file.open("rb") as stdin:
            result = subprocess.run(
                command("tcp-connect", "--progress", f"127.0.0.1:{peer.port}"),
                stdin=stdin,
                capture_output=True,
                timeout=20,
            )
        assert result.returncode == 0, result.stderr
        assert len(peer.join()) == 300_000
        stderr = result.stderr.decode()
    else:
        with big_file.open("rb") as stdin, Proc("tcp-listen", "--progress", "127.0.0.1:0", stdin=stdin) as proc:
            port = proc.wait_listening()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                assert len(read_to_end(client)) == 300_000
            assert proc.wait() == 0
            stderr = proc.stderr
    assert "sent" in stderr and "100%" in stderr, stderr


# -- socket options, read off the socket ----------------------------------------------------
class _Stop(BaseException):
    """Raised by a spy once it has seen the socket: the command goes no further."""


def run_in_process(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interrupts, "install", lambda: None)
    with pytest.raises(_Stop):
        boundary.main(argv)


def connect_when_listening(port: int) -> threading.Thread:
    """A client that connects as soon as something listens on the port (and then leaves)."""

    def client():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.recv(1)  # until socktool closes it
                return
            except OSError:
                threading.Event().wait(0.02)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    return thread


SOCKET_OPTIONS = {
    "--keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "--nodelay": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
}


@pytest.mark.parametrize("option", list(SOCKET_OPTIONS))
def test_socket_options_reach_the_connection(option, monkeypatch):
    """tcp-connect's socket, and the accepted sockets of tcp-listen and forward (each side)."""
    level, name = SOCKET_OPTIONS[option]
    apply = tcp.SocketOptions.apply
    seen: list[int] = []

    def spy(self, sock):
        apply(self, sock)
        seen.append(sock.getsockopt(level, name))
        raise _Stop

    monkeypatch.setattr(tcp.SocketOptions, "apply", spy)
    with socket.create_server(("127.0.0.1", 0)) as target:
        port = target.getsockname()[1]
        run_in_process(["tcp-connect", option, f"127.0.0.1:{port}"], monkeypatch)
        listen_port = free_port()
        client = connect_when_listening(listen_port)
        run_in_process(["tcp-listen", option, f"127.0.0.1:{listen_port}"], monkeypatch)
        client.join(10)
        forward_port = free_port()
        client = connect_when_listening(forward_port)
        run_in_process(["forward", option, f"127.0.0.1:{forward_port}", f"127.0.0.1:{port}"], monkeypatch)
        client.join(10)
    assert len(seen) == 3 and all(seen), seen


@pytest.mark.parametrize("option", ["--reuse-addr", "--no-reuse-addr"])
def test_reuse_addr_is_set_unless_refused(option, monkeypatch):
    from socktool.net import pipe

    bind = pipe.bind
    seen: list[int] = []

    def spy(*args, **kwargs):
        listener = bind(*args, **kwargs)
        seen.append(listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
        listener.close()
        raise _Stop

    monkeypatch.setattr(pipe, "bind", spy)  # tcp-listen's one-client engine binds through it
    run_in_process(["tcp-listen", option, "127.0.0.1:0"], monkeypatch)
    assert seen == [0 if option == "--no-reuse-addr" else 1]


# -- udp-send ---------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--view", "--hex"])
def test_udp_send_view_shows_what_was_sent(option):
    with udp_socket() as peer:
        flags = ["--view", "--no-color", *(["--hex"] if option == "--hex" else [])]
        result = run("udp-send", *flags, f"127.0.0.1:{peer.getsockname()[1]}", "hi")
        assert peer.recvfrom(100)[0] == b"hi"
    assert result.returncode == 0, result.stderr
    shown = result.stdout.decode()
    assert "→" in shown
    assert ("68 69" in shown and "|hi|" in shown) if option == "--hex" else "2 B  hi" in shown


def test_lines_are_paced_by_interval():
    with udp_socket() as peer:
        peer.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)  # the kernel stamps each arrival
        port = peer.getsockname()[1]
        result = run("udp-send", "--lines", "--interval", "100ms", f"127.0.0.1:{port}", input=b"a\nb\nc\n")
        assert result.returncode == 0, result.stderr
        arrivals = arrival_times(peer, [b"a", b"b", b"c"])
        assert nothing_arrives(peer, 0.1)
    # A lower bound only: the lines were spread out, not sent at once.
    assert arrivals[1] - arrivals[0] >= 0.09 and arrivals[2] - arrivals[1] >= 0.09


# -- echo -------------------------------------------------------------------------------------
def test_echo_max_clients_and_idle_timeout_together():
    """The one place --max-clients allows is freed when -i closes its silent client."""
    with Proc("echo", "--tcp-only", "--max-clients", "1", "-i", "300ms", "-v", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            proc.wait_for("connection from")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                assert extra.recv(10) == b""  # turned away: the one place is taken
            proc.wait_for("rejected")
            assert silent.recv(10) == b""  # closed by the idle timeout
        proc.wait_for("idle")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"ping")
            assert client.recv(10) == b"ping"
        proc.popen.terminate()
        proc.wait()


@pytest.mark.parametrize("option", ["--keepalive", "--nodelay"])
@pytest.mark.parametrize(
    "args",
    [
        ["tcp-connect", "unix:{dir}/s"],
        ["tcp-listen", "unix:{dir}/s"],
        ["forward", "unix:{dir}/a", "unix:{dir}/b"],
        ["forward", "--udp-to-tcp", "127.0.0.1:0", "unix:{dir}/b"],
    ],
    ids=["tcp-connect", "tcp-listen", "forward", "forward --udp-to-tcp"],
)
def test_tcp_socket_options_are_refused_where_there_is_no_tcp(args, option, tmp_sock_dir):
    result = run(*(arg.format(dir=tmp_sock_dir) for arg in args), option)
    assert result.returncode == 2
    assert f"'{option}': it is a TCP option" in result.stderr.decode()
    assert len(result.stderr.splitlines()) == 1
