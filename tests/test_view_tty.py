"""The traffic view, in a real pseudo-terminal: what a person at a terminal sees."""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import time

from conftest import command, serve_once

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_pty(
    args: list[str], *, stdin=subprocess.DEVNULL, timeout: float = 15, env: dict | None = None
) -> tuple[int, str]:
    """Run socktool with stdout and stderr on a pty; return (exit code, screen text)."""
    master, slave = pty.openpty()
    environment = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color", **(env or {})}
    environment.pop("NO_COLOR", None) if env is None or "NO_COLOR" not in env else None
    proc = subprocess.Popen(command(*args), stdin=stdin, stdout=slave, stderr=slave, env=environment, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=5)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_view_escapes_control_bytes_and_shows_a_summary():
    port = serve_once(b"hello\x1b[2J\x07 world\r\n\xff\xfe end")
    code, screen = run_in_pty(["tcp-connect", f"127.0.0.1:{port}", "--send", "ping\n"])
    assert code == 0, screen
    text = ANSI.sub("", screen)
    assert "\x1b[2J" not in screen and "\x07" not in screen  # never reach the terminal raw
    assert "hello\\x1b[2J\\x07 world\\r\\n" in text
    assert "\\xff\\xfe end" in text
    assert "→" in text and "ping\\n" in text  # what we sent
    assert "←" in text and "24 B" in text  # what we received, with its size
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3}", text)  # timestamps
    assert "connected" in text
    assert re.search(r"5 B sent, 24 B received in \S+ \(", text)  # the summary at close


def test_view_hex_dump():
    port = serve_once(bytes(range(20)) + b"ABC")
    code, screen = run_in_pty(["tcp-connect", f"127.0.0.1:{port}", "--hex", "--send", "x"])
    assert code == 0, screen
    text = ANSI.sub("", screen)
    assert "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|" in text
    assert "00000010  10 11 12 13 41 42 43" in text and "|....ABC|" in text


def test_pipe_gets_raw_bytes_but_view_flag_forces_the_view():
    port = serve_once(b"raw\x00bytes")
    result = subprocess.run(command("tcp-connect", f"127.0.0.1:{port}", "--send", ""), capture_output=True, timeout=15)
    assert result.stdout == b"raw\x00bytes"
    port = serve_once(b"raw\x00bytes")
    result = subprocess.run(
        command("tcp-connect", "--view", f"127.0.0.1:{port}", "--send", ""), capture_output=True, timeout=15
    )
    assert b"raw\\0bytes" in result.stdout


def test_raw_flag_on_a_terminal_writes_payload_untouched():
    port = serve_once(b"plain payload\n")
    code, screen = run_in_pty(["tcp-connect", "--raw", "-q", f"127.0.0.1:{port}", "--send", ""])
    assert code == 0
    assert screen.replace("\r\n", "\n") == "plain payload\n"


def test_no_color_leaves_no_escape_sequences():
    port = serve_once(b"colourless")
    code, screen = run_in_pty(["tcp-connect", f"127.0.0.1:{port}", "--send", ""], env={"NO_COLOR": "1"})
    assert code == 0
    assert "\x1b[" not in screen
    assert "colourless" in screen


def test_keep_open_view_labels_each_client():
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.Popen(
        command("tcp-listen", "-k", "127.0.0.1:0"), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    screen = b""
    try:
        while b"listening on" not in screen:
            select.select([master], [], [], 5)
            screen += os.read(master, 4096)
        port = int(re.search(rb"listening on 127\.0\.0\.1:(\d+)", screen).group(1))
        for n in range(2):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(f"client {n}\n".encode())
        deadline = time.monotonic() + 10
        while screen.count("✕".encode()) < 2 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                screen += os.read(master, 4096)
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        os.close(master)
    text = ANSI.sub("", screen.decode("utf-8", "replace"))
    assert re.search(r"#1 127\.0\.0\.1:\d+ +← +9 B +client 0\\n", text), text
    assert re.search(r"#2 127\.0\.0\.1:\d+ +← +9 B +client 1\\n", text), text
