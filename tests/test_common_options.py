"""The output options every command takes, on every command: -q, -v, --debug, --no-color.

Each command gets two quick scenarios against loopback peers: one that fails
at run time (exit 1: refused, a port held, no reply), and one with activity
that makes status lines (a client, a datagram, a finished scan).
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
from collections.abc import Iterator

import pytest

from conftest import Proc, free_port, run, serve_once
from test_view_tty import run_in_pty

COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # SGR: colour and style (a spinner's cursor moves are not colour)
NO_DNS = "nonexistent!.invalid"  # glibc refuses it without asking DNS


@contextlib.contextmanager
def held_tcp_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@contextlib.contextmanager
def held_udp_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextlib.contextmanager
def failing(name: str) -> Iterator[list[str]]:
    """Arguments with which `name` fails at run time, quickly, with exit 1."""
    if name == "tcp-connect":
        yield ["tcp-connect", f"127.0.0.1:{free_port()}"]
    elif name in ("tcp-listen", "echo", "time-server"):
        with held_tcp_port() as port:
            yield [name, *(["--tcp-only"] if name != "tcp-listen" else []), f"127.0.0.1:{port}"]
    elif name == "forward":
        with held_tcp_port() as port:
            yield ["forward", f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"]
    elif name == "udp-send":
        yield ["udp-send", "--wait", "--timeout", "200ms", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", "x"]
    elif name == "udp-listen":
        with held_udp_port() as port:
            yield ["udp-listen", f"127.0.0.1:{port}"]
    elif name == "portscan":
        yield ["portscan", NO_DNS, "80"]
    elif name == "wait":
        yield ["wait", "-w", "200ms", f"127.0.0.1:{free_port()}"]
    elif name == "ping":
        yield ["ping", "-c", "1", f"127.0.0.1:{free_port()}"]
    else:  # pragma: no cover - a new command: add its scenario
        raise AssertionError(f"no failing scenario for {name}")


COMMANDS = [
    *("tcp-connect", "tcp-listen", "udp-send", "udp-listen", "echo", "time-server", "forward", "portscan", "wait"),
    "ping",
]


@pytest.mark.parametrize("name", COMMANDS)
def test_quiet_leaves_stderr_to_the_error_line(name):
    with failing(name) as args:
        loud = run(*args)
        quiet = run(*args, "-q")
    assert loud.returncode == quiet.returncode == 1, quiet.stderr
    lines = quiet.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("socktool: error: "), quiet.stderr
    assert lines[0] in loud.stderr.decode()


@pytest.mark.parametrize("name", COMMANDS)
def test_debug_adds_a_traceback_to_the_error(name):
    with failing(name) as args:
        plain = run(*args)
        debug = run(*args, "--debug")
    assert plain.returncode == debug.returncode == 1
    assert "Traceback" not in plain.stderr.decode()
    assert "Traceback (most recent call last)" in debug.stderr.decode()


@pytest.mark.parametrize("name", COMMANDS)
def test_no_color_on_a_terminal_leaves_no_escape_sequences(name):
    with failing(name) as args:
        _code, coloured = run_in_pty(args)
        _code, plain = run_in_pty([*args, "--no-color"])
    assert "socktool: error: " in coloured and COLOUR.search(coloured)
    assert "socktool: error: " in plain and not COLOUR.search(plain), repr(plain)


# -- -v: status lines in a pipe ----------------------------------------------------------
def connect_and_close(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass


def status_lines(name: str, verbose: bool) -> list[str]:
    """stderr's non-error lines after one round of activity, with or without -v."""
    flag = ["-v"] if verbose else []
    if name == "tcp-connect":
        lines = run("tcp-connect", *flag, f"127.0.0.1:{serve_once(b'hi')}").stderr.decode().splitlines()
    elif name == "udp-send":
        with held_udp_port() as port:
            lines = run("udp-send", *flag, f"127.0.0.1:{port}", "x").stderr.decode().splitlines()
    elif name == "portscan":
        lines = run("portscan", *flag, "127.0.0.1", str(free_port())).stderr.decode().splitlines()
    else:
        lines = _served(name, flag)
    return [line for line in lines if not line.startswith("socktool: error")]


def _served(name: str, flag: list[str]) -> list[str]:
    """A server's stderr after one client (or datagram), then SIGTERM."""
    extra = {"echo": ["--tcp-only"], "time-server": ["--tcp-only"], "udp-listen": ["--count", "1"]}.get(name, [])
    target = [f"127.0.0.1:{serve_once(b'hi')}"] if name == "forward" else []
    with Proc(name, *flag, *extra, "127.0.0.1:0", *target, stdout=subprocess.DEVNULL) as proc:
        port = proc.wait_listening()
        if name == "udp-listen":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"x", ("127.0.0.1", port))
        else:
            connect_and_close(port)
        if name in ("echo", "time-server", "forward"):
            if flag:  # without -v there is no line to wait for: what it would say is absent either way
                proc.wait_for("closed|served|tcp #1")
            proc.popen.terminate()
        proc.wait()
        return proc.stderr.splitlines()


# wait says each endpoint's arrival whatever -v says, and ping writes its report to stdout:
# what -v adds to them is shown by the two tests after this one.
VERBOSE_COMMANDS = [name for name in COMMANDS if name not in ("wait", "ping")]


@pytest.mark.parametrize("name", VERBOSE_COMMANDS)
def test_verbose_adds_status_lines_in_a_pipe(name):
    without = status_lines(name, verbose=False)
    with_v = status_lines(name, verbose=True)
    assert len(with_v) > len(without), (without, with_v)
    assert all(line.startswith("socktool: ") for line in with_v)


def test_verbose_wait_says_why_each_attempt_failed():
    port = free_port()
    args = ["wait", "-w", "1s", "--interval", "100ms", f"127.0.0.1:{port}"]
    plain, verbose = run(*args), run(*args, "-v")
    assert plain.returncode == verbose.returncode == 1
    assert len(plain.stderr.decode().splitlines()) == 1  # the error line only
    misses = verbose.stderr.decode().splitlines()[:-1]
    assert len(misses) >= 2, verbose.stderr  # one per attempt, before the error line
    assert all(line == f"socktool: 127.0.0.1:{port}: connection refused; trying again" for line in misses), misses


def test_verbose_ping_states_its_plan_on_stderr():
    with held_udp_port() as port:
        args = ["ping", "--udp", "-c", "1", "-w", "100ms", "--json", f"127.0.0.1:{port}"]
        plain, verbose = run(*args), run(*args, "-v")
    assert plain.stdout.count(b"\n") == verbose.stdout.count(b"\n") == 3  # probe, summary, error: JSON alike
    assert plain.stderr.decode().splitlines() == verbose.stderr.decode().splitlines()[1:]
    assert verbose.stderr.decode().splitlines()[0] == (
        f"socktool: pinging 127.0.0.1:{port} at 127.0.0.1:{port} (UDP, 0 byte request): 1 probes, one every 1s, "
        "each lost without an answer within 100ms"
    )
