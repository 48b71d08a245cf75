"""The console's controller for tcp-listen -k / --broker: commands run on the hub's loop.

Rules:
- every command runs in the loop's thread (`submit` queues it with
  `Loop.call`), so it sees the clients exactly as the loop does and needs
  no lock; its outcome is one `Answer` to the `answer` callable (the
  terminal console prints it, --control json writes it as JSON);
- a bad command (unknown client, missing file) is an error answer, never
  an exception: the server goes on;
- plain text goes where stdin went (every client, with the same
  backpressure), or to the client `/to N` chose; text gets the line end
  (or the frame) from `encode`; /hex bytes are sent exactly;
- what the console sends is reported as Data(SENT) events, so the view and
  JSON show it beside what came in;
- /pause makes new clients be refused (the listening socket stops listening,
  the port stays ours); /resume listens again; connected clients go on;
- /file streams from the file as the client drains (bounded memory: it is
  read on when the client's `drained` runs), with a progress answer at most
  every PROGRESS_EVERY seconds.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import BinaryIO, Protocol

from socktool import console as cmd
from socktool.console import Answer
from socktool.net import events as ev
from socktool.net.address import Endpoint
from socktool.net.hub import Hub, ListenOptions
from socktool.net.loop import BACKLOG, Connection, Loop
from socktool.net.relay import Payload, RelayOptions
from socktool.values import format_duration, format_size

FILE_CHUNK = 256 * 1024
PROGRESS_EVERY = 1.0


AnswerSink = Callable[[Answer], None]


class Commanded:
    """What both consoles' engines share: commands queued to the loop's thread, errors as answers."""

    loop: Loop
    answer: AnswerSink

    def submit(self, command: cmd.Command) -> None:
        """Thread-safe: run `command` in the loop's thread, soon."""
        self.loop.call(lambda: self.execute(command))

    def report(self, answer: Answer) -> None:
        """Thread-safe: answer from another thread (a line that did not parse)."""
        self.loop.call(lambda: self.answer(answer))

    def execute(self, command: cmd.Command) -> None:
        """In the loop's thread: a bad command is an error answer; the server goes on."""
        try:
            self._execute(command)
        except ValueError as exc:
            self.answer(Answer("error", str(exc)))

    def _execute(self, command: cmd.Command) -> None:
        raise NotImplementedError


