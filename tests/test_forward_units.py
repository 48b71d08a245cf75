"""forward's pure parts, without a socket: the stream ↔ datagram framing rule, the
fault shaper's schedule, and the fault option parsers."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reliability_helpers import wait_until
from socktool.framing import MAX_DATAGRAM, LineDatagrams
from socktool.net.faults import CLOSE, RESET, Faults, Shaper, parse_fraction, parse_rate

chunks = st.lists(st.binary(max_size=300), max_size=20)


@given(chunks)
def test_line_datagrams_are_the_lines_without_their_ends_however_the_stream_is_cut(pieces):
    stream = b"".join(pieces)
    framer = LineDatagrams()
    datagrams = [d for piece in pieces for d in framer.feed(piece)] + framer.close()
    lines = stream.split(b"\n")
    expected = [line[:-1] if line.endswith(b"\r") else line for line in lines[:-1]]
    if lines[-1]:
        expected.append(lines[-1])
    assert datagrams == expected


def test_a_line_longer_than_a_datagram_is_sent_in_pieces():
    framer = LineDatagrams(limit=4)
    assert framer.feed(b"abcdefghij\nxy") == [b"abcd", b"efgh", b"ij"]
    assert framer.feed(b"z12345") == [b"xyz1"]
    assert framer.close() == [b"2345"]
    assert LineDatagrams().limit == MAX_DATAGRAM


@given(chunks, st.floats(0, 1), st.floats(0, 0.5), st.integers(0, 2**32))
def test_delay_and_jitter_keep_the_bytes_and_their_order_and_are_never_early(pieces, delay, jitter, seed):
    shaper = Shaper(Faults(delay=delay, jitter=jitter), random.Random(seed))
    segments = []
    for moment, piece in enumerate(pieces):
        previous = segments[-1].due if segments else 0.0
        scheduled = shaper.schedule(piece, float(moment))
        for segment in scheduled:  # due D±J after the read, but never before it or the one before
            assert segment.due >= moment
            assert segment.due <= max(moment + delay + jitter, previous) + 1e-9
        segments += scheduled
    assert b"".join(s.data for s in segments) == b"".join(pieces)
    dues = [s.due for s in segments]
    assert dues == sorted(dues)
    assert all(s.end is None for s in segments)


@given(st.integers(1, 10_000), st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=10))
def test_reset_after_cuts_at_exactly_that_many_bytes(limit, pieces):
    shaper = Shaper(Faults(reset_after=limit), random.Random(0))
    segments = [s for piece in pieces for s in shaper.schedule(piece, 0.0)]
    data = b"".join(s.data for s in segments)
    assert data == b"".join(pieces)[:limit]
    ends = [s.end for s in segments if s.end is not None]
    assert ends == ([RESET] if len(b"".join(pieces)) >= limit else [])


def test_close_after_and_reset_after_the_smaller_wins():
    shaper = Shaper(Faults(reset_after=10, close_after=4), random.Random(0))
    assert [(s.data, s.end) for s in shaper.schedule(b"0123456789", 0.0)] == [(b"0123", CLOSE)]
    assert shaper.schedule(b"more", 1.0) == []


def test_rate_spaces_the_bytes_over_time():
    shaper = Shaper(Faults(rate=1000), random.Random(0))
    segments = shaper.schedule(b"x" * 4000, 0.0)
    assert b"".join(s.data for s in segments) == b"x" * 4000
    assert max(len(s.data) for s in segments) == 20  # 1/50 s of traffic per piece
    assert segments[-1].due == pytest.approx(3.98)


def test_chunk_cuts_into_segments_a_gap_apart():
    shaper = Shaper(Faults(chunk=2, chunk_gap=0.5), random.Random(0))
    segments = shaper.schedule(b"abcde", 10.0)
    assert [(s.data, s.due) for s in segments] == [(b"ab", 10.0), (b"cd", 10.5), (b"e", 11.0)]
    assert shaper.schedule(b"f", 10.0)[0].due == 11.5  # never before the segment before it


def test_the_same_seed_drops_the_same_datagrams():
    def pattern(seed: int) -> list[bool]:
        shaper = Shaper(Faults(drop=0.5), random.Random(seed))
        return [shaper.drops() for _ in range(100)]

    assert pattern(3) == pattern(3)
    assert 25 < sum(pattern(3)) < 75


@pytest.mark.parametrize(
    ("text", "rate"), [("65536", 65536), ("500k", 500_000), ("1MiB/s", 1 << 20), ("1.5M", 1_500_000), ("2kb/s", 2000)]
)
def test_rates(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "", "0", "-5", "1x", "MiB"])
def test_bad_rates(text):
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize(("text", "value"), [("0.1", 0.1), ("10%", 0.1), ("0", 0.0), ("100%", 1.0)])
def test_fractions(text, value):
    assert parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["1.5", "-0.1", "half", "200%"])
def test_bad_fractions(text):
    with pytest.raises(ValueError):
        parse_fraction(text)


# -- the engine driven in-process (a list sink, port-0 listeners) --------------------------


def _in_process_forwarder(target_port: int, **options):
    import threading

    from socktool.net.address import Endpoint
    from socktool.net.forward import Forwarder, ForwardOptions
    from socktool.net.sockets import bind

    events: list = []
    listener = bind(Endpoint(host="127.0.0.1", port=0))
    forwarder = Forwarder(
        listener, ForwardOptions(target=Endpoint(host="127.0.0.1", port=target_port), **options), events.append
    )
    thread = threading.Thread(target=forwarder.serve, daemon=True)
    thread.start()
    return forwarder, thread, listener.port, events


def test_keepalive_and_nodelay_are_set_on_both_sides_of_a_pair():
    import socket

    from socktool.net import events as ev
    from socktool.net.tcp import SocketOptions

    target = socket.create_server(("127.0.0.1", 0))
    forwarder, thread, port, events = _in_process_forwarder(
        target.getsockname()[1], socket_options=SocketOptions(keepalive=True, nodelay=True)
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            accepted, _ = target.accept()
            with accepted:
                client.sendall(b"x")
                assert accepted.recv(1) == b"x"
                wait_until(
                    lambda: any(isinstance(e, ev.Notice) and "connected to" in e.message for e in events),
                    5,
                    what="the target connected",
                    step=0.01,
                )
                pair = forwarder.pairs[1]
                for conn in (pair.client, pair.target):
                    sock = conn.transport.sock
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        forwarder.loop.stop()
        thread.join(5)
        target.close()
    assert not thread.is_alive()
    assert isinstance(events[-1], ev.Stats) and events[-1].connections == 1


_FAULTS = {  # option: (value, the Faults field it sets, that value parsed)
    "--delay": ("10ms", "delay", 0.01),
    "--jitter": ("5ms", "jitter", 0.005),
    "--rate": ("1000", "rate", 1000),
    "--chunk": ("10", "chunk", 10),
    "--reset-after": ("100", "reset_after", 100),
    "--close-after": ("100", "close_after", 100),
}


@pytest.mark.parametrize("direction", ["--upstream", "--downstream"])
@pytest.mark.parametrize("fault", list(_FAULTS))
def test_a_fault_given_one_direction_acts_on_that_direction_only(fault, direction, monkeypatch):
    """The command line as forward parses it, up to the engine: the plan the engine gets."""
    from socktool.cli import boundary
    from socktool.cli import forward as cli_forward
    from socktool.net import interrupts
    from socktool.net.events import DOWNSTREAM, UPSTREAM

    seen = []
    monkeypatch.setattr(cli_forward, "_serve", lambda bridge, listen, options, sink: seen.append(options))
    monkeypatch.setattr(interrupts, "install", lambda: None)  # pytest keeps its own signal handlers
    value, field, parsed = _FAULTS[fault]
    assert boundary.main(["forward", "127.0.0.1:0", "127.0.0.1:9", fault, value, direction]) == 0
    plan = seen[0].faults
    chosen, other = (UPSTREAM, DOWNSTREAM) if direction == "--upstream" else (DOWNSTREAM, UPSTREAM)
    assert getattr(plan.for_direction(chosen), field) == parsed
    assert plan.for_direction(other) == Faults()  # the other way goes untouched
