"""`socktool ui`: the full-screen SocketTool, a Textual app over the sessions of ui/sessions.py.

Rules:
- the app is a sink and a controller, nothing more: every socket is an
  engine's, in the engine's thread; the app sends commands (`Session.submit`)
  and reads what the sessions queued, on its own clock (TICK): a flood of
  traffic is one batch of records per tick, of which the log draws only
  the lines in sight (ui/trafficlog.py), and a widget is redrawn only when
  what it shows changed, so the keys stay answered;
- each session keeps its last LOG_RECORDS records for the screen (older
  ones leave the screen; a recording keeps everything);
- every action has a key (shown in the footer, listed by `socktool ui
  --help`); the keys are ctrl+letters so that they work while typing.
"""

from __future__ import annotations

import asyncio
import collections
import shlex
import signal
import time
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.validation import ValidationResult, Validator
from textual.widgets import DataTable, Footer, Input, Label, OptionList, Static
from textual.widgets.data_table import ColumnKey

from socktool import console as cmd
from socktool.console import Answer
from socktool.framing import MAX_DATAGRAM
from socktool.net.errors import SocktoolError
from socktool.ui.keys import KEYS, SHORT
from socktool.ui.sessions import LINE_ENDS, ClientRow, OptionParser, Session, Spec, encode_input, parse_specs
from socktool.ui.trafficlog import LOG_RECORDS, Record, TrafficLog, record_of, record_text
from socktool.values import format_duration, format_size

TICK = 0.1  # seconds between looks at the sessions' queues
REFRESH_EVERY = 5  # ticks between client-table requests
CLIENT_ROWS = 50  # rows of the client list at most

PROMPTS = {
    "new": "new session (KIND ADDRESS)",
    "send_file": "send file (PATH)",
    "auto_send": "auto-send every MS [COUNT]",
    "record": "record to (PATH)",
    "search": "search (empty: show all)",
}


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class SessionView:
    """What the screen keeps of a session: its records and the choices made for it."""

    def __init__(self) -> None:
        self.records: collections.deque[Record] = collections.deque(maxlen=LOG_RECORDS)
        self.hex_view = False
        self.search = ""
        self.auto: Timer | None = None
        self.auto_left = 0

    def shows(self, record: Record) -> bool:
        return not self.search or self.search.lower() in record_text(record, self.hex_view).lower()


class SendValidator(Validator):
    """The send box as typed: in hex mode, whole bytes of hex digits."""

    def __init__(self, app: SocktoolApp):
        super().__init__()
        self.owner = app

    def validate(self, value: str) -> ValidationResult:
        try:
            encode_input(value, hex_input=self.owner.hex_input, line_end="none")
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


