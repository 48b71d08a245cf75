"""tcp-listen -k / --broker / --exec on the loop, as a user runs them: each relay
option applies to every client, stdin streams, --exec commands stop together."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from conftest import Proc, run
from reliability_helpers import recv_exactly, rss_kib


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_keep_open_sends_the_greeting_to_every_client_on_connect():
    with Proc("tcp-listen", "-k", "-v", "--send", "welcome\n", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        for _ in range(3):
            with connect(port) as client:
                assert read_to_eof(client) == b"welcome\n"


def test_keep_open_send_only_sends_and_drops_what_clients_send():
    with Proc("tcp-listen", "-k", "-v", "--send-only", "--send", "hi", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            client.sendall(b"must not reach stdout\n")
            assert read_to_eof(client) == b"hi"
        listener.wait_for("closed #1 .*sent everything")
        listener.popen.send_signal(signal.SIGINT)
        assert listener.wait() == 130
        assert listener.popen.stdout.read() == b""


def test_keep_open_expect_closes_the_client_that_matched_and_keeps_serving():
    with Proc("tcp-listen", "-k", "-v", "--expect", "hello", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            client.sendall(b"why hello there")
            assert read_to_eof(client) == b""
        listener.wait_for("closed #1 .*expected data received")
        with connect(port) as client:
            client.sendall(b"second")
            listener.wait_for("connection from #2")


def test_keep_open_streams_stdin_from_a_pipe_without_waiting_for_a_newline():
    with Proc("tcp-listen", "-k", "-v", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        clients = [connect(port) for _ in range(2)]
        listener.wait_for("connection from #2")
        listener.popen.stdin.write(b"x" * 100_000)  # no newline anywhere
        listener.popen.stdin.flush()
        for client in clients:
            assert recv_exactly(client, 100_000) == b"x" * 100_000
        listener.popen.stdin.close()
        for client in clients:
            assert read_to_eof(client) == b""  # stdin ended: each client half-closed, as one client is
            client.close()


def test_keep_open_crlf_and_hex_input_translate_stdin_for_every_client():
    with Proc("tcp-listen", "-k", "-v", "--hex-input", "--crlf", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        client = connect(port)
        listener.wait_for("connection from #1")
        listener.popen.stdin.write(b"61 0a 62")
        listener.popen.stdin.close()
        assert read_to_eof(client) == b"a\r\nb"
        client.close()


def test_keep_open_stdout_reader_leaving_ends_the_server_quietly():
    with Proc("tcp-listen", "-k", "127.0.0.1:0", stdout=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            client.sendall(b"0123456789" * 1000)
            assert listener.popen.stdout.read(10) == b"0123456789"
            listener.popen.stdout.close()
            client.sendall(b"more" * 100_000)
            assert listener.wait() == 0


@pytest.mark.parametrize("mode", ["--view", "--json"])
def test_keep_open_view_reader_leaving_ends_the_server_with_exit_0(mode):
    with Proc("tcp-listen", "-k", mode, "--no-color", "127.0.0.1:0", stdout=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            client.sendall(os.urandom(50_000))
            assert len(listener.popen.stdout.read(10)) == 10
            listener.popen.stdout.close()  # `| head -c 10`
            try:
                while listener.popen.poll() is None:
                    client.sendall(b"more " * 10_000)
            except OSError:
                pass  # the server has gone
            assert listener.wait() == 0


# -- --broker -------------------------------------------------------------------------------
def test_broker_send_only_relays_nothing_between_clients():
    with Proc("tcp-listen", "--broker", "--send-only", "-v", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        one, two = connect(port), connect(port)
        listener.wait_for("connection from #2")
        one.sendall(b"from-c1\n")
        listener.popen.stdin.write(b"from stdin\n")
        listener.popen.stdin.flush()
        assert recv_exactly(two, 11) == b"from stdin\n"  # stdin only: from-c1 would have come first
        assert recv_exactly(one, 11) == b"from stdin\n"
        one.close()
        two.close()


def test_broker_recv_only_sends_clients_nothing():
    with Proc("tcp-listen", "--broker", "--recv-only", "-v", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        one, two = connect(port), connect(port)
        listener.wait_for("connection from #2")
        one.sendall(b"from-c1\n")
        assert listener.popen.stdout.readline() == b"from-c1\n"
        listener.popen.stdin.write(b"from stdin\n")
        listener.popen.stdin.flush()
        one.close()
        listener.wait_for("closed #1")
        two.settimeout(0.3)
        with pytest.raises(TimeoutError):
            two.recv(10)
        two.close()


# -- --exec ---------------------------------------------------------------------------------
def test_exec_crlf_translates_the_commands_output():
    with Proc("tcp-listen", "--crlf", "--exec", "/bin/echo abc", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            assert read_to_eof(client) == b"abc\r\n"
        assert listener.wait() == 0


def test_exec_connections_report_the_bytes_each_way():
    with Proc("tcp-listen", "--exec", "cat", "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            client.sendall(b"hello, command\n")
            client.shutdown(socket.SHUT_WR)
            assert read_to_eof(client) == b"hello, command\n"
        listener.wait_for(r"closed .*\(command exited with status 0\): 15 B sent, 15 B received")


def test_exec_splits_words_as_a_posix_shell_does():
    command = r"""printf '%s|' "a\$b" 'c d' e\ f "g\h" """
    with Proc("tcp-listen", "--exec", command, "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            assert read_to_eof(client) == rb"a$b|c d|e f|g\h|"
    expected = subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout
    assert expected == rb"a$b|c d|e f|g\h|"


@pytest.mark.parametrize(
    # (--interval goes with --repeat; alone it is refused by the parser for that, tests/test_option_pairs.py)
    "option",
    [["--send", "x"], ["--hex-input"], ["--repeat", "2"], ["--repeat", "2", "--interval", "1s"], ["--expect", "x"]],
)
def test_exec_rejects_payload_options_it_cannot_honour(option):
    result = run("tcp-listen", "--exec", "cat", *option, "127.0.0.1:0")
    assert result.returncode == 2
    assert b"cannot be used with --exec" in result.stderr


def test_max_clients_without_keep_open_is_a_usage_error():
    result = run("tcp-listen", "--max-clients", "3", "127.0.0.1:0")
    assert result.returncode == 2
    assert b"--max-clients" in result.stderr


def _children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


IGNORES_SIGTERM = """
import os, pathlib, signal, sys, time
mark = pathlib.Path(sys.argv[1]) / str(os.getpid())
signal.signal(signal.SIGTERM, lambda *_: mark.write_text("term"))  # noted, and ignored
print("up", flush=True)
while True:
    time.sleep(60)
