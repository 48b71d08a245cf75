"""socktool ui: the Textual app driven headless by its test pilot, against real loopback peers.

Each test runs the app (App.run_test) with sessions on port 0, connects real
peers (nc, Python sockets), presses the app's keys and waits for what the
peers receive or what the app shows (a condition polled with a deadline,
never a fixed sleep). One test starts the real command in tmux and quits it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from conftest import SOCKTOOL, need
from socktool.cli.ui import session_options
from socktool.ui.sessions import Session, encode_input, parse_specs

textual = pytest.importorskip("textual")

from textual.widgets import DataTable, Input, OptionList  # noqa: E402
from textual.widgets.data_table import ColumnKey  # noqa: E402

from socktool.ui.app import SocktoolApp  # noqa: E402
from socktool.ui.trafficlog import TrafficLog  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def drive(specs: list[str], scenario: Callable[[SocktoolApp, object], Awaitable[None]], size=(100, 30)) -> SocktoolApp:
    """Run the app headless with these sessions, play `scenario(app, pilot)`, quit with ctrl+q."""
    app = SocktoolApp(parse_specs(specs, parse_options=session_options), parse_options=session_options)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            try:
                await scenario(app, pilot)
                await pilot.press("ctrl+q")
            finally:
                app.stop_all()

    asyncio.run(main())
    return app


async def until(pilot, condition: Callable[[], object], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def listening_port(app: SocktoolApp, pilot, index: int = 0) -> int:
    session = app.sessions[index]
    await until(pilot, lambda: session.state == "listening", "the session to listen")
    return int(session.address.rsplit(":", 1)[1])


async def new_session(app: SocktoolApp, pilot, words: str, what: str = "a session") -> Session:
    """Open a session with ctrl+n and these words at its prompt; wait for it in the list and return it."""
    count = len(app.sessions) + 1
    await pilot.press("ctrl+n")
    app.query_one("#prompt", Input).value = words
    await pilot.press("enter")
    await until(pilot, lambda: len(app.sessions) == count, what)
    return app.sessions[-1]


def log_text(app: SocktoolApp) -> str:
    return app.query_one("#log", TrafficLog).text()


def status_text(app: SocktoolApp) -> str:
    """The status bar as drawn: the app redraws it on its clock, after the engine's answer is in."""
    return str(app.query_one("#status").render())


async def choose_client(app: SocktoolApp, pilot, number: int | None) -> None:
    """Pick a row of the client list, as the cursor keys do."""
    table = app.query_one("#clients", DataTable)
    key = "all" if number is None else str(number)
    await until(pilot, lambda: key in app._client_keys, f"client {key} in the list")
    table.move_cursor(row=app._client_keys.index(key))
    await until(pilot, lambda: app.target() == number, f"client {key} chosen")


async def type_and_send(pilot, text: str) -> None:
    """Fill the send box and press Enter (typing key by key costs the pilot ~0.15 s a key)."""
    pilot.app.query_one("#send", Input).value = text
    await pilot.press("enter")


class Peer:
    """A TCP client on loopback whose received bytes are collected in the background."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._collect(self.sock.recv)

    def _collect(self, read: Callable[[int], bytes]) -> None:
        """Append what `read` returns to `received` in a thread; set `closed` at its end or error."""
        self.received = bytearray()
        self.closed = threading.Event()

        def run() -> None:
            while True:
                try:
                    chunk = read(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closed.set()
                    return
                self.received += chunk

        threading.Thread(target=run, daemon=True).start()

    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


async def accepted_peer(
    app: SocktoolApp, pilot, peers: list[Peer], port: int, what: str = "the client in the list"
) -> Peer:
    """Connect a Peer to the first session's `port` and wait until the session lists it as one more client."""
    session = app.sessions[0]
    count = len(session.clients) + 1
    peer = Peer(port)
    peers.append(peer)
    await until(pilot, lambda: len(session.clients) == count, what)
    return peer


def drive_closing(peers: list[Peer], specs: list[str], scenario, size=(100, 30)) -> SocktoolApp:
    """drive(), then close the peers the scenario opened, also when it fails."""
    try:
        return drive(specs, scenario, size)
    finally:
        for peer in peers:
            peer.close()