class ConsoleHub(Commanded, Hub):
    """A Hub whose stdin is a console: lines and commands come through `submit`, not a descriptor."""

    def __init__(
        self,
        endpoint: Endpoint,
        payload: Payload,
        relay: RelayOptions,
        options: ListenOptions,
        sink: ev.Sink = ev.ignore,
        *,
        answer: AnswerSink,
        encode: Callable[[str], bytes] | None = None,
        frame: Callable[[bytes], bytes] = bytes,
    ):
        super().__init__(endpoint, payload, relay, options, sink)
        self.answer = answer
        self.encode = encode or cmd.Composer()  # typed text -> what is sent (templates, line end or frame)
        self.frame = frame  # /hex bytes -> what is sent (--frame / --checksum; else as they are)
        self.focus: int | None = None  # /to N: where plain lines go (None: every client)
        self._refusing = False  # /pause
        self._files = FileSenders(self)

    def _reads_stdin(self) -> bool:
        return False  # the console reads it and hands us what it means

    def input_ended(self) -> None:
        """Thread-safe: the console's input ended (Ctrl-D, EOF of --control json): as the end of stdin."""
        self.loop.call(self._input_ended)

    # -- in the loop's thread ----------------------------------------------------
    def _execute(self, command: cmd.Command) -> None:
        if isinstance(command, cmd.Say):
            self._say(command.text)
        elif isinstance(command, cmd.SendTo):
            conn = self._client(command.target)
            data = self.encode(command.text or "") if command.data is None else self.frame(command.data)
            self._send(conn, data)
        elif isinstance(command, cmd.Focus):
            self._focus(command.target)
        elif isinstance(command, cmd.SendFile):
            self._files.start(self._client(command.target), command.path)
        elif isinstance(command, cmd.Kick):
            conn = self._client(command.target)
            conn.close("kicked from the console")
            self.answer(Answer("ok", f"kicked #{conn.id} {conn.peer}", {"kicked": conn.id}))
        else:
            getattr(self, "_" + command.name)()

    def _client(self, target: cmd.Target) -> Connection:
        if isinstance(target, str):
            raise ValueError(f"no client {target}: clients are numbered (/list)")
        conn = self.clients.get(target)
        if conn is None:
            raise ValueError(f"no client #{target} (/list shows who is connected)")
        return conn

    def _say(self, text: str) -> None:
        data = self.encode(text)
        if self.focus is not None:
            conn = self.clients.get(self.focus)
            if conn is None:
                raise ValueError(f"client #{self.focus} has left; /all sends to everyone again")
            self._send(conn, data)
            return
        targets = self.stdin_targets()
        if not targets:
            raise ValueError("no client is connected: nothing sent")
        self.fan_out(data, targets)
        for conn in targets:
            self._report(conn, data)

    def _send(self, conn: Connection, data: bytes) -> None:
        conn.write(data)
        self._report(conn, data)

    def _report(self, conn: Connection, data: bytes) -> None:
        if self.relay.emit_data and data:
            self.sink(ev.Data(conn.id, conn.peer, ev.SENT, data))

    def _focus(self, target: cmd.Target | None) -> None:
        if target is None:
            self.focus = None
            self.answer(Answer("ok", "plain lines go to every client", {"focus": None}))
            return
        conn = self._client(target)
        self.focus = conn.id
        self.answer(Answer("ok", f"plain lines go to #{conn.id} {conn.peer} (/all: every client)", {"focus": conn.id}))

    def _list(self) -> None:
        now = time.monotonic()
        rows: list[dict[str, object]] = []
        lines: list[str] = []
        for conn in sorted(self.clients.values(), key=lambda c: c.id):
            row, line = list_entry(conn, now, focused=conn.id == self.focus)
            rows.append(row)
            lines.append(line)
        state = " (paused: new clients are refused)" if self._refusing else ""
        head = f"{len(rows)} client{'s' if len(rows) != 1 else ''}{state}"
        self.answer(Answer("list", "\n".join([head, *lines]), {"clients": rows, "paused": self._refusing}))

    def _help(self) -> None:
        self.answer(Answer("help", cmd.HELP))

    def _quit(self) -> None:
        self.answer(Answer("ok", "quitting", {"quit": True}))
        self.finish()

    def _pause(self) -> None:
        if self._refusing:
            raise ValueError("already paused (/resume accepts clients again)")
        self.acceptor.pause()
        sock = self.listener.sock
        refused = sock.family != socket.AF_UNIX
        if refused:
            try:
                sock.shutdown(socket.SHUT_RD)  # Linux: stop listening, keep the address
            except OSError:
                refused = False
        self._refusing = True
        how = "new clients are refused" if refused else "new clients wait until /resume"
        self.answer(Answer("ok", f"paused: {how}; connected clients go on", {"paused": True}))

    def _resume(self) -> None:
        if not self._refusing:
            raise ValueError("not paused")
        sock = self.listener.sock
        if sock.family != socket.AF_UNIX:
            try:
                # A listener bound to port 0 loses its port when it stops listening: take it again.
                sock.bind(sock.getsockname())
            except OSError:
                pass  # still bound (an explicit port keeps it)
            try:
                sock.listen(BACKLOG)
            except OSError as exc:
                raise ValueError(f"cannot listen again on {self.listener.address}: {exc.strerror or exc}") from None
        self._refusing = False
        self.acceptor.resume()
        self.answer(Answer("ok", f"accepting clients again on {self.listener.address}", {"paused": False}))

    def _input_ended(self) -> None:
        self._stdin_ended()

    def client_drained(self, conn: Connection) -> None:
        super().client_drained(conn)
        self._files.step(conn)  # the client took what waited: read on

    def left(self, conn: Connection, reason: str) -> None:
        self._files.step(conn)  # reports the file cut short
        super().left(conn, reason)

    def file_done(self, conn_id: int) -> None:
        self._files.done(conn_id)


