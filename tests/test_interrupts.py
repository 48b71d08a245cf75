"""A SIGTERM is never lost, wherever in the code it lands.

Python runs a signal handler between two bytecodes. A signal that lands
after the last check and before a blocking system call only sets a flag, and
the call then blocks as if nothing had happened (socktool.net.interrupts
explains the cure). A plain `kill` hits that window only now and then; these
tests put the signal there on purpose.

gdb attaches to a socktool that waits for traffic, with a breakpoint at the
entry of every libc call that can block; traffic arrives while gdb holds the
process; at the main thread's k-th such call gdb delivers SIGTERM and lets
the process go on. For k = 1, 2, ... until the process goes idle before its
k-th call (gdb then stops it inside the blocking call, which is the other
place a signal lands), it must exit with 143 at once.

gdb lets the process go only once the traffic is in: the attach stops it,
and a stopped epoll_wait (and poll, select...) returns EINTR when it goes on
(signal(7)), so Python calls it again - a first blocking call that comes
with or without traffic. Were the process let go at once, a slow test would
SIGTERM it at that call before its client connected, and find the port
closed (ECONNREFUSED).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from conftest import Proc, free_port, need
from reliability_helpers import feed, queued, recv_exactly, wait_until, wait_until_full

# slow: each scenario attaches gdb and replays the run once per blocking call (minutes in all).
pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

GDB_SCRIPT = """
import os
import gdb

CALL = int(os.environ["SOCKTOOL_TEST_CALL"])
BLOCKING = (
    "poll", "ppoll", "epoll_wait", "epoll_pwait", "select", "pselect",
    "recv", "recvfrom", "recvmsg", "accept", "accept4", "connect",
    "read", "write", "send", "sendto", "splice",
    "wait4", "waitpid", "clock_nanosleep", "sem_wait", "sem_clockwait", "sem_timedwait",
)
calls = []

class Entry(gdb.Breakpoint):
    def stop(self):
        pid, lwp, _ = gdb.selected_thread().ptid
        if lwp != pid:  # another thread: signals are the main thread's to handle
            return False
        calls.append(self.location)
        return len(calls) == CALL

for name in BLOCKING:
    Entry(name, internal=True)
