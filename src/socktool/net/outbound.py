"""One dialled TCP (or unix stream) connection on the loop, driven by console commands.

The ui's "TCP client" session: what tcp-listen -k's console hub is for a
server, this is for one outgoing connection, with the same commands and
answers (socktool.console), so a controller drives a client and a server
alike.

Rules:
- `run()` connects (net/tcp.connect: every address the name resolves to,
  the connect timeout), then serves the connection on its own loop until
  the peer closes, a `kick`/`quit` closes it, or `stop`;
- the connection is client #1: `/to 1`, `/hex 1`, `/file 1`, `/kick 1`
  name it, and plain text goes to it;
- what arrives and what is sent are reported as Data events (RECEIVED,
  SENT), with Connected and Closed around them and Stats at the end;
- the peer's EOF closes the connection once what we wrote is sent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from socktool import console as cmd
from socktool.console import Answer
from socktool.net import events as ev
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.console import Commanded, FileSenders, list_entry
from socktool.net.errors import NetworkError
from socktool.net.loop import Connection, Handler, Loop, SocketTransport, Transport
from socktool.net.tcp import SocketOptions, connect

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.tlsconfig import ClientTls


class Outbound(Commanded, Handler):
    """Connects to `endpoint` and relays between the connection and console commands."""

    def __init__(
        self,
        endpoint: Endpoint,
        sink: ev.Sink = ev.ignore,
        *,
        answer: Callable[[Answer], None],
        encode: Callable[[bytes], bytes] = bytes,
        family: int = socket.AF_UNSPEC,
        timeout: float | None = 10.0,
        options: SocketOptions = SocketOptions(),
        tls: ClientTls | None = None,
    ):
        self.endpoint = endpoint
        self.tls = tls  # --tls: the connection speaks TLS (verified as tcp-connect --tls verifies)
        self.sink = sink
        self.answer = answer
        self.encode = encode
        self.family = family
        self.timeout = timeout
        self.options = options
        self.loop = Loop(sink)
        self.conn: Connection | None = None
        self.started = time.monotonic()
        self._files = FileSenders(self)

    # -- running (the loop's thread is the caller's) ----------------------------------
    def run(self) -> None:
        tls_client = None
        if self.tls is not None:
            from socktool.net.tlsloop import TlsClient

            tls_client = TlsClient(self.tls, self.sink)  # bad files fail here, before dialling
        sock = connect(self.endpoint, family=self.family, timeout=self.timeout, options=self.options, sink=self.sink)
        local = sockaddr_text(sock.getsockname())
        peer = sockaddr_text(sock.getpeername()) if sock.family != socket.AF_UNIX else str(self.endpoint)
        try:
            transport: Transport = SocketTransport(sock)
            if tls_client is not None:
                try:
                    transport = tls_client.transport(sock, peer=lambda: (self.conn.id if self.conn else 1, peer))
                except OSError as exc:  # the hello could not be sent: the server left already
                    raise NetworkError(f"TLS with {peer}", exc.strerror or str(exc)) from None
            conn = Connection(self.loop, transport, self, peer=peer, local=local, inbound=False)
            self.loop.add(conn)
            if tls_client is not None:
                from socktool.net.tlsloop import expect_handshake

                expect_handshake(conn, tls_client.settings.handshake_timeout)
            self.loop.run()
        finally:
            self.loop.close()
            self.sink(self.stats())

    def stats(self) -> ev.Stats:
        conn = self.conn
        return ev.Stats(
            sent=conn.sent if conn else 0,
            received=conn.received if conn else 0,
            duration=time.monotonic() - self.started,
            connections=1 if conn else 0,
        )

    # -- the handler -----------------------------------------------------------------
    def connected(self, conn: Connection) -> None:
        self.conn = conn
        self.sink(conn.connected_event())

    def received(self, conn: Connection, data: memoryview) -> None:
        self.sink(ev.Data(conn.id, conn.peer, ev.RECEIVED, bytes(data)))

    def drained(self, conn: Connection) -> None:
        self._files.step(conn)  # the peer took what waited: read on

    def closed(self, conn: Connection, reason: str) -> None:
        self._files.step(conn)  # reports the file cut short
        self.sink(conn.closed_event(reason))
        self.loop.stop()

    def input_ended(self) -> None:
        """Nothing more will be typed: the connection stays until the peer or a command ends it."""

    # -- in the loop's thread (Commanded.execute) -------------------------------------------
    def _execute(self, command: cmd.Command) -> None:
        if isinstance(command, cmd.Simple):
            self._simple(command.name)
            return
        if isinstance(command, cmd.Focus):
            raise ValueError("a client session has one connection: text goes to it")
        conn = self._connection(None if isinstance(command, cmd.Say) else command.target)
        if isinstance(command, cmd.Say):
            self._send(conn, self.encode(command.text.encode("utf-8", "surrogateescape")))
        elif isinstance(command, cmd.SendTo):
            data = command.data
            if data is None:
                data = self.encode((command.text or "").encode("utf-8", "surrogateescape"))
            self._send(conn, data)
        elif isinstance(command, cmd.SendFile):
            self._files.start(conn, command.path)
        else:  # Kick
            conn.close("closed from the console")
            self.answer(Answer("ok", f"closed #{conn.id} {conn.peer}", {"kicked": conn.id}))

    def _simple(self, name: str) -> None:
        if name == "quit":
            self.answer(Answer("ok", "quitting", {"quit": True}))
            if self.conn is not None:
                self.conn.close("closed from the console")
            self.loop.stop()
        elif name == "list":
            self._list()
        elif name == "help":
            self.answer(Answer("help", cmd.HELP))
        else:
            raise ValueError(f"/{name} is for a server: a client session accepts no connections")

    def _connection(self, target: cmd.Target | None) -> Connection:
        conn = self.conn
        if conn is None or conn.closed:
            raise ValueError("the connection is closed: nothing sent")
        if target is not None and target != conn.id and target != conn.peer:
            raise ValueError(f"no client {target}: this session's connection is #{conn.id} {conn.peer}")
        return conn

    def _send(self, conn: Connection, data: bytes) -> None:
        conn.write(data)
        if data:
            self.sink(ev.Data(conn.id, conn.peer, ev.SENT, data))

    def _list(self) -> None:
        conn = self.conn
        rows: list[dict[str, object]] = []
        if conn is not None and not conn.closed:
            row, line = list_entry(conn, time.monotonic())
            rows.append(row)
            text = f"1 connection\n{line}"
        else:
            text = "0 connections"
        self.answer(Answer("list", text, {"clients": rows, "paused": False}))

    def file_done(self, conn_id: int) -> None:
        self._files.done(conn_id)


__all__ = ["Outbound"]
