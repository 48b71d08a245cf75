"""tcp-listen -k, --broker and --exec: many clients on the loop (net/loop.py).

Rules:
- every client is relayed as one client is by tcp-listen without -k: its
  data to stdout (or the view), and the payload to it: --send (the messages,
  --repeat times, --interval apart, to each client when it connects) or
  stdin; then, unless --no-shutdown, its write side is shut (--send-only:
  it is closed). --expect, --idle-timeout, --send-only and --recv-only
  apply to each client on its own;
- stdin is read as it arrives (a pipe: whatever is there; a terminal: a line
  at a time) and each piece goes to every client connected then; while no
  client is connected stdin is not read (it waits for the first one);
- --broker: each client's data also goes to every other client (stdin too,
  and no half-close at its end); --send-only: clients' data is read and
  dropped, only stdin reaches them; --recv-only: clients' data goes to
  stdout only, nothing is sent to any client;
- backpressure (stdin and --broker): a client with more than HIGH_WATER
  bytes waiting pauses the sources (stdin, the other clients) until it
  drains, so nothing is lost and memory stays bounded; a client that keeps
  more than HIGH_WATER waiting for STALL_LIMIT seconds is dropped with a
  warning, so a client that stopped reading stalls the others for at most
  that long;
- -w/--timeout: time from start to the first accepted client (whatever
  arrives meanwhile); with --expect also each client's time to match.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.access import AccessPolicy
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.errors import Terminated, TimedOut, UsageError
from socktool.net.fdio import is_pipe, raise_open_file_limit, widen_pipe, write_all
from socktool.net.loop import (
    BACKLOG,
    HIGH_WATER,
    Acceptor,
    Connection,
    Handler,
    Loop,
    SocketTransport,
    Timer,
    Transport,
    close_quietly,
)
from socktool.net.relay import EXPECT_WINDOW, Payload, RelayOptions
from socktool.net.sockets import BoundSocket, bind
from socktool.net.tcp import SocketOptions
from socktool.values import CrlfEncoder, HexDecoder, format_duration

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.tls import ServerIdentity
    from socktool.net.tlsconfig import ServerTls

STDIN_CHUNK = 64 * 1024
STALL_LIMIT = 2.0  # seconds a client may keep more than HIGH_WATER waiting while others wait for it
STALL_CHECK = 0.25


class ListenOptions(NamedTuple):
    """tcp-listen's options beyond the relay's (net/relay.py)."""

    keep_open: bool = True  # False: serve one client, then end
    family: int = socket.AF_UNSPEC
    reuse_addr: bool = True
    max_clients: int | None = None
    access: AccessPolicy = AccessPolicy()
    broker: bool = False
    exec_argv: tuple[str, ...] | None = None
    socket_options: SocketOptions = SocketOptions()
    first_client_timeout: float | None = None  # -w: from start to the first accepted client
    tls: ServerTls | None = None  # --tls (net/tls.py)


def _spliceable(relay: RelayOptions, options: ListenOptions) -> bool:
    """Whether clients' bytes may go to stdout by splice: raw, to a pipe, and nothing else needs them."""
    return (
        relay.output_fd is not None
        and relay.receive
        and not relay.emit_data
        and relay.expect is None
        and not options.broker
        and options.exec_argv is None
        and is_pipe(relay.output_fd)
    )


def _snapshot(clients: dict[int, Connection]) -> list[Connection]:
    """The clients now, also from another thread (the loop may change the dict meanwhile)."""
    while True:
        try:
            return list(clients.values())
        except RuntimeError:  # changed size during the copy: take it again
            continue


def peer_host(addr: object) -> str | None:
    return addr[0] if isinstance(addr, tuple) else None


