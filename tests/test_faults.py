"""Faults: peers that reset or die mid-transfer, stdout or stdin closed early or
closed from the start, SIGINT / SIGTERM in every long-running command, and too
few descriptors (`ulimit -n 64`).

What arrived is kept, the exit code says what happened, sockets are closed
and unix socket files removed, and there is never a traceback.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import Proc, command, free_port
from reliability_helpers import (
    MB,
    Collector,
    LimitedProc,
    error_lines,
    feed,
    filtered_listener,
    has_socket,
    one_error,
    recv_exactly,
    reset,
    wait_until,
)


# -- a peer resets mid-transfer ---------------------------------------------------
def test_listener_keeps_every_byte_before_its_client_resets_mid_transfer():
    data = os.urandom(3 * MB)
    with Proc("tcp-listen", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        out = Collector(listener.popen.stdout)
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(data[:MB])
        out.wait_for(MB)  # all of it written out before the reset
        client.sendall(data[MB : 2 * MB])
        reset(client)  # while that second megabyte is still on its way
        assert listener.wait() == 1
        got = out.result()
        line = one_error(listener.stderr)
    assert len(got) >= MB and got == data[: len(got)]
    assert re.search(r"connection to 127\.0\.0\.1:\d+ reset by peer: after \d+ bytes received", line)


def test_echo_client_reset_mid_transfer_leaves_the_others_served():
    with Proc("echo", "-v", "--tcp-only", "127.0.0.1:0") as echo:
        port = echo.wait_listening()
        steady = socket.create_connection(("127.0.0.1", port), timeout=10)
        doomed = socket.create_connection(("127.0.0.1", port), timeout=10)
        doomed.sendall(os.urandom(MB))  # its echo is not read: the server keeps some pending
        reset(doomed)
        echo.wait_for(r"closed #2 .*\(connection reset by peer\)")
        message = os.urandom(200_000)
        sender = threading.Thread(target=steady.sendall, args=(message,))  # read while writing
        sender.start()
        assert recv_exactly(steady, len(message)) == message
        sender.join(10)
        steady.close()
        echo.wait_for(r"closed #1 .*\(closed by peer\)")
        assert echo.popen.poll() is None
        assert error_lines("\n".join(echo.lines)) == []


# -- a peer is killed (SIGKILL) mid-transfer --------------------------------------------
def test_listener_keeps_a_clean_prefix_when_the_sending_process_is_killed():
    data = os.urandom(16 * MB)
    with Proc("tcp-listen", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        out = Collector(listener.popen.stdout)
        with Proc("tcp-connect", f"127.0.0.1:{port}", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as sender:
            feed(sender.popen.stdin, data)
            out.wait_for(MB)
            sender.popen.kill()
            sender.popen.wait(timeout=5)
        assert listener.wait() == 0  # the kernel closed the dead sender's socket with a FIN
        got = out.result()
        assert error_lines(listener.stderr) == []
    assert MB <= len(got) < len(data)
    assert got == data[: len(got)]


def test_connect_keeps_a_clean_prefix_when_the_serving_process_is_killed():
    data = os.urandom(16 * MB)
    with Proc("tcp-listen", "127.0.0.1:0", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as server:
        port = server.wait_listening()
        feed(server.popen.stdin, data)
        with Proc("tcp-connect", f"127.0.0.1:{port}") as client:
            out = Collector(client.popen.stdout)
            out.wait_for(MB)
            server.popen.kill()
            server.popen.wait(timeout=5)
            assert client.wait() == 0
            got = out.result()
            assert error_lines(client.stderr) == []
    assert MB <= len(got) < len(data)
    assert got == data[: len(got)]


def test_connect_to_an_echo_server_killed_mid_transfer_keeps_a_clean_prefix():
    data = os.urandom(32 * MB)
    with Proc("echo", "--tcp-only", "127.0.0.1:0") as echo:
        port = echo.wait_listening()
        with Proc("tcp-connect", f"127.0.0.1:{port}", stdin=subprocess.PIPE) as client:
            feed(client.popen.stdin, data)
            out = Collector(client.popen.stdout)
            out.wait_for(MB)
            echo.popen.kill()
            echo.popen.wait(timeout=5)
            code = client.wait()
            got = out.result()
            # Unread bytes in the dead server's socket make it a reset (exit 1); else a close (0).
            assert code in (0, 1)
            errors = error_lines(client.stderr)
            assert len(errors) == code
            if code:
                assert re.search(r"reset by peer|cannot send to", errors[0]), errors
    assert MB <= len(got) < len(data)
    assert got == data[: len(got)]


# -- stdout closed early (the reader goes away) -------------------------------------------
def _stream_forever(port: int, stop: threading.Event) -> threading.Thread:
    def stream() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                while not stop.is_set():
                    sock.sendall(b"y" * 65536)
        except OSError:
            pass

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("keep_open", [False, True], ids=["one client", "keep-open"])
def test_listener_whose_reader_goes_away_exits_0_quietly(keep_open):
    stop = threading.Event()
    args = ["-k"] if keep_open else []
    with Proc("tcp-listen", *args, "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        streams = [_stream_forever(port, stop) for _ in range(2 if keep_open else 1)]
        assert listener.popen.stdout.read(10) == b"y" * 10
        listener.popen.stdout.close()
        code = listener.wait()
        stop.set()
        for thread in streams:
            thread.join(10)
        assert code == 0
        assert error_lines(listener.stderr) == []


@pytest.mark.parametrize("command_name", ["echo", "time-server"])
def test_json_server_whose_reader_goes_away_exits_0_quietly(command_name):
    with Proc(command_name, "--json", "--udp-only", "127.0.0.1:0") as server:
        port = server.wait_listening()
        first = server.popen.stdout.readline()
        assert b'"event":"listening"' in first
        server.popen.stdout.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for _ in range(3):  # each datagram is an event that has nowhere to go
                client.sendto(b"%H", ("127.0.0.1", port))
                if server.popen.poll() is not None:
                    break
                time.sleep(0.05)
        assert server.wait() == 0
        assert error_lines(server.stderr) == []


def test_portscan_whose_reader_goes_away_exits_0_quietly():
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {' '.join(command('portscan', '127.0.0.1', '1-3000', '--all'))} | head -n 1"],
        capture_output=True,
        timeout=30,
    )
    assert result.stdout.count(b"\n") == 1
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == []


# -- stdin or stdout closed from the start ---------------------------------------------------
def _close_fd(fd: int):
    return lambda: os.close(fd)


@pytest.mark.parametrize("closed", [0, 1], ids=["stdin closed", "stdout closed"])
def test_connect_with_a_standard_fd_closed_never_sends_the_peer_its_own_data(closed):
    server = socket.create_server(("127.0.0.1", 0))
    heard = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"hello from the server\n")
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(5)
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
            heard.append(received)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with server:
        proc = subprocess.run(
            command("tcp-connect", f"127.0.0.1:{server.getsockname()[1]}"),
            stdin=subprocess.DEVNULL,
            capture_output=closed != 1,
            stdout=subprocess.DEVNULL if closed == 1 else None,
            stderr=None if closed != 1 else subprocess.PIPE,
            preexec_fn=_close_fd(closed),
            timeout=15,
        )
        thread.join(10)
    assert proc.returncode == 0, proc.stderr
    assert heard == [b""]  # a socket on fd 0 or 1 would have fed the greeting back
    if closed == 0:
        assert proc.stdout == b"hello from the server\n"


def test_listener_with_stdin_closed_does_not_echo_the_client():
    proc = subprocess.Popen(
        command("tcp-listen", "127.0.0.1:0"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_close_fd(0),
    )
    with proc:
        line = proc.stderr.readline().decode()
        port = int(re.search(r"listening on \S+:(\d+)", line)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"ping\n")
            client.shutdown(socket.SHUT_WR)
            assert client.recv(100) == b""
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == b"ping\n"


def test_udp_send_with_stdin_closed_sends_an_empty_datagram_and_exits():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(5)
        proc = subprocess.run(
            command("udp-send", f"127.0.0.1:{peer.getsockname()[1]}"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            preexec_fn=_close_fd(0),
            timeout=10,
        )
        assert proc.returncode == 0, proc.stderr
        assert peer.recvfrom(100)[0] == b""


def test_errors_with_stderr_closed_still_give_the_exit_code():
    proc = subprocess.run(
        command("tcp-connect", f"127.0.0.1:{free_port()}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        preexec_fn=_close_fd(2),
        timeout=10,
    )
    assert proc.returncode == 1


def test_keep_open_listener_serves_on_after_its_stdin_ends():
    with Proc("tcp-listen", "-k", "-v", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        listener.popen.stdin.close()  # stdin ends before any client comes
        for n in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(f"client {n}\n".encode())
            listener.wait_for(f"closed #{n + 1} ")
        assert listener.popen.poll() is None
        listener.popen.terminate()
        assert listener.wait() == 143
        assert listener.popen.stdout.read() == b"client 0\nclient 1\nclient 2\n"


# -- SIGINT / SIGTERM in every long-running command ---------------------------------------------
class Scenario:
    """A long-running command brought to the point of interest; `after` checks
    what must hold once it was interrupted."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.proc: Proc | None = None
        self.paths: list = []  # unix socket files that must be gone afterwards
        self.peers: list[socket.socket] = []  # connections that must be closed afterwards
        self.keep: list = []  # anything else to close at the end

    def start(self, *args: str) -> Proc:
        self.proc = Proc(*args)
        return self.proc

    def close(self) -> None:
        if self.proc is not None:
            self.proc.__exit__(None, None, None)
        for item in self.peers + self.keep:
            item.close()