class SendBox(Input):
    """The send box, with the history of what was sent (up / down)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "Previous", show=False),
        Binding("down", "history(1)", "Next", show=False),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history: list[str] = []
        self.position = 0

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self.position = len(self.history)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self.position = max(0, min(len(self.history), self.position + step))
        self.value = self.history[self.position] if self.position < len(self.history) else ""
        self.cursor_position = len(self.value)


class SocktoolApp(App[int]):
    """Sessions on the left (and the selected one's clients), its traffic and the send box on the right."""

    TITLE = "socktool"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, action, SHORT[action], priority=True, tooltip=help_) for key, action, help_ in KEYS
    ]
    CSS = """
    #side { width: 28%; min-width: 31; max-width: 48; border-right: solid $primary; }
    #sessions { height: 1fr; }
    #clients { height: 1fr; }
    .heading { background: $boost; width: 100%; text-style: bold; }
    #log { height: 1fr; scrollbar-size-vertical: 1; }
    #status { height: 1; background: $boost; }
    #sendbar { height: 1; }
    #prompt-row { height: 3; display: none; }
    #prompt-row.shown { display: block; }
    #prompt-label { width: auto; padding: 1 1 0 0; }
    #prompt { width: 1fr; }
    """

    def __init__(self, specs: list[Spec] | None = None, family: int = 0, parse_options: OptionParser | None = None):
        super().__init__()
        self.family = family  # -4 / -6, for the sessions made here too
        self.parse_options = parse_options  # a session's options, read by its command's parser (cli/ui.py)
        self.sessions: list[Session] = []
        self.views: dict[int, SessionView] = {}
        self.current: Session | None = None
        self.hex_input = False
        self.line_end = "LF"
        self.prompting: str | None = None
        self._numbers = 0
        self._ticks = 0
        self._initial = specs or []
        self._client_keys: tuple[str, ...] = ()
        self._rows_drawn: list[ClientRow] | None = None  # the `list` answer the table shows
        self._labels: dict[int, str] = {}  # each session's label as last drawn
        self._bars: dict[str | None, str] = {}  # the status and send bars as last drawn

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="side"):
                yield Label("Sessions", classes="heading")
                yield OptionList(id="sessions")
                yield Label("Clients", classes="heading", id="clients-heading")
                yield DataTable(id="clients", cursor_type="row", zebra_stripes=False)
            with Vertical(id="main"):
                yield Static("", id="status")
                yield TrafficLog(id="log")
                yield Static("", id="sendbar")
                yield SendBox(
                    placeholder="text to send (Enter)",
                    id="send",
                    validators=[SendValidator(self)],
                    valid_empty=True,
                    validate_on=["changed", "submitted"],
                )
                with Horizontal(id="prompt-row"):
                    yield Label("", id="prompt-label")
                    yield Input(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#clients", DataTable)
        for key, label in (("n", "#"), ("peer", "peer"), ("age", "for"), ("in", "in"), ("out", "out")):
            table.add_column(label, key=key)
        for spec in self._initial:
            self.add_session(spec)
        if self.sessions:
            self.select(self.sessions[0])  # the first one named on the command line
        self._clock = self.set_interval(TICK, self.tick)
        loop = asyncio.get_running_loop()
        for signum, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):  # exit codes as every command's
            loop.add_signal_handler(signum, self._signalled, status)
        self.query_one("#send", SendBox).focus()
        self._show_status()

    # -- sessions ------------------------------------------------------------------------
    def add_session(self, spec: Spec) -> Session:
        self._numbers += 1
        session = Session(self._numbers, spec)
        self.sessions.append(session)
        self.views[session.number] = SessionView()
        self.query_one("#sessions", OptionList).add_option(self._session_label(session))
        session.start()
        self.select(session)
        return session

    def select(self, session: Session) -> None:
        self.current = session
        options = self.query_one("#sessions", OptionList)
        index = self.sessions.index(session)
        if options.highlighted != index:
            options.highlighted = index
        self._client_keys = ()
        self.query_one("#clients", DataTable).clear()
        self._redraw_log()
        self._show_clients()
        self._show_status()

    def on_option_list_option_highlighted(self, message: OptionList.OptionHighlighted) -> None:
        index = self.query_one("#sessions", OptionList).highlighted  # now, not when the message was sent
        if index is None:
            return
        if 0 <= index < len(self.sessions) and self.sessions[index] is not self.current:
            self.select(self.sessions[index])

    def _session_label(self, session: Session) -> Text:
        """Four short lines (the panel is 31 columns wide at 80): kind and state, address, clients, counters."""
        label = Text(f"#{session.number} {session.spec.kind} ", style="bold")
        label.append(session.state, style="red" if session.state == "failed" else "")
        if session.paused:
            label.append(" paused", style="yellow")
        label.append(f"\n {session.address}\n {plural(len(session.clients), session.counted)}")
        label.append(
            f"\n in {session.messages_in}/{format_size(session.bytes_in)},"
            f" out {session.messages_out}/{format_size(session.bytes_out)}",
            style="dim",
        )
        return label

    @property
    def view(self) -> SessionView | None:
        return None if self.current is None else self.views[self.current.number]

    # -- the clock: queues to screen --------------------------------------------------
    def tick(self) -> None:
        try:
            self._tick()
        except NoMatches:  # the screen is being taken down (the app is ending)
            self._clock.stop()

    def _tick(self) -> None:
        self._ticks += 1
        refresh = self._ticks % REFRESH_EVERY == 0
        options = self.query_one("#sessions", OptionList)
        for index, session in enumerate(self.sessions):
            fresh = self._take(session)
            if session is self.current:
                self._draw(fresh)
            if refresh:
                session.refresh()
            label = self._session_label(session)
            if label.plain != self._labels.get(session.number):  # a prompt replaced is the whole list redrawn
                self._labels[session.number] = label.plain
                options.replace_option_prompt_at_index(index, label)
        self._show_clients()
        self._show_status()

    def _take(self, session: Session) -> list[Record]:
        """What the session queued since the last look, as records (only the newest LOG_RECORDS: the
        older ones would leave the screen at once; the counters and a recording have them all)."""
        queue = session.events
        taken = [queue.popleft() for _ in range(len(queue))]
        fresh = [record for ts, item in taken[-LOG_RECORDS:] if (record := record_of(ts, item)) is not None]
        self.views[session.number].records.extend(fresh)
        return fresh

    def _draw(self, records: Sequence[Record]) -> None:
        """The newest records into the log (drawn when they come into sight: a flood costs a screenful)."""
        view = self.view
        if view is not None and records:
            self.query_one("#log", TrafficLog).add([record for record in records if view.shows(record)])

    def _redraw_log(self) -> None:
        view = self.view
        log = self.query_one("#log", TrafficLog)
        if view is None:
            log.clear()
        else:
            log.show((record for record in view.records if view.shows(record)), view.hex_view)

    def _show_clients(self) -> None:
        """The client list, drawn again when a new `list` answer came: rows added and removed when clients
        come and go, else only the cells that changed; at most CLIENT_ROWS rows (a UDP socket that
        thousands of peers sent to lists the first ones, and the heading says how many there are)."""
        session = self.current
        rows = session.clients if session is not None else []
        if rows is self._rows_drawn and self._client_keys:
            return
        self._rows_drawn = rows
        table = self.query_one("#clients", DataTable)
        shown = rows[:CLIENT_ROWS]
        keys = ("all", *(str(row.number) for row in shown))
        udp = session is not None and session.is_udp
        if keys != self._client_keys:
            chosen = self._cursor_key()
            self._client_keys = keys
            table.clear()
            table.add_row("*", "all peers" if udp else "all clients", "", "", "", key="all")
            for row in shown:
                table.add_row(str(row.number), row.peer, *self._cells(row), key=str(row.number))
            table.move_cursor(row=keys.index(chosen) if chosen in keys else 0)
        else:
            widths = {key: table.columns[ColumnKey(key)].content_width for key in ("age", "in", "out")}
            for row in shown:
                for column, value in zip(("age", "in", "out"), self._cells(row), strict=True):
                    if table.get_cell(str(row.number), column) != value:
                        # A column is measured again (all its rows) only when a value outgrows it.
                        table.update_cell(str(row.number), column, value, update_width=len(value) > widths[column])
        more = f" (the first {CLIENT_ROWS} of {len(rows):,})" if len(rows) > CLIENT_ROWS else ""
        self.query_one("#clients-heading", Label).update(Text(("Peers" if udp else "Clients") + more))

    @staticmethod
    def _cells(row: ClientRow) -> tuple[str, str, str]:
        return format_duration(row.age), format_size(row.received), format_size(row.sent)

    def _cursor_key(self) -> str | None:
        table = self.query_one("#clients", DataTable)
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # the cursor is off the rows (a table being rebuilt)
            return None

    def target(self) -> int | None:
        """The client the send box sends to: the client list's row under the cursor (None: every client)."""
        key = self._cursor_key()
        return None if key in (None, "all") else int(key)

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        self._show_status()

    def _show_status(self) -> None:
        session, view = self.current, self.view
        status = self.query_one("#status", Static)
        bar = self.query_one("#sendbar", Static)
        if session is None or view is None:
            self._set(status, Text("no session: ctrl+n creates one"))
            self._set(bar, Text(""))
            return
        parts = [session.title(), session.state, "hex" if view.hex_view else "text"]
        if session.paused:
            parts.insert(2, "paused: new clients refused")
        if session.fingerprint:
            parts.append(f"TLS {session.fingerprint}")
        if session.recording is not None:
            parts.append(f"REC {session.recording.path}")
        if view.search:
            parts.append(f"search {view.search!r}")
        self._set(status, Text(" | ".join(parts)))
        chosen = self.target()
        target = ("every peer" if session.is_udp else "every client") if chosen is None else f"#{chosen}"
        if session.spec.kind == "tcp-connect":
            target = "the connection"
        mode = "hex" if self.hex_input else f"text+{self.line_end}"
        auto = f" | auto: {view.auto_left} left" if view.auto is not None else ""
        self._set(bar, Text(f"send {mode} to {target}{auto}"))

    def _set(self, line: Static, text: Text) -> None:
        """A one-line bar, redrawn only when its text changed (and never laid out again: its size is fixed)."""
        if self._bars.get(line.id) != text.plain:
            self._bars[line.id] = text.plain
            line.update(text, layout=False)

    # -- sending -------------------------------------------------------------------------------
    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input.id == "prompt":
            self._answer_prompt(message.value.strip())
            return
        box = self.query_one("#send", SendBox)
        if self.send(message.value):
            box.remember(message.value)
            box.value = ""

    def send(self, text: str) -> bool:
        """Send the send box's text to the chosen target(s); a problem is noted in the log."""
        session = self.current
        if session is None:
            self.note("no session: ctrl+n creates one", warning=True)
            return False
        try:
            # A --frame session sends the box as one message: its frame, not a line end, marks where it ends.
            line_end = "none" if session.spec.framing is not None else self.line_end
            data = session.message(encode_input(text, hex_input=self.hex_input, line_end=line_end))
        except ValueError as exc:
            self.note(f"not sent: {exc}", warning=True)
            return False
        targets = self._targets(session)
        if not targets:
            return False
        for target in targets:
            session.submit(cmd.SendTo(target, data=data))
        return True

    def _targets(self, session: Session) -> list[int]:
        if not session.running:
            self.note(f"{session.title()} is {session.state}: nothing sent (ctrl+s starts it)", warning=True)
            return []
        if session.spec.kind == "tcp-connect":
            return [1]
        chosen = self.target()
        if chosen is not None:
            return [chosen]
        targets = [row.number for row in session.clients]
        if not targets:
            who = "no peer has sent a datagram yet" if session.is_udp else "no client is connected"
            self.note(f"{who}: nothing sent", warning=True)
        return targets

    def note(self, text: str, *, warning: bool = False) -> None:
        """A line in the current session's log from the app itself."""
        if self.current is None:
            self.notify(text, severity="warning" if warning else "information")
            return
        self.current.events.append((time.time(), Answer("error" if warning else "ok", text)))

    # -- actions (the keys) ------------------------------------------------------------------
    def action_new(self) -> None:
        self._prompt("new", "tcp-listen 0")

    def action_start_stop(self) -> None:
        session = self.current
        if session is None:
            return
        if session.running:
            session.stop()
        else:
            session.start()

    def action_close(self) -> None:
        session = self.current
        if session is None:
            return
        view = self.views.pop(session.number)
        if view.auto is not None:
            view.auto.stop()
        session.stop_recording()
        session.stop()
        index = self.sessions.index(session)
        self.sessions.remove(session)
        self.query_one("#sessions", OptionList).remove_option_at_index(index)
        self.current = None
        if self.sessions:
            self.select(self.sessions[min(index, len(self.sessions) - 1)])
        else:
            self.query_one("#log", TrafficLog).clear()
            self.query_one("#clients", DataTable).clear()
            self._client_keys = ()
            self._show_status()

    def action_hex_view(self) -> None:
        view = self.view
        if view is not None:
            view.hex_view = not view.hex_view
            self._redraw_log()
            self._show_status()

    def action_hex_input(self) -> None:
        self.hex_input = not self.hex_input
        box = self.query_one("#send", SendBox)
        box.placeholder = "hex bytes to send, e.g. de ad be ef (Enter)" if self.hex_input else "text to send (Enter)"
        box.validate(box.value)
        self._show_status()

    def action_line_end(self) -> None:
        names = list(LINE_ENDS)
        self.line_end = names[(names.index(self.line_end) + 1) % len(names)]
        self._show_status()

    def action_all_clients(self) -> None:
        table = self.query_one("#clients", DataTable)
        if table.row_count:
            table.move_cursor(row=0)
        self._show_status()

    def action_kick(self) -> None:
        session, chosen = self.current, self.target()
        if session is None:
            return
        if session.spec.kind == "tcp-connect":
            session.submit(cmd.Kick(1))
        elif chosen is None:
            self.note("select a client to kick in the client list", warning=True)
        else:
            session.submit(cmd.Kick(chosen))

    def action_pause(self) -> None:
        """The console's /pause and /resume: the engine answers, and the session keeps the state."""
        session = self.current
        if session is None:
            return
        if session.spec.kind != "tcp-listen":
            self.note("pause applies to a TCP server session", warning=True)
        elif not session.submit(cmd.Simple("resume" if session.paused else "pause")):
            self.note("the session is not running", warning=True)

    def action_send_file(self) -> None:
        self._prompt("send_file", "")

    def action_auto_send(self) -> None:
        view = self.view
        if view is not None and view.auto is not None:
            self._stop_auto(view)
            return
        self._prompt("auto_send", "1000 10")

    def action_record(self) -> None:
        session = self.current
        if session is None:
            return
        if session.recording is not None:
            path = session.recording.path
            session.stop_recording()
            self.note(f"recording to {path} stopped")
            return
        self._prompt("record", f"socktool-session-{session.number}.jsonl")

    def action_search(self) -> None:
        view = self.view
        self._prompt("search", view.search if view is not None else "")

    async def action_quit(self) -> None:
        self._signalled(0)

    def _signalled(self, status: int) -> None:
        self._clock.stop()
        self.stop_all()
        self.exit(status)

    def stop_all(self) -> None:
        for session in self.sessions:
            session.stop_recording()
            session.stop()
        deadline = time.monotonic() + 2.0
        for session in self.sessions:
            session.join(max(0.0, deadline - time.monotonic()))

    # -- the prompt --------------------------------------------------------------------------------
    def _prompt(self, what: str, value: str) -> None:
        self.prompting = what
        self.query_one("#prompt-label", Label).update(Text(PROMPTS[what] + ":"))  # text: [COUNT] is no markup
        self.query_one("#prompt-row").add_class("shown")
        prompt = self.query_one("#prompt", Input)
        prompt.value = value
        prompt.focus()

    def _close_prompt(self) -> None:
        self.prompting = None
        self.query_one("#prompt-row").remove_class("shown")
        self.query_one("#send", SendBox).focus()

    def on_key(self, event: object) -> None:
        if getattr(event, "key", "") == "escape" and self.prompting is not None:
            self._close_prompt()

    def _answer_prompt(self, text: str) -> None:
        what = self.prompting
        self._close_prompt()
        try:
            if what == "new":
                for spec in parse_specs(shlex.split(text), self.family, self.parse_options):
                    self.add_session(spec)
            elif what == "send_file":
                self._send_file(text)
            elif what == "auto_send":
                self._start_auto(text)
            elif what == "record":
                self._record(text)
            elif what == "search":
                self._search(text)
        except (ValueError, SocktoolError) as exc:
            self.note(str(exc), warning=True)

    def _send_file(self, path: str) -> None:
        session = self.current
        if session is None or not path:
            return
        if session.is_udp:
            with open(path, "rb") as source:
                data = source.read(MAX_DATAGRAM + 1)
            if len(data) > MAX_DATAGRAM:
                raise ValueError(f"{path} does not fit in one datagram (at most {MAX_DATAGRAM:,} bytes)")
            for target in self._targets(session):
                session.submit(cmd.SendTo(target, data=data))
            return
        for target in self._targets(session):
            session.submit(cmd.SendFile(target, path))

    def _start_auto(self, text: str) -> None:
        view = self.view
        if view is None:
            return
        words = text.split()
        if not 1 <= len(words) <= 2 or not all(word.isascii() and word.isdigit() for word in words):
            raise ValueError("auto-send: every MS [COUNT], e.g. 100 5 (COUNT 0 or none: until stopped)")
        every = int(words[0])
        count = int(words[1]) if len(words) == 2 else 0
        if every < 1:
            raise ValueError("auto-send: every at least 1 ms")
        text_to_send = self.query_one("#send", SendBox).value
        view.auto_left = count

        def fire() -> None:
            self.send(text_to_send)
            if count:
                view.auto_left -= 1
                if view.auto_left <= 0:
                    self._stop_auto(view)
            self._show_status()

        view.auto = self.set_interval(every / 1000, fire)
        self.note(f"auto-send every {every} ms" + (f", {count} times" if count else " until ctrl+t"))

    def _stop_auto(self, view: SessionView) -> None:
        if view.auto is not None:
            view.auto.stop()
            view.auto = None
        self._show_status()

    def _record(self, path: str) -> None:
        session = self.current
        if session is None or not path:
            return
        session.start_recording(path)
        self.note(f"recording to {path}")
        self._show_status()

    def _search(self, text: str) -> None:
        view = self.view
        if view is None:
            return
        view.search = text
        self._redraw_log()
        self._show_status()


__all__ = ["SocktoolApp"]
