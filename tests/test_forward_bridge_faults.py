"""Faults on forward --tcp-to-udp, each measured: towards the target they act on whole
datagrams (delay, jitter, rate, drop), towards the client on the stream it reads (every
stream fault); --reset-after/--close-after count the client's bytes one way and the
bytes written to it the other, then end the client's connection."""

from __future__ import annotations

import time

import pytest

from conftest import one_line_error, run
from reliability_helpers import recv_exactly, wait_until
from test_forward import connect, forwarding, read_to_end
from test_forward_udp import udp_server


def _round_trips(port: int, rounds: int = 5) -> float:
    """Mean seconds for a line to go out as a datagram and its echo to come back."""
    with connect(port) as client:
        client.sendall(b"warm-up\n")
        assert recv_exactly(client, 7) == b"warm-up"
        started = time.monotonic()
        for _ in range(rounds):
            client.sendall(b"x\n")
            assert recv_exactly(client, 1) == b"x"
        return (time.monotonic() - started) / rounds


@pytest.mark.parametrize("direction", ["--upstream", "--downstream"])
def test_delay_adds_its_time_to_each_round_trip(direction):
    with udp_server() as server:
        with forwarding(f"127.0.0.1:{server.port}", "--tcp-to-udp") as (_proc, port):
            plain = _round_trips(port)
        with forwarding(f"127.0.0.1:{server.port}", "--tcp-to-udp", "--delay", "100ms", direction) as (_p, port):
            delayed = _round_trips(port)
    assert 0.080 <= delayed - plain <= 0.120, (plain, delayed)


def test_jitter_varies_each_datagrams_delay_within_its_bounds_and_keeps_the_order():
    arrivals: dict[bytes, float] = {}

    def note(data, addr):
        arrivals[data] = time.monotonic()

    with udp_server(note) as server:
        args = ("--tcp-to-udp", "--delay", "60ms", "--jitter", "40ms", "--seed", "3", "--upstream")
        with forwarding(f"127.0.0.1:{server.port}", *args) as (_proc, port), connect(port) as client:
            sent = {}
            for index in range(12):  # one read, one datagram, one draw each
                line = b"%02d" % index
                sent[line] = time.monotonic()
                client.sendall(line + b"\n")
                time.sleep(0.1)
            wait_until(lambda: len(server.received) == 12, what="12 datagrams", step=0.005)
    assert server.received == [b"%02d" % index for index in range(12)]  # order kept
    delays = [arrivals[line] - sent[line] for line in sent]
    assert min(delays) >= 0.019, delays  # never earlier than delay - jitter
    assert max(delays) - min(delays) >= 0.02, delays  # they vary


def test_rate_paces_the_datagrams_to_the_target():
    line = b"r" * 999 + b"\n"
    with udp_server(lambda data, addr: None) as server:
        with forwarding(f"127.0.0.1:{server.port}", "--tcp-to-udp", "--rate", "50000", "--upstream") as (_p, port):
            with connect(port) as client:
                started = time.monotonic()
                client.sendall(line * 101)  # the first datagram goes at once, 100 more at 50,000 B/s
                wait_until(lambda: len(server.received) == 101, what="101 datagrams", step=0.005)
                took = time.monotonic() - started
    assert all(datagram == line[:-1] for datagram in server.received)  # whole datagrams, never cut
    assert 1.8 <= took <= 2.4, took  # 99,900 B at 50,000 B/s


def test_chunk_downstream_delivers_one_byte_per_read():
    reads = []
    with udp_server(lambda data, addr: b"0123456789") as server:
        args = ("--tcp-to-udp", "--chunk", "1", "--chunk-delay", "50ms", "--downstream")
        with forwarding(f"127.0.0.1:{server.port}", *args) as (_proc, port), connect(port) as client:
            client.sendall(b"go\n")
            while len(b"".join(reads)) < 10:
                reads.append(client.recv(65536))
    assert reads == [bytes([byte]) for byte in b"0123456789"]


def _drop_pattern(seed: str) -> list[bytes]:
    with udp_server(lambda data, addr: None) as server:
        args = ("--tcp-to-udp", "--drop", "50%", "--seed", seed, "--upstream")
        with forwarding(f"127.0.0.1:{server.port}", *args) as (proc, port), connect(port) as client:
            client.sendall(b"".join(b"%03d\n" % index for index in range(200)) + b"end\n")
            client.shutdown(1)
            proc.wait_for(r"closed #1 ")  # every datagram that was to go is gone
        return [data for data in server.received if data != b"end"]


def test_drop_drops_about_that_share_and_the_same_seed_drops_the_same_datagrams():
    first = _drop_pattern("7")
    assert 60 <= len(first) <= 140, len(first)
    assert first == _drop_pattern("7")


def test_upstream_reset_after_sends_the_datagrams_of_exactly_those_bytes_then_resets_the_client():
    with udp_server(lambda data, addr: None) as server:
        args = ("--tcp-to-udp", "--reset-after", "7", "--upstream")
        with forwarding(f"127.0.0.1:{server.port}", *args) as (proc, port), connect(port) as client:
            client.sendall(b"aaaa\nbbbb\ncccc\n")
            with pytest.raises(ConnectionResetError):
                while client.recv(100):
                    pass
            proc.wait_for(r"--reset-after reached \(upstream\)")
            wait_until(lambda: len(server.received) == 2, what="2 datagrams", step=0.005)
    assert server.received == [b"aaaa", b"bb"]  # 7 bytes of the stream: a line, and the rest as at its end


@pytest.mark.parametrize("fault", ["--close-after", "--reset-after"])
def test_downstream_cut_after_exactly_that_many_bytes_to_the_client(fault):
    with udp_server(lambda data, addr: b"abcde") as server:
        with forwarding(f"127.0.0.1:{server.port}", "--tcp-to-udp", fault, "12", "--downstream") as (_p, port):
            with connect(port) as client:
                client.sendall(b"1\n2\n3\n")  # three replies of 5 B
                if fault == "--close-after":
                    assert read_to_end(client) == b"abcdeabcdeab"
                    return
                got = bytearray()
                with pytest.raises(ConnectionResetError):
                    while chunk := client.recv(100):
                        got += chunk
                assert got == b"abcdeabcdeab"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk", "10"], "--tcp-to-udp sends the target whole datagrams (add --downstream)"),
        (["--chunk", "10", "--upstream"], "(add --downstream)"),
        (["-w", "1s"], "nothing connects to the target over TCP"),
    ],
)
def test_faults_that_cannot_apply_to_tcp_to_udp_are_usage_errors(args, message):
    result = run("forward", "127.0.0.1:0", "127.0.0.1:9", "--tcp-to-udp", *args)
    assert result.returncode == 2
    assert message in one_line_error(result.stderr)
