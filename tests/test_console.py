"""The console's commands: the parser (pure), and the controllers driven in-process on the loop.

Engines run in a thread with a list sink and a list of answers; the tests
talk to them over loopback sockets, as clients and peers would.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from socktool import console as cmd
from socktool.console import Answer
from socktool.net import events as ev
from socktool.net.address import Endpoint
from socktool.net.console import ConsoleHub
from socktool.net.hub import ListenOptions
from socktool.net.outbound import Outbound
from socktool.net.relay import Payload, RelayOptions
from socktool.net.udp import ListenOptions as UdpOptions
from socktool.net.udp import bind
from socktool.net.udpconsole import UdpConsole
from test_engine import read_exactly, read_to_eof, until


# -- the parser ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", cmd.Say("hello")),
        ("", cmd.Say("")),
        ("//etc/passwd", cmd.Say("/etc/passwd")),
        ("/list", cmd.Simple("list")),
        ("/to 2 hello there", cmd.SendTo(2, text="hello there")),
        ("/to #2 hi", cmd.SendTo(2, text="hi")),
        ("/to 2", cmd.Focus(2)),
        ("/all", cmd.Focus(None)),
        ("/to 127.0.0.1:5000 pong", cmd.SendTo("127.0.0.1:5000", text="pong")),
        ("/to [::1]:5000", cmd.Focus("[::1]:5000")),
        ("/hex 3 00 ff", cmd.SendTo(3, data=b"\x00\xff")),
        ("/hex 3 deadBEEF", cmd.SendTo(3, data=b"\xde\xad\xbe\xef")),
        ("/file 1 /tmp/a file", cmd.SendFile(1, "/tmp/a file")),
        ("/kick 2", cmd.Kick(2)),
        ("/pause", cmd.Simple("pause")),
        ("/resume", cmd.Simple("resume")),
        ("/quit", cmd.Simple("quit")),
        ("/help", cmd.Simple("help")),
    ],
)
def test_console_lines_parse_into_commands(line, command):
    assert cmd.parse_line(line) == command


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/bogus", "unknown command /bogus"),
        ("/to", "needs a client number"),
        ("/to two hi", "not a client number"),
        ("/to \uff12 hi", "not a client number"),  # a fullwidth digit is not a number
        ("/hex 3 0g", "hex"),
        ("/hex 3", "needs the bytes"),
        ("/file 1", "needs a path"),
        ("/kick 1 2", "one client number"),
        ("/list now", "takes no arguments"),
    ],
)
def test_bad_console_lines_are_errors_with_a_reason(line, message):
    with pytest.raises(ValueError, match=message):
        cmd.parse_line(line)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ('{"to": 2, "text": "hi"}', cmd.SendTo(2, text="hi")),
        ('{"to": 2, "hex": "dead"}', cmd.SendTo(2, data=b"\xde\xad")),
        ('{"to": "127.0.0.1:9", "text": "x"}', cmd.SendTo("127.0.0.1:9", text="x")),
        ('{"text": "to all"}', cmd.Say("to all")),
        ('{"kick": 2}', cmd.Kick(2)),
        ('{"list": true}', cmd.Simple("list")),
        ('{"to": 1, "file": "/tmp/x"}', cmd.SendFile(1, "/tmp/x")),
        ('{"to": 3}', cmd.Focus(3)),
        ('{"all": true}', cmd.Focus(None)),
        ('{"pause": true}', cmd.Simple("pause")),
        ('{"quit": true}', cmd.Simple("quit")),
    ],
)
def test_json_control_objects_parse_into_the_same_commands(line, command):
    assert cmd.parse_json(line) == command


@pytest.mark.parametrize(
    "line",
    ["not json", "[1]", '{"to": true, "text": "x"}', '{"to": 1, "hex": "zz"}', '{"hex": "00"}', "{}", '{"text": 5}'],
)
def test_bad_json_control_lines_are_errors(line):
    with pytest.raises(ValueError):
        cmd.parse_json(line)


def test_text_gets_its_line_end_or_is_hex():
    assert cmd.text_encoder()(b"hi") == b"hi\n"
    assert cmd.text_encoder(crlf=True)(b"hi") == b"hi\r\n"
    assert cmd.text_encoder(line_end=False)(b"hi") == b"hi"
    assert cmd.text_encoder(hex_input=True)(b"41 42") == b"AB"


# -- tcp-listen -k with a console, in-process -------------------------------------------
class Session:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.answers: list[Answer] = []
        self._taken = 0

    def answer_of(self, kind: str) -> Answer:
        """The next answer not looked at yet, which must be of this kind."""
        until(lambda: len(self.answers) > self._taken)
        answer = self.answers[self._taken]
        self._taken += 1
        assert answer.kind == kind, answer
        return answer


@contextmanager
def console_hub(broker: bool = False) -> Iterator[tuple[ConsoleHub, Session, int]]:
    session = Session()
    hub = ConsoleHub(
        Endpoint(host="127.0.0.1", port=0),
        Payload(stdin_fd=0),  # the console's: never read by the hub
        RelayOptions(output_fd=None, emit_data=True),
        ListenOptions(keep_open=True, broker=broker),
        session.events.append,
        answer=session.answers.append,
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            hub.run()
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    until(lambda: any(isinstance(e, ev.Listening) for e in session.events))
    address = next(e for e in session.events if isinstance(e, ev.Listening)).address
    try:
        yield hub, session, int(address.rsplit(":", 1)[1])
    finally:
        hub.loop.stop()
        thread.join(10)
    assert not errors, errors


def connect_clients(hub: ConsoleHub, port: int, count: int) -> list[socket.socket]:
    clients = []
    for number in range(1, count + 1):
        clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        until(lambda number=number: number in hub.clients)  # numbered in connect order
    return clients


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


def test_lines_go_to_every_client_and_to_n_only_to_client_n():
    with console_hub() as (hub, session, port):
        one, two, three = connect_clients(hub, port, 3)
        hub.submit(cmd.Say("to everyone"))
        for client in (one, two, three):
            assert read_exactly(client, 12) == b"to everyone\n"
        hub.submit(cmd.SendTo(2, text="hello"))
        assert read_exactly(two, 6) == b"hello\n"
        hub.submit(cmd.SendTo(3, data=b"\x00\xff"))
        assert read_exactly(three, 2) == b"\x00\xff"
        hub.submit(cmd.Say("sync"))  # nothing else came before this line
        assert read_exactly(one, 5) == b"sync\n"
        assert read_exactly(two, 5) == b"sync\n"
        assert read_exactly(three, 5) == b"sync\n"
        sent = [e for e in session.events if isinstance(e, ev.Data) and e.direction == ev.SENT]
        assert (2, b"hello\n") in [(e.conn, e.data) for e in sent]


def test_focus_sends_plain_lines_to_one_client_until_all():
    with console_hub() as (hub, _, port):
        one, two = connect_clients(hub, port, 2)
        hub.submit(cmd.Focus(2))
        hub.submit(cmd.Say("just you"))
        assert read_exactly(two, 9) == b"just you\n"
        hub.submit(cmd.Focus(None))
        hub.submit(cmd.Say("all"))
        assert read_exactly(one, 4) == b"all\n"  # the focused line never reached client 1
        assert read_exactly(two, 4) == b"all\n"


def test_list_shows_each_client_with_its_counters():
    with console_hub() as (hub, session, port):
        clients = connect_clients(hub, port, 3)
        clients[0].sendall(b"12345")
        until(lambda: hub.clients[1].received == 5)
        hub.submit(cmd.Simple("list"))
        answer = session.answer_of("list")
        assert answer.text.startswith("3 clients")
        rows = answer.fields["clients"]
        assert [row["conn"] for row in rows] == [1, 2, 3]
        assert rows[0]["received"] == 5
        assert all(row["peer"].startswith("127.0.0.1:") for row in rows)


def test_kick_closes_only_that_client_and_bad_targets_are_error_answers():
    with console_hub() as (hub, session, port):
        one, two, three = connect_clients(hub, port, 3)
        hub.submit(cmd.Kick(2))
        assert read_to_eof(two) == b""
        assert session.answer_of("ok").fields == {"kicked": 2}
        hub.submit(cmd.SendTo(9, text="x"))
        assert "no client #9" in session.answer_of("error").text
        hub.submit(cmd.SendFile(1, "/nonexistent/file"))
        assert "cannot open /nonexistent/file" in session.answer_of("error").text
        hub.submit(cmd.Say("still here"))
        assert read_exactly(one, 11) == b"still here\n"
        assert read_exactly(three, 11) == b"still here\n"
        closed = [e for e in session.events if isinstance(e, ev.Closed)]
        assert [(e.conn, e.reason) for e in closed] == [(2, "kicked from the console")]


def test_pause_refuses_new_clients_while_the_connected_ones_go_on():
    with console_hub() as (hub, session, port):
        (one,) = connect_clients(hub, port, 1)
        hub.submit(cmd.Simple("pause"))
        assert session.answer_of("ok").fields == {"paused": True}
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10)
        one.sendall(b"ping")
        until(lambda: hub.clients[1].received == 4)
        hub.submit(cmd.SendTo(1, text="pong"))
        assert read_exactly(one, 5) == b"pong\n"
        hub.submit(cmd.Simple("resume"))
        assert session.answer_of("ok").fields == {"paused": False}
        two = socket.create_connection(("127.0.0.1", port), timeout=10)
        until(lambda: 2 in hub.clients)
        two.close()


def test_file_reaches_one_client_whole(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with console_hub() as (hub, session, port):
        one, two = connect_clients(hub, port, 2)
        hub.submit(cmd.SendFile(1, str(path)))
        got = read_exactly(one, len(data), timeout=30)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        answer = session.answer_of("ok")
        assert answer.fields == {"file": str(path), "to": 1, "bytes": len(data)}
        assert nothing_waiting(two)


def test_quit_ends_the_run_and_closes_every_client():
    with console_hub() as (hub, session, port):
        (one,) = connect_clients(hub, port, 1)
        hub.submit(cmd.Simple("quit"))
        assert read_to_eof(one) == b""
        until(lambda: any(isinstance(e, ev.Stats) for e in session.events))


# -- udp-listen with a console, in-process ---------------------------------------------
@contextmanager
def udp_console(reply_last: bool = False) -> Iterator[tuple[UdpConsole, Session, tuple[str, int]]]:
    session = Session()
    listener = bind(Endpoint(host="127.0.0.1", port=0))
    engine = UdpConsole(
        listener,
        UdpOptions(output_fd=None, emit=True),
        session.events.append,
        answer=session.answers.append,
        reply_last=reply_last,
    )
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        yield engine, session, listener.sock.getsockname()
    finally:
        engine.loop.stop()
        thread.join(10)
        listener.close()


def udp_peer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    return sock


def test_udp_to_n_answers_that_peer_only_and_to_host_port_works_too():
    with udp_console() as (engine, session, address):
        one, two = udp_peer(), udp_peer()
        one.sendto(b"hi from one", address)
        until(lambda: 1 in engine.peers)
        two.sendto(b"hi from two", address)
        until(lambda: 2 in engine.peers)
        engine.submit(cmd.SendTo(1, text="pong"))
        assert one.recvfrom(100) == (b"pong", address)
        host, port = two.getsockname()
        engine.submit(cmd.SendTo(f"{host}:{port}", text="pong two"))
        assert two.recvfrom(100) == (b"pong two", address)
        engine.submit(cmd.Say("to both"))
        assert one.recvfrom(100)[0] == b"to both"
        assert two.recvfrom(100)[0] == b"to both"
        engine.submit(cmd.Kick(2))
        assert session.answer_of("ok").fields == {"kicked": 2}
        engine.submit(cmd.SendTo("127.0.0.1:9", text="nobody"))
        assert "has sent to us" in session.answer_of("error").text


def test_udp_reply_last_answers_whoever_spoke_last():
    with udp_console(reply_last=True) as (engine, session, address):
        one, two = udp_peer(), udp_peer()
        engine.submit(cmd.Say("too early"))
        assert "nobody has sent" in session.answer_of("error").text
        one.sendto(b"a", address)
        until(lambda: engine.last is not None and engine.last.number == 1)
        engine.submit(cmd.Say("to one"))
        assert one.recvfrom(100)[0] == b"to one"
        two.sendto(b"b", address)
        until(lambda: engine.last is not None and engine.last.number == 2)
        engine.submit(cmd.Say("to two"))
        assert two.recvfrom(100)[0] == b"to two"
        engine.submit(cmd.Simple("list"))
        rows = session.answer_of("list").fields["peers"]
        assert [(row["peer_id"], row["datagrams"], row["sent"]) for row in rows] == [(1, 1, 6), (2, 1, 6)]
        assert nothing_waiting(one)


# -- templates in typed text -------------------------------------------------------------
def test_placeholders_are_filled_and_other_braces_are_sent_as_typed():
    import random

    assert cmd.fill_template("n={seq}", 7) == b"n=7"
    assert cmd.fill_template('{"op": "ping"} {x} {seq', 1) == b'{"op": "ping"} {x} {seq'
    assert cmd.fill_template("{hex:00 ff}{hex:41}", 1) == b"\x00\xffA"
    assert len(cmd.fill_template("{rand:16}", 1, rng=random.Random(1))) == 16
    assert cmd.fill_template("{time}", 1, now=0.25).endswith(b".250")
    with pytest.raises(ValueError):
        cmd.fill_template("{rand:100000}", 1)


def test_console_text_counts_messages_in_seq():
    with console_hub() as (hub, _, port):
        (one,) = connect_clients(hub, port, 1)
        hub.submit(cmd.Say("msg {seq}"))
        hub.submit(cmd.SendTo(1, text="msg {seq} {hex:41 42}"))
        hub.submit(cmd.Say('{"seq": 1}'))
        assert read_exactly(one, 6 + 9 + 11) == b'msg 1\nmsg 2 AB\n{"seq": 1}\n'


def test_broker_with_a_console_relays_between_clients_and_takes_commands():
    with console_hub(broker=True) as (hub, _, port):
        one, two = connect_clients(hub, port, 2)
        one.sendall(b"from one\n")
        assert read_exactly(two, 9) == b"from one\n"
        hub.submit(cmd.SendTo(1, text="only one"))
        assert read_exactly(one, 9) == b"only one\n"
        hub.submit(cmd.Say("both"))
        assert read_exactly(one, 5) == b"both\n"
        assert read_exactly(two, 5) == b"both\n"


def test_a_file_to_a_client_that_leaves_midway_is_an_error_answer(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"\0" * (32 * 1024 * 1024))
    with console_hub() as (hub, session, port):
        (one,) = connect_clients(hub, port, 1)
        one.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hub.submit(cmd.SendFile(1, str(path)))
        until(lambda: hub.clients[1].sent > 0)
        hub.submit(cmd.Kick(1))
        until(lambda: any(a.kind == "error" and "left after" in a.text for a in session.answers))
        assert not hub._files  # nothing left open or waiting
        one.close()


def test_a_client_session_sends_a_file_whole_and_one_at_a_time(tmp_path):
    """The ui's TCP client session (net/outbound.py) shares the hub's file senders."""
    data = os.urandom(16 * 1024 * 1024 + 17)  # more than loopback buffers hold while the peer does not read
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    session = Session()
    with socket.create_server(("127.0.0.1", 0)) as server:
        out = Outbound(
            Endpoint(host="127.0.0.1", port=server.getsockname()[1]),
            session.events.append,
            answer=session.answers.append,
        )
        thread = threading.Thread(target=out.run, daemon=True)
        thread.start()
        peer, _ = server.accept()
        with peer:
            until(lambda: out.conn is not None)
            out.submit(cmd.Simple("list"))
            listed = session.answer_of("list")
            assert listed.text.startswith("1 connection\n #1    127.0.0.1:"), listed.text
            assert listed.fields is not None and [row["conn"] for row in listed.fields["clients"]] == [1]
            out.submit(cmd.SendFile(1, str(path)))
            out.submit(cmd.SendFile(1, str(path)))
            assert session.answer_of("error").text == "a file is still being sent to #1"
            got = read_exactly(peer, len(data), timeout=30)
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            until(lambda: any(answer.kind == "ok" for answer in session.answers))  # after any progress answers
            done = [answer for answer in session.answers if answer.kind == "ok"]
            assert [answer.fields for answer in done] == [{"file": str(path), "to": 1, "bytes": len(data)}]
            assert len(out._files) == 0
            out.submit(cmd.Simple("quit"))
            thread.join(timeout=10)
            assert not thread.is_alive()
