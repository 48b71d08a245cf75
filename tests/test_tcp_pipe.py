"""tcp-connect and tcp-listen as a pipe, against themselves, nc, curl and Python peers."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from conftest import Proc, command, need, run
from reliability_helpers import queued, wait_listening, wait_until_full

MB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def python_server(handler) -> tuple[socket.socket, int]:
    """A one-connection Python peer on 127.0.0.1:0 running handler(conn) in a thread."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        with conn:
            handler(conn)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def recv_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(24 * MB)


def test_random_bytes_arrive_intact_connect_to_listen(payload, tmp_path):
    source, out = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(payload)
    with open(out, "wb") as sink, Proc("tcp-listen", "127.0.0.1:0", stdout=sink) as listener:
        port = listener.wait_listening()
        with open(source, "rb") as stdin:
            sender = subprocess.run(
                command("tcp-connect", f"127.0.0.1:{port}"), stdin=stdin, capture_output=True, timeout=60
            )
        assert listener.wait() == 0
    assert sender.returncode == 0, sender.stderr
    assert sha(out.read_bytes()) == sha(payload)


def test_slow_reader_at_the_far_end_loses_nothing(tmp_path):
    """Back-pressure (a listener whose stdout is not read for a while) is not idleness."""
    payload = os.urandom(8 * MB)
    with Proc("tcp-listen", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        sender = subprocess.Popen(command("tcp-connect", f"127.0.0.1:{port}"), stdin=subprocess.PIPE)
        feeder = threading.Thread(target=lambda: (sender.stdin.write(payload), sender.stdin.close()))
        feeder.start()
        import time

        time.sleep(1.5)  # deliberately stall the reader longer than any linger
        received = listener.popen.stdout.read()
        feeder.join(timeout=30)
        assert sender.wait(timeout=30) == 0
    assert sha(received) == sha(payload)


def test_both_directions_at_once_through_pipes(payload):
    upstream, downstream = payload[: 12 * MB], payload[12 * MB :]
    with Proc("tcp-listen", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        client = subprocess.Popen(
            command("tcp-connect", f"127.0.0.1:{port}"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        results: dict[str, bytes] = {}

        def feed(proc, data):
            proc.stdin.write(data)
            proc.stdin.close()

        def drain(name, proc):
            results[name] = proc.stdout.read()

        threads = [
            threading.Thread(target=feed, args=(client, upstream)),
            threading.Thread(target=feed, args=(listener.popen, downstream)),
            threading.Thread(target=drain, args=("at_listener", listener.popen)),
            threading.Thread(target=drain, args=("at_client", client)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert client.wait(timeout=30) == 0
        assert listener.wait() == 0
        client.stdout.close()
    assert sha(results["at_listener"]) == sha(upstream)
    assert sha(results["at_client"]) == sha(downstream)


def test_nc_to_listen_and_connect_to_nc_l(payload, tmp_path):
    need("nc")
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    # nc → socktool tcp-listen
    received = tmp_path / "received.bin"
    with open(received, "wb") as sink, Proc("tcp-listen", "127.0.0.1:0", stdout=sink) as listener:
        port = listener.wait_listening()
        with open(source, "rb") as stdin:
            subprocess.run(
                ["nc", "-N", "127.0.0.1", str(port)], stdin=stdin, timeout=60, check=True, stdout=subprocess.DEVNULL
            )
        assert listener.wait() == 0
    assert sha(received.read_bytes()) == sha(payload)
    # socktool tcp-connect → nc -l
    port = _free_tcp_port()
    out = tmp_path / "out.bin"
    with open(out, "wb") as sink:
        nc = subprocess.Popen(["nc", "-l", "127.0.0.1", str(port)], stdout=sink, stdin=subprocess.DEVNULL)
        try:
            wait_listening(port)
            with open(source, "rb") as stdin:
                sender = subprocess.run(
                    command("tcp-connect", f"127.0.0.1:{port}"), stdin=stdin, capture_output=True, timeout=60
                )
            assert sender.returncode == 0, sender.stderr
            nc.wait(timeout=30)
        finally:
            nc.kill()
    assert sha(out.read_bytes()) == sha(payload)


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_request_gets_whole_response_and_exits_by_itself(tmp_path):
    (tmp_path / "index.html").write_text("hello from http.server\n" * 1000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = run("tcp-connect", f"127.0.0.1:{httpd.server_address[1]}", input=b"GET /index.html HTTP/1.0\r\n\r\n")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert body == b"hello from http.server\n" * 1000


def test_curl_request_shows_on_listener_stdout():
    need("curl")
    with Proc("tcp-listen", "127.0.0.1:0", "--send", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n") as listener:
        port = listener.wait_listening()
        curl = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/probe"], capture_output=True, timeout=20)
        out = listener.popen.stdout.read()
        assert listener.wait() == 0
    assert out.startswith(b"GET /probe HTTP/1.1\r\n")
    assert b"User-Agent: curl" in out
    assert curl.stdout == b"ok\n"


def test_connect_exits_on_peer_close_while_stdin_is_still_open():
    server, port = python_server(lambda conn: conn.sendall(b"bye\n"))
    reader, writer = os.pipe()  # we keep the write end open for the whole test
    try:
        with server:
            client = subprocess.Popen(
                command("tcp-connect", f"127.0.0.1:{port}"),
                stdin=reader,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = client.communicate(timeout=10)
        assert client.returncode == 0, err
        assert out == b"bye\n"
    finally:
        os.close(reader)
        os.close(writer)


def test_stdin_eof_half_closes_and_reply_still_arrives():
    def reply_after_eof(conn):
        request = recv_all(conn)  # only ends if the client half-closed
        conn.sendall(b"got " + str(len(request)).encode())

    server, port = python_server(reply_after_eof)
    with server:
        result = run("tcp-connect", f"127.0.0.1:{port}", input=b"x" * 100000)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"got 100000"


def test_no_shutdown_keeps_write_side_open():
    got_eof = threading.Event()

    def watch(conn):
        conn.settimeout(1.0)
        data = b""
        try:
            while chunk := conn.recv(100):
                data += chunk
            got_eof.set()
        except TimeoutError:
            pass
        conn.sendall(b"still open:" + data)

    server, port = python_server(watch)
    with server:
        result = run("tcp-connect", "--no-shutdown", f"127.0.0.1:{port}", input=b"ping")
    assert result.stdout == b"still open:ping"
    assert not got_eof.is_set()


def test_send_repeat_interval_crlf_and_hex_input():
    server, port = python_server(lambda conn: conn.sendall(recv_all(conn)))
    with server:
        result = run(
            "tcp-connect",
            f"127.0.0.1:{port}",
            "--send",
            "a\n",
            "--send",
            "b\n",
            "--crlf",
            "--repeat",
            "3",
            "--interval",
            "10ms",
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a\r\nb\r\n" * 3
    server, port = python_server(lambda conn: conn.sendall(recv_all(conn)))
    with server:
        result = run("tcp-connect", f"127.0.0.1:{port}", "--hex-input", input=b"00 ff 0a\nde ad be ef\n")
    assert result.stdout == b"\x00\xff\x0a\xde\xad\xbe\xef"


def test_expect_exits_0_on_match_and_1_when_peer_closes_without_one():
    def banner(conn):
        conn.sendall(b"220 ready\r\n")
        conn.recv(10)  # keep the connection open until the client goes

    server, port = python_server(banner)
    with server:
        result = run("tcp-connect", f"127.0.0.1:{port}", "--recv-only", "--expect", r"^220 ")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"220 ready\r\n"

    server, port = python_server(lambda conn: conn.sendall(b"500 nope\r\n"))
    with server:
        result = run("tcp-connect", f"127.0.0.1:{port}", "--recv-only", "--expect", "^220 ")
    assert result.returncode == 1
    assert "no match for /^220 /" in result.stderr.decode()


def test_expect_times_out_with_exit_1():
    def silent(conn):
        conn.recv(10)

    server, port = python_server(silent)
    with server:
        result = run("tcp-connect", f"127.0.0.1:{port}", "--recv-only", "--expect", "never", "-w", "300ms")
    assert result.returncode == 1
    assert "within 300ms" in result.stderr.decode()


def test_idle_timeout_closes_a_quiet_connection():
    def silent(conn):
        conn.recv(10)

    server, port = python_server(silent)
    with server:
        result = run("tcp-connect", f"127.0.0.1:{port}", "--recv-only", "-i", "200ms", "-v")
    assert result.returncode == 0
    assert "no traffic for 200ms" in result.stderr.decode()


def test_zero_mode_connects_and_closes():
    accepted = threading.Event()
    server, port = python_server(lambda conn: accepted.set())
    with server:
        result = run("tcp-connect", "-z", f"127.0.0.1:{port}")
        assert accepted.wait(5)
    assert result.returncode == 0
    assert result.stdout == b""


def test_source_port_is_used():
    seen = {}
    server, port = python_server(lambda conn: seen.update(peer=conn.getpeername(), data=recv_all(conn)))
    source_port = _free_tcp_port()
    with server:
        result = run("tcp-connect", "-s", "127.0.0.1", "-p", str(source_port), f"127.0.0.1:{port}", "--send", "x")
    assert result.returncode == 0, result.stderr
    assert seen["peer"] == ("127.0.0.1", source_port)


def test_ipv6_loopback_and_dual_stack_listener():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with Proc("tcp-listen", "0") as listener:  # no host: dual-stack
        port = listener.wait_listening()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"v4 ")
        out = listener.popen.stdout.read()
    assert out == b"v4 "
    with Proc("tcp-listen", "[::1]:0") as listener:
        port = listener.wait_listening()
        result = run("tcp-connect", f"[::1]:{port}", "--send", "v6")
        assert result.returncode == 0, result.stderr
        assert listener.popen.stdout.read() == b"v6"


def test_unix_socket_pipe_and_file_removed(tmp_sock_dir):
    path = tmp_sock_dir / "s.sock"
    with Proc("tcp-listen", f"unix:{path}") as listener:
        listener.wait_listening()
        result = run("tcp-connect", f"unix:{path}", input=b"over unix\n")
        assert result.returncode == 0, result.stderr
        assert listener.popen.stdout.read() == b"over unix\n"
        assert listener.wait() == 0
    assert not path.exists()


def test_json_events(tmp_path):
    server, port = python_server(lambda conn: conn.sendall(b"\xffhi" + recv_all(conn)))
    with server:
        result = run("tcp-connect", f"127.0.0.1:{port}", "--json", input=b"ping")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "connected" and kinds[-2:] == ["closed", "stats"]
    data = [e for e in events if e["event"] == "data"]
    sent = [e for e in data if e["direction"] == "sent"]
    received = [e for e in data if e["direction"] == "received"]
    assert bytes.fromhex("".join(e["hex"] for e in sent)) == b"ping"
    assert bytes.fromhex("".join(e["hex"] for e in received)) == b"\xffhiping"
    assert received[0]["text"] is None  # the first chunk starts with \xff: not UTF-8
    assert events[-1]["sent"] == 4 and events[-1]["received"] == 7


def test_python_m_socktool_and_version():
    result = subprocess.run([sys.executable, "-m", "socktool", "--version"], capture_output=True, timeout=20)
    assert result.returncode == 0
    assert result.stdout.decode().startswith("socktool ")


# Start-up time: what neither `import socktool.cli` nor a plain tcp-connect's parsing may load.
HEAVY_AT_START_UP = (
    "ssl",
    "rich",
    "textual",
    "cryptography",
    "socktool.console",
    "socktool.net.tlsconfig",
    "socktool.frames",
    "socktool.framing",
    # build_app registers only the command being run: no other command's module,
    "socktool.cli.udp",
    "socktool.cli.services",
    "socktool.cli.forward",
    "socktool.cli.scan",
    "socktool.cli.wait",
    "socktool.cli.ping",
    "socktool.cli.ui",
    # nor the loop (servers), help's layout or a view that draws.
    "socktool.net.loop",
    "socktool.net.hub",
    "socktool.net.proxy",
    "socktool.cli.helptext",
    "socktool.view.traffic",
    "socktool.view.jsonl",
)


def test_importing_the_cli_does_not_import_rich():
    code = f"import sys, socktool.cli; print(sorted(m for m in {HEAVY_AT_START_UP!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.stdout.strip() == "[]", result.stderr


def test_a_plain_tcp_connect_loads_no_tls_framing_or_console_module():
    """Parsed and run in-process (-z to a port where nothing listens), then sys.modules is looked at."""
    code = (
        "import socket, sys\n"
        "from socktool.cli import main\n"
        "closed = socket.socket(); closed.bind(('127.0.0.1', 0))\n"
        "status = main(['tcp-connect', '-z', '127.0.0.1:%d' % closed.getsockname()[1]])\n"
        f"print(status, sorted(m for m in {HEAVY_AT_START_UP!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.stdout.strip() == "1 []", result.stderr


def test_slow_steady_stdin_after_peer_half_closed_is_sent_to_the_end(tmp_path):
    """The listener's stdin is empty, so it half-closes at once; a producer that
    trickles data (gaps shorter than the linger) must still get every byte through."""
    out = tmp_path / "out.bin"
    with open(out, "wb") as sink, Proc("tcp-listen", "127.0.0.1:0", stdout=sink) as listener:
        port = listener.wait_listening()
        producer = "import os,time\nfor i in range(25):\n    os.write(1, bytes([65 + i]) * 1000); time.sleep(0.1)\n"
        pipeline = subprocess.run(
            [
                "bash",
                "-c",
                f"{sys.executable} -c '{producer}' | {' '.join(command('tcp-connect', f'127.0.0.1:{port}'))}",
            ],
            capture_output=True,
            timeout=30,
        )
        assert pipeline.returncode == 0, pipeline.stderr
        assert listener.wait() == 0
    assert out.read_bytes() == b"".join(bytes([65 + i]) * 1000 for i in range(25))


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policy")
@pytest.mark.parametrize("mode", [[], ["--send-only"]], ids=["both-ways", "send-only"])
def test_bulk_sender_defers_to_its_producer(mode):
    """The thread splicing stdin's pipe to the socket is SCHED_BATCH, so that a producer's
    every write does not wake it at once (bench/RESULTS.md: 1.2x nc's throughput and more
    comes from this); the other threads keep the normal policy."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        read_end, write_end = os.pipe()
        proc = Proc("tcp-connect", f"127.0.0.1:{server.getsockname()[1]}", *mode, stdin=read_end)
        os.close(read_end)
        with proc, os.fdopen(write_end, "wb", buffering=0) as producer:
            peer, _ = server.accept()
            with peer:
                producer.write(b"x")
                peer.settimeout(10)
                assert peer.recv(1) == b"x"  # the send loop runs
                tasks = os.listdir(f"/proc/{proc.popen.pid}/task")
                policies = sorted(os.sched_getscheduler(int(task)) for task in tasks)
                assert os.SCHED_BATCH in policies
                if not mode:  # the receiving main thread answers as quickly as ever
                    assert os.SCHED_OTHER in policies


@pytest.mark.parametrize("options", [[], ["--crlf"]], ids=["spliced", "translated"])
def test_send_only_to_a_slow_reader_loses_nothing(options):
    """--send-only sends from the main thread with the socket non-blocking, waiting for room
    in poll() (so that an interrupt is never held back); a full socket must cost no byte."""
    lines = b"".join(b"line %d\n" % n for n in range(600_000))  # ~6.7 MB: more than the socket buffers hold
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        sender = subprocess.Popen(
            command("tcp-connect", f"127.0.0.1:{server.getsockname()[1]}", "--send-only", *options),
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        feeder = threading.Thread(target=lambda: (sender.stdin.write(lines), sender.stdin.close()))
        feeder.start()
        peer, _ = server.accept()
        with peer:
            peer.settimeout(30)
            wait_until_full(lambda: queued(peer.fileno()))  # the reader stalls until the sender waits for room
            received = b"".join(iter(lambda: peer.recv(1 << 16), b""))
        feeder.join(timeout=30)
        assert sender.wait(timeout=30) == 0, sender.stderr.read()
        sender.stderr.close()
    expected = lines.replace(b"\n", b"\r\n") if options else lines
    assert len(received) == len(expected)
    assert sha(received) == sha(expected)
