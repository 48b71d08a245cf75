"""The loop and its engines driven in-process: port-0 listeners and socketpair()s, a list sink.

No subprocess here: each test builds an engine, runs it in a thread, talks to
it over loopback sockets and reads what it reported.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from reliability_helpers import recv_exactly, wait_until
from socktool.net import events as ev
from socktool.net.address import Endpoint
from socktool.net.hub import Hub, ListenOptions
from socktool.net.loop import HIGH_WATER, Acceptor, Connection, Handler, Loop, SocketTransport
from socktool.net.relay import Payload, RelayOptions


def until(condition: Callable[[], object], timeout: float = 10) -> None:
    wait_until(condition, timeout, step=0.005)


def clients_in(engine: Hub, port: int, count: int) -> list[socket.socket]:
    """Connect `count` clients to the hub on `port`; return once it has counted them all in."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    until(lambda: len(engine.clients) == count)
    return socks


def read_exactly(sock: socket.socket, size: int, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    return recv_exactly(sock, size)


def read_to_eof(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def running(run: Callable[[], None], stop: Callable[[], None]) -> Iterator[list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop()
        thread.join(10)
        assert not thread.is_alive()


class Recorder(Handler):
    """Keeps what it gets; echoes when asked to."""

    def __init__(self, echo: bool = False):
        self.echo = echo
        self.data = bytearray()
        self.reasons: list[str] = []
        self.drains = 0

    def received(self, conn: Connection, data: memoryview) -> None:
        self.data += data
        if self.echo:
            conn.write(data)

    def drained(self, conn: Connection) -> None:
        self.drains += 1

    def closed(self, conn: Connection, reason: str) -> None:
        self.reasons.append(reason)


@contextmanager
def loop_with_listener(handler: Handler) -> Iterator[tuple[Loop, int]]:
    server = socket.create_server(("127.0.0.1", 0))
    loop = Loop()

    def on_client(sock: socket.socket, addr: object) -> None:
        loop.add(Connection(loop, SocketTransport(sock), handler, peer=str(addr)))

    Acceptor(loop, server, "test", on_client)

    def run() -> None:
        try:
            loop.run()
        finally:
            loop.close()
            server.close()

    with running(run, loop.stop) as errors:
        yield loop, server.getsockname()[1]
    assert not errors


# -- the loop ---------------------------------------------------------------------------
def test_controller_commands_send_to_and_kick_a_connection_from_another_thread():
    handler = Recorder()
    with loop_with_listener(handler) as (loop, port):
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        until(lambda: loop.connections)
        (conn_id,) = list(loop.connections)
        loop.send(conn_id, b"from the console\n")
        assert read_exactly(client, 17) == b"from the console\n"
        loop.kick(conn_id)
        assert read_to_eof(client) == b""
        until(lambda: handler.reasons == ["kicked"])
        client.close()


def test_paused_accepting_leaves_clients_queued_until_resumed():
    handler = Recorder(echo=True)
    with loop_with_listener(handler) as (loop, port):
        loop.pause_accepting()
        done = threading.Event()
        loop.call(done.set)
        until(done.is_set)
        client = socket.create_connection(("127.0.0.1", port), timeout=10)  # the kernel's queue takes it
        client.sendall(b"ping")
        time.sleep(0.05)  # give a wrongly accepting loop the chance to take it
        assert not loop.connections
        loop.resume_accepting()
        assert read_exactly(client, 4) == b"ping"
        client.close()


def test_a_client_that_does_not_read_fills_only_its_own_buffer_and_drains_later():
    big = os.urandom(8 * HIGH_WATER)

    class Blaster(Handler):
        def __init__(self) -> None:
            self.conn: Connection | None = None
            self.drained_at: int | None = None

        def connected(self, conn: Connection) -> None:
            self.conn = conn
            conn.write(big)

        def drained(self, conn: Connection) -> None:
            self.drained_at = conn.sent

    handler = Blaster()
    with loop_with_listener(handler) as (_loop, port):
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        until(lambda: handler.conn is not None and handler.conn.buffered)
        assert handler.conn is not None and not handler.conn.writable
        assert read_exactly(client, len(big)) == big
        until(lambda: handler.drained_at is not None)
        client.close()


def test_idle_timeout_closes_a_silent_connection():
    handler = Recorder()

    class Idle(Recorder):
        def connected(self, conn: Connection) -> None:
            conn.set_idle_timeout(0.05)

    handler = Idle()
    with loop_with_listener(handler) as (_loop, port):
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert read_to_eof(client) == b""
        until(lambda: handler.reasons == ["idle timeout"])
        client.close()


def test_an_exception_in_a_handler_ends_run_and_close_reports_every_connection():
    class Boom(Recorder):
        def received(self, conn: Connection, data: memoryview) -> None:
            raise RuntimeError("boom")

    handler = Boom()
    loop = Loop()
    a, b = socket.socketpair()
    loop.add(Connection(loop, SocketTransport(a), handler, peer="pair"))
    b.sendall(b"x")
    with pytest.raises(RuntimeError):
        loop.run()
    loop.close()
    assert handler.reasons == ["server stopped"]
    assert read_to_eof(b) == b""
    b.close()


# -- tcp-listen -k: the hub -------------------------------------------------------------
def listening_port(events: list[ev.Event]) -> int:
    until(lambda: any(isinstance(e, ev.Listening) for e in events))
    address = next(e.address for e in events if isinstance(e, ev.Listening))
    return int(address.rsplit(":", 1)[1])


@contextmanager
def hub(
    payload: Payload, relay: RelayOptions, options: ListenOptions = ListenOptions()
) -> Iterator[tuple[Hub, int, list]]:
    events: list[ev.Event] = []
    engine = Hub(Endpoint(host="127.0.0.1", port=0), payload, relay, options, events.append)
    with running(engine.run, engine.loop.stop) as errors:
        yield engine, listening_port(events), events
    assert not errors


def test_keep_open_sends_the_greeting_to_each_client_when_it_connects():
    payload = Payload(stdin_fd=None, messages=(b"welcome\n",))
    with hub(payload, RelayOptions(output_fd=None)) as (_hub, port, events):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                assert read_to_eof(client) == b"welcome\n"  # then half-closed, as for one client
    assert [e.conn for e in events if isinstance(e, ev.Connected)] == [1, 2, 3]


def test_keep_open_repeats_the_payload_with_its_interval_for_each_client():
    payload = Payload(stdin_fd=None, messages=(b"a", b"b"), repeat=3, interval=0.01)
    with hub(payload, RelayOptions(output_fd=None)) as (_hub, port, _events):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert read_to_eof(client) == b"ababab"


def test_keep_open_repeats_stdin_whole_for_each_client():
    read_end, write_end = os.pipe()
    with hub(Payload(stdin_fd=read_end, repeat=2), RelayOptions(output_fd=None)) as (engine, port, _events):
        (client,) = clients_in(engine, port, 1)
        os.write(write_end, b"ab")
        os.close(write_end)
        assert read_to_eof(client) == b"abab"
        client.close()
    os.close(read_end)


def test_stdin_reaches_every_client_as_it_arrives_without_a_newline():
    read_end, write_end = os.pipe()
    with hub(Payload(stdin_fd=read_end), RelayOptions(output_fd=None)) as (engine, port, _events):
        clients = clients_in(engine, port, 3)
        os.write(write_end, b"no newline yet")
        for client in clients:
            assert read_exactly(client, 14) == b"no newline yet"
        os.close(write_end)
        for client in clients:
            assert read_to_eof(client) == b""  # stdin ended: half-closed
            client.close()
    os.close(read_end)


def test_send_only_client_data_is_dropped_and_the_client_closed_after_its_payload():
    payload = Payload(stdin_fd=None, messages=(b"only this",))
    out_r, out_w = os.pipe()
    with hub(payload, RelayOptions(receive=False, output_fd=out_w)) as (_hub, port, events):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"ignored")
            assert read_to_eof(client) == b"only this"
        until(lambda: any(isinstance(e, ev.Closed) for e in events))
    os.close(out_w)
    assert os.read(out_r, 100) == b""
    os.close(out_r)
    assert [e.reason for e in events if isinstance(e, ev.Closed)] == ["sent everything"]


def test_broker_send_only_relays_nothing_between_clients():
    relay = RelayOptions(receive=False, output_fd=None)
    stdin_r, stdin_w = os.pipe()  # stdin open: it is all that reaches clients
    with hub(Payload(stdin_fd=stdin_r), relay, ListenOptions(broker=True)) as (engine, port, _events):
        one, two = clients_in(engine, port, 2)
        one.sendall(b"from one")
        until(lambda: engine.totals().received == 8)
        two.settimeout(0.2)
        with pytest.raises(TimeoutError):
            two.recv(10)
        os.write(stdin_w, b"from stdin")
        assert read_exactly(one, 10) == b"from stdin"
        assert read_exactly(two, 10) == b"from stdin"
        one.close()
        two.close()
    os.close(stdin_r)
    os.close(stdin_w)


def test_broker_reports_a_forward_as_sent_after_the_receive_and_before_the_reply():
    relay = RelayOptions(output_fd=None, emit_data=True)
    with hub(Payload(stdin_fd=None), relay, ListenOptions(broker=True)) as (engine, port, events):
        one, two = clients_in(engine, port, 2)
        two.sendall(b"ping")
        assert read_exactly(one, 4) == b"ping"
        one.sendall(b"pong")
        assert read_exactly(two, 4) == b"pong"
        data = lambda: [(e.conn, e.direction, e.data) for e in events if isinstance(e, ev.Data)]  # noqa: E731
        until(lambda: len(data()) == 4)
        assert data() == [
            (2, ev.RECEIVED, b"ping"),
            (1, ev.SENT, b"ping"),
            (1, ev.RECEIVED, b"pong"),
            (2, ev.SENT, b"pong"),
        ]
        one.close()
        two.close()
    assert sorted((e.conn, e.sent, e.received) for e in events if isinstance(e, ev.Closed)) == [(1, 4, 4), (2, 4, 4)]


def test_broker_recv_only_sends_clients_nothing():
    out_r, out_w = os.pipe()
    relay = RelayOptions(send=False, output_fd=out_w)
    with hub(Payload(stdin_fd=None), relay, ListenOptions(broker=True)) as (engine, port, _events):
        one, two = clients_in(engine, port, 2)
        one.sendall(b"from one")
        assert os.read(out_r, 100) == b"from one"
        two.settimeout(0.2)
        with pytest.raises(TimeoutError):
            two.recv(10)
        one.close()
        two.close()
    os.close(out_r)
    os.close(out_w)


def test_expect_ends_only_the_client_that_matched():
    import re

    relay = RelayOptions(output_fd=None, expect=re.compile(b"hello"))
    with hub(Payload(stdin_fd=None), relay, ListenOptions()) as (engine, port, events):
        quiet, talker = clients_in(engine, port, 2)
        talker.sendall(b"well hello there")
        until(lambda: any(isinstance(e, ev.Closed) for e in events))
        assert [e.reason for e in events if isinstance(e, ev.Closed)] == ["expected data received"]
        assert len(engine.clients) == 1
        quiet.close()
        talker.close()


def test_first_client_deadline_counts_from_the_start_whatever_is_refused_meanwhile():
    from socktool.net.access import AccessPolicy, parse_cidr
    from socktool.net.errors import TimedOut

    events: list[ev.Event] = []
    options = ListenOptions(access=AccessPolicy(allow=(parse_cidr("10.0.0.1"),)), first_client_timeout=0.5)
    engine = Hub(
        Endpoint(host="127.0.0.1", port=0), Payload(stdin_fd=None), RelayOptions(output_fd=None), options, events.append
    )
    stop = threading.Event()

    def refused_clients() -> None:
        port = listening_port(events)
        while not stop.wait(0.1):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return

    thread = threading.Thread(target=refused_clients, daemon=True)
    thread.start()
    started = time.monotonic()
    with pytest.raises(TimedOut):
        engine.run()
    stop.set()
    thread.join(5)
    assert time.monotonic() - started < 5
    assert sum(isinstance(e, ev.Rejected) for e in events) >= 1


# -- every sink takes every event ----------------------------------------------------------
ONE_OF_EACH: list[ev.Event] = [
    ev.Listening("127.0.0.1:9000"),
    ev.Listening("127.0.0.1:9443", tls_fingerprint="sha256:" + "ab" * 32),
    ev.Connected(1, "127.0.0.1:5000", "127.0.0.1:9000", True),
    ev.Tls(
        1,
        "127.0.0.1:5000",
        "TLSv1.3",
        "TLS_AES_256_GCM_SHA384",
        "h2",
        "CN=localhost",
        "CN=ca",
        ("DNS:localhost",),
        "2030-01-01T00:00:00Z",
        "sha256:" + "cd" * 32,
        "ca",
    ),
    ev.Tls(2, "127.0.0.1:5001", "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", None, "", "", (), "", "", ""),
    ev.Rejected("10.0.0.1:5000", "not in --allow"),
    ev.Data(1, "127.0.0.1:5000", ev.RECEIVED, b"text\n"),
    ev.Data(1, "127.0.0.1:5000", ev.SENT, b"\x00\xff binary"),
    ev.Moved(1, "127.0.0.1:5000", ev.SENT, 5_000_000, "stdin"),
    ev.Closed(1, "127.0.0.1:5000", "closed by peer", 5, 10, 0.5),
    ev.Datagram("127.0.0.1:5000", ev.RECEIVED, b"datagram"),
    ev.Notice("something happened"),
    ev.Notice("something went wrong", warning=True),
    ev.Stats(5, 10, 0.5, 1, 2, 2, 1),
    ev.Served("udp", "127.0.0.1:5000", 4, 19, 1, b"%H:%M", ""),
    ev.Served("tcp", "unix:(unnamed)", 0, 26, 2),
]


def test_the_sample_holds_every_event_type():
    import typing

    assert {type(event) for event in ONE_OF_EACH} == set(typing.get_args(ev.Event))


@pytest.mark.parametrize("mode", ["raw", "view", "json", "hex"])
@pytest.mark.parametrize(("hex", "numbered", "stats"), [(False, False, False), (True, True, True)])
def test_every_sink_handles_every_event_type(tmp_path, mode, hex, numbered, stats):
    from socktool.view.output import build_sink
    from socktool.view.terminal import Mode, Terminal

    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    err = os.open(tmp_path / "err", os.O_WRONLY | os.O_CREAT)
    try:
        terminal = Terminal(verbose=True, no_color=True, stdout_fd=out, stderr_fd=err)
        sink = build_sink(terminal, Mode(mode), hex=hex, numbered=numbered, stats=stats)
        for event in ONE_OF_EACH:
            sink(event)
    finally:
        os.close(out)
        os.close(err)
    assert (tmp_path / "err").read_text()  # the status lines
    if mode == "json":
        import json

        records = [json.loads(line) for line in (tmp_path / "out").read_text().splitlines()]
        assert {"listening", "connected", "rejected", "data", "closed", "stats"} <= {r.get("event") for r in records}