print("armed", flush=True)
os.read(0, 1)  # the process stays stopped until the test's traffic is in (see the module's docstring)
"""

GDB_OPTIONS = [
    "--readnever",  # the ELF symbols are enough for a breakpoint at a libc entry, and much quicker to load
    "-batch",
    "-nx",
    *("-iex", "set debuginfod enabled off"),
    *("-iex", "set confirm off"),
    *("-iex", "set auto-load no"),
]
GDB_COMMANDS = [
    *("-ex", "continue"),
    *("-ex", "python print('stopped after', len(calls), 'calls', flush=True)"),
    *("-ex", "delete"),
    *("-ex", "signal SIGTERM"),
]
# A scenario: start() gives socktool ready, and the traffic that sets it working.
Start = Callable[[], AbstractContextManager[tuple[Proc, Callable[[], object]]]]
IDLE = 1.5  # seconds without reaching the k-th call: the process is waiting for traffic
# Every endpoint here is on a loopback address of its own. Other runs on the same machine sweep
# 127.0.0.1's ports (portscan's self-connect test: the whole ephemeral range, up to 25 times), and a
# sweep's connect is taken for the test's client: a one-client socktool serves it and is gone, a
# test's server accepts it instead of socktool.
HOST = "127.0.0.66"


@pytest.fixture(scope="module")
def gdb_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("gdb")
    path = tmp_path_factory.mktemp("gdb") / "kth_call.py"
    path.write_text(GDB_SCRIPT)
    return path


def signal_at_call(script: Path, proc: Proc, call: int, traffic: Callable[[], object]) -> bool:
    """SIGTERM at the main thread's `call`-th blocking call after `traffic`; False if it went idle first."""
    gdb = subprocess.Popen(
        ["gdb", "-p", str(proc.popen.pid), *GDB_OPTIONS, "-ex", f"source {script}", *GDB_COMMANDS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SOCKTOOL_TEST_CALL": str(call)},
        text=True,
    )
    assert gdb.stdin is not None and gdb.stdout is not None
    try:
        said = []
        for line in gdb.stdout:
            said.append(line)
            if line.startswith("armed"):
                break
        if any("ptrace: Operation not permitted" in line for line in said):
            code = proc.popen.poll()  # gdb says the same of a process that has ended: that is no reason to skip
            assert code is None, f"socktool ended (exit {code}) before gdb attached:\n" + "".join(said)
            pytest.skip("gdb cannot attach to a process here: " + "".join(said).strip())  # no CAP_SYS_PTRACE
        assert said and said[-1].startswith("armed"), "gdb did not start:\n" + "".join(said)
        traffic()
        gdb.stdin.write("go\n")  # the process goes on, and meets the traffic at its first call
        gdb.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(gdb.stdout, selectors.EVENT_READ)
            interrupted = False
            while True:
                if not selector.select(IDLE) and not interrupted:
                    gdb.send_signal(signal.SIGINT)  # stop it where it waits; the SIGTERM lands there
                    interrupted = True
                    continue
                line = gdb.stdout.readline()
                assert line, "gdb ended without stopping the process:\n" + "".join(said)
                said.append(line)
                if line.startswith("stopped after"):
                    reached = int(line.split()[2]) == call
                    break
        code = proc.wait(timeout=10)
        assert code == 143, f"exit {code} after SIGTERM at call {call}; gdb said:\n" + "".join(said)
        gdb.wait(timeout=10)
        return reached
    finally:
        if gdb.poll() is None:
            gdb.kill()
            gdb.wait()
        gdb.stdin.close()
        gdb.stdout.close()


def every_call(script: Path, start: Start, most: int = 12, ticking: bool = False) -> None:
    """signal_at_call for k = 1, 2, ... until the process goes idle before its k-th call
    (or, for a process that wakes up on a timer, `ticking`, up to the `most`-th call)."""
    for call in range(1, most + 1):
        with start() as (proc, traffic), proc:
            if not signal_at_call(script, proc, call, traffic):
                assert call > 1, "no blocking call at all after the traffic"
                return
    assert ticking, f"still busy after {most} calls: not waiting for traffic?"


def serving(*args: str, datagrams: bool = False, send: bytes = b"") -> Start:
    """A start() for every_call: socktool ARGS listening on a loopback port; the traffic is
    one datagram to it, or one TCP client (sending `send`) that stays until the end."""

    @contextmanager
    def start():
        proc = Proc(*args)
        port = proc.wait_listening()
        clients: list[socket.socket] = []

        def traffic():
            if datagrams:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    client.sendto(b"x", (HOST, port))
                return
            clients.append(socket.create_connection((HOST, port), timeout=10))
            if send:
                clients[-1].sendall(send)

        try:
            yield proc, traffic
        finally:
            for client in clients:
                client.close()

    return start


# -- scenarios ------------------------------------------------------------------------
def test_udp_listen_pipe(gdb_script, tmp_sock_dir):
    path = tmp_sock_dir / "dgram.sock"

    @contextmanager
    def start():
        proc = Proc("udp-listen", f"unix:{path}")
        proc.wait_listening()

        def traffic():
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
                client.sendto(b"x", str(path))

        yield proc, traffic
        assert not path.exists()

    every_call(gdb_script, start)


@pytest.mark.parametrize("output", ["pipe", "file"])
def test_tcp_connect_receiving(gdb_script, tmp_path, output):
    @contextmanager
    def start():
        with socket.create_server((HOST, 0)) as server:
            port = server.getsockname()[1]
            with open(tmp_path / "out", "wb") as out:
                stdout = subprocess.PIPE if output == "pipe" else out
                proc = Proc("tcp-connect", f"{HOST}:{port}", "--recv-only", "-v", stdout=stdout)
                server.settimeout(10)
                peer, _ = server.accept()
                with peer:
                    proc.wait_for("connected to")
                    yield proc, lambda: peer.sendall(b"hello")

    every_call(gdb_script, start)


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(
            serving("udp-listen", f"{HOST}:0", "--count", "5", "--json", datagrams=True), id="udp-listen-counting"
        ),
        pytest.param(serving("tcp-listen", f"{HOST}:0", send=b"hello"), id="tcp-listen-one-client"),
        pytest.param(serving("tcp-listen", f"{HOST}:0", "-k"), id="tcp-listen-keep-open"),
        pytest.param(
            serving("tcp-listen", f"{HOST}:0", "--exec", "sleep 60"), id="tcp-listen-exec-waiting-for-its-command"
        ),
        pytest.param(serving("echo", f"{HOST}:0", datagrams=True), id="echo"),
        pytest.param(serving("time-server", f"{HOST}:0"), id="time-server"),
    ],
)
def test_serving_command(gdb_script, start):
    every_call(gdb_script, start)