def _connected(scenario: Scenario, path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    scenario.peers.append(sock)
    return sock


def start_tcp_connect(s: Scenario) -> Proc:
    server = socket.create_server(("127.0.0.1", 0))
    s.keep.append(server)
    proc = s.start(
        "tcp-connect", "--send", "tick\n", "--repeat", "100", "--interval", "1s", f"127.0.0.1:{server.getsockname()[1]}"
    )
    conn, _ = server.accept()
    s.peers.append(conn)
    assert conn.recv(5) == b"tick\n"  # between two repeats
    return proc


def start_tcp_listen_one(s: Scenario) -> Proc:
    path = s.tmp / "one.sock"
    s.paths.append(path)
    proc = s.start("tcp-listen", f"unix:{path}")
    proc.wait_listening()
    client = _connected(s, path)
    client.sendall(b"mid-transfer\n")
    assert proc.popen.stdout.read1(100) == b"mid-transfer\n"
    return proc


def start_tcp_listen_exec(s: Scenario) -> Proc:
    path = s.tmp / "exec.sock"
    s.paths.append(path)
    proc = s.start("tcp-listen", "-k", "--exec", "cat", f"unix:{path}")
    proc.wait_listening()
    client = _connected(s, path)
    client.sendall(b"ping\n")
    assert client.recv(100) == b"ping\n"  # cat is running with the connection
    return proc


def start_udp_listen(s: Scenario) -> Proc:
    path = s.tmp / "dgram.sock"
    s.paths.append(path)
    proc = s.start("udp-listen", f"unix:{path}")
    proc.wait_listening()
    return proc


def start_udp_send_wait(s: Scenario) -> Proc:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    s.keep.append(receiver)
    proc = s.start("udp-send", "--timeout", "60s", f"127.0.0.1:{receiver.getsockname()[1]}", "anyone?")
    assert receiver.recvfrom(100)[0] == b"anyone?"  # sent; now waiting for replies
    return proc


def _service(s: Scenario, name: str, only: str) -> Proc:
    path = s.tmp / f"{name}-{only}.sock"
    s.paths.append(path)
    proc = s.start(name, f"--{only}-only", f"unix:{path}")
    proc.wait_listening()
    if only == "tcp":
        _connected(s, path)
    return proc


def start_portscan(s: Scenario) -> Proc:
    listener, filler = filtered_listener()
    s.keep += [filler, listener]
    proc = s.start("portscan", "-w", "60s", "127.0.0.1", str(listener.getsockname()[1]))
    wait_until(lambda: has_socket(proc.popen.pid), what="the scan to start")
    return proc


def start_wait(s: Scenario) -> Proc:
    listener, filler = filtered_listener()
    s.keep += [filler, listener]
    proc = s.start("wait", "-w", "60s", f"127.0.0.1:{listener.getsockname()[1]}")
    wait_until(lambda: has_socket(proc.popen.pid), what="the first probe")
    return proc


SCENARIOS = {
    "tcp-connect --repeat": start_tcp_connect,
    "tcp-listen unix mid-transfer": start_tcp_listen_one,
    "tcp-listen -k --exec unix": start_tcp_listen_exec,
    "udp-listen unix": start_udp_listen,
    "udp-send --wait": start_udp_send_wait,
    "echo tcp unix": lambda s: _service(s, "echo", "tcp"),
    "echo udp unix": lambda s: _service(s, "echo", "udp"),
    "time-server tcp unix": lambda s: _service(s, "time-server", "tcp"),
    "time-server udp unix": lambda s: _service(s, "time-server", "udp"),
    "portscan": start_portscan,
    "wait": start_wait,
}


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_signal_exits_128_plus_signal_closing_sockets_and_removing_files(name, signum, status, tmp_sock_dir):
    scenario = Scenario(tmp_sock_dir)
    try:
        proc = SCENARIOS[name](scenario)
        for path in scenario.paths:
            assert path.exists()
        started = time.monotonic()
        proc.popen.send_signal(signum)
        assert proc.wait(timeout=10) == status
        assert time.monotonic() - started < 5
        assert error_lines(proc.stderr) == []
        for path in scenario.paths:
            assert not path.exists(), f"{path} left behind"
        for peer in scenario.peers:  # the connection is closed, not left hanging
            peer.settimeout(5)
            try:
                while peer.recv(65536):
                    pass
            except ConnectionResetError:
                pass
    finally:
        scenario.close()


# -- too few descriptors: ulimit -n 64 ------------------------------------------------------------
def test_keep_open_listener_out_of_descriptors_delays_clients_says_so_and_serves_them():
    count = 100  # well beyond the ~55 connections 64 descriptors can hold
    with LimitedProc(64, "tcp-listen", "-k", "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        out = Collector(listener.popen.stdout)
        clients = {}
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"client {n}\n".encode())
            clients[n] = sock
        listener.wait_for(r"warning: cannot accept more clients on .*: too many open files; new clients wait")
        heard: set[int] = set()
        deadline = time.monotonic() + 30
        while len(heard) < count:
            assert time.monotonic() < deadline, f"heard {len(heard)} of {count}"
            out.wait_until(lambda data: len(data.splitlines()) > len(heard), what="another client's line")
            for line in bytes(out.data).splitlines():
                n = int(line.split()[1])
                if n not in heard:
                    heard.add(n)
                    clients.pop(n).close()  # leaving frees a descriptor for a waiting client
        assert listener.popen.poll() is None
        # Served again, by the same process, once everyone has left.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as late:
            late.sendall(b"late client\n")
        out.wait_until(lambda data: data.endswith(b"late client\n"), what="the late client")
        assert sum("warning:" in line for line in listener.lines) == 1
        listener.popen.terminate()
        assert listener.wait() == 143
        assert error_lines(listener.stderr) == []


def test_echo_with_200_clients_under_64_descriptors_echoes_every_one():
    count = 200
    with LimitedProc(64, "echo", "-v", "--tcp-only", "127.0.0.1:0") as echo:
        port = echo.wait_listening()
        pending: dict[int, tuple[socket.socket, bytes, bytearray]] = {}
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            message = f"client {n:03d} ".encode() + os.urandom(100)
            sock.sendall(message)
            sock.setblocking(False)
            pending[sock.fileno()] = (sock, message, bytearray())
        echo.wait_for(r"warning: cannot accept more clients on .*: too many open files")
        done = 0
        deadline = time.monotonic() + 30
        while pending:
            assert time.monotonic() < deadline, f"{done} of {count} echoed"
            ready, _, _ = select.select(list(pending), [], [], 1.0)
            for fd in ready:
                sock, message, got = pending[fd]
                chunk = sock.recv(4096)
                assert chunk, "the server closed a client it should serve"
                got += chunk
                if len(got) >= len(message):
                    assert bytes(got) == message
                    del pending[fd]
                    sock.close()  # leaving lets a waiting client in
                    done += 1
        assert done == count
        assert echo.popen.poll() is None
        assert sum("warning:" in line for line in echo.lines) == 1
        echo.wait_for(f"closed #{count} ")
        echo.popen.send_signal(signal.SIGINT)
        assert echo.wait() == 130
        assert error_lines(echo.stderr) == []


def test_exec_commands_start_with_no_signals_blocked(tmp_path):
    script = tmp_path / "mask.py"
    script.write_text("import signal\nprint(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n")
    with Proc("tcp-listen", "-k", "--exec", f"{sys.executable} {script}", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reply = b""
            while chunk := sock.recv(100):
                reply += chunk
    assert reply == b"[]\n"  # Ctrl-C and the server's SIGTERM reach the command
