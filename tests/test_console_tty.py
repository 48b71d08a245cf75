"""The console as a user meets it: socktool on a pseudo-terminal, clients and peers on loopback.

The pty is the terminal: the test types keys into it and reads what is
drawn, as a person at tmux would. No pexpect: a reader thread collects the
pty's output and the test waits for patterns in it (never a fixed sleep).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import socket
import subprocess
import termios
import threading
import time

import pytest

from conftest import command, need, run
from test_engine import read_exactly, read_to_eof

UP = "\x1b[A"


def _controlling_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Tty:
    """socktool with a pty as its stdin, stdout and stderr (stdout: `stdout` if given)."""

    def __init__(self, *args: str, stdout: object = None):
        self.master, slave = pty.openpty()
        env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm", "COLUMNS": "160", "LINES": "50"}
        self.popen = subprocess.Popen(
            command(*args),
            stdin=slave,
            stdout=slave if stdout is None else stdout,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_controlling_terminal,  # Ctrl-C typed at the pty is then a SIGINT, as in a terminal
        )
        os.close(slave)
        self.output = bytearray()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            with self._changed:
                if not chunk:
                    self._changed.notify_all()
                    return
                self.output += chunk
                self._changed.notify_all()

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def expect(self, pattern: str, timeout: float = 15, start: int = 0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = regex.search(self.text, start)
                if match:
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no {pattern!r} on the terminal; it shows:\n{self.text}")
                self._changed.wait(min(left, 0.2))

    def mark(self) -> int:
        return len(self.text)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def line(self, text: str) -> int:
        """Type a line; returns where the answer to it starts on the screen."""
        start = self.mark()
        self.type(text + "\r")
        return start

    def listening_port(self) -> int:
        return int(self.expect(r"listening on \S+:(\d+)")[1])

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self._reader.join(5)
        os.close(self.master)


@pytest.fixture
def tty_factory():
    ttys: list[Tty] = []

    def make(*args: str, stdout: object = None) -> Tty:
        ttys.append(Tty(*args, stdout=stdout))
        return ttys[-1]

    yield make
    for tty in ttys:
        tty.close()


def connect(port: int, tty: Tty, number: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    tty.expect(rf"#{number} 127\.0\.0\.1:\d+\s+⇄ connected")
    return sock


def test_console_at_a_terminal_addresses_kicks_pauses_and_streams_a_file(tty_factory, tmp_path):
    payload = os.urandom(10 * 1024 * 1024)
    path = tmp_path / "ten.bin"
    path.write_bytes(payload)
    tty = tty_factory("tcp-listen", "-k", "127.0.0.1:0")
    port = tty.listening_port()
    one, two, three = (connect(port, tty, n) for n in (1, 2, 3))

    start = tty.line("/list")
    tty.expect(r"3 clients", start=start)
    tty.expect(r"#3\s+127\.0\.0\.1:\d+", start=start)

    tty.line("/to 2 hello")
    assert read_exactly(two, 6) == b"hello\n"
    tty.line("/hex 3 00 ff")
    assert read_exactly(three, 2) == b"\x00\xff"

    tty.line(f"/file 1 {path}")
    got = read_exactly(one, len(payload), timeout=60)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
    tty.expect(rf"sent {re.escape(str(path))} to #1: {len(payload):,} bytes")
    for other in (two, three):  # the file went to client 1 only
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.recv(1)
        other.setblocking(True)

    tty.line("/kick 2")
    assert read_to_eof(two) == b""
    tty.expect(r"#2 127\.0\.0\.1:\d+\s+✕ closed: kicked from the console")

    start = tty.line("/pause")
    tty.expect(r"paused: new clients are refused", start=start)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=15)
    one.sendall(b"still talking\n")
    tty.expect(r"#1 127\.0\.0\.1:\d+\s+←\s+14 B\s+still talking")
    three.sendall(b"me too\n")
    tty.expect(r"#3 127\.0\.0\.1:\d+\s+←\s+7 B\s+me too")

    # Control bytes from a client are drawn escaped, never sent to the terminal as they came.
    three.sendall(b"\x1b[2J\x07bell")
    tty.expect(r"\\x1b\[2J\\abell|\\x1b\[2J\\x07bell")
    assert b"\x1b[2J" not in tty.output and b"\x07" not in tty.output

    # History: Up brings back the last line typed.
    tty.line("plain line for all")
    assert read_exactly(one, 19) == b"plain line for all\n"
    assert read_exactly(three, 19) == b"plain line for all\n"
    tty.type(UP + "\r")
    assert read_exactly(one, 19) == b"plain line for all\n"

    start = tty.line("/nonsense")
    tty.expect(r"error: unknown command /nonsense", start=start)
    start = tty.line("/to 7 x")
    tty.expect(r"error: no client #7", start=start)

    tty.line("/quit")
    assert tty.popen.wait(15) == 0
    for sock in (one, three):
        sock.close()
    two.close()


def test_udp_listen_console_answers_one_peer_and_reply_last(tty_factory):
    tty = tty_factory("udp-listen", "--reply-last", "127.0.0.1:0")
    port = tty.listening_port()
    one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    two = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (one, two):
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(15)
    one.sendto(b"from one", ("127.0.0.1", port))
    tty.expect(r"←\s+8 B\s+from one")
    two.sendto(b"from two", ("127.0.0.1", port))
    tty.expect(r"←\s+8 B\s+from two")
    tty.line("/to 1 pong")
    assert one.recvfrom(100)[0] == b"pong"
    tty.line("hi two")  # --reply-last: two spoke last
    assert two.recvfrom(100)[0] == b"hi two"
    one.sendto(b"again", ("127.0.0.1", port))
    tty.expect(r"←\s+5 B\s+again")
    tty.line("hi one")
    assert one.recvfrom(100)[0] == b"hi one"
    tty.line("/quit")
    assert tty.popen.wait(15) == 0


def test_qq_chat_between_udp_listen_reply_last_and_udp_send_lines_wait(tty_factory):
    tty = tty_factory("udp-listen", "--reply-last", "127.0.0.1:0")
    port = tty.listening_port()
    sender = subprocess.Popen(
        command("udp-send", "--lines", "--wait", "--timeout", "3s", f"127.0.0.1:{port}"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert sender.stdin is not None and sender.stdout is not None
    sender.stdin.write(b"hello server\n")
    sender.stdin.close()
    tty.expect(r"←\s+12 B\s+hello server")
    tty.line("hello client")
    out = sender.stdout.read()  # udp-send ends --timeout after the last reply
    assert sender.wait(30) == 0
    assert b"hello client" in out
    sender.stdout.close()
    sender.stderr.close()  # type: ignore[union-attr]


def test_in_a_pipe_stdin_stays_payload_even_when_it_looks_like_a_command():
    server = subprocess.Popen(
        command("tcp-listen", "-k", "127.0.0.1:0"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stderr is not None and server.stdin is not None
        port = int(re.search(rb"listening on \S+:(\d+)", server.stderr.readline())[1])  # type: ignore[index]
        client = socket.create_connection(("127.0.0.1", port), timeout=15)
        data = b"/quit\n/kick 1\n\x00\xff binary\n"
        server.stdin.write(data)
        server.stdin.flush()
        assert read_exactly(client, len(data)) == data
        client.close()
    finally:
        server.kill()
        server.wait(10)


def test_control_console_without_a_terminal_is_a_usage_error():
    result = run("tcp-listen", "-k", "--control", "console", "127.0.0.1:0", input=b"")
    assert result.returncode == 2
    assert b"needs a terminal" in result.stderr
    result = run("tcp-listen", "--control", "json", "127.0.0.1:0", input=b"")
    assert result.returncode == 2
    result = run("udp-listen", "--reply-last", "127.0.0.1:0", input=b"")
    assert result.returncode == 2


def test_control_json_drives_the_same_scenario_and_answers_in_json(tmp_path):
    import json

    path = tmp_path / "small.bin"
    path.write_bytes(bytes(range(256)) * 40)
    server = subprocess.Popen(
        command("tcp-listen", "-k", "127.0.0.1:0", "--control", "json", "--json"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert server.stdin is not None and server.stdout is not None

    def record(kind: str) -> dict:
        while True:
            line = server.stdout.readline()  # type: ignore[union-attr]
            assert line, "stdout ended"
            obj = json.loads(line)
            if obj.get("event") == kind:
                return obj

    def send(obj: object) -> None:
        server.stdin.write((json.dumps(obj) + "\n").encode())  # type: ignore[union-attr]
        server.stdin.flush()  # type: ignore[union-attr]

    try:
        port = int(record("listening")["address"].rsplit(":", 1)[1])
        clients = []
        for _ in range(3):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=15))
            record("connected")
        one, two, three = clients
        send({"list": True})
        assert [row["conn"] for row in record("list")["clients"]] == [1, 2, 3]
        send({"to": 2, "text": "hello"})
        assert read_exactly(two, 6) == b"hello\n"
        send({"to": 3, "hex": "00ff"})
        assert read_exactly(three, 2) == b"\x00\xff"
        send({"to": 1, "file": str(path)})
        assert read_exactly(one, 256 * 40) == path.read_bytes()
        assert record("ok")["bytes"] == 256 * 40
        send({"kick": 9})
        assert "no client #9" in record("error")["text"]
        send({"to": 1, "hex": "zz"})
        assert record("error")["text"]
        server.stdin.write(b"not json\n")
        server.stdin.flush()
        assert record("error")["text"].startswith("not JSON")
        send({"to": 1, "file": str(tmp_path / "missing")})
        assert "cannot open" in record("error")["text"]
        send({"kick": 2})
        assert read_to_eof(two) == b""
        assert record("ok")["kicked"] == 2
        send({"pause": True})
        assert record("ok")["paused"] is True
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=15)
        send({"text": "still here"})
        assert read_exactly(one, 11) == b"still here\n"
        assert read_exactly(three, 11) == b"still here\n"
        send({"quit": True})
        assert server.wait(15) == 0
    finally:
        server.kill()
        server.wait(10)
        for stream in (server.stdin, server.stdout, server.stderr):
            stream.close()  # type: ignore[union-attr]


def test_ctrl_c_mid_line_exits_130_and_gives_the_terminal_back_as_it_was(tty_factory):
    tty = tty_factory("tcp-listen", "-k", "127.0.0.1:0")
    before = termios.tcgetattr(tty.master)
    tty.listening_port()
    tty.expect(r"> $")  # the prompt, readline now holds the terminal
    tty.type("half a line")
    tty.expect(r"half a line")
    tty.type("\x03")
    assert tty.popen.wait(15) == 130
    after = termios.tcgetattr(tty.master)
    assert after[3] & (termios.ECHO | termios.ICANON) == before[3] & (termios.ECHO | termios.ICANON)
    assert after == before


def test_traffic_drawn_while_a_line_is_half_typed_keeps_the_prompt_below_it():
    """tmux is the terminal here: its screen is what a person sees, escape sequences applied."""
    need("tmux")
    socket_name = f"st-console-{os.getpid()}"
    tmux = ["tmux", "-L", socket_name, "-f", "/dev/null"]
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "40",
            "-e",
            "NO_COLOR=1",
            *command("tcp-listen", "-k", "127.0.0.1:0"),
        ],
        check=True,
        timeout=15,
    )
    try:

        def screen() -> list[str]:
            out = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, timeout=15, check=True)
            return [line.rstrip() for line in out.stdout.decode().splitlines() if line.strip()]

        def wait_screen(predicate) -> list[str]:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + 15
            while True:
                lines = screen()
                if predicate(lines):
                    return lines
                assert time.monotonic() < deadline, "\n".join(lines)
                time.sleep(0.05)

        wait_screen(lambda lines: any("listening on" in line for line in lines))
        port = int(re.search(r"listening on \S+:(\d+)", "\n".join(screen()))[1])  # type: ignore[index]
        wait_screen(lambda lines: lines and lines[-1] == ">")
        subprocess.run([*tmux, "send-keys", "half typed"], check=True, timeout=15)
        wait_screen(lambda lines: lines[-1] == "> half typed")
        client = socket.create_connection(("127.0.0.1", port), timeout=15)
        for n in range(5):
            client.sendall(f"line {n}\n".encode())
        lines = wait_screen(lambda lines: any("line 4" in line for line in lines) and lines[-1] == "> half typed")
        traffic = [line for line in lines if "127.0.0.1:" in line and "listening" not in line]
        assert traffic and all(re.match(r"\d\d:\d\d:\d\d\.\d{3}  #1 ", line) for line in traffic), lines
        subprocess.run([*tmux, "send-keys", " and done", "Enter"], check=True, timeout=15)
        assert read_exactly(client, 20) == b"half typed and done\n"
        client.close()
    finally:
        subprocess.run([*tmux, "kill-server"], timeout=15)


def test_udp_listen_control_json_answers_the_last_sender():
    import json

    server = subprocess.Popen(
        command("udp-listen", "127.0.0.1:0", "--reply-last", "--control", "json", "--json"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        port = int(json.loads(server.stdout.readline())["address"].rsplit(":", 1)[1])
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(15)
        peer.sendto(b"hello", ("127.0.0.1", port))
        assert json.loads(server.stdout.readline())["text"] == "hello"
        server.stdin.write(b'{"text": "hi back"}\n{"list": true}\n{"to": 5, "text": "x"}\n')
        server.stdin.flush()
        assert peer.recvfrom(100)[0] == b"hi back"
        records = [json.loads(server.stdout.readline()) for _ in range(3)]
        assert records[0]["direction"] == "sent"
        assert records[1]["event"] == "list" and records[1]["peers"][0]["datagrams"] == 1
        assert records[2]["event"] == "error"
        peer.close()
    finally:
        server.kill()
        server.wait(10)
        for stream in (server.stdin, server.stdout, server.stderr):
            stream.close()  # type: ignore[union-attr]


def test_with_stdout_redirected_the_console_still_works_and_stdout_is_payload_only(tty_factory, tmp_path):
    out = (tmp_path / "received").open("wb")
    tty = tty_factory("tcp-listen", "-k", "127.0.0.1:0", stdout=out)
    port = tty.listening_port()
    client = socket.create_connection(("127.0.0.1", port), timeout=15)
    tty.expect(r"connection from|#1")
    client.sendall(b"\x00payload\xff")
    tty.line("/to 1 hi")
    assert read_exactly(client, 3) == b"hi\n"
    start = tty.line("/list")
    tty.expect(r"1 client", start=start)
    tty.line("/quit")
    assert tty.popen.wait(15) == 0
    out.close()
    assert (tmp_path / "received").read_bytes() == b"\x00payload\xff"
    client.close()


@pytest.mark.parametrize(
    ("args", "after"),
    [
        (("echo", "127.0.0.1:0"), r"socktool: total: 0 connections"),  # a status line (stderr)
        (("forward", "127.0.0.1:0", "127.0.0.1:9"), r"\d\d:\d\d:\d\d\.\d{3}  Σ 0 B sent"),  # the view (stdout)
    ],
    ids=["status-line", "view"],
)
def test_the_totals_after_ctrl_c_start_below_the_echoed_c(tty_factory, args, after):
    """The terminal echoes ^C where the cursor is; the totals were written right after it."""
    tty = tty_factory(*args)
    tty.listening_port()
    start = tty.mark()
    tty.type("\x03")
    assert tty.popen.wait(15) == 130
    tty.expect(r"\^C\r\n" + after, start=start)
