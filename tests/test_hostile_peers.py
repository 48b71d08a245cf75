"""Hostile peers of the UDP services: forged sources, amplification, stolen ports.

A forged datagram is made with a raw socket (root only) on loopback: it
carries a source address and port of our choosing, as an attacker's would.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct

import pytest

from conftest import Proc, one_line_error
from reliability_helpers import run_as_nobody
from socktool.net import events as ev
from socktool.net.udpguard import LOOP_PORTS, LoopGuard, loop_ports, reply_limit

pytestmark = pytest.mark.timeout(60)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a raw socket needs root")


def forge_udp(source_port: int, port: int, payload: bytes, source: str = "127.0.0.1") -> None:
    """Send one UDP datagram to 127.0.0.1:port that claims to come from source:source_port."""
    udp = struct.pack("!HHHH", source_port, port, 8 + len(payload), 0) + payload  # checksum 0: none
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # IPv4, 5 words of header
        0,
        20 + len(udp),
        0,  # the kernel picks the id
        0,
        64,
        socket.IPPROTO_UDP,
        0,  # the kernel fills the checksum in
        socket.inet_aton(source),
        socket.inet_aton("127.0.0.1"),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(header + udp, ("127.0.0.1", 0))


def ask(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(data, ("127.0.0.1", port))
        return client.recv(65535)


# -- the rules, without sockets ------------------------------------------------------------------
def test_reply_limit_is_the_request_size_or_32_bytes():
    assert [reply_limit(n) for n in (0, 1, 32, 33, 1000)] == [32, 32, 32, 33, 1000]


def test_loop_ports_are_the_small_services_and_the_servers_own():
    assert {7, 13, 19, 37, 123} <= LOOP_PORTS
    assert loop_ports([5555, 0]) == LOOP_PORTS | {5555}


def test_the_loop_guard_warns_once_and_counts_every_drop():
    events: list[ev.Event] = []
    guard = LoopGuard("127.0.0.1:5555", [5555], events.append)
    assert not guard.refuses(("127.0.0.1", 40000))
    assert not guard.refuses("/tmp/client.sock") and not guard.refuses(None)
    assert guard.refuses(("127.0.0.1", 5555)) and guard.refuses(("10.0.0.1", 7, 0, 0))
    assert guard.dropped == 2
    assert [e.warning for e in events if isinstance(e, ev.Notice)] == [True]


# -- loops -------------------------------------------------------------------------------------------
def served_peers(proc: Proc) -> list[str]:
    """The peers of the 'udp #N PEER: ...' status lines."""
    return [line.split(" ")[3].rstrip(":") for line in proc.lines if line.startswith("socktool: udp #")]


@needs_root
@pytest.mark.parametrize("service", ["echo", "time-server"])
def test_a_datagram_forged_from_the_server_itself_is_dropped_not_answered(service):
    with Proc(service, "--udp-only", "-v", "127.0.0.1:0") as server:
        port = server.wait_listening()
        forge_udp(port, port, b"%Y loop?")
        server.wait_for(r"dropped a datagram to 127\.0\.0\.1:\d+ from port \d+")
        assert ask(port, b"probe") == b"probe"  # still serving everyone else
        server.wait_for(r"udp #1 ")
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait() == 143
        assert served_peers(server) and f"127.0.0.1:{port}" not in served_peers(server)
        assert "1 dropped (loop check)" in server.stderr


@needs_root
@pytest.mark.parametrize("source_port", [7, 13, 19, 37, 123, 9999])
def test_a_datagram_from_a_small_service_port_is_dropped(source_port):
    """Answering it would start a ping-pong with an echo (or time) server there."""
    with Proc("time-server", "--udp-only", "-v", "127.0.0.1:0") as server:
        port = server.wait_listening()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trap:
            try:
                trap.bind(("127.0.0.1", source_port))
            except OSError:
                trap.close()
                trap = None  # type: ignore[assignment]  # someone serves that port: the forged datagram still tells
            forge_udp(source_port, port, b"%H:%M")
            server.wait_for(r"dropped a datagram")
            assert ask(port, b"x") == b"x"
            if trap is not None:
                trap.setblocking(False)
                with pytest.raises(BlockingIOError):
                    trap.recv(100)  # nothing was sent to the small service's port


# -- ports held by someone else ------------------------------------------------------------------------
HOLD_PORT = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    sock.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as exc:
    sys.exit(exc.errno)
"""


@pytest.mark.parametrize("service", ["echo", "time-server"])
def test_another_user_cannot_bind_the_services_udp_port(service):
    with Proc(service, "--udp-only", "127.0.0.1:0") as server:
        port = server.wait_listening()
        thief = run_as_nobody(HOLD_PORT, str(port))
        assert thief.returncode == errno.EADDRINUSE, thief.stderr
        assert ask(port, b"x") == b"x"


@pytest.mark.parametrize("service", ["echo", "time-server"])
@pytest.mark.parametrize("only", [["--udp-only"], []])
def test_a_udp_port_held_by_another_socket_is_refused(service, only):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with Proc(service, *only, f"127.0.0.1:{port}") as server:
            assert server.wait(timeout=20) == 1
            assert "address already in use" in one_line_error(server.stderr)


def test_two_services_cannot_share_one_udp_port():
    with Proc("echo", "--udp-only", "127.0.0.1:0") as first:
        port = first.wait_listening()
        with Proc("time-server", "--udp-only", f"127.0.0.1:{port}") as second:
            assert second.wait(timeout=20) == 1
            assert "address already in use" in one_line_error(second.stderr)
        assert ask(port, b"mine") == b"mine"
