"""Helpers the reliability tests share (faults, load, integrity, security):
collecting a process's stdout in the background, limiting its descriptors,
reading its descriptor count and memory, and peers that misbehave."""

from __future__ import annotations

import fcntl
import os
import re
import resource
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

from conftest import Proc, command

MB = 1 << 20


def error_lines(stderr: str | bytes) -> list[str]:
    """The `socktool: error:` lines; fails on a traceback."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("socktool: error: ")]


def one_error(stderr: str | bytes) -> str:
    """Exactly one error line among the status lines (a listener prints its port first)."""
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    return lines[0]


class Collector:
    """Reads a pipe to its end in a thread; the test can wait for an amount."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.data = bytearray()
        self._changed = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.pipe.read1(1 << 20)
                if not chunk:
                    break
                with self._changed:
                    self.data += chunk
                    self._changed.notify_all()
        except (OSError, ValueError):
            pass
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_for(self, size: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.data) < size:
                left = deadline - time.monotonic()
                assert left > 0 and not self._done, f"only {len(self.data)} of {size} bytes arrived"
                self._changed.wait(left)

    def wait_until(self, predicate, timeout: float = 10, what: str = "output") -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(bytes(self.data)):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}; got {bytes(self.data[-200:])!r}"
                self._changed.wait(min(left, 0.2))

    def result(self, timeout: float = 10) -> bytes:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "output did not end"
        return bytes(self.data)


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def limit_descriptors(limit: int):
    """A preexec_fn: the child may hold at most `limit` descriptors (as `ulimit -n`)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


class LimitedProc(Proc):
    """A Proc started under `ulimit -n limit`."""

    def __init__(self, limit: int, *args: str, **options):
        super().__init__(*args, preexec_fn=limit_descriptors(limit), **options)


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def has_socket(pid: int) -> bool:
    """Whether the process holds a socket now (it has got as far as the network)."""
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                return True
        except OSError:
            continue
    return False


def wait_until(predicate, timeout: float = 10, what: str = "condition", step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def wait_listening(port: int, host: str | None = None, timeout: float = 10) -> None:
    """Wait until something listens on port (on `host`, or any address), without
    connecting to it: a one-client peer (nc -l) would take that as its connection."""
    where = f"src {host}:{port}" if host is not None else f"sport = :{port}"

    def listens() -> bool:
        return bool(subprocess.run(["ss", "-Hltn", where], capture_output=True, text=True).stdout.strip())

    wait_until(listens, timeout, what=f"something to listen on {host or '*'}:{port}")


def queued(fd: int) -> int:
    """Bytes waiting to be read from a socket or a pipe (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def main_thread_asleep(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "S"


def wait_until_full(queued_bytes: Callable[[], int], pid: int | None = None, timeout: float = 20) -> None:
    """Until the bytes queued for a reader stop growing (and process `pid`, the writer,
    sleeps): the writer has filled what it writes to and waits for room."""
    last, steady = -1, 0
    deadline = time.monotonic() + timeout
    while steady < 3:
        assert time.monotonic() < deadline, "the writer never filled its destination"
        now = queued_bytes()
        full = now == last and now > 0 and (pid is None or main_thread_asleep(pid))
        steady = steady + 1 if full else 0
        last = now
        time.sleep(0.05)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def feed(pipe, data: bytes, chunk: int = 1 << 16) -> threading.Thread:
    """Write data to a pipe from a thread, then close it; a reader that left is not an error."""

    def write() -> None:
        try:
            for start in range(0, len(data), chunk):
                pipe.write(data[start : start + chunk])
        except (ValueError, OSError):
            pass  # the reader is gone
        try:
            pipe.close()
        except OSError:
            pass  # unflushed bytes for a reader that is gone; the pipe is closed all the same

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def filtered_listener() -> tuple[socket.socket, socket.socket]:
    """A loopback port whose SYNs go unanswered: backlog 0 and a full accept queue."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=2)
    return listener, filler


class PtyProc:
    """socktool with stdout and stderr on a pseudo-terminal: what a person would see.

    The screen is read in a thread; `wait_for` matches the text with escape
    sequences left in, as the terminal got them.
    """

    def __init__(self, *args: str, env: dict | None = None):
        import pty

        master, slave = pty.openpty()
        environment = {**os.environ, "COLUMNS": "160", "LINES": "50", "TERM": "xterm-256color", **(env or {})}
        environment.pop("NO_COLOR", None)
        self.popen = subprocess.Popen(
            command(*args), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=environment, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.screen = b""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the other side closed
                data = b""
            with self._changed:
                if not data:
                    self._changed.notify_all()
                    return
                self.screen += data
                self._changed.notify_all()

    def wait_for(self, pattern: bytes, timeout: float = 10) -> re.Match[bytes]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (match := regex.search(self.screen)):
                left = deadline - time.monotonic()
                assert left > 0 and self._thread.is_alive(), f"no {pattern!r} on the screen: {self.screen[-500:]!r}"
                self._changed.wait(min(left, 0.2))
        return match

    def finish(self, timeout: float = 10) -> tuple[int, bytes]:
        code = self.popen.wait(timeout=timeout)
        self._thread.join(5)
        os.close(self.master)
        return code, self.screen

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


SGR = re.compile(rb"\x1b\[[0-9;]*m")  # colour and style: the only sequences socktool itself sends


def raw_controls(screen: bytes) -> list[str]:
    """Control characters on a screen beyond line ends and socktool's own colours:
    C0 (ESC, BEL, BS...), DEL and C1 (such as the 8-bit CSI, U+009B)."""
    text = SGR.sub(b"", screen).decode("utf-8", "replace")
    return sorted({repr(ch) for ch in text if (ord(ch) < 0x20 and ch not in "\r\n") or 0x7F <= ord(ch) <= 0x9F})


NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # the test venv's interpreter may sit where nobody can run it


def run_as_nobody(code: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run Python `code` as uid/gid 65534 ("another local user"); root only."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("running as another user needs root")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is needed to run code as another user")
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", code, *args],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        timeout=timeout,
    )
