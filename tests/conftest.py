"""Shared helpers: run socktool as a user does (a subprocess of the installed
command) and wait for events on its stderr instead of sleeping."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import ssl  # noqa: F401 - imported before run_here stands in for socket.socket: ssl subclasses it on import
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_BIN = Path(sys.executable).with_name("socktool")
SOCKTOOL = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "socktool"]

LISTENING = re.compile(r"listening on (?P<address>\S+)")


def command(*args: str) -> list[str]:
    return [*SOCKTOOL, *map(str, args)]


def run(
    *args: str, input: bytes | None = None, timeout: float = 20, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run socktool to completion; stdout and stderr captured as bytes."""
    return subprocess.run(
        command(*args),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        env=env,
    )


class _Reached(BaseException):
    """The command got as far as the network (or a thread): run_here stops it there."""


def _reached(*args: object, **kwargs: object) -> None:
    raise _Reached


def run_here(*args: str) -> subprocess.CompletedProcess | None:
    """Run socktool in this process, through its own entry point, up to the network.

    For the cases that end before any socket: parsing, usage errors, checks of
    files and names. It takes milliseconds where a subprocess takes a start-up.
    Returns None when the command reached a socket or a thread (run those with
    `run`); stdin is /dev/null, stdout and stderr are captured as bytes.
    """
    from socktool.cli import boundary
    from socktool.net import interrupts

    argv = [str(arg) for arg in args]
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    null = os.open(os.devnull, os.O_RDONLY)
    with contextlib.ExitStack() as stack:
        out, err = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(2))
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setattr(interrupts, "install", lambda: None)
        for name in ("socket", "socketpair", "create_connection", "create_server"):
            patch.setattr(socket, name, _reached)
        patch.setattr(threading.Thread, "start", _reached)
        try:
            for fd, target in ((0, null), (1, out.fileno()), (2, err.fileno())):
                os.dup2(target, fd)
            # Python-level streams onto the same descriptors (pytest's capture replaced them).
            streams = [
                io.TextIOWrapper(os.fdopen(os.dup(fd), mode), write_through=True) for fd, mode in ((1, "wb"), (2, "wb"))
            ]
            patch.setattr(sys, "stdout", streams[0])
            patch.setattr(sys, "stderr", streams[1])
            patch.setattr(sys, "stdin", io.TextIOWrapper(os.fdopen(os.dup(0), "rb")))
            try:
                code = boundary.main(argv)
            except _Reached:
                return None
            finally:
                for stream in (*streams, sys.stdin):
                    stream.close()
        finally:
            for fd, copy in enumerate(saved):
                os.dup2(copy, fd)
                os.close(copy)
            os.close(null)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(["socktool", *argv], code, out.read(), err.read())


class Proc:
    """A running socktool whose stderr is collected line by line in the background."""

    def __init__(self, *args: str, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, **popen_options):
        self.args = command(*args)
        self.popen = subprocess.Popen(self.args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, **popen_options)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        self._reader.join(timeout=5)
        return "\n".join(self.lines)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 10) -> re.Match[str]:
        """Block until a stderr line matches; fail with what stderr said so far."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no stderr line matching {regex.pattern!r}; stderr:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(min(remaining, 0.2))

    def wait_listening(self, timeout: float = 10) -> int:
        """The port from the 'listening on HOST:PORT' line (0 for unix sockets)."""
        address = self.wait_for(LISTENING, timeout)["address"]
        return 0 if address.startswith("unix:") else int(address.rsplit(":", 1)[1])

    def wait(self, timeout: float = 20) -> int:
        return self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=5)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
        self._reader.join(timeout=5)  # stderr is at EOF now: closing it under the reader would fail there
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


def one_line_error(stderr: bytes | str) -> str:
    """Assert stderr is exactly one `socktool: error:` line with no traceback; return it."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text, text
    assert len(lines) == 1, text
    assert lines[0].startswith("socktool: error: "), text
    return lines[0]


def readme_commands(heading: str) -> list[str]:
    """The command lines of the `sh` blocks in the README's section that starts with
    `heading` (up to the next ### or ## heading), without their trailing `  # comments`."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split(f"\n{heading}", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    lines = [line for block in re.findall(r"```sh\n(.*?)```", section, re.S) for line in block.splitlines()]
    return [command for line in lines if (command := re.sub(r"\s+#\s.*$", "", line).strip())]


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now on `host` (for 'refused' cases)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def serve_one(handler: Callable[[socket.socket], object]) -> int:
    """A loopback port whose one client is handed to handler(conn) in a thread; an OSError
    there (a client that reset or left) ends it quietly."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn, contextlib.suppress(OSError):
                handler(conn)

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


@contextlib.contextmanager
def serve_each(handler: Callable[[socket.socket], object]) -> Iterator[int]:
    """serve_one for every client until the block ends: each accepted connection goes to
    handler(conn) in a thread of its own; an OSError there ends it quietly."""
    server = socket.create_server(("127.0.0.1", 0))

    def guarded(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            handler(conn)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=guarded, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def serve_once(payload: bytes) -> int:
    """A loopback port whose one client gets `payload`, then EOF; what the client sends is read and dropped."""

    def send_then_drain(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass

    return serve_one(send_then_drain)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def need(tool: str) -> None:
    """Skip when a peer tool is missing, unless running in CI, where it must be there."""
    if not have(tool):
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; .ci/run installs it")
        pytest.skip(f"{tool} is not installed")


@pytest.fixture
def tmp_sock_dir():
    """A short temp dir for unix sockets (paths are limited to ~100 bytes)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="st-", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)