class Hub:
    """Serves clients of one listener until interrupted (or, without keep_open, one client)."""

    listener: BoundSocket  # bound by run()

    def __init__(
        self,
        endpoint: Endpoint,
        payload: Payload,
        relay: RelayOptions,
        options: ListenOptions,
        sink: ev.Sink = ev.ignore,
    ):
        self.endpoint = endpoint
        self.payload = payload
        self.relay = relay
        self.options = options
        self.sink = sink
        self.loop = Loop(sink)
        self.clients: dict[int, Connection] = {}
        self.connections = 0
        self.started = time.monotonic()
        self._sent = 0  # by clients that left
        self._received = 0
        self._full: dict[Connection, float] = {}  # clients over HIGH_WATER, since when
        self._stall_timer: Timer | None = None
        self._deadline: Timer | None = None
        self._stdin: StdinSource | None = None
        self._body: bytes | None = None  # stdin, whole, when it is repeated (--repeat)
        self._stdin_done = payload.stdin_fd is None
        self._paused_sources = False
        self._failure: BaseException | None = None
        # Raw payload to a stdout pipe with nothing else looking at it: clients' bytes go there
        # by splice; while the pipe is full every client waits (it is everyone's output).
        self._splice_out = relay.output_fd if _spliceable(relay, options) else None
        self._output_full = False
        self.processes: set[subprocess.Popen[bytes]] = set()  # --exec commands not yet reaped
        self._exec: Callable[[], Handler] | None = None
        self._tls: ServerIdentity | None = None  # --tls: made in run(), before the bind
        if options.exec_argv is not None:
            from socktool.net.execute import exec_handler

            self._exec = exec_handler(self, options.exec_argv)

    # -- running ------------------------------------------------------------------
    def run(self) -> None:
        """Bind, announce, serve; the listener is closed (a unix file removed) whatever happens."""
        options = self.options
        if options.keep_open:
            raise_open_file_limit()
        # With -k, a burst of clients must not overflow the accept queue (each dropped SYN costs a client 1s).
        backlog = BACKLOG if options.keep_open else 128
        if options.tls is not None:
            from socktool.net.tls import server_context

            self._tls = server_context(options.tls, self.endpoint.host)  # bad files fail before the bind
        with bind(self.endpoint, family=options.family, reuse_addr=options.reuse_addr, backlog=backlog) as listener:
            self.listener = listener
            if self._splice_out is not None:
                widen_pipe(self._splice_out)
            fingerprint = self._tls.fingerprint if self._tls is not None else ""
            self.sink(ev.Listening(listener.address, tls_fingerprint=fingerprint))
            self._serve()

    def _serve(self) -> None:
        loop = self.loop
        self.acceptor = Acceptor(loop, self.listener.sock, self.listener.address, self._on_client)
        if self.options.first_client_timeout is not None:
            self._deadline = loop.call_later(self.options.first_client_timeout, self._no_client)
        if self._reads_stdin():
            assert self.payload.stdin_fd is not None
            self._stdin = StdinSource(loop, self.payload, self._from_stdin, self._stdin_ended)
        try:
            loop.run()
            if self._failure is not None:
                raise self._failure
        finally:
            try:
                self._close()
            finally:
                self.sink(self.totals())

    def _close(self) -> None:
        """Close every client, then stop the --exec commands still running: a grace for all of
        them together, none if an interrupt comes while the clients are being closed."""
        again = False
        try:
            with interrupts.held():  # one that comes now is raised when every client is closed
                self.loop.close()
        except (KeyboardInterrupt, Terminated):
            again = True
            raise
        finally:
            if self.processes:
                from socktool.net.execute import stop_processes

                stop_processes(self.processes, grace=0.0 if again else None)

    def _reads_stdin(self) -> bool:
        return self.payload.stdin_fd is not None and self.relay.send and self._exec is None

    def _no_client(self) -> None:
        raise TimedOut(
            f"no client connected to {self.listener.address}",
            f"within {format_duration(self.options.first_client_timeout or 0)}",
        )

    def counters(self) -> tuple[int, int]:
        """Bytes sent and received so far (--progress reads it from its own thread)."""
        stats = self.totals()
        return stats.sent, stats.received

    def totals(self) -> ev.Stats:
        live = _snapshot(self.clients)  # --progress reads from another thread
        return ev.Stats(
            sent=self._sent + sum(c.sent for c in live),
            received=self._received + sum(c.received for c in live),
            duration=time.monotonic() - self.started,
            connections=self.connections,
        )

    def finish(self, failure: BaseException | None = None) -> None:
        """End the run (one client served, or a failure to raise from run)."""
        if failure is not None and self._failure is None:
            self._failure = failure
        self.loop.stop()

    # -- clients ------------------------------------------------------------------
    def _on_client(self, sock: socket.socket, addr: object) -> None:
        peer = sockaddr_text(addr)
        reason = self.options.access.admission(addr, len(self.clients), self.options.max_clients)
        if reason is not None:
            self.sink(ev.Rejected(peer, reason))  # first: a refused peer finds it written
            close_quietly(sock)
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.options.socket_options.apply(sock)
        local = sockaddr_text(sock.getsockname())
        if not self.options.keep_open:
            self.acceptor.close()  # like nc: one client, no one else queues up
            self.listener.sock.close()  # the unix file stays until the end
        handler = self._exec() if self._exec is not None else ClientRelay(self)
        conn = Connection(self.loop, self._transport(sock, lambda: (conn.id, peer)), handler, peer=peer, local=local)
        self.connections += 1
        self.loop.add(conn)
        if self._tls is not None:
            from socktool.net.tlsloop import expect_handshake

            expect_handshake(conn, self._tls.settings.handshake_timeout)

    def _transport(self, sock: socket.socket, peer: Callable[[], tuple[int, str]]) -> Transport:
        if self._tls is None:
            return SocketTransport(sock)
        from socktool.net.tlsloop import serve_tls

        # --strict-close: the one client (--exec without -k; the CLI refuses it with -k, --broker)
        # ending without close_notify fails the run once the command is done with its data.
        strict = self._fail_later if self._tls.settings.strict_close else None
        return serve_tls(sock, self._tls, self.sink, peer=peer, strict=strict)

    def _fail_later(self, failure: BaseException) -> None:
        if self._failure is None:
            self._failure = failure

    def joined(self, conn: Connection) -> None:
        """A handler's `connected`: count the client in and report it."""
        self.clients[conn.id] = conn
        if self._splice_out is not None and type(conn.transport) is SocketTransport:
            conn.splice_to = self._splice_out
            if self._output_full:
                conn.pause_reading()
        self.sink(conn.connected_event())
        if self.relay.idle_timeout is not None:
            conn.set_idle_timeout(self.relay.idle_timeout)

    def left(self, conn: Connection, reason: str) -> None:
        """A handler's `closed`: count the client out and report it."""
        self.clients.pop(conn.id, None)
        self._sent += conn.sent
        self._received += conn.received
        if self._full.pop(conn, None) is not None:
            self._maybe_resume_sources()
        self.sink(conn.closed_event(reason))
        self._update_stdin()
        if not self.options.keep_open:
            self.finish()

    def output_blocked(self) -> None:
        """stdout (a pipe) is full: read no client until it has room."""
        if self._output_full or self._splice_out is None:
            return
        self._output_full = True
        for client in self.clients.values():
            client.pause_reading()
        self.loop.watch(self._splice_out, self._output_has_room, write=True)

    def _output_has_room(self) -> None:
        assert self._splice_out is not None
        self.loop.unwatch(self._splice_out)
        self._output_full = False
        for client in self.clients.values():  # (never a --broker: its clients' bytes are not spliced)
            client.resume_reading()

    def when_exited(self, process: subprocess.Popen[bytes], then: Callable[[int], None]) -> None:
        """Reap an --exec command once it exits, then call `then(status)`."""
        from socktool.net.execute import watch_exit

        def reaped(status: int) -> None:
            self.processes.discard(process)
            then(status)

        watch_exit(self.loop, process, reaped)

    def others(self, conn: Connection) -> list[Connection]:
        return [c for c in self.clients.values() if c is not conn]

    # -- what goes to clients: stdin, the broker -----------------------------------
    def fan_out(self, data: bytes, targets: list[Connection], *, report: bool = False) -> None:
        """Write `data` to each target; pause the sources while any of them is full.

        report: a Data(SENT) event per target as the bytes are handed to it (--broker's
        forwards), so it comes after the receive it forwards and before any reply.
        """
        now = time.monotonic()
        for target in targets:
            target.write(data)
            if report:
                self.sink(ev.Data(target.id, target.peer, ev.SENT, data))
            if not target.writable and target not in self._full:
                self._full[target] = now
        if self._full and not self._paused_sources:
            self._pause_sources()

    def client_drained(self, conn: Connection) -> None:
        if self._full.pop(conn, None) is not None:
            self._maybe_resume_sources()

    def _pause_sources(self) -> None:
        self._paused_sources = True
        self._update_stdin()
        if self.options.broker:
            for client in self.clients.values():
                client.pause_reading()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(STALL_CHECK, self._drop_stalled)

    def _maybe_resume_sources(self) -> None:
        if self._full or not self._paused_sources:
            return
        self._paused_sources = False
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._update_stdin()
        if self.options.broker:
            for client in self.clients.values():
                client.resume_reading()

    def _drop_stalled(self) -> None:
        self._stall_timer = None
        now = time.monotonic()
        for conn, since in list(self._full.items()):
            if now - since >= STALL_LIMIT:
                self.sink(
                    ev.Notice(
                        f"client #{conn.id} {conn.peer} did not read its data for {format_duration(STALL_LIMIT)} "
                        f"({conn.buffered} bytes waiting); dropped so that the others go on",
                        warning=True,
                    )
                )
                conn.close("not reading")
        if self._full:
            self._stall_timer = self.loop.call_later(STALL_CHECK, self._drop_stalled)

    # -- stdin -----------------------------------------------------------------------
    def stdin_targets(self) -> list[Connection]:
        return [c for c in self.clients.values() if isinstance(c.handler, ClientRelay) and c.handler.takes_stdin]

    def _from_stdin(self, data: bytes) -> None:
        if self.payload.repeat > 1:  # the body is sent whole, --repeat times, to each client
            self._body = (self._body or b"") + data
            return
        targets = self.stdin_targets()
        if targets:
            self.fan_out(data, targets)

    def _stdin_ended(self) -> None:
        self._stdin_done = True
        self._stdin = None
        for conn in list(self.clients.values()):
            handler = conn.handler
            if isinstance(handler, ClientRelay) and handler.takes_stdin:
                handler.stdin_ended(conn)

    def client_wants_stdin(self) -> None:
        self._update_stdin()

    def _update_stdin(self) -> None:
        """Read stdin while a client waits for it and none is too full to take more."""
        if self._stdin is None:
            return
        if self._paused_sources or not self.stdin_targets():
            self._stdin.pause()
        else:
            self._stdin.resume()


