"""The reader of stdout goes away (`| head -1`): every command, in every output mode,
stops at once with exit 0 and says nothing (no traceback, no "Exception in thread").

Each case reads the first line of stdout, closes the pipe, then makes the command
write more (the peer sends, a client connects): the next write finds no reader.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import Proc

pytestmark = pytest.mark.timeout(60)

MODES = {"json": ["--json"], "view": ["--view"], "raw": ["--raw"], "hex": ["--hex"]}


def first_line(proc: Proc, poke, timeout: float = 10) -> bytes:
    stdout = proc.popen.stdout
    assert stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([stdout], [], [], 0.2)
        if ready:
            byte = os.read(stdout.fileno(), 1)
            if not byte:
                break
            line += byte
        else:
            poke()
    assert line.endswith(b"\n"), (line, proc.stderr)
    return line


def leave_and_check(proc: Proc, poke) -> None:
    """Close the reader after the first line; poke until the command exits; it must exit 0, silently."""
    first_line(proc, poke)
    assert proc.popen.stdout is not None
    proc.popen.stdout.close()
    deadline = time.monotonic() + 20
    while proc.popen.poll() is None and time.monotonic() < deadline:
        poke()
        try:
            proc.popen.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    assert proc.popen.poll() == 0, proc.stderr
    assert "Exception" not in proc.stderr and "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr


def _waiting_peer() -> tuple[int, threading.Event]:
    """A TCP peer that sends a first line, then answers whatever comes with more lines, and
    closes only after our EOF (as a server that reads the whole request does)."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn, contextlib.suppress(OSError):  # socktool may be gone by then
                conn.sendall(b"first line\n")
                while conn.recv(65536):
                    conn.sendall(b"more\n" * 1000)
                conn.sendall(b"after eof\n" * 1000)
                done.set()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], done


@pytest.mark.parametrize("mode", MODES)
def test_tcp_connect_reader_leaves_before_we_send(mode):
    port, _ = _waiting_peer()
    with Proc("tcp-connect", f"127.0.0.1:{port}", *MODES[mode], stdin=subprocess.PIPE) as proc:
        sent = []

        def poke() -> None:
            if not sent:  # what we send is shown (json, view): that write finds no reader
                assert proc.popen.stdin is not None
                proc.popen.stdin.write(b"hi\n")
                proc.popen.stdin.close()
                sent.append(1)

        leave_and_check(proc, poke)


@pytest.mark.parametrize("mode", MODES)
def test_tcp_connect_with_send_and_a_reader_that_leaves(mode):
    port, _ = _waiting_peer()
    with Proc("tcp-connect", f"127.0.0.1:{port}", "--send", "hi", *MODES[mode]) as proc:
        leave_and_check(proc, lambda: None)


@pytest.mark.parametrize("mode", MODES)
def test_tcp_listen_reader_leaves(mode):
    with Proc("tcp-listen", "127.0.0.1:0", *MODES[mode], stdin=subprocess.PIPE) as proc:
        port = proc.wait_listening()
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"first line\n")

        def poke() -> None:
            try:
                client.sendall(b"more\n" * 1000)
            except OSError:
                pass

        with client:
            leave_and_check(proc, poke)


@pytest.mark.parametrize("mode", ["json", "view", "raw"])
def test_tcp_listen_keep_open_reader_leaves(mode):
    with Proc("tcp-listen", "-k", "127.0.0.1:0", *MODES[mode]) as proc:
        port = proc.wait_listening()
        clients = []

        def poke() -> None:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=2)
                client.sendall(b"a line\n" * 100)
                clients.append(client)
            except OSError:
                pass

        poke()
        leave_and_check(proc, poke)
        for client in clients:
            client.close()


@pytest.mark.parametrize("mode", MODES)
def test_udp_listen_reader_leaves(mode):
    with Proc("udp-listen", "127.0.0.1:0", *MODES[mode]) as proc:
        port = proc.wait_listening()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:

            def poke() -> None:
                sender.sendto(b"a datagram\n", ("127.0.0.1", port))

            poke()
            leave_and_check(proc, poke)


@pytest.mark.parametrize("mode", MODES)
def test_udp_send_reader_leaves(mode):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        with Proc("udp-send", f"127.0.0.1:{port}", "--lines", "--wait", *MODES[mode], stdin=subprocess.PIPE) as proc:
            assert proc.popen.stdin is not None
            peers = []

            def answer() -> None:
                ready, _, _ = select.select([server], [], [], 0.1)
                if ready:
                    _data, peer = server.recvfrom(65536)
                    peers.append(peer)
                    server.sendto(b"reply\n", peer)

            def poke() -> None:
                try:
                    proc.popen.stdin.write(b"ping\n")
                    proc.popen.stdin.flush()
                except OSError:
                    pass
                answer()

            poke()
            leave_and_check(proc, poke)


@pytest.mark.parametrize("command", ["echo", "time-server"])
def test_servers_json_reader_leaves(command):
    with Proc(command, "--tcp-only", "--json", "127.0.0.1:0") as proc:
        port = proc.wait_listening()

        def poke() -> None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
                    client.sendall(b"x")
                    client.shutdown(socket.SHUT_WR)
                    client.recv(100)
            except OSError:
                pass

        poke()
        leave_and_check(proc, poke)


@pytest.mark.parametrize("mode", ["json", "raw"])
def test_portscan_reader_leaves(mode):
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    ports = ",".join(str(s.getsockname()[1]) for s in listeners)
    args = ["--json"] if mode == "json" else []
    with Proc("portscan", "127.0.0.1", ports, *args) as proc:
        leave_and_check(proc, lambda: None)
    for listener in listeners:
        listener.close()