class NcPeer(Peer):
    """nc as the client: what it receives is its stdout; it exits when the server closes
    (its stdin is at EOF from the start, and without -N it does not half-close for it)."""

    def __init__(self, port: int):
        need("nc")
        self._start(["nc", "127.0.0.1", str(port)], subprocess.DEVNULL)

    def _start(self, argv: list[str], stdin: int) -> None:
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self._collect(self.proc.stdout.read1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_two_clients_listed_one_gets_what_is_sent_to_it_and_kick_closes_exactly_one():
    peers: list[Peer] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot)
        session = app.sessions[0]
        for count in (1, 2):  # one after the other: the first to connect is client #1
            peers.append(NcPeer(port))
            await until(pilot, lambda n=count: len(session.clients) == n, f"{count} client(s) in the list")
        first, second = (row.number for row in session.clients)
        await choose_client(app, pilot, first)
        await type_and_send(pilot, "to-first")
        await until(pilot, lambda: peers[0].received == b"to-first\n", "the first client to get its line")
        await choose_client(app, pilot, second)
        await type_and_send(pilot, "to-second")
        await until(pilot, lambda: len(peers[1].received) >= len(b"to-second\n"), "the second client to get a line")
        assert peers[1].received == b"to-second\n"  # nothing of the first client's line came before it
        await choose_client(app, pilot, first)
        await pilot.press("ctrl+k")
        await until(pilot, peers[0].closed.is_set, "the kicked client to be closed")
        await until(pilot, lambda: [row.number for row in session.clients] == [second], "one client left")
        assert not peers[1].closed.is_set()
        await choose_client(app, pilot, None)
        await type_and_send(pilot, "to-all")
        await until(pilot, lambda: peers[1].received.endswith(b"to-all\n"), "the client left to get the line")
        await until(pilot, lambda: "kicked" in log_text(app), "the kick's answer in the log")

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0"], scenario)


def test_mouse_picks_the_client_and_the_session():
    peers: list[Peer] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot)
        peers.append(Peer(port))
        await until(pilot, lambda: app._client_keys == ("all", "1"), "the client in the list")
        await pilot.click("#clients", offset=(2, 2))  # the header, "*" (every client), then client #1
        await until(pilot, lambda: app.target() == 1, "client #1 chosen by a click")
        await pilot.click("#clients", offset=(2, 1))
        await until(pilot, lambda: app.target() is None, "every client chosen by a click")
        await pilot.click("#sessions", offset=(3, 5))  # the second session's first line (a label is 4 lines)
        await until(pilot, lambda: app.current is app.sessions[1], "the second session chosen by a click")

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0", "udp-listen", "127.0.0.1:0"], scenario)


def test_hex_toggle_shows_the_dump_of_what_came():
    peers: list[Peer] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        peers.append(Peer(await listening_port(app, pilot)))
        peers[0].sock.sendall(b"\x00\x01AB\xff")
        await until(pilot, lambda: "\\0\\x01AB\\xff" in log_text(app), "the escaped text in the log")
        await pilot.press("ctrl+x")
        await until(pilot, lambda: "00000000  00 01 41 42" in log_text(app), "the hex dump")
        assert "|..AB.|" in log_text(app)
        assert "\\0\\x01AB" not in log_text(app)
        await pilot.press("ctrl+x")
        await until(pilot, lambda: "\\0\\x01AB\\xff" in log_text(app), "the text again")

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0"], scenario)


def test_hex_send_box_is_validated_as_typed_and_sends_exactly_those_bytes():
    peers: list[Peer] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        await accepted_peer(app, pilot, peers, await listening_port(app, pilot))
        await pilot.press("ctrl+e")
        box = app.query_one("#send", Input)
        await pilot.press(*"de a")
        await until(pilot, lambda: box.has_class("-invalid"), "the half byte marked invalid")
        await pilot.press("enter")
        await until(pilot, lambda: "not sent" in log_text(app), "the refusal in the log")
        await pilot.press("d", " ", *"0d0a")
        await until(pilot, lambda: not box.has_class("-invalid"), "whole bytes accepted")
        await pilot.press("enter")
        await until(pilot, lambda: peers[0].received == b"\xde\xad\r\n", "the exact bytes")

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0"], scenario)


def test_auto_send_every_100ms_five_times_sends_five_messages():
    peers: list[Peer] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        await accepted_peer(app, pilot, peers, await listening_port(app, pilot))
        app.query_one("#send", Input).value = "tick"
        await pilot.press("ctrl+t")
        assert str(app.query_one("#prompt-label").render()) == "auto-send every MS [COUNT]:"  # as written
        prompt = app.query_one("#prompt", Input)
        prompt.value = "100 5"
        await pilot.press("enter")
        await until(pilot, lambda: app.view is not None and app.view.auto is None, "the auto-send to end", 15)
        await until(pilot, lambda: peers[0].received.count(b"tick\n") == 5, "five messages")
        app.query_one("#send", Input).value = "end"
        await pilot.press("enter")
        await until(pilot, lambda: peers[0].received.endswith(b"end\n"), "the last line")
        assert peers[0].received == b"tick\n" * 5 + b"end\n"

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0"], scenario)