def list_entry(conn: Connection, now: float, focused: bool = False) -> tuple[dict[str, object], str]:
    """One connection in /list: its JSON row and its line (`*` marks the /to focus)."""
    age = now - conn.started
    row: dict[str, object] = {
        "conn": conn.id,
        "peer": conn.peer,
        "connected_for": round(age, 3),
        "received": conn.received,
        "sent": conn.sent,
    }
    line = (
        f"{'*' if focused else ' '}#{conn.id:<4} {conn.peer:<28} {format_duration(age):>8}  "
        f"in {format_size(conn.received):>9}  out {format_size(conn.sent):>9}"
    )
    return row, line


class FileOwner(Protocol):
    """Whoever runs a FileSender (and calls its `step` when the client drains or leaves):
    the console hub, the ui's client session."""

    def answer(self, answer: Answer) -> None: ...
    def file_done(self, conn_id: int) -> None: ...


class FileSenders:
    """The files being sent, at most one per connection; `step` when a client drains or leaves."""

    def __init__(self, owner: FileOwner):
        self.owner = owner
        self._senders: dict[int, FileSender] = {}

    def start(self, conn: Connection, path: str) -> None:
        if conn.id in self._senders:
            raise ValueError(f"a file is still being sent to #{conn.id}")
        try:
            source = open(path, "rb")  # closed by the sender when done
        except OSError as exc:
            raise ValueError(f"cannot open {path}: {exc.strerror or exc}") from None
        self._senders[conn.id] = sender = FileSender(self.owner, conn, source, path)
        sender.step()

    def step(self, conn: Connection) -> None:
        sender = self._senders.get(conn.id)
        if sender is not None:
            sender.step()

    def done(self, conn_id: int) -> None:
        self._senders.pop(conn_id, None)

    def __len__(self) -> int:
        return len(self._senders)


class FileSender:
    """One file to one client, read as the client takes it (never more than HIGH_WATER ahead)."""

    def __init__(self, hub: FileOwner, conn: Connection, source: BinaryIO, path: str):
        self.hub = hub
        self.conn = conn
        self.source = source
        self.path = path
        self.fd = source.fileno()
        self.size = os.fstat(self.fd).st_size
        self.sent = 0
        self.started = self.last_report = time.monotonic()

    def step(self) -> None:
        conn, hub = self.conn, self.hub
        if conn.closed:
            self._end(Answer("error", f"{self.path}: #{conn.id} left after {format_size(self.sent)}"))
            return
        while conn.writable:  # else `drained` calls step again
            try:
                chunk = os.read(self.fd, FILE_CHUNK)
            except OSError as exc:
                self._end(Answer("error", f"reading {self.path} failed: {exc.strerror or exc}"))
                return
            if not chunk:
                elapsed = time.monotonic() - self.started
                self._end(
                    Answer(
                        "ok",
                        f"sent {self.path} to #{conn.id}: {self.sent:,} bytes in {format_duration(elapsed)}",
                        {"file": self.path, "to": conn.id, "bytes": self.sent},
                    )
                )
                return
            conn.write(chunk)
            self.sent += len(chunk)
        now = time.monotonic()
        if now - self.last_report >= PROGRESS_EVERY:
            self.last_report = now
            percent = f" ({100 * self.sent // self.size}%)" if self.size else ""
            hub.answer(
                Answer(
                    "progress",
                    f"{self.path} to #{conn.id}: {format_size(self.sent)} of {format_size(self.size)}{percent}",
                    {"file": self.path, "to": conn.id, "bytes": self.sent, "size": self.size},
                )
            )

    def _end(self, answer: Answer) -> None:
        self.source.close()
        self.hub.file_done(self.conn.id)
        self.hub.answer(answer)


__all__ = ["AnswerSink", "Commanded", "ConsoleHub", "FileOwner", "FileSender", "FileSenders", "list_entry"]
