"""Issue 11's hardening, beyond the UDP services: unix socket files, unix datagram
sizes, udp-send's limits and unix source addresses.

Real sockets on loopback and in a temp dir; "another user" is uid 65534 in a
forked child.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading

import pytest

from conftest import Proc, command, one_line_error, run, serve_once

pytestmark = pytest.mark.timeout(60)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def listen_in_child_as_nobody(path: str, kind: int) -> str:
    """What bind(unix:path) does for uid 65534: 'ok' or the error line."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest from here on, only os._exit
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            from socktool.net.address import Endpoint
            from socktool.net.errors import SocktoolError
            from socktool.net.sockets import bind

            try:
                bind(Endpoint(path=path), kind=kind).close()
                answer = "ok"
            except SocktoolError as exc:
                answer = str(exc)
            except BaseException as exc:
                answer = f"internal error: {type(exc).__name__}: {exc}"
            os.write(write_end, answer.encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


# -- the stale-socket check (item 4) ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("live", "other"),
    [
        (["tcp-listen", "-k"], ["udp-listen"]),
        (["udp-listen"], ["tcp-listen"]),
        (["udp-listen"], ["echo", "--udp-only"]),
        (["tcp-listen", "-k"], ["time-server", "--tcp-only"]),
    ],
)
def test_a_live_unix_socket_of_either_type_is_never_replaced(tmp_sock_dir, live, other):
    path = tmp_sock_dir / "live.sock"
    with Proc(*live, f"unix:{path}") as server:
        server.wait_listening()
        inode = path.stat().st_ino
        result = run(*other, f"unix:{path}", timeout=20)
        assert result.returncode == 1
        assert "the socket is in use" in one_line_error(result.stderr)
        assert path.stat().st_ino == inode  # the live server's file, untouched
        kind = socket.SOCK_STREAM if live[0] == "tcp-listen" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_UNIX, kind) as client:
            client.connect(str(path))  # still reachable


@pytest.mark.parametrize("command_", [["tcp-listen", "-w", "1s"], ["udp-listen"]])
def test_a_live_listener_with_a_full_backlog_is_in_use_at_once(tmp_sock_dir, command_):
    path = str(tmp_sock_dir / "busy.sock")
    waiting = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as busy:
        busy.bind(path)
        busy.listen(0)
        try:
            while True:  # fill the backlog: a blocking connect would now wait for ever
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                waiting.append(client)
                client.setblocking(False)
                client.connect(path)
        except BlockingIOError:
            pass
        try:
            result = run(*command_, f"unix:{path}", timeout=20)
        finally:
            for client in waiting:
                client.close()
    assert result.returncode == 1
    assert "the socket is in use" in one_line_error(result.stderr)


def test_a_stale_socket_file_is_removed_and_served(tmp_sock_dir):
    path = str(tmp_sock_dir / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as crashed:
        crashed.bind(path)  # closed without unlinking, as after a crash
    with Proc("udp-listen", f"unix:{path}", "--count", "1", stdout=subprocess.PIPE) as server:
        server.wait_listening()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendto(b"fresh", path)
        assert server.wait() == 0
        assert server.popen.stdout.read() == b"fresh"


@pytest.mark.parametrize("kind", ["fifo", "file", "symlink"])
def test_a_path_that_is_not_a_socket_is_kept_and_exit_1(tmp_sock_dir, kind):
    path = tmp_sock_dir / "thing"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "file":
        path.write_bytes(b"keep me")
    else:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as crashed:
            crashed.bind(str(tmp_sock_dir / "target.sock"))
        path.symlink_to(tmp_sock_dir / "target.sock")
    result = run("udp-listen", f"unix:{path}", timeout=20)
    assert result.returncode == 1
    assert "not a socket" in one_line_error(result.stderr)
    assert os.path.lexists(path)


@needs_root
@pytest.mark.parametrize("sticky", [False, True])
def test_another_user_cannot_remove_a_live_socket_in_a_shared_directory(tmp_sock_dir, sticky):
    shared = tmp_sock_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777 if sticky else 0o777)
    tmp_sock_dir.chmod(0o755)
    path = shared / "root.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as live:
        live.bind(str(path))
        path.chmod(0o755)  # nobody may not connect (no write permission)
        answer = listen_in_child_as_nobody(str(path), socket.SOCK_DGRAM)
        assert answer.endswith("permission denied (the socket file is another user's; it may be in use)"), answer
        assert stat.S_ISSOCK(path.lstat().st_mode)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendto(b"still mine", str(path))
        assert live.recv(100) == b"still mine"