def test_udp_session_answers_only_the_selected_peer():
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]

    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot)
        for index, sock in enumerate(socks):
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(10)
            sock.sendto(f"hello {index}".encode(), ("127.0.0.1", port))
        session = app.sessions[0]
        await until(pilot, lambda: len(session.clients) == 2, "two peers seen")
        second = next(row.number for row in session.clients if row.peer.endswith(f":{socks[1].getsockname()[1]}"))
        await choose_client(app, pilot, second)
        await pilot.press("ctrl+l", "ctrl+l")  # LF -> CRLF -> none: a datagram without a line end
        await type_and_send(pilot, "pong")
        # Received in a worker thread: a blocking recv here would stop the app's loop that sends.
        assert await asyncio.to_thread(socks[1].recv, 100) == b"pong"
        await choose_client(app, pilot, None)
        await type_and_send(pilot, "all")
        assert await asyncio.to_thread(socks[0].recv, 100) == b"all"  # the first datagram the other peer gets
        assert await asyncio.to_thread(socks[1].recv, 100) == b"all"

    try:
        drive(["udp-listen", "127.0.0.1:0"], scenario)
    finally:
        for sock in socks:
            sock.close()


def test_client_session_sends_receives_and_records_the_jsonl_of_record(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]
    recording = tmp_path / "session.jsonl"
    accepted: list[socket.socket] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        session = app.sessions[0]
        await until(pilot, lambda: session.state == "connected", "the connection")
        await pilot.press("ctrl+r")
        app.query_one("#prompt", Input).value = str(recording)
        await pilot.press("enter")
        await until(pilot, lambda: session.recording is not None, "the recording to start")
        while True:  # another test's port scan may knock too: take the session's connection
            conn, who = server.accept()
            conn.settimeout(10)
            accepted.append(conn)
            if f"{who[0]}:{who[1]}" == session.local:
                break
        conn.sendall(b"hi\x00")
        await until(pilot, lambda: "hi\\0" in log_text(app), "what the server sent, escaped")
        await type_and_send(pilot, "yo")
        assert await asyncio.to_thread(conn.recv, 100) == b"yo\n"
        await pilot.press("ctrl+r")  # stop recording
        await until(pilot, lambda: session.recording is None, "the recording to stop")
        await pilot.press("ctrl+k")  # close the connection
        await until(pilot, lambda: session.state == "stopped", "the session to end with its connection")
        assert await asyncio.to_thread(conn.recv, 100) == b""

    try:
        drive(["tcp-connect", f"127.0.0.1:{port}"], scenario)
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    records = [json.loads(line) for line in recording.read_text().splitlines()]
    data = [(r["direction"], bytes.fromhex(r["hex"])) for r in records if r.get("event") == "data"]
    assert data == [("received", b"hi\x00"), ("sent", b"yo\n")]
    assert all("ts" in r for r in records)


def test_sessions_are_created_stopped_started_and_closed_from_the_keyboard():
    async def scenario(app: SocktoolApp, pilot) -> None:
        session = await new_session(app, pilot, "tcp-listen 127.0.0.1:0")
        port = await listening_port(app, pilot)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: session.state == "stopped" and not session.running, "the session to stop")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        await pilot.press("ctrl+s")
        await listening_port(app, pilot)
        await pilot.press("ctrl+n")
        app.query_one("#prompt", Input).value = "tcp-listen nonsense"
        await pilot.press("enter")
        await until(pilot, lambda: "expected" in log_text(app), "the address refused in the log")
        assert len(app.sessions) == 1
        await pilot.press("ctrl+w")
        await until(pilot, lambda: not app.sessions and not session.running, "the session to close")

    drive([], scenario)


class ToolPeer(NcPeer):
    """A socktool command as the client: its stdin is a pipe, what it receives its stdout."""

    def __init__(self, *args: str):
        self._start([*SOCKTOOL, *args], subprocess.PIPE)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()


def test_tls_server_session_made_with_ctrl_n_is_reached_by_tcp_connect_tls_pin():
    peers: list[Peer] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        session = await new_session(app, pilot, "tcp-listen 127.0.0.1:0 --tls")
        port = await listening_port(app, pilot)
        assert session.fingerprint.startswith("sha256:")  # an ephemeral certificate, as tcp-listen --tls makes
        flat = lambda: "".join(log_text(app).split())  # noqa: E731  (a long line is wrapped)
        await until(pilot, lambda: session.fingerprint in flat(), "the fingerprint in the log")
        await until(pilot, lambda: session.fingerprint in status_text(app), "the fingerprint in the status bar")
        peers.append(ToolPeer("tcp-connect", "--tls", "--pin", session.fingerprint, f"127.0.0.1:{port}"))
        await until(pilot, lambda: len(session.clients) == 1, "the TLS client in the list")
        peers[0].write(b"over tls\n")
        await until(pilot, lambda: "over tls" in log_text(app), "the client's line, decrypted, in the log")
        await type_and_send(pilot, "back")
        await until(pilot, lambda: peers[0].received == b"back\n", "the client to get the answer")

    drive_closing(peers, [], scenario)


