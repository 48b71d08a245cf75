"""udp-send and udp-listen, run as a user runs them, against real peers on loopback.

Peers: Python stdlib sockets always; nc (OpenBSD) and socat where installed.
Multicast stays on the loopback interface (socktool's default).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid

import pytest

from conftest import Proc, command, need, one_line_error, run
from socktool.net.errors import UsageError
from socktool.net.multicast import parse_group
from socktool.net.udp import MAX_DATAGRAM, check_size
from socktool.values import LineSplitter

MAX = MAX_DATAGRAM  # 65,507
_IP_RECVTTL = 12  # Linux values the socket module does not export
_IP_TTL = 2
_SO_TIMESTAMPNS = 35


# -- helpers -----------------------------------------------------------------------
def udp_socket(host: str = "127.0.0.1", family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(5)
    return sock


def nothing_arrives(sock: socket.socket, wait: float = 0.3) -> bool:
    return not select.select([sock], [], [], wait)[0]


def listen(*args: str, stdout=subprocess.PIPE) -> tuple[Proc, int]:
    proc = Proc("udp-listen", *args, stdout=stdout)
    return proc, proc.wait_listening()


def finish(proc: Proc) -> tuple[int, bytes]:
    """Its exit code and stdout, read to the end first so a full pipe cannot stall it."""
    assert proc.popen.stdout is not None
    out = proc.popen.stdout.read()
    return proc.wait(), out


def json_records(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def datagram_records(stdout: bytes) -> list[dict]:
    return [record for record in json_records(stdout) if record["event"] == "datagram"]


def udp_bound(port: int) -> bool:
    """Whether some socket is bound to this UDP port (a peer tool that prints nothing)."""
    local = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as rows:
                if any(row.split()[1].endswith(local) for row in list(rows)[1:]):
                    return True
        except OSError:
            continue
    return False


def wait_bound(port: int, proc: subprocess.Popen, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        assert proc.poll() is None, f"{proc.args} exited early"
        assert time.monotonic() < deadline, f"nothing bound udp port {port}"
        time.sleep(0.01)


def unused_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- pure parts ------------------------------------------------------------------
def test_line_splitter_handles_lf_crlf_and_lines_split_across_chunks():
    splitter = LineSplitter()
    assert splitter.feed(b"one\r\ntw") == [b"one"]
    assert splitter.feed(b"o\n\nthr") == [b"two", b""]
    assert splitter.close() == [b"thr"]
    assert splitter.close() == []


def test_group_must_be_multicast():
    assert parse_group("239.1.2.3") == "239.1.2.3"
    assert parse_group("[FF15::1]") == "ff15::1"
    for bad in ("10.0.0.1", "::1", "example.test"):
        with pytest.raises(ValueError):
            parse_group(bad)


def test_size_limit_is_65507_bytes():
    assert check_size(b"x" * MAX) == b"x" * MAX
    with pytest.raises(UsageError, match="65,507"):
        check_size(b"x" * (MAX + 1))


# -- udp-send to Python peers --------------------------------------------------------
def test_send_message_exactly_without_newline():
    with udp_socket() as peer:
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", "hello world")
        assert result.returncode == 0, result.stderr
        assert peer.recvfrom(100)[0] == b"hello world"
        assert result.stdout == b""


def test_send_empty_message_is_an_empty_datagram():
    with udp_socket() as peer:
        assert run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", "").returncode == 0
        data, _ = peer.recvfrom(100)
        assert data == b""


def test_send_stdin_binary_as_one_datagram():
    payload = bytes(range(256)) * 3
    with udp_socket() as peer:
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", input=payload)
        assert result.returncode == 0, result.stderr
        assert peer.recvfrom(MAX)[0] == payload
        assert nothing_arrives(peer, 0.1)


def test_send_largest_datagram_arrives_whole():
    payload = os.urandom(MAX)
    with udp_socket() as peer:
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", input=payload)
        assert result.returncode == 0, result.stderr
        assert peer.recvfrom(70000)[0] == payload


@pytest.mark.parametrize("how", ["stdin", "message", "hex message"])
def test_send_oversize_is_usage_error_and_sends_nothing(how):
    with udp_socket() as peer:
        address = f"127.0.0.1:{peer.getsockname()[1]}"
        if how == "stdin":
            result = run("udp-send", address, input=b"x" * (MAX + 1))
        elif how == "message":
            result = run("udp-send", address, "x" * (MAX + 1))
        else:
            result = run("udp-send", address, "--hex-input", "ab" * (MAX + 1))
        assert result.returncode == 2
        assert "65,507" in one_line_error(result.stderr)
        assert nothing_arrives(peer)


def test_send_lines_one_datagram_per_line():
    with udp_socket() as peer:
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", "--lines", input=b"one\r\ntwo\n\nlast")
        assert result.returncode == 0, result.stderr
        assert [peer.recvfrom(100)[0] for _ in range(4)] == [b"one", b"two", b"", b"last"]


def test_send_hex_input_from_message_and_stdin():
    with udp_socket() as peer:
        address = f"127.0.0.1:{peer.getsockname()[1]}"
        assert run("udp-send", address, "--hex-input", "00 ff 0a41").returncode == 0
        assert peer.recvfrom(100)[0] == b"\x00\xff\nA"
        assert run("udp-send", address, "--hex-input", input=b"de ad\nbe ef\n").returncode == 0
        assert peer.recvfrom(100)[0] == b"\xde\xad\xbe\xef"
        assert run("udp-send", address, "--hex-input", "--lines", input=b"01 02\n03\n").returncode == 0
        assert [peer.recvfrom(100)[0] for _ in range(2)] == [b"\x01\x02", b"\x03"]


@pytest.mark.parametrize(
    "args, stdin",
    [
        (["abc", "--hex-input"], None),
        (["zz", "--hex-input"], None),
        (["--hex-input"], b"0g"),
        (["--hex-input"], b"abc"),
    ],
)
def test_send_bad_hex_is_usage_error(args, stdin):
    with udp_socket() as peer:
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", *args, input=stdin)
        assert result.returncode == 2
        assert "hex" in one_line_error(result.stderr)
        assert nothing_arrives(peer, 0.1)


def arrival_times(peer: socket.socket, expected: list[bytes]) -> list[float]:
    """When each expected datagram arrived, by the kernel's stamp (SO_TIMESTAMPNS set on `peer`)."""
    arrivals = []
    for datagram in expected:
        data, ancillary, _flags, _addr = peer.recvmsg(100, socket.CMSG_SPACE(16))
        assert data == datagram
        ((_level, _kind, stamp),) = ancillary
        seconds, nanoseconds = struct.unpack("qq", stamp)
        arrivals.append(seconds + nanoseconds / 1e9)
    return arrivals


