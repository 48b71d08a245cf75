"""What the traffic view draws, fed events in-process (a rich console on a string), and the
view-related behaviour of the commands: order of events, --hex in a pipe, --expect."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import select
import shutil
import socket
import subprocess
import threading

import pytest
from rich.console import Console

from conftest import command, one_line_error, run, serve_one
from socktool.net import events as ev
from socktool.view.render import escaped_lines, hexdump_lines
from socktool.view.traffic import ROWS_PER_CHUNK, TrafficView

pytestmark = pytest.mark.timeout(60)
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def view(width: int = 100, **options) -> tuple[TrafficView, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system="standard", highlight=False)
    return TrafficView(console, **options), out


def plain(text: str) -> str:
    return SGR.sub("", text)


def test_a_backslash_n_in_the_data_is_not_a_line_break():
    assert escaped_lines(b"C:\\new folder\n") == ["C:\\\\new folder\\n"]
    traffic, out = view()
    traffic(ev.Data(1, "127.0.0.1:9", ev.SENT, b"C:\\new folder\n"))
    lines = plain(out.getvalue()).splitlines()
    assert len(lines) == 1 and lines[0].endswith("C:\\\\new folder\\n"), lines


def test_only_the_clock_is_dim_not_the_payload():
    traffic, out = view()
    traffic(ev.Data(1, "127.0.0.1:9", ev.RECEIVED, b"payload here"))
    screen = out.getvalue()
    before = screen[: screen.index("payload here")]
    active = ""  # the SGR state in force where the payload starts
    for match in SGR.finditer(before):
        active = "" if match.group(1) in ("", "0") else active + ";" + match.group(1)
    assert "2" not in active.split(";"), repr(screen)
    assert screen.startswith("\x1b[2m")  # the clock is dim


def test_a_big_chunk_draws_its_first_rows_then_how_much_more():
    traffic, out = view()
    traffic(ev.Data(1, "127.0.0.1:9", ev.RECEIVED, b"line of text\n" * 400_000))
    lines = plain(out.getvalue()).splitlines()
    assert len(lines) == 1 + ROWS_PER_CHUNK + 1, lines
    assert re.search(r"… 5\.0 MiB more", lines[-1]), lines[-1]


def test_binary_without_newlines_is_bounded_too():
    traffic, out = view()
    traffic(ev.Data(1, "127.0.0.1:9", ev.RECEIVED, b"\xff\x00" * 2_000_000))
    text = plain(out.getvalue())
    assert len(text) < 20 * 100, len(text)
    assert "MiB more" in text


def test_many_chunks_in_a_second_are_counted_not_drawn():
    traffic, out = view()
    for _ in range(2000):
        traffic(ev.Data(1, "127.0.0.1:9", ev.RECEIVED, b"x" * 1000 + b"\n"))
    traffic(ev.Closed(1, "127.0.0.1:9", "closed by peer", 0, 2_002_000, 1.0))
    lines = plain(out.getvalue()).splitlines()
    assert len(lines) < 400, len(lines)
    assert any(re.search(r"chunks not drawn", line) for line in lines), lines[-5:]
    assert "closed by peer" in lines[-2]


def test_full_draws_every_chunk_whole():
    traffic, out = view(full=True)
    for _ in range(300):
        traffic(ev.Data(1, "127.0.0.1:9", ev.RECEIVED, b"a\n" * 20))
    assert plain(out.getvalue()).count("a\\n") == 300 * 20


def test_hex_offsets_run_on_across_chunks():
    traffic, out = view(hex=True)
    traffic(ev.Data(1, "127.0.0.1:9", ev.RECEIVED, bytes(20)))
    traffic(ev.Data(1, "127.0.0.1:9", ev.RECEIVED, bytes(20)))
    offsets = re.findall(r"^  ([0-9a-f]{8})  ", plain(out.getvalue()), re.M)
    assert offsets == ["00000000", "00000010", "00000014", "00000024"], offsets


@pytest.mark.parametrize("width", [80, 72, 60, 40])
def test_hex_rows_fit_the_terminal(width):
    traffic, out = view(width=width, hex=True)
    traffic(ev.Data(1, "[2001:db8::1]:65535", ev.RECEIVED, bytes(range(256)) * 2))
    rows = [line for line in plain(out.getvalue()).splitlines() if re.match(r"  [0-9a-f]{8}  ", line)]
    assert rows and all(len(row) <= width for row in rows), rows
    assert all(row.endswith("|") for row in rows), rows  # never wrapped mid-row
    if width >= 80:
        assert len(rows[0]) == 80 and rows[0].count(" ", 10, 60) >= 16  # 16 bytes a row at 80 columns


def test_peer_column_is_padded_so_lines_align():
    traffic, out = view()
    traffic(ev.Data(1, "[::1]:40000", ev.RECEIVED, b"a"))
    traffic(ev.Data(2, "127.0.0.1:40000", ev.RECEIVED, b"b"))
    traffic(ev.Data(1, "[::1]:40000", ev.RECEIVED, b"c"))
    lines = plain(out.getvalue()).splitlines()
    assert lines[1].index("←") == lines[2].index("←"), lines


def test_data_sent_from_a_file_is_one_summary_line(tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"\x00\x01" * 500_000)

    def drain(conn: socket.socket) -> None:
        while conn.recv(1 << 20):
            pass

    port = serve_one(drain)
    with payload.open("rb") as stdin:
        result = subprocess.run(
            command("tcp-connect", "--view", f"127.0.0.1:{port}"),
            stdin=stdin,
            capture_output=True,
            timeout=30,
        )
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert re.search(r"→ +976\.6 KiB  from stdin", text), text
    assert "\\0\\x01" not in text


def echo_server() -> int:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):  # the client may reset
                    while data := conn.recv(65536):
                        conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def test_json_never_shows_a_reply_before_its_request():
    port = echo_server()
    for _ in range(10):
        result = run("tcp-connect", "--json", f"127.0.0.1:{port}", "--send", "hi", "--repeat", "3")
        assert result.returncode == 0, result.stderr
        sent = received = 0
        for line in result.stdout.splitlines():
            record = json.loads(line)
            if record.get("event") == "data":
                if record["direction"] == "sent":
                    sent += record["size"]
                else:
                    received += record["size"]
                assert received <= sent, result.stdout.decode()
        assert sent == received == 6


def test_hex_in_a_pipe_is_a_hex_dump_not_ignored():
    from conftest import serve_once

    port = serve_once(bytes(range(20)))
    result = run("tcp-connect", "--hex", f"127.0.0.1:{port}", "--send", "")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == hexdump_lines(bytes(range(20)))


@pytest.mark.parametrize("other", ["--raw", "--json"])
def test_hex_with_raw_or_json_is_a_usage_error(other):
    result = run("tcp-connect", "--hex", other, "127.0.0.1:9")
    assert result.returncode == 2
    assert b"--hex" in result.stderr


def test_expect_keeps_the_write_side_open_for_a_server_that_hangs_up_at_eof():
    """Like `ncat -c`: the server ends at our EOF; it answers only while we keep writing open."""

    def serve(conn: socket.socket) -> None:
        request = b""
        while not request.endswith(b"\n"):
            request += conn.recv(100)
        ready, _, _ = select.select([conn], [], [], 0.3)
        if ready and not conn.recv(100):
            return  # EOF after the request: hang up without an answer
        conn.sendall(b"PONG\n")
        conn.recv(100)

    port = serve_one(serve)
    result = run("tcp-connect", f"127.0.0.1:{port}", "--send", "PING\n", "--expect", "PONG")
    assert result.returncode == 0, result.stderr


def test_full_hex_draws_every_row():
    traffic, out = view(hex=True, full=True)
    traffic(ev.Data(1, "127.0.0.1:9", ev.RECEIVED, bytes(range(256)) * 4))
    rows = re.findall(r"^  [0-9a-f]{8}  ", plain(out.getvalue()), re.M)
    assert len(rows) == 64


def udp_echo() -> tuple[int, list[bytes]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        with server:
            while True:
                try:  # an ICMP error about a client that has gone is not the server's end
                    data, peer = server.recvfrom(65536)
                    seen.append(data)
                    server.sendto(data, peer)
                except (ConnectionRefusedError, ConnectionResetError):
                    continue

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], seen


def test_udp_send_wait_ends_at_the_reply_not_at_the_timeout():
    port, _ = udp_echo()
    # A 60 s wait that ran out would outlast run()'s 20 s limit: the reply must end it.
    result = run("udp-send", f"127.0.0.1:{port}", "ping", "--wait", "--timeout", "60s")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ping"


def test_udp_send_replies_n_exits_after_n_replies():
    port, seen = udp_echo()
    result = run(
        "udp-send", f"127.0.0.1:{port}", "ping", "--count", "3", "--replies", "3", "--wait", "--timeout", "60s"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ping" * 3 and len(seen) == 3


def test_every_json_record_of_every_command_begins_with_event_and_version():
    from conftest import free_port, serve_once

    udp_port, _ = udp_echo()
    outputs = [
        run("tcp-connect", "--json", f"127.0.0.1:{serve_once(b'hi')}", "--send", "x").stdout,
        run("udp-send", "--json", f"127.0.0.1:{udp_port}", "ping", "--wait").stdout,
        run("portscan", "--json", "127.0.0.1", str(free_port()), "--all").stdout,
    ]
    failed = run("tcp-connect", "--json", f"127.0.0.1:{free_port()}")
    assert failed.returncode == 1
    for output in [*outputs, failed.stdout]:
        records = [json.loads(line) for line in output.splitlines()]
        assert records, output
        for record in records:
            assert list(record)[:2] == ["event", "v"] and record["event"] and record["v"] == 1, record
    datagrams = [json.loads(line) for line in outputs[1].splitlines()][:2]
    assert [(r["event"], r["direction"], r["peer"]) for r in datagrams] == [
        ("datagram", "sent", f"127.0.0.1:{udp_port}"),
        ("datagram", "received", f"127.0.0.1:{udp_port}"),
    ]
    error = json.loads(failed.stdout)
    assert error["event"] == "error" and error["exit"] == 1 and "refused" in error["message"]


@pytest.mark.parametrize(
    ("env", "color"),
    [({"NO_COLOR": ""}, True), ({"NO_COLOR": "1"}, False), ({"TERM": "dumb"}, False), ({}, True)],
)
def test_colour_follows_no_color_and_term_dumb(monkeypatch, env, color):
    from socktool.view.terminal import Terminal

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Terminal.from_options().color is color


def test_after_an_echoed_ctrl_c_the_closed_line_starts_on_a_line_of_its_own():
    from socktool.view.terminal import owe_fresh_line

    traffic, out = view()
    owe_fresh_line()  # what a SIGINT does when the terminal echoed ^C
    traffic(ev.Closed(1, "127.0.0.1:9", "interrupted", 1, 2, 0.5))
    traffic(ev.Closed(2, "127.0.0.1:9", "interrupted", 1, 2, 0.5))
    lines = plain(out.getvalue()).splitlines()
    assert lines[0] == "" and "✕ closed: interrupted" in lines[1], lines
    assert "✕ closed: interrupted" in lines[3], lines  # once: the next line goes on as usual


def test_one_datagram_is_singular():
    traffic, out = view()
    traffic(ev.Stats(1, 1, 0.5, 0, 1, 1))
    assert "1 datagram in, 1 out" in plain(out.getvalue())


def test_a_unix_stream_listener_is_not_labelled_tcp(tmp_sock_dir):
    result = run("tcp-listen", f"unix:{tmp_sock_dir}/s.sock", "-w", "200ms")
    assert b"(unix stream)" in result.stderr and b"(tcp)" not in result.stderr, result.stderr


def test_an_oversize_stdin_datagram_says_at_least():
    result = run("udp-send", "127.0.0.1:9", input=b"\0" * 70_000)
    assert result.returncode == 2
    assert "at least" in one_line_error(result.stderr)


def test_ipv6_multicast_that_cannot_leave_by_loopback_hints_at_interface():
    # In a network namespace of its own (only lo, brought up) the datagram cannot reach a
    # real link, whatever routes this host has for ff00::/8.
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a network namespace of its own")
    in_netns = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    result = subprocess.run(
        [*in_netns, *command("udp-send", "[ff02::1234]:5000", "hi")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=20,
    )
    if result.returncode == 0:
        pytest.skip("this host's loopback carries IPv6 multicast")
    error = one_line_error(result.stderr)
    assert "network unreachable" in error and "--interface" in error, error


def test_ctrl_d_at_a_terminal_is_drawn_as_the_half_close():
    import pty
    import time

    def serve(conn: socket.socket) -> None:
        while conn.recv(100):
            pass
        conn.sendall(b"bye\n")

    port = serve_one(serve)
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(
        command("tcp-connect", f"127.0.0.1:{port}"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 20
    sent_eof = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
            if b"connected" in screen and not sent_eof:
                os.write(master, b"hi\n\x04")
                sent_eof = True
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=10) == 0, screen
    text = plain(screen.decode("utf-8", "replace"))
    assert "end of input: sent EOF (half-close)" in text, text
    assert "bye" in text.split("end of input", 1)[1], text