def test_tls_client_session_with_pin_talks_to_a_tls_server_and_a_wrong_pin_fails():
    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot)
        server = app.sessions[0]
        await until(pilot, lambda: server.fingerprint, "the server's fingerprint")
        wrong = "sha256:" + "00" * 32
        await new_session(app, pilot, f"tcp-connect 127.0.0.1:{port} --tls --pin {wrong}", "the first client session")
        await until(pilot, lambda: not app.sessions[1].running, "the wrong pin to end the session")
        await until(pilot, lambda: "pin mismatch" in log_text(app), "the pin mismatch in the log")
        assert app.sessions[1].bytes_out == 0
        client = await new_session(
            app, pilot, f"tcp-connect 127.0.0.1:{port} --tls --pin {server.fingerprint}", "the client session"
        )
        await until(pilot, lambda: client.state == "connected" and len(server.clients) == 1, "the TLS connection")
        await type_and_send(pilot, "secret")
        await until(pilot, lambda: server.bytes_in == 7, "the server session to get the line")
        await until(pilot, lambda: client.bytes_out == 7, "the client session to count what it sent")

    drive(["tcp-listen", "127.0.0.1:0", "--tls"], scenario)


def test_framed_session_logs_one_record_per_message_and_sends_the_box_as_one():
    peers: list[Peer] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot)
        session = app.sessions[0]
        await accepted_peer(app, pilot, peers, port)
        peers[0].sock.sendall(b"\x00\x05hello\x00\x05world\x00")  # two messages and a part of a third
        # The counters are two assignments in the session's thread: wait for both.
        await until(pilot, lambda: session.messages_in == 2 and session.bytes_in == 10, "two messages, 10 bytes")
        await until(pilot, lambda: "hello" in log_text(app) and "world" in log_text(app), "both messages in the log")
        await type_and_send(pilot, "hi")
        await until(pilot, lambda: peers[0].received == b"\x00\x02hi", "one framed message, no line end")

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0", "--frame", "len16"], scenario)


