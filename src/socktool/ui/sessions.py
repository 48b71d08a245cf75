"""The ui's sessions: one engine each, on its own loop in a worker thread.

Rules:
- a session is an engine the CLI runs too (tcp-listen's console hub,
  udp-listen's console, a dialled connection), built from a spec typed as
  on the command line (`tcp-listen 8898`, `tcp-connect HOST:PORT`,
  `udp-listen 9999`) and driven only through its thread-safe commands
  (socktool.console's Command, `submit`); no socket call here;
- the engine's sink runs in the loop's thread: it writes the recording (if
  one is on: every event, never dropped), counts, and queues the event for
  the app, which takes the queue on its own clock; the queue is bounded
  (PENDING): under a flood the app sees the newest events, the counters and
  the recording see them all;
- the client list comes from the engines' own `list` answers (the console's
  table: number, peer, age, bytes), asked for by `refresh()`, one at a time.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, cast

from socktool import console as cmd
from socktool.console import Answer
from socktool.net import events as ev
from socktool.net.access import AccessPolicy
from socktool.net.address import Endpoint, parse_connect_endpoint, parse_listen_endpoint
from socktool.net.errors import SocktoolError
from socktool.values import decode_hex

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.loop import Loop
    from socktool.net.tlsconfig import ClientTls, ServerTls
    from socktool.view.record import Recording

KINDS = {
    "tcp-listen": "TCP server",
    "tcp-connect": "TCP client",
    "udp-listen": "UDP socket",
}
PENDING = 4000  # events waiting for the app, per session (the newest are kept)
LIST_PATIENCE = 2.0  # seconds a `list` may go unanswered before it is asked for again
LINE_ENDS = {"none": b"", "LF": b"\n", "CRLF": b"\r\n"}


class Framing(Protocol):
    """A command's --frame/--checksum settings (the cli's FrameOptions): messages out, messages in."""

    def encode(self, message: bytes) -> bytes: ...
    def sink(self, sink: ev.Sink, on_error: Callable[[int], None] | None = None) -> ev.Sink: ...


class Spec(NamedTuple):
    kind: str  # a key of KINDS
    endpoint: Endpoint
    address: str  # as typed
    family: int = socket.AF_UNSPEC  # -4 / -6
    options: tuple[str, ...] = ()  # the command's options, as typed after the address
    tls: ServerTls | ClientTls | None = None  # --tls: a server's certificate, or a client's verification
    framing: Framing | None = None  # --frame / --checksum
    max_clients: int | None = None  # a server's --max-clients
    access: AccessPolicy = AccessPolicy()  # a server's --allow / --deny

    def __str__(self) -> str:
        return " ".join([self.kind, self.address, *self.options])


# Reads a session's options with its command's own parser: (spec without options, the option words) -> spec.
OptionParser = Callable[[Spec, Sequence[str]], Spec]


def parse_spec(
    kind: str,
    address: str,
    family: int = socket.AF_UNSPEC,
    options: Sequence[str] = (),
    parse_options: OptionParser | None = None,
) -> Spec:
    """One session as the command line names it; ValueError says what is wrong."""
    if kind not in KINDS:
        raise ValueError(f"unknown session kind {kind!r} (one of {', '.join(KINDS)})")
    parse = parse_connect_endpoint if kind == "tcp-connect" else parse_listen_endpoint
    spec = Spec(kind, parse(address), address, family)
    if not options:
        return spec
    if parse_options is None:
        raise ValueError(f"{kind} {address}: options are not read here ({' '.join(options)})")
    return parse_options(spec, options)


def parse_specs(
    words: Sequence[str], family: int = socket.AF_UNSPEC, parse_options: OptionParser | None = None
) -> list[Spec]:
    """`tcp-listen 8898 --tls udp-listen 9999 tcp-connect host:80`: KIND ADDRESS [OPTION...] groups."""
    groups: list[list[str]] = []
    for word in words:
        if word in KINDS or not groups:
            groups.append([word])
        else:
            groups[-1].append(word)
    specs = []
    for kind, *rest in groups:
        if not rest:
            raise ValueError(f"{kind!r} needs an address after it")
        specs.append(parse_spec(kind, rest[0], family, rest[1:], parse_options))
    return specs


def encode_input(text: str, *, hex_input: bool, line_end: str) -> bytes:
    """The send box's bytes: hex (exactly those bytes) or text with the chosen line end."""
    if hex_input:
        return decode_hex(text.encode())
    return text.encode("utf-8", "surrogateescape") + LINE_ENDS[line_end]


