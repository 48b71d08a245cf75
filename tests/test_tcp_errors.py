"""Failures a user meets with the TCP pipe: each is its exit code and one clear line."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading

import pytest

from conftest import Proc, command, free_port, one_line_error, run


def test_refused_is_exit_1_with_one_line():
    result = run("tcp-connect", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "connection refused" in one_line_error(result.stderr)


def test_unresolvable_name_is_exit_1():
    result = run("tcp-connect", "no-such-host!.invalid:80")
    assert result.returncode == 1
    assert "cannot resolve 'no-such-host!.invalid'" in one_line_error(result.stderr)


def test_connect_timeout_against_a_full_accept_queue():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(3):  # fill the queue; later SYNs are dropped
            filler = socket.socket()
            filler.settimeout(0.3)
            try:
                filler.connect(("127.0.0.1", port))
            except OSError:
                pass
            fillers.append(filler)
        result = run("tcp-connect", "-w", "500ms", f"127.0.0.1:{port}")
        for filler in fillers:
            filler.close()
    assert result.returncode == 1
    assert "timed out after 500ms" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["tcp-connect", "127.0.0.1:65536"], "out of range"),
        (["tcp-connect", "127.0.0.1:0"], "out of range"),
        (["tcp-connect", "localhost"], "expected HOST:PORT"),
        (["tcp-connect", "::1:80"], "brackets"),
        (["tcp-connect", "-w", "soon", "127.0.0.1:80"], "not a duration"),
        (["tcp-connect", "--repeat", "0", "127.0.0.1:80"], "at least 1"),
        (["tcp-connect", "--hex-input", "--send", "abc", "127.0.0.1:80"], "odd number"),
        (["tcp-connect", "--expect", "(", "127.0.0.1:80"], "not a regular expression"),
        (["tcp-connect", "--send-only", "--recv-only", "127.0.0.1:80"], "cannot be used together"),
        (["tcp-connect", "-4", "-6", "127.0.0.1:80"], "exclude each other"),
        (["tcp-connect"], "Missing argument"),
        (["tcp-connect", "--frobnicate", "127.0.0.1:80"], "No such option"),
        (["tcp-listen", "70000"], "out of range"),
        (["tcp-listen", "--allow", "10.0.0.300/8", "0"], "not an IP address or CIDR"),
        (["tcp-listen", "--exec", "no-such-program-x", "0"], "command not found"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_usage_is_exit_2_with_one_line(args, complaint):
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert complaint in one_line_error(result.stderr)


def test_port_in_use_names_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("tcp-listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "address already in use" in line and f"port {port}" in line


def test_peer_reset_mid_stream_keeps_what_arrived():
    sent = os.urandom(200_000)
    reset_now = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        conn.sendall(sent)
        reset_now.wait(10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST

    threading.Thread(target=serve, daemon=True).start()
    with (
        server,
        subprocess.Popen(
            command("tcp-connect", f"127.0.0.1:{server.getsockname()[1]}"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as client,
    ):
        received = b""
        while len(received) < len(sent):
            chunk = client.stdout.read1(65536)
            assert chunk, "stdout ended early"
            received += chunk
        reset_now.set()
        rest = client.stdout.read()
        assert client.wait(timeout=10) == 1
        stderr = client.stderr.read()
    assert received + rest == sent
    assert "reset by peer" in one_line_error(stderr)


def test_stdout_closed_early_is_a_quiet_exit():
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        try:
            while True:
                conn.sendall(b"x" * 65536)
        except OSError:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    with server:
        pipeline = subprocess.run(
            [
                "bash",
                "-c",
                f"set -o pipefail; {' '.join(command('tcp-connect', f'127.0.0.1:{server.getsockname()[1]}'))} </dev/null | head -c 10",
            ],
            capture_output=True,
            timeout=20,
        )
    assert pipeline.stdout == b"x" * 10
    assert pipeline.returncode == 0, pipeline.stderr
    assert pipeline.stderr == b""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_while_listening_close_and_remove_the_socket_file(sig, code, tmp_sock_dir):
    path = tmp_sock_dir / "l.sock"
    with Proc("tcp-listen", "-k", f"unix:{path}") as listener:
        listener.wait_listening()
        assert path.exists()
        listener.popen.send_signal(sig)
        assert listener.wait() == code
        assert "Traceback" not in listener.stderr
    assert not path.exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_mid_transfer_keep_received_bytes(sig, code):
    server = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()

    def serve():
        conn, _ = server.accept()
        conn.sendall(b"first part\n")
        accepted.set()
        conn.recv(1)  # hold the connection open

    threading.Thread(target=serve, daemon=True).start()
    with server, Proc("tcp-connect", "-v", f"127.0.0.1:{server.getsockname()[1]}", stdin=subprocess.PIPE) as client:
        client.wait_for("connected to")
        assert accepted.wait(5)
        assert client.popen.stdout.read1(100) == b"first part\n"
        client.popen.send_signal(sig)
        assert client.wait() == code
        assert "Traceback" not in client.stderr


def test_debug_shows_a_traceback_for_errors():
    result = run("tcp-connect", "--debug", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert b"Traceback" in result.stderr
    assert result.stderr.rstrip().endswith(b"(nothing is listening there)")
