"""Relay sockets on loopback leave BBR for a congestion control that does not pace.

Unit tests of `unpace`, `unpace_local` and `is_loopback` on real sockets, then
forward as a user runs it, in a network namespace of its own whose default
congestion control is bbr, read back with `ss -tin`.

Run as a script (`python this_file.py inside MODE SOCKTOOL`) it is the part that
runs inside that namespace: it prints one JSON object for the test to check.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from socktool.net.sockets import is_loopback, unpace, unpace_local

UNPACED = {"cubic", "reno"}
CC_NAMES = {"bbr", "cubic", "reno"}


def congestion(sock: socket.socket) -> str:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()


def set_congestion(sock: socket.socket, name: bytes) -> None:
    """Set a congestion control; skip the test when this kernel or user cannot have it."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name)
    except OSError as exc:
        pytest.skip(f"congestion control {name.decode()} cannot be set here ({exc.strerror}): module missing?")


# -- unpace, unpace_local, is_loopback on real sockets ---------------------------------------


@pytest.mark.timeout(20)
def test_unpace_moves_a_bbr_listener_and_the_connections_it_accepts_off_bbr():
    with socket.socket() as listener:
        set_congestion(listener, b"bbr")
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        assert congestion(listener) == "bbr"
        unpace(listener)
        assert congestion(listener) in UNPACED
        with socket.create_connection(listener.getsockname(), timeout=10):
            listener.settimeout(10)
            accepted, _ = listener.accept()
            with accepted:
                assert congestion(accepted) in UNPACED


@pytest.mark.timeout(20)
def test_unpace_leaves_reno_alone():
    with socket.socket() as sock:
        set_congestion(sock, b"reno")
        unpace(sock)
        assert congestion(sock) == "reno"


@pytest.mark.timeout(20)
def test_unpace_local_moves_a_connected_loopback_socket_off_bbr():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as client:
        set_congestion(client, b"bbr")  # before connect: the connection starts with bbr
        client.settimeout(10)
        client.connect(server.getsockname())
        assert congestion(client) == "bbr"
        unpace_local(client)
        assert congestion(client) in UNPACED


@pytest.mark.timeout(20)
def test_unpace_and_unpace_local_pass_over_unix_sockets(tmp_path: Path):
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        unpace(server)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(path)
            unpace(client)
            unpace_local(client)
            server.settimeout(10)
            accepted, _ = server.accept()
            with accepted:
                unpace_local(accepted)
                client.sendall(b"still a working socket")
                assert accepted.recv(100) == b"still a working socket"


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::", False),
        ("0.0.0.0", False),
        ("192.0.2.1", False),
    ],
)
@pytest.mark.timeout(10)
def test_is_loopback(host: str, loopback: bool):
    assert is_loopback(host) is loopback


# -- forward in a network namespace whose default is bbr -------------------------------------

# The namespace's own loopback carries a second address, not in 127/8: a target there is
# not "loopback" before the connect, only "an address of this host" after it.
HOST_ADDRESS = "192.0.2.1"
SKIP_CODE = 77
IN_NETNS = [
    "unshare",
    "--net",
    "sh",
    "-c",
    "ip link set lo up && ip addr add 192.0.2.1/32 dev lo || exit 1;"
    f" sysctl -qw net.ipv4.tcp_congestion_control=bbr || exit {SKIP_CODE};"
    ' exec "$@"',
    "sh",
]