class ClientRow(NamedTuple):
    """A client (TCP) or a peer seen (UDP), as the engine's `list` reports it."""

    number: int
    peer: str
    age: float  # connected for (TCP) or last seen ago (UDP), seconds
    received: int
    sent: int


class Engine(Protocol):
    loop: Loop

    def run(self) -> None: ...
    def submit(self, command: cmd.Command) -> None: ...


class Session:
    """One socket of the ui: its engine, thread, counters, queue and client table."""

    def __init__(self, number: int, spec: Spec, wake: Callable[[], None] = lambda: None):
        self.number = number
        self.spec = spec
        self.wake = wake  # called (from the loop's thread) when something was queued
        self.state = "stopped"
        self.paused = False  # a server's /pause: new clients are refused
        self.address = spec.address
        self.local = ""  # a client session's own address, once connected
        self.events: collections.deque[tuple[float, ev.Event | Answer]] = collections.deque(maxlen=PENDING)
        self.clients: list[ClientRow] = []
        self._known: set[str] = set()  # the peers of `clients`
        self._listing: float | None = None  # when a `list` was asked for that is not answered yet
        self.bytes_in = self.bytes_out = self.messages_in = self.messages_out = 0
        self.recording: Recording | None = None
        self.fingerprint = ""  # a TLS server's certificate, "sha256:HEX", for a client's --pin
        self.engine: Engine | None = None
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def is_udp(self) -> bool:
        return self.spec.kind == "udp-listen"

    @property
    def counted(self) -> str:
        """What its client list holds: clients (a server), peers (UDP), a connection (a client)."""
        return {"tcp-listen": "client", "udp-listen": "peer"}.get(self.spec.kind, "connection")

    def title(self) -> str:
        return f"#{self.number} {self.spec}"

    # -- the app's thread ----------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self.state = "starting"
        self.paused = False
        self.clients = []
        self._listing = None
        self.thread = threading.Thread(target=self._run, name=f"session-{self.number}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.submit(cmd.Simple("quit"))

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def submit(self, command: cmd.Command) -> bool:
        engine = self.engine
        if engine is None or not self.running:
            return False
        engine.submit(command)
        return True

    def message(self, data: bytes) -> bytes:
        """What the send box's bytes become on the wire: one --frame message, or as they are."""
        return data if self.spec.framing is None else self.spec.framing.encode(data)

    def refresh(self) -> None:
        """Ask for the client table (it comes back as a list answer), unless one asked for less than
        LIST_PATIENCE ago is still unanswered: peers that keep coming (a UDP socket many send to) cost
        one list at a time, not one each."""
        now = time.monotonic()
        if self._listing is not None and now - self._listing < LIST_PATIENCE:
            return
        self._listing = now  # before the submit: the loop's thread may answer before submit returns
        if not self.submit(cmd.Simple("list")):
            self._listing = None

    def start_recording(self, path: str) -> None:
        from socktool.view.record import Recording

        self.stop_recording()
        self.recording = Recording(path)  # a UsageError if it cannot be written

    def stop_recording(self) -> None:
        recording, self.recording = self.recording, None
        if recording is None:
            return
        engine = self.engine
        if self.running and engine is not None:
            # The sink writes in the loop's thread: the file is closed there, after its last write.
            engine.loop.call(recording.close)
        else:
            recording.close()

    # -- the loop's thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.spec.kind == "tcp-listen":
                self._serve_tcp()
            elif self.spec.kind == "udp-listen":
                self._serve_udp()
            else:
                self._dial()
            self.state = "stopped"
        except SocktoolError as exc:
            self.state = "failed"
            self._queue(ev.Notice(str(exc), warning=True))
        finally:
            self.clients = []
            self.wake()

    def _serve_tcp(self) -> None:
        from socktool.net.console import ConsoleHub
        from socktool.net.hub import ListenOptions
        from socktool.net.relay import Payload, RelayOptions

        hub = ConsoleHub(
            self.spec.endpoint,
            Payload(stdin_fd=None),
            RelayOptions(output_fd=None, emit_data=True, half_close=False),
            ListenOptions(
                keep_open=True,
                family=self.spec.family,
                max_clients=self.spec.max_clients,
                access=self.spec.access,
                tls=cast("ServerTls | None", self.spec.tls),
            ),
            self._framed(lambda conn: hub.loop.kick(conn, "a message larger than --max-frame")),
            answer=self.answer,
        )
        self.engine = hub
        hub.run()

    def _framed(self, on_error: Callable[[int], None]) -> ev.Sink:
        """The sink, behind --frame's decoder: one Data event per message."""
        framing = self.spec.framing
        return self.sink if framing is None else framing.sink(self.sink, on_error)

    def _serve_udp(self) -> None:
        from socktool.net import udp
        from socktool.net.udpconsole import UdpConsole

        with udp.bind(self.spec.endpoint, family=self.spec.family) as listener:
            self.sink(ev.Listening(listener.address, "unix datagram" if listener.path else "udp"))
            engine = UdpConsole(listener, udp.ListenOptions(output_fd=None, emit=True), self.sink, answer=self.answer)
            self.engine = engine
            engine.run()

    def _dial(self) -> None:
        from socktool.net.outbound import Outbound

        self.state = "connecting"
        engine = Outbound(
            self.spec.endpoint,
            self._framed(lambda conn: engine.submit(cmd.Kick(conn))),
            answer=self.answer,
            family=self.spec.family,
            tls=cast("ClientTls | None", self.spec.tls),
        )
        self.engine = engine
        engine.run()

    def sink(self, event: ev.Event) -> None:
        recording = self.recording
        if recording is not None:
            recording(event)
        if isinstance(event, ev.Data | ev.Datagram):
            if event.direction == ev.SENT:
                self.messages_out += 1
                self.bytes_out += len(event.data)
            else:
                self.messages_in += 1
                self.bytes_in += len(event.data)
        # The state last: the app's thread may look at it at any moment, and then reads the address.
        elif isinstance(event, ev.Listening):
            self.address = event.address
            self.fingerprint = event.tls_fingerprint
            self.state = "listening"
        elif isinstance(event, ev.Connected) and not event.inbound:
            self.address = event.peer
            self.local = event.local
            self.state = "connected"
        if isinstance(event, ev.Connected | ev.Closed) or (
            isinstance(event, ev.Datagram) and event.direction == ev.RECEIVED and event.peer not in self._known
        ):
            self.refresh()  # the client table changed: ask for it now rather than at the next look
        self._queue(event)

    def answer(self, answer: Answer) -> None:
        paused = (answer.fields or {}).get("paused")
        if isinstance(paused, bool):  # the answers of pause, resume and list say it
            self.paused = paused
        if answer.kind == "list":
            self._listing = None
            self.clients = client_rows(answer.fields or {})
            self._known = {row.peer for row in self.clients}
            self.wake()
            return
        self._queue(answer)

    def _queue(self, item: ev.Event | Answer) -> None:
        self.events.append((time.time(), item))
        self.wake()


def client_rows(fields: dict[str, object]) -> list[ClientRow]:
    """The rows of a `list` answer: tcp's "clients" or udp's "peers"."""
    rows = []
    for row in fields.get("clients") or fields.get("peers") or []:  # type: ignore[attr-defined]
        number = row.get("conn", row.get("peer_id"))
        age = row.get("connected_for", row.get("last_seen", 0.0))
        rows.append(ClientRow(int(number), str(row["peer"]), float(age), int(row["received"]), int(row["sent"])))
    return rows


__all__ = [
    "KINDS",
    "LINE_ENDS",
    "ClientRow",
    "Framing",
    "OptionParser",
    "Session",
    "Spec",
    "client_rows",
    "encode_input",
    "parse_spec",
    "parse_specs",
]