# -- unix datagrams arrive whole (item 6) ----------------------------------------------------------
def big_sender(path: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for option in (32, socket.SO_SNDBUF):  # SO_SNDBUFFORCE for root, else up to wmem_max
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
            break
        except OSError:
            continue
    if path is not None:
        sock.bind(path)
    return sock


def test_echo_returns_large_unix_datagrams_whole(tmp_sock_dir):
    path = str(tmp_sock_dir / "echo.sock")
    with Proc("echo", "--udp-only", f"unix:{path}") as server:
        server.wait_listening()
        with big_sender(str(tmp_sock_dir / "client.sock")) as client:
            client.settimeout(10)
            for size in (100_000, 200_000):
                payload = os.urandom(size)
                client.sendto(payload, path)
                assert client.recv(1 << 20) == payload


def test_udp_listen_receives_a_large_unix_datagram_whole(tmp_sock_dir):
    path = str(tmp_sock_dir / "listen.sock")
    payload = os.urandom(400_000)
    with Proc("udp-listen", f"unix:{path}", "--count", "1", "--raw") as server:
        server.wait_listening()
        with big_sender() as client:
            client.sendto(payload, path)
        assert server.popen.stdout.read() == payload
        assert server.wait() == 0


def test_udp_listen_pipe_path_receives_large_unix_datagrams_whole(tmp_sock_dir):
    path = str(tmp_sock_dir / "pipe.sock")
    payloads = [os.urandom(300_000), b"small", os.urandom(400_000)]
    with Proc("udp-listen", f"unix:{path}") as server:
        server.wait_listening()
        with big_sender() as client:
            for payload in payloads:
                client.sendto(payload, path)
        received = b""
        while len(received) < sum(map(len, payloads)):
            chunk = server.popen.stdout.read1(1 << 20)
            assert chunk, server.stderr
            received += chunk
        assert received == b"".join(payloads)


# -- udp-send: the family's limit (item 13), over-long lines (item 9) --------------------------------
def test_ipv6_datagrams_up_to_65527_bytes_go_out_whole():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("::1", 0))
        receiver.settimeout(10)
        port = receiver.getsockname()[1]
        message = "m" * 65_527
        assert run("udp-send", f"[::1]:{port}", message).returncode == 0
        assert receiver.recv(70_000) == message.encode()
        assert run("udp-send", f"[::1]:{port}", input=b"s" * 65_508).returncode == 0
        assert receiver.recv(70_000) == b"s" * 65_508
        too_big = run("udp-send", f"[::1]:{port}", input=b"s" * 65_528)
        assert too_big.returncode == 2
        assert "65,527" in one_line_error(too_big.stderr)


def test_udp_listen_on_ipv6_receives_a_65527_byte_datagram():
    with Proc("udp-listen", "[::1]:0", "--count", "1") as server:
        port = server.wait_listening()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
            client.sendto(b"z" * 65_527, ("::1", port))
        assert server.popen.stdout.read() == b"z" * 65_527
        assert server.wait() == 0


@pytest.mark.parametrize("hex_input", [False, True])
def test_an_over_long_line_fails_at_once_while_stdin_is_still_open(hex_input):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        args = ["--hex-input"] if hex_input else []
        first = b"6f6b" if hex_input else b"ok"
        proc = subprocess.Popen(
            command("udp-send", "--lines", *args, f"127.0.0.1:{port}"),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def feed() -> None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b"41" * 300_000)  # and stdin stays open
                proc.stdin.flush()
            except BrokenPipeError:
                pass

        receiver.settimeout(10)
        assert proc.stdin is not None
        proc.stdin.write(first + b"\n")
        proc.stdin.flush()
        assert receiver.recv(100) == b"ok"  # a line goes out as it comes
        threading.Thread(target=feed, daemon=True).start()
        try:
            code = proc.wait(timeout=20)
        finally:
            proc.kill()
            proc.stdin.close()  # type: ignore[union-attr]
        assert code == 2
        line = one_line_error(proc.stderr.read())  # type: ignore[union-attr]
        assert "line too large" in line and "--lines" not in line