def run_in_netns(mode: str) -> dict:
    """Run this file's `inside(mode)` in a fresh network namespace; its JSON report."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace of its own")
    for tool in ("unshare", "ss", "ip", "sysctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (not installed)")
    socktool = Path(sys.executable).with_name("socktool")
    result = subprocess.run(
        [*IN_NETNS, sys.executable, __file__, "inside", mode, str(socktool)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=45,
    )
    if result.returncode == SKIP_CODE:
        pytest.skip(f"bbr cannot be the default congestion control in a new namespace: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    if "skip" in report:
        pytest.skip(report["skip"])
    return report


def ss_sockets(state: str) -> list[dict]:
    """The TCP sockets in `state` as `ss -tin` shows them: ports and congestion control."""
    out = subprocess.run(["ss", "-tinH", "state", state], capture_output=True, text=True, check=True).stdout
    sockets: list[dict] = []
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            fields = line.split()
            # without a State column (one state asked for): Recv-Q Send-Q Local Peer
            local, peer = fields[-2], fields[-1]
            sockets.append({"local": local, "peer": peer, "cc": None})
        elif sockets:
            names = [token for token in line.split() if token in CC_NAMES]
            if names:
                sockets[-1]["cc"] = names[0]
    for entry in sockets:
        for key in ("local", "peer"):
            port = entry[key].rsplit(":", 1)[1]
            entry[key + "_port"] = int(port) if port.isdigit() else None
    return sockets


def wait_for_ss(state: str, match, what: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = [entry for entry in ss_sockets(state) if match(entry)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {state} socket for {what} in ss -tin: {ss_sockets('all')}")
        time.sleep(0.02)  # polling ss for a state to appear, with a deadline


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def inside(mode: str, socktool: str) -> dict:
    """In the namespace: target, forward, client; bytes end to end; what ss shows.

    mode "loopback": forward 127.0.0.1:P 127.0.0.1:T; the target's accept queue is
    full at first (backlog 0 and one plug), so forward's connect waits in SYN-SENT
    and shows the congestion control it starts its handshake with.
    mode "wildcard": forward 0.0.0.0:P 192.0.2.1:T (an address of the namespace's lo),
    the client from 127.0.0.1.
    """
    with socket.socket() as probe:
        default = congestion(probe)
    if default != "bbr":
        return {"skip": f"the namespace's default congestion control is {default}, not bbr"}
    loopback = mode == "loopback"
    target_host = "127.0.0.1" if loopback else HOST_ADDRESS
    target = socket.socket()
    target.bind((target_host, 0))
    target.listen(0)
    target.settimeout(20)
    target_port = target.getsockname()[1]
    plug = socket.create_connection((target_host, target_port), timeout=10) if loopback else None
    with socket.socket() as spare:  # the namespace is ours alone: this port stays free
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    listen = f"{'127.0.0.1' if loopback else '0.0.0.0'}:{port}"
    forward = subprocess.Popen(
        [socktool, "forward", "-q", listen, f"{target_host}:{target_port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    report: dict = {"port": port, "target_port": target_port}
    try:
        report["listener"] = wait_for_ss("listening", lambda e: e["local_port"] == port, "forward's listener")
        client = socket.create_connection(("127.0.0.1", port), timeout=20)
        report["client_port"] = client.getsockname()[1]
        if plug is not None:
            report["syn_sent"] = wait_for_ss(
                "syn-sent", lambda e: e["peer_port"] == target_port, "forward's connect to the target"
            )
            target.accept()[0].close()  # room in the queue: forward's next SYN gets through
        while True:
            conn, addr = target.accept()
            if plug is None or addr[1] != plug.getsockname()[1]:
                break
        conn.settimeout(20)
        report["relay_port"] = addr[1]
        client.sendall(b"through forward\n")
        report["at_target"] = recv_exactly(conn, 16).decode()
        conn.sendall(b"and back\n")
        report["at_client"] = recv_exactly(client, 9).decode()
        report["established"] = ss_sockets("established")  # all four still connected
        client.close()
        conn.close()
    finally:
        forward.terminate()
        try:
            forward.wait(10)
        finally:
            report["forward_stderr"] = forward.stderr.read() if forward.stderr else ""
    return report


def one(sockets: list[dict], local_port: int, peer_port: int) -> dict:
    found = [entry for entry in sockets if entry["local_port"] == local_port and entry["peer_port"] == peer_port]
    assert len(found) == 1, (local_port, peer_port, sockets)
    return found[0]


def relayed_off_bbr(report: dict) -> None:
    """The bytes went through both ways, forward's two sockets of the pair left bbr and
    the test's own two kept the namespace's default; forward said nothing."""
    assert report["at_target"] == "through forward\n" and report["at_client"] == "and back\n", report
    port, target_port = report["port"], report["target_port"]
    client_port, relay_port = report["client_port"], report["relay_port"]
    established = report["established"]
    assert one(established, port, client_port)["cc"] in UNPACED, report
    assert one(established, relay_port, target_port)["cc"] in UNPACED, report
    assert one(established, client_port, port)["cc"] == "bbr", report
    assert one(established, target_port, relay_port)["cc"] == "bbr", report
    assert report["forward_stderr"] == "", report


@pytest.mark.timeout(60)
def test_forward_on_loopback_relays_off_bbr_from_the_handshake_on():
    report = run_in_netns("loopback")
    # forward's listener, and so the connections it accepts, before any handshake
    assert report["listener"]["cc"] in UNPACED, report
    # forward's connect to the target, while its handshake is still under way
    assert report["syn_sent"]["cc"] in UNPACED, report
    relayed_off_bbr(report)


@pytest.mark.timeout(60)
def test_forward_on_a_wildcard_moves_a_local_client_and_a_target_of_this_host_off_bbr():
    # 0.0.0.0 is not loopback: the listener keeps bbr, its client connection leaves it after
    # accept; 192.0.2.1 is not loopback before the connect, after it the peer is this host's own
    report = run_in_netns("wildcard")
    assert report["listener"]["cc"] == "bbr", report
    relayed_off_bbr(report)


if __name__ == "__main__":
    if sys.argv[1:2] == ["inside"]:
        print(json.dumps(inside(sys.argv[2], sys.argv[3])))