class StdinSource:
    """stdin read as it arrives (--hex-input / --crlf applied), handed to `deliver` piece by piece."""

    def __init__(self, loop: Loop, payload: Payload, deliver: Callable[[bytes], None], ended: Callable[[], None]):
        assert payload.stdin_fd is not None
        self.loop = loop
        self.fd = payload.stdin_fd
        self.deliver = deliver
        self.ended = ended
        self.hex = HexDecoder() if payload.hex_input else None
        self.crlf = CrlfEncoder() if payload.crlf else None
        self.watching = False

    def resume(self) -> None:
        if not self.watching:
            self.watching = True
            self.loop.watch(self.fd, self._ready)

    def pause(self) -> None:
        if self.watching:
            self.watching = False
            self.loop.unwatch(self.fd)

    def _ready(self) -> None:
        try:
            chunk = os.read(self.fd, STDIN_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self.pause()
            self.loop.sink(ev.Notice(f"stopped reading stdin: {exc.strerror or exc}", warning=True))
            self.ended()
            return
        try:
            if not chunk:
                self.pause()
                if self.hex is not None:
                    self.hex.close()
                self.ended()
                return
            if self.hex is not None:
                chunk = self.hex.feed(chunk)
        except ValueError as exc:
            raise UsageError("invalid stdin", str(exc)) from None
        if self.crlf is not None:
            chunk = self.crlf.feed(chunk)
        if chunk:
            self.deliver(chunk)


class ClientRelay(Handler):
    """One client of tcp-listen -k / --broker: relayed as tcp-listen relays its one client."""

    __slots__ = ("expect_timer", "hub", "script", "sent_all", "takes_stdin", "window")

    def __init__(self, hub: Hub):
        self.hub = hub
        self.sent_all = False
        self.takes_stdin = False
        self.window = b""
        self.expect_timer: Timer | None = None
        self.script: Script | None = None

    def connected(self, conn: Connection) -> None:
        hub, relay, payload = self.hub, self.hub.relay, self.hub.payload
        hub.joined(conn)
        if relay.expect is not None and relay.expect_timeout is not None:
            self.expect_timer = hub.loop.call_later(relay.expect_timeout, lambda: self._expect_timed_out(conn))
        if not relay.send:
            return
        if payload.messages or payload.repeat > 1:
            if payload.messages or hub._stdin_done:
                self._start_script(conn)
            else:
                self.takes_stdin = True  # the body comes when stdin ends
                hub.client_wants_stdin()
        elif payload.stdin_fd is not None and not hub._stdin_done:
            self.takes_stdin = True
            hub.client_wants_stdin()
        else:
            self.payload_sent(conn)

    def _start_script(self, conn: Connection) -> None:
        payload = self.hub.payload
        parts = payload.messages or ((self.hub._body or b""),)
        self.script = Script(
            conn, parts, payload.repeat, payload.interval, lambda: self.payload_sent(conn), payload.message
        )
        self.script.step()

    def stdin_ended(self, conn: Connection) -> None:
        self.takes_stdin = False
        if self.hub.payload.repeat > 1:
            self._start_script(conn)
        else:
            self.payload_sent(conn)

    def payload_sent(self, conn: Connection) -> None:
        """Everything for this client is written: half-close (or close, --send-only)."""
        relay = self.hub.relay
        if not relay.receive:
            # --send-only: half-close, and close when the client does (what it sends meanwhile is
            # dropped): closing with its data unread would reset the connection and could lose ours.
            self.sent_all = True
            conn.shutdown_write()
        elif relay.half_close and not self.hub.options.broker:
            conn.shutdown_write()

    def received(self, conn: Connection, data: memoryview) -> None:
        hub, relay = self.hub, self.hub.relay
        if not relay.receive:
            return  # --send-only: read and dropped
        if relay.output_fd is not None:
            write_all(relay.output_fd, data)
        if relay.emit_data:
            hub.sink(ev.Data(conn.id, conn.peer, ev.RECEIVED, bytes(data)))
        if hub.options.broker and relay.send:
            targets = hub.others(conn)
            if targets:
                hub.fan_out(bytes(data), targets, report=relay.emit_data)
        if relay.expect is not None:
            self.window = (self.window + bytes(data))[-EXPECT_WINDOW:]
            if relay.expect.search(self.window):
                conn.close_when_sent("expected data received")

    def eof(self, conn: Connection) -> None:
        relay = self.hub.relay
        if self.sent_all:
            conn.close_when_sent("sent everything")
        elif relay.expect is not None and relay.receive:
            conn.close_when_sent(f"closed by peer before {_pattern(relay)} matched")
        else:
            conn.close_when_sent("closed by peer")

    def output_blocked(self, conn: Connection) -> None:
        self.hub.output_blocked()

    def drained(self, conn: Connection) -> None:
        self.hub.client_drained(conn)
        if self.script is not None:
            self.script.step()

    def closed(self, conn: Connection, reason: str) -> None:
        if self.expect_timer is not None:
            self.expect_timer.cancel()
        if self.script is not None:
            self.script.cancel()
        self.hub.left(conn, reason)

    def _expect_timed_out(self, conn: Connection) -> None:
        relay = self.hub.relay
        conn.close(f"no match for {_pattern(relay)} within {format_duration(relay.expect_timeout or 0)}")


def _pattern(relay: RelayOptions) -> str:
    assert relay.expect is not None
    return "/" + relay.expect.pattern.decode(errors="replace") + "/"


class Script:
    """A connection's fixed payload: parts, `repeat` times, `interval` apart, as the socket takes them."""

    __slots__ = ("conn", "done", "index", "interval", "parts", "render", "timer", "total")

    def __init__(
        self,
        conn: Connection,
        parts: tuple[bytes, ...],
        repeat: int,
        interval: float,
        done: Callable[[], None],
        render: Callable[[bytes, int], bytes] | None = None,
    ):
        self.conn = conn
        self.parts = parts
        self.render = render  # (part, its number from 1) -> what is sent (--send templates)
        self.total = len(parts) * repeat
        self.index = 0
        self.interval = interval
        self.done: Callable[[], None] | None = done
        self.timer: Timer | None = None

    def step(self) -> None:
        conn = self.conn
        if self.timer is not None:  # an --interval runs: it goes on when it ends
            return
        while self.index < self.total and conn.writable and not conn.closed:
            if self.index and self.interval and self.index % len(self.parts) == 0 and self.timer is None:
                self.timer = conn.loop.call_later(self.interval, self._after_interval)
                return
            conn.write(self._part())
            self.index += 1
        if self.index >= self.total and self.done is not None and not conn.closed:
            done, self.done = self.done, None
            done()

    def _after_interval(self) -> None:
        self.timer = None
        self.conn.write(self._part())
        self.index += 1
        self.step()

    def _part(self) -> bytes:
        part = self.parts[self.index % len(self.parts)]
        return part if self.render is None else self.render(part, self.index + 1)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.done = None


__all__ = ["HIGH_WATER", "ClientRelay", "Hub", "ListenOptions"]