def test_session_options_are_read_by_the_commands_parser_and_the_others_refused():
    (spec,) = parse_specs(["tcp-connect", "127.0.0.1:9", "--frame", "crlf"], parse_options=session_options)
    assert spec.framing is not None and spec.framing.encode(b"x") == b"x\r\n"
    assert str(spec) == "tcp-connect 127.0.0.1:9 --frame crlf"
    for words, error in (
        (["tcp-listen", "0", "--exec", "cat"], "--exec is not for a ui session"),
        (["tcp-listen", "0", "--cert", "c.pem"], "--cert needs --tls"),
        (["tcp-listen", "0", "--frame", "nonsense"], "is not a framing"),
        (["udp-listen", "0", "--frame", "len32"], "No such option: --frame"),
        (["tcp-listen", "0", "--tls"], None),
    ):
        if error is None:
            assert parse_specs(words, parse_options=session_options)[0].tls is not None
            continue
        with pytest.raises(ValueError, match=re.escape(error)):
            parse_specs(words, parse_options=session_options)
    with pytest.raises(ValueError, match="options are not read here"):
        parse_specs(["tcp-listen", "0", "--tls"])
    result = subprocess.run(
        [*SOCKTOOL, "ui", "tcp-listen", "0", "--exec", "cat"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 2
    assert "--exec is not for a ui session" in result.stderr


def test_client_session_tls_cert_key_and_alpn_reach_a_server_that_requires_a_client_certificate(tmp_path):
    from tls_helpers import SServer, make_pki

    pki = make_pki(tmp_path)
    tls = ["--tls", "--ca", str(pki.ca_file), "--alpn", "h2"]
    mine = ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    # s_server serves one connection at a time: the session without a certificate first, then the one with it.
    with SServer(pki.cert, pki.key, "-Verify", "1", "-CAfile", str(pki.ca_file), "-alpn", "h2") as server:
        address = f"127.0.0.1:{server.port}"

        async def scenario(app: SocktoolApp, pilot) -> None:
            without = app.sessions[0]
            await until(pilot, lambda: not without.running, "the session without a certificate to end")
            await until(pilot, lambda: "certificate_required" in log_text(app), "the server's alert in the log")
            with_cert = await new_session(
                app, pilot, shlex.join(["tcp-connect", address, *tls, *mine]), "the session with a certificate"
            )
            await until(pilot, lambda: "alpn h2" in log_text(app), "the agreed ALPN in the session's log")
            await pilot.press("ctrl+l")  # CRLF: an HTTP request line, then the blank line
            await type_and_send(pilot, "GET / HTTP/1.0")
            await type_and_send(pilot, "")
            await until(pilot, lambda: "Client certificate" in log_text(app), "s_server's page naming our certificate")
            assert with_cert.state != "failed"

        drive(["tcp-connect", address, *tls], scenario)


def test_server_session_max_clients_allow_and_deny_turn_clients_away():
    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot)
        session = app.sessions[0]

        def from_(source: str) -> socket.socket:
            return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))

        async def refused(sock: socket.socket) -> None:
            with sock:  # turned away: closed before a byte is read
                assert await asyncio.to_thread(sock.recv, 10) == b""

        await refused(from_("127.0.0.3"))
        await until(pilot, lambda: "denied by --deny" in log_text(app), "the --deny refusal in the log")
        with from_("127.0.0.1") as first:
            await until(pilot, lambda: len(session.clients) == 1, "the allowed client in the list")
            await refused(from_("127.0.0.2"))
            await until(pilot, lambda: "--max-clients 1 reached" in log_text(app), "the --max-clients refusal")
            assert [row.peer.split(":")[0] for row in session.clients] == ["127.0.0.1"]
            first.sendall(b"still in\n")
            await until(pilot, lambda: "still in" in log_text(app), "the first client's line")
        second = ["tcp-listen", "127.0.0.1:0", "--allow", "127.0.0.2"]
        app.add_session(parse_specs(second, parse_options=session_options)[0])
        port = await listening_port(app, pilot, 1)
        await refused(from_("127.0.0.1"))
        await until(pilot, lambda: "not in --allow" in log_text(app), "the --allow refusal")
        with from_("127.0.0.2"):
            await until(pilot, lambda: len(app.sessions[1].clients) == 1, "the allowed client in the second session")

    drive(["tcp-listen", "127.0.0.1:0", "--max-clients", "1", "--deny", "127.0.0.3"], scenario)


def test_server_session_access_options_are_checked_as_tcp_listen_checks_them():
    for words, error in (
        (["tcp-listen", "unix:/tmp/socktool-ui-never", "--allow", "127.0.0.1"], "a unix: socket's clients have none"),
        (["tcp-listen", "0", "--max-clients", "0"], "--max-clients"),
        (["tcp-listen", "0", "--deny", "nonsense"], "is not an IP address or CIDR block"),
        (["tcp-connect", "127.0.0.1:9", "--max-clients", "2"], "No such option: --max-clients"),
        (["tcp-listen", "0", "--alpn", "h2"], "--alpn is not for a ui session"),
        (["tcp-connect", "127.0.0.1:9", "--cert", "c.pem"], "--cert needs --tls"),
    ):
        with pytest.raises(ValueError, match=re.escape(error)):
            parse_specs(words, parse_options=session_options)
    (spec,) = parse_specs(
        ["tcp-listen", "0", "--max-clients", "3", "--allow", "10.0.0.0/8"], parse_options=session_options
    )
    assert spec.max_clients == 3 and [str(net) for net in spec.access.allow] == ["10.0.0.0/8"]


def test_pause_refuses_new_clients_while_the_connected_one_keeps_talking():
    peers: list[Peer] = []

    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot)
        session = app.sessions[0]
        await accepted_peer(app, pilot, peers, port)
        await pilot.press("ctrl+g")
        await until(pilot, lambda: session.paused, "the session to be paused")
        await until(pilot, lambda: "paused" in status_text(app), "the status bar to say paused")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        peers[0].sock.sendall(b"still here\n")
        await until(pilot, lambda: "still here" in log_text(app), "the connected client's line in the log")
        await type_and_send(pilot, "answer")
        await until(pilot, lambda: peers[0].received == b"answer\n", "the connected client to get the answer")
        await pilot.press("ctrl+g")
        await until(pilot, lambda: not session.paused, "the session to accept again")
        await until(pilot, lambda: "paused" not in status_text(app), "the status bar to drop paused")
        await accepted_peer(app, pilot, peers, port, "the new client accepted after resume")

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0"], scenario)


def test_pause_is_for_a_server_session_only():
    async def scenario(app: SocktoolApp, pilot) -> None:
        await listening_port(app, pilot)
        await pilot.press("ctrl+g")
        await until(pilot, lambda: "pause applies to a TCP server session" in log_text(app), "the refusal")
        assert not app.sessions[0].paused

    drive(["udp-listen", "127.0.0.1:0"], scenario)