"""


def _ignoring_commands(tmp_path, count: int) -> tuple[Proc, list[socket.socket], list[int]]:
    script = tmp_path / "ignores_sigterm.py"
    script.write_text(IGNORES_SIGTERM)
    listener = Proc("tcp-listen", "-k", "-v", "--exec", f"{sys.executable} {script} {tmp_path}", "127.0.0.1:0")
    try:
        port = listener.wait_listening()
        clients = [connect(port) for _ in range(count)]
        for client in clients:
            assert recv_exactly(client, 3) == b"up\n"
        children = _children_of(listener.popen.pid)
        assert len(children) == count
    except BaseException:
        listener.__exit__(None, None, None)  # no server left behind by a failed start
        raise
    return listener, clients, children


def test_exec_commands_that_ignore_sigterm_are_stopped_together_not_one_by_one(tmp_path):
    count = 12  # one by one, 1 s each, this would take 12 s
    listener, clients, children = _ignoring_commands(tmp_path, count)
    with listener:
        started = time.monotonic()
        listener.popen.send_signal(signal.SIGTERM)
        assert listener.wait() == 143
        took = time.monotonic() - started
        assert not any(_alive(pid) for pid in children)
        assert took < count / 2, f"stopping {count} commands took {took:.1f}s"
    for client in clients:
        client.close()


def test_a_second_interrupt_kills_the_remaining_commands_at_once(tmp_path):
    listener, clients, children = _ignoring_commands(tmp_path, 3)
    with listener:
        listener.popen.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while not all((tmp_path / str(pid)).exists() for pid in children):  # all in their grace now
            assert time.monotonic() < deadline
            time.sleep(0.01)
        listener.popen.send_signal(signal.SIGINT)
        assert listener.wait() == 130
        assert not any(_alive(pid) for pid in children)
    for client in clients:
        client.close()


class JsonEvents:
    """The events a `--json` socktool writes on stdout, read as they come, each wait with a deadline."""

    def __init__(self, proc: Proc):
        assert proc.popen.stdout is not None
        self.fd = proc.popen.stdout.fileno()
        self.events: list[dict] = []
        self._partial = b""

    def wait_for(self, done: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = max(deadline - time.monotonic(), 0)  # timeout 0: only what is written already
            assert select.select([self.fd], [], [], left)[0], f"no {what} within {timeout}s: {self.events[-5:]}"
            chunk = os.read(self.fd, 65536)
            assert chunk, f"stdout ended before {what}; events so far: {self.events[-5:]}"
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            self.events += [json.loads(line) for line in lines]

    def count(self, name: str) -> int:
        return sum(e["event"] == name for e in self.events)


@pytest.mark.slow
def test_exec_serves_at_most_100_clients_by_default():
    with Proc("tcp-listen", "-k", "--json", "--exec", "cat", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        events = JsonEvents(listener)
        clients = [connect(port) for _ in range(100)]
        events.wait_for(lambda: events.count("connected") == 100, "100 connected events")
        extra = connect(port)  # while all 100 commands run: the 101st is over the cap
        extra.settimeout(10)
        assert extra.recv(10) == b""  # turned away, and the event was written before that
        events.wait_for(lambda: events.count("rejected") == 1, "the rejected event", timeout=0)
        assert events.count("closed") == 0  # the 100 were all still being served
        rejected = next(e for e in events.events if e["event"] == "rejected")
        assert rejected["reason"] == "--max-clients 100 reached"
        assert rejected["peer"] == f"127.0.0.1:{extra.getsockname()[1]}"
        for client in [*clients, extra]:
            client.close()
        events.wait_for(lambda: events.count("closed") == 100, "100 closed events")
        listener.popen.send_signal(signal.SIGINT)
        listener.wait()
        events.wait_for(lambda: events.count("stats") == 1, "the stats event")
    assert events.count("rejected") == 1
    assert events.events[-1]["connections"] == 100


def test_first_client_deadline_is_not_restarted_by_refused_clients():
    with Proc("tcp-listen", "-v", "-w", "2s", "--allow", "10.0.0.1", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        started = time.monotonic()
        while listener.popen.poll() is None and time.monotonic() - started < 15:
            try:
                connect(port).close()
            except OSError:
                break
            time.sleep(0.5)
        assert listener.wait() == 1
        assert "no client connected" in listener.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs /proc")
def test_keep_open_serves_many_clients_with_one_thread():
    with Proc("tcp-listen", "-k", "-v", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        clients = [connect(port) for _ in range(50)]
        listener.wait_for("connection from #50 ")
        threads = len(os.listdir(f"/proc/{listener.popen.pid}/task"))
        assert threads <= 3
        for client in clients:
            client.close()


@pytest.mark.slow
@pytest.mark.parametrize("command_", [["tcp-listen", "-k", "-v"], ["echo", "--tcp-only", "-v"]])
def test_two_thousand_idle_clients_cost_little_and_do_not_hold_up_a_new_one(command_):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4200:
        pytest.skip(f"needs 4,200 descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = 2000
    try:
        with Proc(*command_, "127.0.0.1:0", stdin=subprocess.PIPE) as server:
            port = server.wait_listening()
            rss_before = rss_kib(server.popen.pid)
            held = [connect(port) for _ in range(count)]
            server.wait_for(f"connection from #{count} ", timeout=60)
            grown = rss_kib(server.popen.pid) - rss_before
            threads = len(os.listdir(f"/proc/{server.popen.pid}/task"))
            with connect(port) as newcomer:  # served while the others are held
                newcomer.sendall(b"still served\n")
                if command_[0] == "echo":
                    assert recv_exactly(newcomer, 13) == b"still served\n"
                else:
                    assert server.popen.stdout.readline() == b"still served\n"
            for sock in held:
                sock.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert threads <= 3
    assert grown < 32 * 1024, f"{count} idle clients took {grown} KiB"


# -- each relay option with each serving mode (tests/test_option_pairs.py) -------------------
@pytest.mark.parametrize("mode", [["-k"], ["--broker"], ["--exec", "cat"]], ids=["-k", "--broker", "--exec"])
def test_idle_timeout_closes_a_silent_client_in_every_mode(mode):
    with Proc("tcp-listen", *mode, "-v", "-i", "300ms", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as silent:
            assert read_to_eof(silent) == b""  # without -i it would wait for the socket timeout (10s)
            listener.wait_for(r"closed .*\(idle timeout\)")


@pytest.mark.parametrize("no_shutdown", [False, True], ids=["default", "--no-shutdown"])
def test_keep_open_no_shutdown_keeps_each_clients_write_side_open(no_shutdown):
    flags = ["--no-shutdown"] if no_shutdown else []
    with Proc("tcp-listen", "-k", "-v", *flags, "--send", "hi", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            assert recv_exactly(client, 2) == b"hi"
            if not no_shutdown:
                assert client.recv(10) == b""  # the payload is sent: the write side is shut
                return
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):
                client.recv(10)
            client.sendall(b"back\n")
            assert listener.popen.stdout.readline() == b"back\n"


def test_keep_open_recv_only_sends_clients_nothing():
    with Proc("tcp-listen", "-k", "--recv-only", "-v", "127.0.0.1:0", stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            listener.wait_for("connection from #1")
            listener.popen.stdin.write(b"from stdin\n")
            listener.popen.stdin.flush()
            client.sendall(b"from-c1\n")
            assert listener.popen.stdout.readline() == b"from-c1\n"
            client.settimeout(0.3)
            with pytest.raises(TimeoutError):
                client.recv(10)


def test_broker_greets_each_client_and_closes_the_one_that_matched():
    args = ["--broker", "-v", "--send", "hi\n", "--repeat", "2", "--interval", "10ms", "--expect", "bye"]
    with Proc("tcp-listen", *args, "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        one = connect(port)
        assert recv_exactly(one, 6) == b"hi\nhi\n"
        two = connect(port)
        assert recv_exactly(two, 6) == b"hi\nhi\n"
        one.sendall(b"x\n")
        assert recv_exactly(two, 2) == b"x\n"  # relayed: the greeting does not stop the broker
        one.sendall(b"bye\n")
        assert read_to_eof(one) == b""  # matched --expect: this client is closed
        assert recv_exactly(two, 4) == b"bye\n"
        listener.wait_for("closed #1")
        two.sendall(b"still\n")
        assert [listener.popen.stdout.readline() for _ in range(3)] == [b"x\n", b"bye\n", b"still\n"]
        one.close()
        two.close()


def test_broker_crlf_and_hex_input_translate_stdin_for_every_client():
    with Proc(
        "tcp-listen", "--broker", "-v", "--hex-input", "--crlf", "127.0.0.1:0", stdin=subprocess.PIPE
    ) as listener:
        port = listener.wait_listening()
        one, two = connect(port), connect(port)
        listener.wait_for("connection from #2")
        listener.popen.stdin.write(b"61 0a 62")
        listener.popen.stdin.flush()
        assert recv_exactly(one, 4) == b"a\r\nb"
        assert recv_exactly(two, 4) == b"a\r\nb"
        one.close()
        two.close()


def test_broker_max_clients_turns_away_the_extra_and_relays_between_the_others():
    with Proc("tcp-listen", "--broker", "--max-clients", "2", "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        one, two = connect(port), connect(port)
        listener.wait_for("connection from #2")
        with connect(port) as third:
            assert read_to_eof(third) == b""
        listener.wait_for("--max-clients 2")
        one.sendall(b"x\n")
        assert recv_exactly(two, 2) == b"x\n"
        one.close()
        two.close()


_TALKS_BOTH_WAYS = "sh -c 'echo out; cat >&2'"  # its output to the client, the client's data to stderr


@pytest.mark.parametrize("direction", ["--send-only", "--recv-only"])
def test_exec_send_only_and_recv_only_cut_one_direction(direction):
    with Proc("tcp-listen", "--exec", _TALKS_BOTH_WAYS, direction, "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            client.sendall(b"in\n")
            client.shutdown(socket.SHUT_WR)
            got = read_to_eof(client)
        assert listener.wait() == 0
    if direction == "--send-only":  # the command's output only: the client's data is not its input
        assert got == b"out\n" and "in" not in listener.lines
    else:  # the client's data only: nothing of the command's output goes back
        assert got == b"" and "in" in listener.lines


@pytest.mark.parametrize("no_shutdown", [False, True], ids=["default", "--no-shutdown"])
def test_exec_no_shutdown_keeps_the_write_side_open_after_the_commands_output(no_shutdown):
    flags = ["--no-shutdown"] if no_shutdown else []
    command_ = "sh -c 'echo out; exec >&-; read line; echo \"$line\" >&2'"  # ends its output, then reads
    with Proc("tcp-listen", "--exec", command_, *flags, "-v", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        with connect(port) as client:
            assert recv_exactly(client, 4) == b"out\n"
            if no_shutdown:
                client.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    client.recv(10)
                client.settimeout(10)
            else:
                assert client.recv(10) == b""  # its output ended: the write side is shut
            client.sendall(b"in\n")
            assert read_to_eof(client) == b""
        listener.wait_for("^in$")
