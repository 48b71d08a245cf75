"""Every `sh` example of the README's tcp-connect, tcp-listen, udp-send, udp-listen, echo
and time-server sections runs, doctest-style, in bash, as written but for where it points:

- an address becomes a local peer of the kind the example talks to (an HTTP responder
  for :8000, a PONG server for :6379, a drain for the backup host, a listener for the
  database, socktool's echo for :7 and :9999 (TCP and UDP, IPv4 and IPv6), a
  time-server in its section); a unix path goes to a temporary directory;
- a listener (tcp-listen, udp-listen, echo, time-server) gets port 0, must say
  "listening on", and ends with SIGTERM (exit 143), or with the datagram it counts;
- a client must exit 0; `tail -f FILE` reads as `cat FILE` so that the example ends.

The Behaviour and the TLS/forward sections have tests of their own; this runner makes
sure an example in these sections cannot rot (the curl one once could not work).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LISTENING, Proc, readme_commands, serve_each

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("tcp-connect", "tcp-listen", "udp-send", "udp-listen", "echo", "time-server")
LISTENERS = ("tcp-listen", "udp-listen", "echo", "time-server")
ADDRESS = re.compile(r"(?<![\w/])(\[[0-9a-f:]+\]|[A-Za-z][\w.-]*|\d+\.\d+\.\d+\.\d+)?:(\d+)\b")
VALUED = {"--max-clients", "--count", "--timeout", "--idle-timeout", "-i", "-w", "--allow", "--deny", "--exec"}
BIN = str(Path(sys.executable).parent)

pytestmark = pytest.mark.timeout(90)


def examples() -> list[tuple[str, str]]:
    return [(name, command) for name in SECTIONS for command in readme_commands(f"### {name} ")]


def _param(section: str, command: str):
    slow = "--interval 1s" in command  # seconds of pacing by design
    return pytest.param(section, command, id=f"{section}: {command[:60]}", marks=[pytest.mark.slow] if slow else [])


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}


# -- local peers ------------------------------------------------------------------------
def _http(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            return
        request += chunk
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")


def _pong(conn: socket.socket) -> None:
    if conn.recv(100).startswith(b"PING"):
        conn.sendall(b"+PONG\r\n")
    conn.recv(100)


def _drain(conn: socket.socket) -> None:
    while conn.recv(1 << 20):
        pass


class Peers:
    """The local peers an example talks to, started as its addresses ask for them."""

    def __init__(self, section: str, tmp: Path, sock_dir: Path, stack: contextlib.ExitStack):
        self.section, self.tmp, self.sock_dir, self.stack = section, tmp, sock_dir, stack
        self.started: dict[str, str] = {}

    def _socktool(self, *args: str) -> int:
        proc = self.stack.enter_context(Proc(*args, stdout=subprocess.DEVNULL))
        return proc.wait_listening()

    def _python(self, handle) -> str:
        return f"127.0.0.1:{self.stack.enter_context(serve_each(handle))}"

    def address(self, host: str, port: str) -> str:
        key = f"{host}:{port}"
        if key not in self.started:
            self.started[key] = self._start(host, int(port))
        return self.started[key]

    def _start(self, host: str, port: int) -> str:
        if self.section == "time-server" and port == 9000:
            return f"127.0.0.1:{self._socktool('time-server', '127.0.0.1:0')}"
        if port == 8000:
            return self._python(_http)
        if port == 6379:
            return self._python(_pong)
        if port == 9000:
            return self._python(_drain)
        if port == 5432:
            return self._python(lambda conn: None)
        if host == "[::1]":
            return f"[::1]:{self._socktool('echo', '[::1]:0')}"
        echo = f"127.0.0.1:{self._socktool('echo', '127.0.0.1:0')}"
        if host.startswith("127.255."):  # the loopback broadcast address, the echo's port
            return "127.255.255.255:" + echo.rsplit(":", 1)[1]
        return echo


def localise(command: str, peers: Peers) -> str:
    command = command.replace("tail -f ", "cat ")
    command = re.sub(r"unix:/tmp/", f"unix:{peers.sock_dir}/", command)
    return ADDRESS.sub(lambda m: peers.address(m.group(1) or "127.0.0.1", m.group(2)), command)


def listener_args(command: str, sock_dir: Path) -> list[str]:
    """A listener example's arguments, its address made port 0 on loopback."""
    words = shlex.split(command.split(">")[0])[1:]
    words = [w.replace("/tmp/", f"{sock_dir}/") for w in words]
    here = "0" if "--group" in words else "127.0.0.1:0"  # a group is received on the port alone
    # The address: an argument that looks like one and is no option's value (--max-clients 10).
    positions = [
        i
        for i, w in enumerate(words)
        if re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+|unix:\S+", w) and words[i - 1] not in VALUED
    ]
    if not positions:
        words.append(here)
    elif not words[positions[-1]].startswith("unix:"):
        words[positions[-1]] = here
    return words


# -- the examples -------------------------------------------------------------------------
@pytest.mark.parametrize(("section", "command"), [_param(*example) for example in examples()])
def test_readme_example_runs(section, command, tmp_path, tmp_sock_dir):
    (tmp_path / "app.log").write_text("one line\nanother line\n")
    (tmp_path / "disk.img").write_bytes(os.urandom(1 << 20))
    if command.startswith("curl "):
        _run_curl_example(command, tmp_path)
        return
    words = shlex.split(command)
    if words[0] == "socktool" and words[1] in LISTENERS and "|" not in command and "--send" not in words:
        _run_listener(listener_args(command, tmp_sock_dir), tmp_path)
        return
    with contextlib.ExitStack() as stack:
        peers = Peers(section, tmp_path, tmp_sock_dir, stack)
        if "unix:/tmp/app.dgram" in command:
            stack.enter_context(_unix_datagram_listener(tmp_sock_dir / "app.dgram"))
        localised = localise(command, peers)
        result = subprocess.run(
            ["bash", "-c", localised],
            cwd=tmp_path,
            env=_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, (localised, result.stdout[-500:], result.stderr[-2000:])


@contextlib.contextmanager
def _unix_datagram_listener(path: Path) -> Iterator[None]:
    with Proc("udp-listen", f"unix:{path}", stdout=subprocess.DEVNULL) as proc:
        proc.wait_listening()
        yield


def _run_listener(args: list[str], cwd: Path) -> None:
    with Proc(*args, cwd=cwd, stdout=subprocess.DEVNULL) as proc:
        address = proc.wait_for(LISTENING)["address"]
        if "--count" in args:  # it ends by itself after the datagrams it counts
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.sendto(b"one", ("127.0.0.1", int(address.rsplit(":", 1)[1])))
            assert proc.wait(timeout=20) == 0, proc.stderr
            return
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143, proc.stderr


def _run_curl_example(command: str, cwd: Path) -> None:
    """As written, with its port swapped for a free one: the page arrives, both exit 0."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = command.replace("8898", str(port)) + "; wait"
    result = subprocess.run(["bash", "-c", script], cwd=cwd, env=_env(), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"ok" in result.stdout and b"GET / HTTP" in result.stdout, result.stdout  # curl's page, socktool's request