@pytest.mark.parametrize("option", ["-v", "-q", "--debug"])
def test_status_and_debug_options_are_refused(option):
    """The ui draws everything on its screen: -v, -q and --debug have nothing to change, so they are refused."""
    result = subprocess.run([*SOCKTOOL, "ui", option, "tcp-listen", "0"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("socktool: error: ")
    assert option in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_search_shows_only_matching_records_and_file_is_sent(tmp_path):
    peers: list[Peer] = []
    payload = bytes(range(256)) * 1000
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)

    async def scenario(app: SocktoolApp, pilot) -> None:
        peers.append(Peer(await listening_port(app, pilot)))
        peers[0].sock.sendall(b"apple\n")
        await until(pilot, lambda: "apple" in log_text(app), "the first line")
        peers[0].sock.sendall(b"banana\n")
        await until(pilot, lambda: "banana" in log_text(app), "the second line")
        await pilot.press("ctrl+f")
        app.query_one("#prompt", Input).value = "banan"
        await pilot.press("enter")
        await until(pilot, lambda: "apple" not in log_text(app), "the search to hide the other line")
        assert "banana" in log_text(app)
        await pilot.press("ctrl+o")
        app.query_one("#prompt", Input).value = str(path)
        await pilot.press("enter")
        await until(pilot, lambda: len(peers[0].received) == len(payload), "the whole file")
        assert bytes(peers[0].received) == payload

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0"], scenario)


def test_a_flood_is_one_log_write_a_tick_and_only_the_records_in_sight_are_drawn():
    """10,000 datagrams reported at once: one batch for the log, a screenful drawn, memory bounded."""
    from socktool.net import events as ev
    from socktool.ui.sessions import PENDING
    from socktool.ui.trafficlog import LOG_RECORDS

    async def scenario(app: SocktoolApp, pilot) -> None:
        await listening_port(app, pilot)
        session = app.sessions[0]
        log = app.query_one("#log", TrafficLog)
        await until(pilot, lambda: not session.events, "the listening notice taken")
        writes, drawn = log.writes, log.drawn
        for number in range(10_000):  # in the app's thread: no tick runs until they are all queued
            session.sink(ev.Datagram("127.0.0.1:9", ev.RECEIVED, b"message %05d" % number))
        assert session.messages_in == 10_000 and len(session.events) == PENDING
        await until(pilot, lambda: log.writes > writes, "the tick to take the batch")
        assert log.writes == writes + 1
        assert len(log.records) == LOG_RECORDS and log.records[-1].data == b"message 09999"
        on_screen = lambda: "message&#160;09999" in app.export_screenshot()  # noqa: E731
        await until(pilot, on_screen, "the newest record on the screen")
        assert log.drawn - drawn <= log.size.height  # a record is a line at least: what is in sight, no more

    drive(["udp-listen", "127.0.0.1:0"], scenario, size=(80, 24))


def test_labels_count_in_the_singular_and_udp_sends_to_peers_and_client_columns_fit_their_values(monkeypatch):
    monkeypatch.setattr("socktool.ui.app.format_duration", lambda seconds: "12.5s")  # wider than its heading
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def label(app: SocktoolApp, index: int) -> str:
        return str(app.query_one("#sessions", OptionList).get_option_at_index(index).prompt)

    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot, 0)
        udp_port = await listening_port(app, pilot, 1)
        app.add_session(parse_specs(["tcp-connect", f"127.0.0.1:{port}"])[0])
        peer.sendto(b"hi", ("127.0.0.1", udp_port))
        await until(pilot, lambda: "1 client\n" in label(app, 0), "the server's one client", 15)
        await until(pilot, lambda: "1 peer\n" in label(app, 1), "the UDP socket's one peer")
        await until(pilot, lambda: "1 connection\n" in label(app, 2), "the client session's connection")
        app.select(app.sessions[0])
        table = app.query_one("#clients", DataTable)

        def age_fits() -> bool:
            return (
                "1" in app._client_keys
                and table.get_cell("1", "age") == "12.5s"
                and table.columns[ColumnKey("age")].content_width >= len("12.5s")
            )

        await until(pilot, age_fits, "the age column as wide as its value")
        app.select(app.sessions[1])
        await until(pilot, lambda: "to every peer" in str(app.query_one("#sendbar").render()), "a UDP target")

    try:
        drive(["tcp-listen", "127.0.0.1:0", "udp-listen", "127.0.0.1:0"], scenario)
    finally:
        peer.close()