def test_send_count_with_interval_paces_datagrams():
    with udp_socket() as peer:
        peer.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)  # the kernel stamps each arrival
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", "tick", "--count", "3", "--interval", "100ms")
        assert result.returncode == 0, result.stderr
        arrivals = arrival_times(peer, [b"tick"] * 3)
        assert nothing_arrives(peer, 0.1)
    # A lower bound only: the datagrams were spread out, not sent at once.
    assert arrivals[1] - arrivals[0] >= 0.09 and arrivals[2] - arrivals[1] >= 0.09


def test_send_count_repeats_all_lines_of_stdin():
    with udp_socket() as peer:
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", "--lines", "--count", "2", input=b"a\nb\n")
        assert result.returncode == 0, result.stderr
        assert [peer.recvfrom(100)[0] for _ in range(4)] == [b"a", b"b", b"a", b"b"]


def test_wait_prints_the_reply_of_a_python_server():
    with udp_socket() as server:
        proc = subprocess.Popen(
            command("udp-send", f"127.0.0.1:{server.getsockname()[1]}", "hello", "--wait", "--timeout", "1s"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        data, client = server.recvfrom(100)
        assert data == b"hello"
        server.sendto(b"hi", client)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == b"hi"


def test_wait_shows_replies_as_json_from_their_source():
    with udp_socket() as server:
        server_address = f"127.0.0.1:{server.getsockname()[1]}"
        proc = subprocess.Popen(
            command("udp-send", server_address, "q", "--json", "--timeout", "500ms"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, client = server.recvfrom(100)
        server.sendto(b"\xff\x00", client)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    sent, reply = datagram_records(out)
    assert sent["to"] == server_address and sent["text"] == "q"
    assert reply["from"] == server_address
    assert (reply["size"], reply["text"], reply["hex"]) == (2, None, "ff00")


def test_wait_without_reply_exits_1():
    with udp_socket() as silent:
        result = run("udp-send", f"127.0.0.1:{silent.getsockname()[1]}", "anyone?", "--wait", "--timeout", "300ms")
        assert silent.recvfrom(100)[0] == b"anyone?"
    assert result.returncode == 1
    assert "no reply" in one_line_error(result.stderr)


def test_wait_on_a_closed_port_fails_fast():
    started = time.monotonic()
    result = run("udp-send", f"127.0.0.1:{unused_udp_port()}", "x", "--wait", "--timeout", "10s")
    assert result.returncode == 1
    assert "port unreachable" in one_line_error(result.stderr)
    assert time.monotonic() - started < 8  # did not sit out the 10s


def test_wait_with_lines_sends_and_shows_replies_interleaved():
    with udp_socket() as server:
        proc = subprocess.Popen(
            command("udp-send", f"127.0.0.1:{server.getsockname()[1]}", "--lines", "--timeout", "500ms"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        for word in (b"one", b"two"):
            proc.stdin.write(word + b"\n")
            proc.stdin.flush()
            data, client = server.recvfrom(100)  # sent while stdin is still open
            assert data == word
            server.sendto(data.upper(), client)
        out, err = proc.communicate(timeout=10)  # closes stdin: EOF, then the --timeout window
    assert proc.returncode == 0, err
    assert out == b"ONETWO"


def test_broadcast_needs_the_flag():
    with udp_socket("0.0.0.0") as peer:
        address = f"127.255.255.255:{peer.getsockname()[1]}"
        refused = run("udp-send", address, "all")
        assert refused.returncode == 1
        assert "--broadcast" in one_line_error(refused.stderr)
        sent = run("udp-send", address, "all", "--broadcast")
        assert sent.returncode == 0, sent.stderr
        assert peer.recvfrom(100)[0] == b"all"


def test_ttl_is_set_on_the_datagram():
    with udp_socket() as peer:
        peer.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        assert run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", "t", "--ttl", "7").returncode == 0
        data, ancillary, _flags, _addr = peer.recvmsg(100, socket.CMSG_SPACE(4))
    ttls = [
        struct.unpack("i", cdata)[0]
        for level, kind, cdata in ancillary
        if (level, kind) == (socket.IPPROTO_IP, _IP_TTL)
    ]
    assert (data, ttls) == (b"t", [7])


def test_source_address_and_port():
    port = unused_udp_port()
    with udp_socket() as peer:
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", "x", "-s", "127.0.0.1", "-p", str(port))
        assert result.returncode == 0, result.stderr
        assert peer.recvfrom(100)[1] == ("127.0.0.1", port)


def test_ipv6_and_family_flags():
    with udp_socket("::1", socket.AF_INET6) as peer6, udp_socket() as peer4:
        assert run("udp-send", f"[::1]:{peer6.getsockname()[1]}", "six", "-6").returncode == 0
        assert peer6.recvfrom(100)[0] == b"six"
        assert run("udp-send", f"localhost:{peer4.getsockname()[1]}", "four", "-4").returncode == 0
        assert peer4.recvfrom(100)[0] == b"four"
    result = run("udp-send", "127.0.0.1:9", "x", "-6")
    assert result.returncode == 1
    assert "IPv6" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "address, code",
    [
        ("127.0.0.1:0", 2),
        ("127.0.0.1:65536", 2),
        ("127.0.0.1", 2),
        # A name glibc rejects without asking DNS (no query leaves the machine),
        # failing as 'nonexistent.invalid' would.
        ("nonexistent!.invalid:9", 1),
    ],
)
def test_send_bad_address(address, code):
    result = run("udp-send", address, "x")
    assert result.returncode == code
    one_line_error(result.stderr)


def test_source_port_in_use_is_one_line():
    with udp_socket() as taken, udp_socket() as peer:
        result = run("udp-send", f"127.0.0.1:{peer.getsockname()[1]}", "x", "-p", str(taken.getsockname()[1]))
    assert result.returncode == 1
    assert "in use" in one_line_error(result.stderr)


# -- udp-listen with Python peers -------------------------------------------------------
def test_listen_answers_a_python_client_with_reply():
    proc, port = listen("127.0.0.1:0", "--reply", "hi", "--count", "1")
    with proc, udp_socket() as client:
        client.sendto(b"hello", ("127.0.0.1", port))
        assert client.recvfrom(100) == (b"hi", ("127.0.0.1", port))
        code, out = finish(proc)
        assert code == 0
        assert out == b"hello"


def test_listen_echo_sends_each_datagram_back():
    proc, port = listen("127.0.0.1:0", "--echo", "--count", "2")
    with proc, udp_socket() as client:
        for payload in (b"\x00binary\xff", b""):
            client.sendto(payload, ("127.0.0.1", port))
            assert client.recvfrom(100)[0] == payload
        assert proc.wait() == 0


def test_listen_writes_binary_empty_and_largest_datagrams_exactly():
    payloads = [bytes(range(256)), b"", os.urandom(MAX)]
    proc, port = listen("127.0.0.1:0", "--count", "3")
    with proc, udp_socket() as client:
        for payload in payloads:
            client.sendto(payload, ("127.0.0.1", port))
        code, out = finish(proc)
        assert code == 0
        assert out == b"".join(payloads)


def test_listen_json_one_record_per_datagram():
    proc, port = listen("127.0.0.1:0", "--count", "3", "--json")
    with proc, udp_socket() as client:
        source = f"127.0.0.1:{client.getsockname()[1]}"
        for payload in (b"caf\xc3\xa9", b"\xff\xfe", b""):
            client.sendto(payload, ("127.0.0.1", port))
        code, out = finish(proc)
        assert code == 0
        records = datagram_records(out)
    assert [(r["from"], r["size"], r["text"], r["hex"]) for r in records] == [
        (source, 5, "café", "636166c3a9"),
        (source, 2, None, "fffe"),
        (source, 0, "", ""),
    ]
    assert all(isinstance(r["ts"], float) for r in records)


def test_three_peers_are_each_shown_with_their_own_source():
    proc, port = listen("127.0.0.1:0", "--count", "3", "--json")
    peers = [udp_socket() for _ in range(3)]
    with proc:
        for index, peer in enumerate(peers):
            peer.sendto(f"from peer {index}".encode(), ("127.0.0.1", port))
        code, out = finish(proc)
        assert code == 0
        records = datagram_records(out)
    expected = {f"127.0.0.1:{peer.getsockname()[1]}": f"from peer {i}" for i, peer in enumerate(peers)}
    assert {r["from"]: r["text"] for r in records} == expected
    for peer in peers:
        peer.close()


def test_replies_go_to_each_of_several_peers():
    proc, port = listen("127.0.0.1:0", "--reply", "ok", "--count", "3")
    peers = [udp_socket() for _ in range(3)]
    with proc:
        for peer in peers:
            peer.sendto(b"?", ("127.0.0.1", port))
        assert [peer.recvfrom(10)[0] for peer in peers] == [b"ok"] * 3
        assert proc.wait() == 0
    for peer in peers:
        peer.close()


def test_listen_view_draws_a_line_per_datagram_and_counters():
    proc, port = listen("127.0.0.1:0", "--count", "2", "--view", "--no-color")
    with proc, udp_socket() as client:
        source = f"127.0.0.1:{client.getsockname()[1]}"
        client.sendto(b"hello\x07", ("127.0.0.1", port))
        client.sendto(b"again", ("127.0.0.1", port))
        code, out = finish(proc)
        assert code == 0
        lines = out.decode().splitlines()
    assert source in lines[0] and "←" in lines[0] and "6 B" in lines[0] and "hello\\x07" in lines[0]
    assert source in lines[1] and "again" in lines[1]
    assert "2 datagrams in" in "".join(lines[2:])  # counters at exit (wrapped at the view's width)


def test_listen_hex_view():
    proc, port = listen("127.0.0.1:0", "--count", "1", "--view", "--hex", "--no-color")
    with proc, udp_socket() as client:
        client.sendto(b"AB\x00", ("127.0.0.1", port))
        code, out = finish(proc)
        assert code == 0
        assert "41 42 00" in out.decode()


def test_listen_timeout_without_datagrams_exits_1():
    result = run("udp-listen", "127.0.0.1:0", "--timeout", "200ms")
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("socktool: listening on 127.0.0.1:")
    assert "no datagram" in one_line_error("\n".join(lines[1:]))


def test_listen_timeout_with_fewer_than_count_exits_1():
    proc, port = listen("127.0.0.1:0", "--count", "2", "--timeout", "300ms")
    with proc, udp_socket() as client:
        client.sendto(b"one", ("127.0.0.1", port))
        assert proc.wait() == 1
        assert "only 1 of 2" in proc.stderr


def test_listen_timeout_after_some_datagrams_exits_0():
    proc, port = listen("127.0.0.1:0", "--timeout", "300ms")
    with proc, udp_socket() as client:
        client.sendto(b"one", ("127.0.0.1", port))
        code, out = finish(proc)
        assert code == 0
        assert out == b"one"


def test_listen_dual_stack_by_default():
    proc, port = listen("0", "--count", "2", "--json")
    with proc, udp_socket() as four, udp_socket("::1", socket.AF_INET6) as six:
        expected = sorted([f"127.0.0.1:{four.getsockname()[1]}", f"[::1]:{six.getsockname()[1]}"])
        four.sendto(b"4", ("127.0.0.1", port))
        six.sendto(b"6", ("::1", port))
        code, out = finish(proc)
        assert code == 0
        sources = sorted(r["from"] for r in datagram_records(out))
    assert sources == expected


def test_listen_port_in_use_is_one_line_with_hint():
    with udp_socket() as taken:
        result = run("udp-listen", f"127.0.0.1:{taken.getsockname()[1]}")
    assert result.returncode == 1
    assert "another process holds udp port" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "args", [["65536"], ["127.0.0.1:x"], ["0", "--reply", "a", "--echo"], ["0", "--group", "10.1.1.1"]]
)
def test_listen_bad_usage_exits_2(args):
    result = run("udp-listen", *args)
    assert result.returncode == 2
    one_line_error(result.stderr)


def test_listen_exits_quietly_when_its_reader_goes_away():
    proc, port = listen("127.0.0.1:0")
    with proc, udp_socket() as client:
        assert proc.popen.stdout is not None
        proc.popen.stdout.close()  # like `| head -c 0`
        deadline = time.monotonic() + 10
        while proc.popen.poll() is None and time.monotonic() < deadline:
            client.sendto(b"data", ("127.0.0.1", port))
            time.sleep(0.02)
        assert proc.wait() == 0
        assert "error" not in proc.stderr


def test_listen_sigterm_exits_143():
    proc, _port = listen("127.0.0.1:0")
    with proc:
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait() == 143


# -- unix datagram sockets -----------------------------------------------------------
def test_unix_send_wait_and_listen_echo(tmp_sock_dir):
    path = tmp_sock_dir / "dgram.sock"
    proc, _ = listen(f"unix:{path}", "--echo", "--count", "1")
    with proc:
        result = run("udp-send", f"unix:{path}", "ping", "--timeout", "1s")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"ping"
        code, out = finish(proc)
        assert code == 0
        assert out == b"ping"
    assert not path.exists()  # removed on exit


def test_unix_listen_file_removed_on_interrupt(tmp_sock_dir):
    path = tmp_sock_dir / "dgram.sock"
    proc, _ = listen(f"unix:{path}")
    with proc:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendto(b"x", str(path))
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait() == 130
    assert not path.exists()


def test_unix_send_to_python_receiver(tmp_sock_dir):
    path = str(tmp_sock_dir / "peer.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as peer:
        peer.bind(path)
        peer.settimeout(5)
        assert run("udp-send", f"unix:{path}", input=b"\x00\x01").returncode == 0
        assert peer.recv(100) == b"\x00\x01"


def test_unix_send_to_nothing_is_one_line(tmp_sock_dir):
    result = run("udp-send", f"unix:{tmp_sock_dir}/missing.sock", "x")
    assert result.returncode == 1
    one_line_error(result.stderr)


# -- multicast, on the loopback interface only ---------------------------------------------
def test_multicast_ipv4_group_on_loopback():
    high, low = uuid.uuid4().bytes[:2]
    group = f"239.255.{high}.{low}"
    proc, port = listen("0", "--group", group, "--count", "1", "--json")
    with proc:
        result = run("udp-send", f"{group}:{port}", "to the group", "--ttl", "1")
        assert result.returncode == 0, result.stderr
        code, out = finish(proc)
        assert code == 0
        (record,) = datagram_records(out)
    assert record["text"] == "to the group"
    assert record["from"].startswith("127.0.0.1:")


def _ipv6_multicast_on_loopback(group: str) -> bool:
    """Whether a datagram to `group` via lo is delivered; a probe with Python sockets."""
    index = socket.if_nametoindex("lo")
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("::", 0))
        receiver.setsockopt(
            socket.IPPROTO_IPV6,
            socket.IPV6_JOIN_GROUP,
            socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index),
        )
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        try:
            sender.sendto(b"probe", (group, receiver.getsockname()[1], 0, index))
        except OSError:
            return False
        return bool(select.select([receiver], [], [], 0.5)[0])


@pytest.fixture
def ipv6_loopback_group():
    """An interface-local (ff01::/16) group that works on lo.

    Linux routes IPv6 multicast only on interfaces flagged MULTICAST, which lo
    often is not. As root, a host route for this one group on lo is added for
    the test and removed after; otherwise the test is skipped.
    """
    group = "ff01::%x" % (0x1000 + uuid.uuid4().int % 0xE000)
    if _ipv6_multicast_on_loopback(group):
        yield group
        return
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("IPv6 multicast does not reach lo here, and adding a route for it needs root")
    route = ["ip", "-6", "route", "add", "multicast", f"{group}/128", "dev", "lo", "table", "local"]
    if subprocess.run(route, capture_output=True).returncode != 0:
        pytest.skip("could not add an IPv6 multicast route on lo")
    try:
        if not _ipv6_multicast_on_loopback(group):
            pytest.skip("IPv6 multicast on lo does not work on this host")
        yield group
    finally:
        route[3] = "del"
        subprocess.run(route, capture_output=True)


def test_multicast_ipv6_group_on_loopback(ipv6_loopback_group):
    group = ipv6_loopback_group
    proc, port = listen("0", "--group", group, "--count", "1", "--json")
    with proc:
        result = run("udp-send", f"[{group}]:{port}", "six to the group")
        assert result.returncode == 0, result.stderr
        code, out = finish(proc)
        assert code == 0
        (record,) = datagram_records(out)
    assert record["text"] == "six to the group"


def test_multicast_on_a_named_interface():
    high, low = uuid.uuid4().bytes[:2]
    group = f"239.255.{high}.{low}"
    proc, port = listen("0", "--group", group, "--interface", "lo", "--count", "1")
    with proc:
        result = run("udp-send", f"{group}:{port}", "via lo", "--interface", "127.0.0.1")
        assert result.returncode == 0, result.stderr
        assert finish(proc) == (0, b"via lo")


def test_unknown_interface_is_usage_error():
    result = run("udp-listen", "0", "--group", "239.1.2.3", "--interface", "no-such-if0")
    assert result.returncode == 2
    assert "no-such-if0" in one_line_error(result.stderr)


def test_group_with_a_unicast_bind_address_is_refused():
    result = run("udp-listen", "127.0.0.1:0", "--group", "239.1.2.3")
    assert result.returncode == 2
    assert "multicast" in one_line_error(result.stderr)


# -- real peer tools ------------------------------------------------------------------
def test_nc_sends_to_udp_listen_and_gets_the_reply():
    need("nc")
    proc, port = listen("127.0.0.1:0", "--reply", "hi", "--count", "1")
    with proc:
        nc = subprocess.run(
            ["nc", "-u", "-w1", "127.0.0.1", str(port)], input=b"hello\n", capture_output=True, timeout=10
        )
        code, out = finish(proc)
        assert code == 0
        assert out == b"hello\n"
    assert nc.stdout == b"hi"


def test_udp_send_to_nc_listener_and_its_answer():
    need("nc")
    port = unused_udp_port()
    nc = subprocess.Popen(
        ["nc", "-u", "-l", "127.0.0.1", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert nc.stdin is not None and nc.stdout is not None
        nc.stdin.write(b"hi\n")  # nc sends it once a peer has written
        nc.stdin.flush()
        wait_bound(port, nc)
        result = run("udp-send", f"127.0.0.1:{port}", "hello", "--timeout", "1s")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"hi\n"
        assert os.read(nc.stdout.fileno(), 100) == b"hello"
    finally:
        nc.kill()
        nc.wait()
        for stream in (nc.stdin, nc.stdout):
            if stream is not None:
                stream.close()


def test_socat_client_gets_udp_listen_reply():
    need("socat")
    proc, port = listen("127.0.0.1:0", "--reply", "hi", "--count", "1")
    with proc:
        socat = subprocess.run(
            ["socat", "-t", "1", "-", f"UDP:127.0.0.1:{port}"], input=b"hello", capture_output=True, timeout=10
        )
        code, out = finish(proc)
        assert code == 0
        assert out == b"hello"
    assert socat.stdout == b"hi"


def test_udp_send_to_socat_server_and_its_answer():
    need("socat")
    port = unused_udp_port()
    socat = subprocess.Popen(
        ["socat", f"UDP-RECVFROM:{port},bind=127.0.0.1", "SYSTEM:cat >&2; printf hi"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_bound(port, socat)
        result = run("udp-send", f"127.0.0.1:{port}", "--hex-input", "68 65 00 ff", "--timeout", "1s")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"hi"
        _, received = socat.communicate(timeout=5)
        assert received == b"he\x00\xff"
    finally:
        socat.kill()
        socat.wait()


def test_socat_receives_largest_datagram_from_udp_send():
    need("socat")
    port = unused_udp_port()
    payload = os.urandom(MAX)
    socat = subprocess.Popen(
        ["socat", "-u", "-b", "70000", f"UDP-RECV:{port},bind=127.0.0.1", "STDOUT"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_bound(port, socat)
        assert run("udp-send", f"127.0.0.1:{port}", input=payload).returncode == 0
        assert socat.stdout is not None
        received = b""
        while len(received) < MAX:
            received += os.read(socat.stdout.fileno(), MAX)
        assert received == payload
    finally:
        socat.kill()
        socat.wait()
        if socat.stdout is not None:
            socat.stdout.close()


# -- the engine, driven from Python -----------------------------------------------------
def test_receiver_engine_reports_events_to_its_sink():
    from socktool.net import events as ev
    from socktool.net import udp
    from socktool.net.address import Endpoint

    events: list = []
    with udp.bind(Endpoint("127.0.0.1", 0)) as listener, udp_socket() as client:
        for payload in (b"a", b"bc"):
            client.sendto(payload, ("127.0.0.1", listener.port))
        options = udp.ListenOptions(count=2, reply=b"ok", output_fd=None, emit=True)
        udp.Receiver(listener, options, events.append).serve()
        assert client.recvfrom(10)[0] == b"ok"
        source = f"127.0.0.1:{client.getsockname()[1]}"
    assert [(e.direction, e.peer, e.data) for e in events if isinstance(e, ev.Datagram)] == [
        (ev.RECEIVED, source, b"a"),
        (ev.SENT, source, b"ok"),
        (ev.RECEIVED, source, b"bc"),
        (ev.SENT, source, b"ok"),
    ]
    stats = events[-1]
    assert (stats.datagrams_in, stats.received, stats.datagrams_out, stats.sent) == (2, 3, 2, 4)
