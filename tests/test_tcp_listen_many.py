"""tcp-listen with many clients: -k, --broker, --max-clients, --allow/--deny, --exec."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

from conftest import Proc


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    return sock


def read_until(sock: socket.socket, expected: bytes, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while expected not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_five_concurrent_clients_are_all_delivered():
    with Proc("tcp-listen", "-k", "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        clients = [connect(port) for _ in range(5)]
        for n in range(5):
            listener.wait_for(f"connection from #{n + 1} ")
        for n, client in enumerate(clients):
            client.sendall(f"from client {n}\n".encode() * 100)
        for client in clients:
            client.close()
        for n in range(5):
            listener.wait_for(f"closed #{n + 1} ")
        listener.popen.terminate()
        out = listener.popen.stdout.read()
        assert listener.wait() == 143
    for n in range(5):
        assert out.count(f"from client {n}\n".encode()) == 100


def test_keep_open_sends_each_stdin_line_to_every_client():
    with Proc("tcp-listen", "-k", "-v", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        clients = [connect(port) for _ in range(3)]
        for n in range(3):
            listener.wait_for(f"connection from #{n + 1} ")
        listener.popen.stdin.write(b"hello everyone\n")
        listener.popen.stdin.flush()
        for client in clients:
            assert read_until(client, b"everyone\n") == b"hello everyone\n"
            client.close()


def test_broker_relays_between_clients():
    with Proc("tcp-listen", "--broker", "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        alice, bob, carol = (connect(port) for _ in range(3))
        for n in range(3):
            listener.wait_for(f"connection from #{n + 1} ")
        alice.sendall(b"alice says hi\n")
        assert read_until(bob, b"hi\n") == b"alice says hi\n"
        assert read_until(carol, b"hi\n") == b"alice says hi\n"
        bob.sendall(b"bob here\n")
        assert read_until(alice, b"here\n") == b"bob here\n"
        assert read_until(carol, b"here\n") == b"bob here\n"
        for sock in (alice, bob, carol):
            sock.close()


def test_max_clients_turns_away_the_extra_without_disturbing_others():
    with Proc("tcp-listen", "-k", "--max-clients", "2", "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        first, second = connect(port), connect(port)
        listener.wait_for("connection from #2 ")
        extra = connect(port)
        listener.wait_for("rejected .*--max-clients 2 reached")
        extra.settimeout(5)
        assert extra.recv(10) == b""  # closed on us before any byte
        first.sendall(b"one\n")
        second.sendall(b"two\n")
        first.close()
        second.close()
        listener.wait_for("closed #1 ")
        listener.wait_for("closed #2 ")
        third = connect(port)  # room again once clients left
        third.sendall(b"three\n")
        third.close()
        listener.wait_for("closed #3 ")
        listener.popen.terminate()
        out = listener.popen.stdout.read()
    assert sorted(out.splitlines()) == [b"one", b"three", b"two"]


def test_allow_and_deny_are_enforced_before_any_byte_is_read():
    with Proc("tcp-listen", "-k", "-v", "--allow", "127.0.0.2/32", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        denied = socket.create_connection(("127.0.0.1", port), timeout=5)
        denied.sendall(b"must not appear\n")
        listener.wait_for(f"rejected 127.0.0.1:{denied.getsockname()[1]}: not in --allow")
        allowed = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
        allowed.sendall(b"welcome\n")
        allowed.close()
        listener.wait_for("closed #1 127.0.0.2")
        denied.close()
        listener.popen.terminate()
        out = listener.popen.stdout.read()
    assert out == b"welcome\n"


def test_deny_wins_and_ipv6_cidrs_work():
    with Proc("tcp-listen", "-k", "-v", "--deny", "::1/128", "--deny", "127.0.0.0/8", "[::]:0") as listener:
        port = listener.wait_listening()
        for host in ("::1", "127.0.0.1"):
            sock = socket.create_connection((host, port), timeout=5)
            sock.settimeout(5)
            assert sock.recv(10) == b""
            sock.close()
        listener.wait_for(r"rejected \[::1\]:.*denied by --deny")
        listener.wait_for(r"rejected 127.0.0.1:.*denied by --deny")


def test_exec_wires_each_connection_to_a_process_without_a_shell(tmp_path):
    marker = tmp_path / "ran"
    with Proc("tcp-listen", "-k", "-v", "--exec", "tr a-z A-Z", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        results = []

        def client(n):
            with connect(port) as sock:
                sock.sendall(f"client {n}\n".encode())
                sock.shutdown(socket.SHUT_WR)
                results.append(read_until(sock, b"\n"))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert sorted(results) == [b"CLIENT 0\n", b"CLIENT 1\n", b"CLIENT 2\n"]
    with Proc("tcp-listen", "-v", "--exec", f"sh -c 'touch {marker}; cat'", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as sock:
            sock.sendall(b"x")
            sock.shutdown(socket.SHUT_WR)
            assert read_until(sock, b"x") == b"x"
        assert listener.wait() == 0
    assert marker.exists()  # a shell runs only when the command asks for one


def test_exec_semicolon_is_not_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    with Proc("tcp-listen", "-v", "--exec", f"echo hi ; touch {marker}", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as sock:
            data = read_until(sock, b"\n")
        assert listener.wait() == 0
    assert data == f"hi ; touch {marker}\n".encode()
    assert not marker.exists()


def test_single_client_listener_exits_after_its_client():
    with Proc("tcp-listen", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as sock:
            sock.sendall(b"just me")
        start = time.monotonic()
        assert listener.wait(timeout=10) == 0
        assert time.monotonic() - start < 5
        assert listener.popen.stdout.read() == b"just me"
