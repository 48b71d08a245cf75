"""tcp-listen --exec: each client wired to a new process, on the loop.

The process's stdin and stdout are pipes, two more descriptors in the loop:
the client's data goes to the command (unless --send-only), the command's
output to the client (--crlf translated; dropped with --recv-only). When the
client stops sending, the command's stdin is closed; when the command's
output ends, the client's write side is shut (unless --no-shutdown), and
the connection closes once the command has exited. A client that cannot
keep up pauses the command's output, and a command that does not read
pauses the client: memory stays bounded either way.

Stopping the server ends every command at once: SIGTERM to all, a shared
grace period (EXEC_GRACE), then SIGKILL to the rest; a second interrupt
during the grace kills them at once.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from socktool.net import interrupts
from socktool.net.errors import Terminated, describe
from socktool.net.loop import Connection, Handler, Loop
from socktool.values import CrlfEncoder

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.hub import Hub

EXEC_GRACE = 1.0  # seconds the commands have to end after SIGTERM when the server stops
PIPE_CHUNK = 64 * 1024
DEFAULT_MAX_CLIENTS = 100  # --exec: processes at once unless --max-clients says otherwise (as ncat)
_REAP_POLL = 0.05  # where pidfd_open is missing: how often to look for the command's exit


def exec_handler(hub: Hub, argv: tuple[str, ...]) -> Callable[[], Handler]:
    return lambda: ExecRelay(hub, argv)


def spawn(argv: tuple[str, ...]) -> subprocess.Popen[bytes]:
    """The command with pipes for stdin and stdout and the signal mask a program
    expects (a thread may run with SIGINT/SIGTERM blocked, and a child would
    inherit that and ignore Ctrl-C and the server's SIGTERM)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - no per-thread masks
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
    previous = signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))
    try:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ExecRelay(Handler):
    """One client and its command."""

    def __init__(self, hub: Hub, argv: tuple[str, ...]):
        self.hub = hub
        self.argv = argv
        self.loop: Loop = hub.loop
        self.process: subprocess.Popen[bytes] | None = None
        self.to_command: int | None = None  # the command's stdin (our write end)
        self.from_command: int | None = None  # its stdout (our read end)
        self.pending = b""  # client data the command has not taken yet
        self.client_done = False  # the client sent EOF: close the command's stdin once `pending` is in
        self.reading_output = False
        self.crlf = CrlfEncoder() if hub.payload.crlf else None
        self.conn: Connection | None = None

    # -- the connection's side ---------------------------------------------------------
    def connected(self, conn: Connection) -> None:
        self.conn = conn
        self.hub.joined(conn)
        try:
            with interrupts.held():  # started means listed: stopping the server ends it
                process = spawn(self.argv)
                self.hub.processes.add(process)
        except OSError as exc:
            conn.close(f"cannot run {self.argv[0]}: {describe(exc)}")
            return
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self.to_command = process.stdin.fileno()
        self.from_command = process.stdout.fileno()
        os.set_blocking(self.to_command, False)
        os.set_blocking(self.from_command, False)
        if not self.hub.relay.receive:  # --send-only: the client's data is not the command's
            self._close_command_stdin()
        self._watch_output()

    def received(self, conn: Connection, data: memoryview) -> None:
        if self.to_command is None:
            return  # --send-only, or the command closed its stdin: dropped
        self.pending += data
        self._feed()

    def eof(self, conn: Connection) -> None:
        self.client_done = True
        if not self.pending:
            self._close_command_stdin()

    def drained(self, conn: Connection) -> None:
        self._watch_output()

    def closed(self, conn: Connection, reason: str) -> None:
        self._close_command_stdin()
        self._stop_output()
        if self.process is not None and self.from_command is not None:  # the command's output is not over
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.from_command = None
            self.hub.when_exited(self.process, lambda status: None)
        self.hub.left(conn, reason)

    # -- the command's side ----------------------------------------------------------------
    def _feed(self) -> None:
        assert self.conn is not None and self.to_command is not None
        try:
            written = os.write(self.to_command, self.pending)
        except BlockingIOError:
            written = 0
        except OSError:  # the command closed its stdin (EPIPE): what the client sends is dropped
            self.pending = b""
            self._close_command_stdin()
            return
        self.pending = self.pending[written:]
        if self.pending:
            self.conn.pause_reading()
            self.loop.watch(self.to_command, self._command_took, write=True)
        else:
            self.conn.resume_reading()
            if self.client_done:
                self._close_command_stdin()

    def _command_took(self) -> None:
        assert self.to_command is not None
        self.loop.unwatch(self.to_command)
        self._feed()

    def _close_command_stdin(self) -> None:
        if self.to_command is not None and self.process is not None and self.process.stdin is not None:
            self.loop.unwatch(self.to_command)
            self.to_command = None
            try:
                self.process.stdin.close()
            except OSError:
                pass

    def _watch_output(self) -> None:
        if self.from_command is not None and not self.reading_output:
            self.reading_output = True
            self.loop.watch(self.from_command, self._output)

    def _stop_output(self) -> None:
        if self.from_command is not None and self.reading_output:
            self.reading_output = False
            self.loop.unwatch(self.from_command)

    def _output(self) -> None:
        conn = self.conn
        assert conn is not None and self.from_command is not None
        try:
            data = os.read(self.from_command, PIPE_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._stop_output()
            self._output_ended(conn)
            return
        if not self.hub.relay.send:
            return  # --recv-only: nothing goes to the client
        if self.crlf is not None:
            data = self.crlf.feed(data)
        conn.write(data)
        if not conn.writable:
            self._stop_output()  # `drained` watches it again

    def _output_ended(self, conn: Connection) -> None:
        assert self.process is not None and self.process.stdout is not None
        self.process.stdout.close()
        self.from_command = None
        if self.hub.relay.half_close:
            conn.shutdown_write()
        self.hub.when_exited(self.process, lambda status: conn.close_when_sent(f"command exited with status {status}"))


def watch_exit(loop: Loop, process: subprocess.Popen[bytes], then: Callable[[int], None]) -> None:
    """Call `then(status)` in the loop once `process` has exited."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        pidfd = None

    def check() -> None:
        status = process.poll()
        if status is None:
            if pidfd is None:
                loop.call_later(_REAP_POLL, check)
            return
        if pidfd is not None:
            loop.unwatch(pidfd)
            os.close(pidfd)
        then(status)

    if pidfd is not None:
        loop.watch(pidfd, check)
    check()


def stop_processes(processes: set[subprocess.Popen[bytes]], grace: float | None = None) -> None:
    """End every command still running: SIGTERM to all, `grace` (EXEC_GRACE) for all of
    them together, then SIGKILL; an interrupt during the grace kills them at once."""
    running = [p for p in processes if p.poll() is None]
    try:
        for process in running:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + (EXEC_GRACE if grace is None else grace)
        while running and time.monotonic() < deadline:
            _wait_any(running, deadline)
            running = [p for p in running if p.poll() is None]
    except (KeyboardInterrupt, Terminated):
        _kill_all(running)
        raise
    _kill_all(running)


def _kill_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        _signal(process, signal.SIGKILL)
    for process in processes:
        try:
            process.wait()
        except OSError:
            pass


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        process.send_signal(signum)
    except OSError as exc:  # pragma: no cover - it was reaped meanwhile
        if exc.errno != errno.ESRCH:
            raise


def _wait_any(processes: list[subprocess.Popen[bytes]], deadline: float) -> None:
    """Sleep until one of them may have exited (a short poll) or the deadline; a signal's handler raises from it."""
    time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
