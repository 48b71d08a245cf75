"""Security: who may connect (--allow / --deny, IPv4 and IPv6, decided before a
byte is read), how many (--max-clients), how much the time-server answers,
that --exec (and wait's command) never goes through a shell unless the
command names one, and that nothing a peer sends reaches a terminal raw.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys

import pytest

from conftest import Proc, serve_once
from reliability_helpers import PtyProc, error_lines, raw_controls, wait_until
from socktool.net.timeserver import MAX_REPLY
from socktool.net.udpguard import reply_limit

HOSTILE = (
    bytes(range(256))
    + b"\x1b]0;pwned title\x07"  # set the window title
    + b"\x1b[2J\x1b[H"  # clear the screen
    + b"\x1b[6n"  # ask the terminal to answer (a report typed into our stdin)
    + "\u009b31m C1 CSI \u0085 NEL".encode()  # 8-bit controls, UTF-8 encoded
    + b"\x1bP+q544e\x1b\\"  # DCS query
    + b"\r\x08\x7f end\n"
)


# -- who may connect, decided before a byte is read ----------------------------------------
def _json_events(proc: Proc) -> list[dict]:
    return [json.loads(line) for line in proc.popen.stdout.read().splitlines()]


def _client(host: str, port: int, payload: bytes) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect((host, port))
    sock.sendall(payload)
    return sock


def _closed_on_us(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:  # our bytes were never read: the kernel answered with a reset
        return True


@pytest.mark.parametrize(
    ("rules", "admitted", "turned_away", "reason"),
    [
        (["--allow", "::1/128"], "::1", "127.0.0.1", "not in --allow"),
        (["--allow", "127.0.0.0/8"], "127.0.0.1", "::1", "not in --allow"),
        (["--deny", "::/0"], "127.0.0.1", "::1", "denied by --deny"),
        (["--deny", "0.0.0.0/0", "--allow", "::1"], "::1", "127.0.0.1", "denied by --deny"),
        (["--allow", "::/0", "--allow", "127.0.0.1/32", "--deny", "127.0.0.1"], "::1", "127.0.0.1", "denied by --deny"),
        (["--deny", "::ffff:127.0.0.0/104"], "::1", "127.0.0.1", "denied by --deny"),
    ],
    ids=["allow v6", "allow v4 on dual stack", "deny v6", "deny v4 allow v6", "deny wins", "deny v4-mapped form"],
)
def test_access_rules_decide_before_a_byte_is_read_or_a_process_started(tmp_path, rules, admitted, turned_away, reason):
    marker = tmp_path / "ran"
    exec_cmd = f"sh -c 'echo started >> {marker}; cat'"
    with Proc("tcp-listen", "-k", "--json", *rules, "--exec", exec_cmd, "[::]:0") as listener:
        port = listener.wait_listening()
        away = _client(turned_away, port, b"SECRET-" * 1000)
        assert _closed_on_us(away)
        away.close()
        assert not marker.exists()  # no process for a client turned away
        welcome = _client(admitted, port, b"hello\n")
        assert welcome.recv(100) == b"hello\n"  # cat answers: this one got through
        welcome.close()
        wait_until(lambda: marker.exists(), what="the admitted client's process")
        listener.popen.send_signal(signal.SIGTERM)
        assert listener.wait() == 143
        events = _json_events(listener)
    assert marker.read_text() == "started\n"
    rejected = [e for e in events if e["event"] == "rejected"]
    assert len(rejected) == 1 and rejected[0]["reason"] == reason
    assert rejected[0]["peer"].startswith("127.0.0.1:" if turned_away == "127.0.0.1" else "[::1]:")
    assert [e["peer"].rsplit(":", 1)[0] for e in events if e["event"] == "connected"] == [
        "127.0.0.1" if admitted == "127.0.0.1" else "[::1]"
    ]


def test_turned_away_clients_bytes_never_reach_the_output():
    with Proc("tcp-listen", "-k", "-v", "--json", "--deny", "127.0.0.2", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0), timeout=10)
            sock.sendall(b"SECRET\n" * 100)
            assert _closed_on_us(sock)
            sock.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"public\n")
        listener.wait_for("closed #1 ")
        listener.popen.send_signal(signal.SIGINT)
        assert listener.wait() == 130
        events = _json_events(listener)
    data = [bytes.fromhex(e["hex"]) for e in events if e["event"] == "data"]
    assert data == [b"public\n"]
    assert sum(e["event"] == "rejected" for e in events) == 5


# -- how many at once --------------------------------------------------------------------------
def test_max_clients_holds_a_burst_to_the_limit_and_reads_nothing_from_the_rest():
    limit, burst = 3, 20
    # stdin stays open: at its end every client would be half-closed (as ncat -k does), which reads as EOF here.
    with Proc(
        "tcp-listen", "-k", "--json", "--max-clients", str(limit), "127.0.0.1:0", stdin=subprocess.PIPE
    ) as listener:
        port = listener.wait_listening()
        clients = []
        for n in range(burst):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"client {n}\n".encode())
            clients.append(sock)
        held = [sock for sock in clients if not _readable_eof(sock)]
        assert len(held) == limit
        for sock in clients:
            sock.close()
        listener.popen.send_signal(signal.SIGTERM)
        assert listener.wait() == 143
        events = _json_events(listener)
    live = peak = 0
    for event in events:
        if event["event"] == "connected":
            live += 1
            peak = max(peak, live)
        elif event["event"] == "closed":
            live -= 1
    assert peak == limit
    assert sum(e["event"] == "rejected" and "--max-clients 3 reached" in e["reason"] for e in events) == burst - limit
    heard = sorted(bytes.fromhex(e["hex"]) for e in events if e["event"] == "data")
    assert heard == [f"client {n}\n".encode() for n in range(limit)]


def _readable_eof(sock: socket.socket) -> bool:
    """Whether the server closed this connection on us (within a moment)."""
    sock.settimeout(0.3)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(10)


# -- the time-server's reply bound -----------------------------------------------------------------
def test_no_time_server_reply_is_larger_than_its_request_or_32_bytes_whatever_is_asked():
    rng = random.Random(867)
    pieces = ["%c", "%A", "%B", "%Y", "%%", "%x", "%X", "%Z", "%z", "%j", "x", "é", "\x1b"]
    requests = [b"", b"%c" * 600, b"%" * 5000, os.urandom(3000), b"x" * 65507]
    requests += ["".join(rng.choices(pieces, k=rng.randint(1, 400))).encode() for _ in range(150)]
    with Proc("time-server", "127.0.0.1:0") as server:
        port = server.wait_listening()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            for request in requests:
                client.sendto(request, ("127.0.0.1", port))
                reply = client.recv(65535)
                assert 0 < len(reply) <= min(MAX_REPLY, reply_limit(len(request))), (request[:40], len(reply))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
            try:
                tcp.sendall(os.urandom(1 << 20))  # RFC 867 ignores it; the answer stays one line
            except OSError:
                pass  # the server may already have answered and closed
            answer = b""
            try:
                while chunk := tcp.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
        assert 0 < len(answer) <= MAX_REPLY and answer.count(b"\n") == 1
        assert server.popen.poll() is None


# -- --exec and wait's command: no shell unless the command names one ------------------------------
ARGV_PRINTER = "import json, sys; sys.stdout.write(json.dumps(sys.argv[1:]) + '\\n')"
SHELL_BAIT = ["$(touch {m})", "`touch {m}`", "; touch {m}", "| touch {m}", "> {m}", "*", "$HOME", "a&&b", "~"]


def test_exec_passes_shell_syntax_to_the_program_as_plain_arguments(tmp_path):
    marker = tmp_path / "pwned"
    bait = [arg.format(m=marker) for arg in SHELL_BAIT]
    with open(tmp_path / "printer.py", "w") as file:
        file.write(ARGV_PRINTER)
    command_line = " ".join([sys.executable, str(tmp_path / "printer.py")] + [_quote(arg) for arg in bait])
    with Proc("tcp-listen", "--exec", command_line, "127.0.0.1:0", cwd=tmp_path) as listener:
        port = listener.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.shutdown(socket.SHUT_WR)
            line = b""
            while chunk := sock.recv(4096):
                line += chunk
        assert listener.wait() == 0
    assert json.loads(line) == bait
    assert not marker.exists()


def test_wait_runs_its_command_without_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    bait = [arg.format(m=marker) for arg in SHELL_BAIT]
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = subprocess.run(
            [*_socktool(), "wait", "-q", f"127.0.0.1:{port}", "--", sys.executable, "-c", ARGV_PRINTER, *bait],
            capture_output=True,
            timeout=20,
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == bait
    assert not marker.exists()


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _socktool() -> list[str]:
    from conftest import SOCKTOOL

    return SOCKTOOL


# -- nothing a peer sends reaches the terminal raw ---------------------------------------------------
@pytest.mark.parametrize("view", [[], ["--hex"]], ids=["text view", "hex view"])
def test_terminal_view_of_hostile_tcp_payload_has_no_raw_control_characters(view):
    port = serve_once(HOSTILE)
    terminal = PtyProc("tcp-connect", *view, f"127.0.0.1:{port}")
    try:
        code, screen = terminal.finish()
    finally:
        terminal.kill()
    assert code == 0, screen
    assert b"closed" in screen  # the whole session was drawn
    assert raw_controls(screen) == []
    shown = b"\\x07\\x1b[2J\\x1b[H\\x1b[6n\\x9b31m" if not view else b"00000000  00 01 02 03 04 05 06 07"
    assert shown in screen


def test_terminal_view_of_hostile_datagrams_and_unix_peer_names_has_no_raw_control_characters(tmp_sock_dir):
    path = tmp_sock_dir / "listen.sock"
    terminal = PtyProc("udp-listen", "-v", f"unix:{path}")
    try:
        terminal.wait_for(rb"listening on")
        named = tmp_sock_dir / "\x1b]0;evil\x07\x1b[2J"
        senders = []
        for address in (str(named), "\0\x1b[31mabstract\x9b"):
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.bind(address)
            sender.sendto(HOSTILE[:600], str(path))
            senders.append(sender)
        terminal.wait_for(rb"abstract")
        terminal.popen.send_signal(signal.SIGINT)
        code, screen = terminal.finish()
        for sender in senders:
            sender.close()
    finally:
        terminal.kill()
    assert code == 130
    assert b"\\x1b]0;evil\\x07\\x1b[2J" in screen  # the peer's name, escaped
    assert raw_controls(screen) == []


def test_time_server_status_lines_show_a_hostile_format_escaped():
    terminal = PtyProc("time-server", "-v", "--udp-only", "127.0.0.1:0")
    try:
        port = int(terminal.wait_for(rb"listening on 127\.0\.0\.1:(\d+)")[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(b"\x1b]0;pwned\x07%H\x9b\x1b[2J", ("127.0.0.1", port))
            client.recv(2048)
        terminal.wait_for(rb"format '")
        terminal.popen.send_signal(signal.SIGTERM)
        code, screen = terminal.finish()
    finally:
        terminal.kill()
    assert code == 143
    assert b"\\x1b]0;pwned\\x07%H\\x9b\\x1b[2J" in screen
    assert raw_controls(screen) == []
    assert error_lines(screen) == []