# -- udp-send -s PATH to a unix: destination (issue 18 item 4) --------------------------------------
@pytest.mark.parametrize("prefix", ["", "unix:"])
def test_udp_send_binds_its_unix_source_and_removes_it_after(tmp_sock_dir, prefix):
    server_path = str(tmp_sock_dir / "server.sock")
    source = tmp_sock_dir / "source.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(server_path)
        server.settimeout(10)
        result = run("udp-send", "-s", f"{prefix}{source}", f"unix:{server_path}", "abc")
        assert result.returncode == 0, result.stderr
        data, sender = server.recvfrom(100)
    assert (data, sender) == (b"abc", str(source))
    assert not source.exists()


def test_udp_listen_reply_reaches_a_unix_sender_bound_with_s(tmp_sock_dir):
    server_path = tmp_sock_dir / "server.sock"
    source = tmp_sock_dir / "me.sock"
    with Proc("udp-listen", f"unix:{server_path}", "--reply", "ok", "--count", "1") as server:
        server.wait_listening()
        result = run("udp-send", "-s", str(source), "--wait", "--timeout", "5s", f"unix:{server_path}", "hi")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"ok"
        assert server.wait() == 0
    assert not source.exists()


def test_udp_send_source_port_with_a_unix_destination_is_a_usage_error(tmp_sock_dir):
    result = run("udp-send", "-p", "5000", f"unix:{tmp_sock_dir / 'x.sock'}", "hi")
    assert result.returncode == 2
    assert "-p/--source-port does not apply to a unix: destination" in one_line_error(result.stderr)


# -- stdout that cannot be written (item 7) -------------------------------------------------------
FULL_DISK = "cannot write output: no space left on device"


def full_disk_error(stderr: bytes) -> bool:
    """stderr says so in one error line, and nothing else went wrong (status lines aside)."""
    text = stderr.decode()
    errors = [line for line in text.splitlines() if "error" in line]
    return "Traceback" not in text and errors == [f"socktool: error: {FULL_DISK}"]


def to_dev_full(*args: str, feed=None) -> subprocess.CompletedProcess:
    """Run socktool with stdout on /dev/full (every write: ENOSPC); `feed(port)` makes it write."""
    with open("/dev/full", "wb") as full, Proc(*args, stdout=full) as proc:
        if feed is not None:
            feed(proc.wait_listening())
        code = proc.wait(timeout=20)
        return subprocess.CompletedProcess(proc.args, code, b"", proc.stderr.encode())


def tcp_client_sends(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"data\n")
        client.settimeout(10)
        try:
            client.recv(10)  # until the server stops
        except OSError:
            pass


def udp_client_sends(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"data", ("127.0.0.1", port))


@pytest.mark.parametrize(
    ("args", "feed"),
    [
        (["tcp-listen", "-k", "127.0.0.1:0"], tcp_client_sends),
        (["tcp-listen", "127.0.0.1:0"], tcp_client_sends),
        (["udp-listen", "127.0.0.1:0"], udp_client_sends),
        (["udp-listen", "--json", "127.0.0.1:0"], None),  # its first JSON line is the listening event
        (["echo", "--json", "127.0.0.1:0"], None),
        (["time-server", "--json", "127.0.0.1:0"], None),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_a_server_whose_stdout_is_full_stops_with_one_error_line(args, feed):
    result = to_dev_full(*args, feed=feed)
    assert result.returncode == 1
    assert full_disk_error(result.stderr), result.stderr


def test_portscan_to_a_full_stdout_is_exit_1():
    with socket.create_server(("127.0.0.1", 0)) as server:
        scan = to_dev_full("portscan", "127.0.0.1", str(server.getsockname()[1]))
    assert scan.returncode == 1
    assert full_disk_error(scan.stderr), scan.stderr


def test_tcp_connect_to_a_full_stdout_is_exit_1():
    port = serve_once(b"hello\n")
    with open("/dev/full", "wb") as full:
        client = subprocess.run(
            command("tcp-connect", f"127.0.0.1:{port}"),
            stdin=subprocess.PIPE,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=20,
        )
    assert client.returncode == 1
    assert full_disk_error(client.stderr), client.stderr