def test_log_scrolls_back_stays_there_while_traffic_comes_and_follows_again_at_the_end():
    from socktool.net import events as ev

    async def scenario(app: SocktoolApp, pilot) -> None:
        await listening_port(app, pilot)
        session = app.sessions[0]
        log = app.query_one("#log", TrafficLog)

        def feed(first: int, count: int) -> None:
            for number in range(first, first + count):
                session.sink(ev.Datagram("127.0.0.1:9", ev.RECEIVED, b"line %03d" % number))

        def shown() -> str:
            return "".join(app.export_screenshot().split("&#160;"))

        feed(0, 100)
        await until(pilot, lambda: "line&#160;099" in app.export_screenshot(), "the newest line on the screen")
        log.focus()
        await pilot.press("home")  # the log's own keys, once it has the focus (Tab reaches it too)
        await until(pilot, lambda: "line000" in shown() and log.scroll_offset.y == 0, "the oldest line")
        feed(100, 5)
        await until(pilot, lambda: len(log.records) == 106, "the new records in the log")
        await pilot.pause(0.3)
        assert log.scroll_offset.y == 0 and "line104" not in shown()  # the view stays where it was scrolled
        await pilot.press("end")
        await until(pilot, lambda: "line104" in shown(), "the newest line again")
        feed(105, 3)
        await until(pilot, lambda: "line107" in shown(), "new lines followed at the end")

    drive(["udp-listen", "127.0.0.1:0"], scenario, size=(80, 24))


def test_log_wraps_long_lines_at_its_width_and_again_when_the_terminal_is_resized():
    from socktool.net import events as ev

    long = b"x" * 70 + b"END"  # wider than the log at 80 columns, narrower at 160

    async def scenario(app: SocktoolApp, pilot) -> None:
        await listening_port(app, pilot)
        log = app.query_one("#log", TrafficLog)
        app.sessions[0].sink(ev.Datagram("127.0.0.1:9", ev.RECEIVED, long))
        app.sessions[0].sink(ev.Datagram("127.0.0.1:9", ev.RECEIVED, bytes(range(32))))
        await until(pilot, lambda: len(log.records) == 3, "the records in the log")
        await pilot.press("ctrl+x")  # the hex dump: its bytes a line follow the width
        await until(pilot, lambda: "00000008  08 09 0a 0b" in log.text(), "8 bytes a line at 80 columns")
        await pilot.press("ctrl+x")
        await until(pilot, lambda: "END" in app.export_screenshot(), "the wrapped line's end on the screen")
        narrow = log.virtual_size.height
        await pilot.resize_terminal(160, 48)
        await until(pilot, lambda: log.virtual_size.height < narrow, "fewer rows at 160 columns")
        await until(pilot, lambda: "x" * 70 + "END" in app.export_screenshot(), "the whole line on a row")
        await pilot.press("ctrl+x")
        await until(pilot, lambda: "00000010  10 11 12 13" in log.text(), "16 bytes a line at 160 columns")
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: "00000008  08 09 0a 0b" in log.text(), "8 bytes a line again")
        await until(pilot, lambda: "|........|" in app.export_screenshot(), "the narrow dump drawn")

    drive(["udp-listen", "127.0.0.1:0"], scenario, size=(80, 24))


def test_client_list_of_a_udp_socket_many_peers_sent_to_shows_the_first_rows_and_says_how_many(monkeypatch):
    monkeypatch.setattr("socktool.ui.app.CLIENT_ROWS", 5)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(12)]

    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot)
        for sock in socks:
            sock.sendto(b"hi", ("127.0.0.1", port))
        await until(pilot, lambda: len(app.sessions[0].clients) == 12, "the 12 peers listed by the engine")
        heading = lambda: str(app.query_one("#clients-heading").render())  # noqa: E731
        await until(pilot, lambda: heading() == "Peers (the first 5 of 12)", "the heading to say how many")
        assert app._client_keys == ("all", "1", "2", "3", "4", "5")
        assert app.query_one("#clients", DataTable).row_count == 6

    try:
        drive(["udp-listen", "127.0.0.1:0"], scenario)
    finally:
        for sock in socks:
            sock.close()


def test_send_box_bytes():
    assert encode_input("hi", hex_input=False, line_end="CRLF") == b"hi\r\n"
    assert encode_input("hi", hex_input=False, line_end="none") == b"hi"
    assert encode_input("de ad", hex_input=True, line_end="LF") == b"\xde\xad"
    with pytest.raises(ValueError):
        encode_input("d", hex_input=True, line_end="LF")