def test_udp_send_waiting_for_replies(gdb_script):
    @contextmanager
    def start():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((HOST, 0))
            peer.settimeout(10)
            # --replies 2: the one pong does not end it (one datagram to one peer ends at the first
            # reply by default), so after the pong it is back in the wait, where the signal must land.
            address = f"{HOST}:{peer.getsockname()[1]}"
            proc = Proc("udp-send", address, "ping", "--timeout", "60s", "--replies", "2")
            _, sender = peer.recvfrom(100)
            yield proc, lambda: peer.sendto(b"pong", sender)

    every_call(gdb_script, start)


@pytest.mark.parametrize(
    "args",
    [
        ["wait", "--timeout", "60s", "--interval", "10s"],
        ["ping", "-c", "0", "-i", "10s"],
    ],
    ids=["wait", "ping"],
)
def test_probe_loop_between_tries(gdb_script, args):
    """wait and ping wait in their probes' selector between tries: any call may take the signal."""

    def polling(pid: int) -> bool:
        fds = f"/proc/{pid}/fd"
        for fd in os.listdir(fds):
            try:
                if os.readlink(f"{fds}/{fd}") == "anon_inode:[eventpoll]":
                    return True
            except OSError:  # closed in between
                pass
        return False

    @contextmanager
    def start():
        proc = Proc(*args, f"{HOST}:{free_port(host=HOST)}")
        wait_until(lambda: polling(proc.popen.pid), what="its probe loop")
        yield proc, lambda: None

    every_call(gdb_script, start, most=4, ticking=True)


@pytest.mark.parametrize("source", ["pipe", "file"])
def test_tcp_connect_sending_to_a_peer_that_does_not_read(gdb_script, tmp_path, source):
    """--send-only: the main thread sends; a full socket must not hold a signal back."""
    size = 64 << 20
    if source == "file":
        (tmp_path / "big").write_bytes(bytes(size))

    @contextmanager
    def start():
        with socket.create_server((HOST, 0)) as server:
            server.settimeout(10)
            # A fixed receive buffer for the peer: once it reads, autotuning would widen its window
            # (tcp_rmem's max, megabytes) by as much as the timing of its reads says, and the sender's
            # burst after the traffic with it (11 calls, or 27). Fixed, the room is what it reads.
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 << 10)
            if source == "file":
                stdin = open(tmp_path / "big", "rb")  # closed below
            else:
                stdin, write_end = os.pipe()
                # A pipe's worth (socktool widens it to 1 MiB) a write: a refill wakes it once, not 16 times.
                feed(os.fdopen(write_end, "wb"), bytes(size), chunk=1 << 20)
            try:
                address = f"{HOST}:{server.getsockname()[1]}"
                proc = Proc("tcp-connect", address, "--send-only", stdin=stdin)
            finally:
                stdin.close() if source == "file" else os.close(stdin)
            peer, _ = server.accept()
            with peer:
                wait_until_full(lambda: queued(peer.fileno()), proc.popen.pid)
                peer.settimeout(10)
                # Room for a third of its send buffer (4 MiB at most) wakes the sender; it sends and
                # soon finds the socket full again. What its socket holds comes on while gdb holds it.
                yield proc, lambda: recv_exactly(peer, 2 << 20)

    every_call(gdb_script, start, most=16)  # its burst: 7 to 11 calls (a splice per refill, a poll before each)


def test_tcp_connect_receiving_into_a_pipe_nobody_reads(gdb_script):
    """The main thread splices into stdout; a full pipe must not hold a signal back."""

    @contextmanager
    def start():
        with socket.create_server((HOST, 0)) as server:
            server.settimeout(10)
            proc = Proc("tcp-connect", f"{HOST}:{server.getsockname()[1]}", "--recv-only")
            peer, _ = server.accept()
            with peer:
                threading.Thread(target=_send_quietly, args=(peer, 64 << 20), daemon=True).start()
                out = proc.popen.stdout
                assert out is not None
                wait_until_full(lambda: queued(out.fileno()), proc.popen.pid)
                yield proc, lambda: out.read(1 << 16)  # room in the pipe wakes it

    every_call(gdb_script, start)


def _send_quietly(sock: socket.socket, size: int) -> None:
    try:
        sock.sendall(bytes(size))
    except OSError:
        pass  # socktool ended first