def test_session_list_on_the_command_line_is_checked():
    with pytest.raises(ValueError, match="needs an address"):
        parse_specs(["tcp-listen"])
    with pytest.raises(ValueError, match="unknown session kind"):
        parse_specs(["tcp-serve", "80"])
    specs = parse_specs(["tcp-listen", "8898", "udp-listen", "9999", "tcp-connect", "localhost:80"])
    assert [str(spec) for spec in specs] == ["tcp-listen 8898", "udp-listen 9999", "tcp-connect localhost:80"]


def test_other_commands_and_ui_help_do_not_import_textual():
    code = (
        "import sys, socktool.cli\n"
        "from socktool.cli.app import build_app\n"
        "build_app(['ui']); build_app(['tcp-connect'])\n"
        "print('textual' in sys.modules, 'rich' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.stdout.strip() == "False False", result.stderr


def test_family_flags_apply_to_the_sessions():
    async def scenario(app: SocktoolApp, pilot) -> None:
        await until(pilot, lambda: app.sessions[0].state == "failed", "the IPv4 address refused under -6")
        notes = lambda: " ".join(record.note for record in app.views[1].records)  # noqa: E731
        await until(pilot, lambda: "127.0.0.1" in notes(), "the reason in the session's log")
        assert app.sessions[1].state != "failed"
        await listening_port(app, pilot, 1)
        assert app.sessions[1].address.startswith("[::1]:")

    app = SocktoolApp(parse_specs(["tcp-listen", "127.0.0.1:0", "udp-listen", "[::1]:0"], socket.AF_INET6))

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            try:
                await scenario(app, pilot)
            finally:
                app.stop_all()

    asyncio.run(main())


GREYS = {0, 7, 8, 15, 16, 231, *range(232, 256)}


def colours(screen: str) -> list[bool]:
    """For each colour an SGR sequence sets: whether it is a grey."""
    found = []
    for params in re.findall(r"\x1b\[([0-9;:]*)m", screen):
        codes = [int(code) for code in re.split("[;:]", params) if code]
        index = 0
        while index < len(codes):
            if codes[index] in (38, 48) and index + 2 < len(codes) and codes[index + 1] == 5:
                found.append(codes[index + 2] in GREYS)
                index += 3
            elif codes[index] in (38, 48) and index + 4 < len(codes) and codes[index + 1] == 2:
                found.append(len(set(codes[index + 2 : index + 5])) == 1)
                index += 5
            else:
                found.append(
                    not (30 <= codes[index] <= 37 or 90 <= codes[index] <= 97) or codes[index] in (30, 37, 90, 97)
                )
                index += 1
    return found


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("colour", ["", "--no-color"])
def test_ui_starts_in_a_terminal_draws_and_quits_on_ctrl_q(tmp_path, colour):
    server = f"socktool-ui-test-{id(tmp_path)}"
    tmux = ["tmux", "-L", server, "-f", "/dev/null"]
    # NO_COLOR from the environment would make both runs grey: the colour comes from the option alone.
    ui = " ".join(
        ["env", "-u", "NO_COLOR", *SOCKTOOL, "ui", *([colour] if colour else []), "tcp-listen", "127.0.0.1:0"]
    )
    # The exit status goes to a file: tmux does not always record a dead pane's status (seen: pane_dead 1 with
    # an empty pane_dead_status in about one run of four), so the pane is not the witness of how the ui exited.
    status = tmp_path / "status"
    command = shlex.join(["sh", "-c", f'{ui}; echo "$?" > {shlex.quote(str(status))}'])
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", command], check=True, timeout=10)
    try:
        subprocess.run([*tmux, "set-option", "-g", "remain-on-exit", "on"], check=True, timeout=10)

        def pane() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True, timeout=10).stdout

        def show(fmt: str) -> str:
            return subprocess.run(
                [*tmux, "display-message", "-p", fmt], capture_output=True, text=True, timeout=10
            ).stdout.strip()

        deadline = time.monotonic() + 20
        while not ("listening on 127.0.0.1:" in pane() and "^q Quit" in pane()):  # the log and the footer
            assert time.monotonic() < deadline, pane()
            time.sleep(0.05)
        drawn = colours(subprocess.run([*tmux, "capture-pane", "-e", "-p"], capture_output=True, text=True).stdout)
        if colour:
            assert drawn and all(drawn)  # greys only
        else:
            assert not all(drawn)
        subprocess.run([*tmux, "send-keys", "C-q"], check=True, timeout=10)
        deadline = time.monotonic() + 30
        while not (status.exists() and status.read_text().endswith("\n")):  # the ui has exited
            assert time.monotonic() < deadline, pane()
            time.sleep(0.05)
        assert status.read_text() == "0\n"
        assert show("#{alternate_on}") == "0"  # the screen is the shell's again
        assert "listening on" not in pane()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
