"""A session's traffic on screen: records, and the log widget that draws only what is in sight.

Rules:
- a record is drawn as lines: a head (time, client, peer, direction, size;
  or a notice) and its bytes as escaped text or a hex dump, one line per
  line of the payload (long lines scroll sideways, they are not wrapped);
- the widget knows how many lines each record takes without drawing it
  (`line_count`), so that a record costs nothing until it scrolls into
  sight: a flood, a hex toggle or a search over the LOG_RECORDS kept costs
  the screen the lines it shows, never the whole log;
- the log holds at most LOG_RECORDS records (the oldest leave first); it
  follows the newest while its view is at the end, and stays where the
  user scrolled to otherwise.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from socktool.console import Answer
from socktool.net import events as ev
from socktool.view.render import escaped_lines, hexdump_lines, printable
from socktool.view.status import stats_line, tls_line
from socktool.view.traffic import ARROWS, clock

LOG_RECORDS = 1000  # records a session keeps for the screen
HEX_WIDTH = 16  # bytes a hex-dump line shows


class Record(NamedTuple):
    """One entry of a session's traffic log."""

    ts: float
    conn: int | None
    peer: str
    direction: str  # ev.SENT / ev.RECEIVED, or "" for a notice
    data: bytes
    note: str = ""
    warning: bool = False


def record_of(ts: float, item: ev.Event | Answer) -> Record | None:
    """What the log shows for an event or an answer (None: nothing)."""
    if isinstance(item, ev.Data):
        return Record(ts, item.conn, item.peer, item.direction, item.data)
    if isinstance(item, ev.Datagram):
        return Record(ts, None, item.peer, item.direction, item.data)
    if isinstance(item, Answer):
        return Record(ts, None, "", "", b"", item.text, item.kind == "error")
    return Record(ts, None, "", "", b"", *_note(item))


def _note(event: ev.Event) -> tuple[str, bool]:
    if isinstance(event, ev.Listening):
        tls = f", TLS certificate {event.tls_fingerprint}" if event.tls_fingerprint else ""
        return f"listening on {event.address} ({event.kind}{tls})", False
    if isinstance(event, ev.Connected):
        return f"#{event.conn} {event.peer} connected", False
    if isinstance(event, ev.Closed):
        return f"#{event.conn} {event.peer} closed: {event.reason}", False
    if isinstance(event, ev.Rejected):
        return f"{event.peer} refused: {event.reason}", True
    if isinstance(event, ev.Notice):
        return event.message, event.warning
    if isinstance(event, ev.Stats):
        return stats_line(event), False
    if isinstance(event, ev.Tls):
        return tls_line(event, f"#{event.conn} {event.peer}"), event.verified == "insecure"
    return type(event).__name__.lower(), False


def line_count(record: Record, hex_view: bool) -> int:
    """How many lines `record_lines` gives, without making them (bytes.count runs in C)."""
    data = record.data
    if not record.direction or not data:
        return 1
    if hex_view:
        return 1 + (len(data) + HEX_WIDTH - 1) // HEX_WIDTH
    return 1 + data.count(b"\n") + (not data.endswith(b"\n"))


def record_lines(record: Record, hex_view: bool) -> list[Text]:
    """The record as drawn: its head, then the payload's lines, indented."""
    head = Text(clock(record.ts), style="dim")
    head.append("  ")
    if not record.direction:
        head.append(printable(record.note), style="yellow" if record.warning else "italic")
        return [head]
    if record.conn is not None:
        head.append(f"#{record.conn} ", style="bold")
    arrow, colour = ARROWS.get(record.direction, ("?", ""))
    head.append(printable(record.peer), style="blue")
    head.append(f" {arrow} {len(record.data)} B", style=colour)
    body = hexdump_lines(record.data, width=HEX_WIDTH) if hex_view else escaped_lines(record.data)
    return [head, *(Text("  " + part) for part in body)]


def record_text(record: Record, hex_view: bool) -> str:
    """The record's lines as plain text (what a search looks in)."""
    return "\n".join(line.plain for line in record_lines(record, hex_view))


class _Entry:
    __slots__ = ("lines", "record", "strips")

    def __init__(self, record: Record, lines: int):
        self.record = record
        self.lines = lines
        self.strips: list[Strip] | None = None  # drawn when first in sight


class TrafficLog(ScrollView, can_focus=True):
    """The selected session's records; lines are drawn only when they come into sight."""

    DEFAULT_CSS = """
    TrafficLog { background: $surface; color: $foreground; overflow: auto auto; }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.hex_view = False
        self._entries: collections.deque[_Entry] = collections.deque(maxlen=LOG_RECORDS)
        self._starts: list[int] = []  # each entry's first line; rebuilt when entries change
        self._total = 0
        self._dirty = False
        self._widest = 0  # the widest line drawn so far (the virtual width)
        self.writes = 0  # how many times the log was added to (a flood: once a tick)
        self.drawn = 0  # records drawn so far (those that came into sight)

    # -- content ------------------------------------------------------------------------
    def show(self, records: Iterable[Record], hex_view: bool) -> None:
        """Replace what is shown (another session, the hex toggle, a search); the view goes to the end."""
        self.hex_view = hex_view
        self._entries.clear()
        self._widest = 0
        self._add(records)
        self._follow()

    def add(self, records: Sequence[Record]) -> None:
        """New records at the end (older ones leave past LOG_RECORDS); follow them if at the end."""
        if not records:
            return
        following = self.scroll_offset.y >= self.max_scroll_y
        self.writes += 1
        self._add(records[-LOG_RECORDS:])
        if following:
            self._follow()

    def _follow(self) -> None:
        """To the end: in the next frame already (no frame drawn at the old place), and again once the
        layout has settled the scrollbars."""
        self.set_scroll(None, self.max_scroll_y)
        self.scroll_end(animate=False, immediate=False, x_axis=False)

    def clear(self) -> None:
        self.show((), self.hex_view)

    def _add(self, records: Iterable[Record]) -> None:
        hex_view = self.hex_view
        self._entries.extend(_Entry(record, line_count(record, hex_view)) for record in records)
        self._dirty = True
        self._resize()

    def _resize(self) -> None:
        self._index()
        self.virtual_size = Size(self._widest, self._total)  # unchanged once full of same-sized records
        self.refresh()

    def _index(self) -> None:
        if not self._dirty:
            return
        starts, line = [], 0
        for entry in self._entries:
            starts.append(line)
            line += entry.lines
        self._starts, self._total, self._dirty = starts, line, False

    @property
    def records(self) -> list[Record]:
        return [entry.record for entry in self._entries]

    def text(self) -> str:
        """Every line the log holds, as plain text (drawn or not)."""
        return "\n".join(record_text(entry.record, self.hex_view) for entry in self._entries)

    # -- drawing ---------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        style = self.rich_style
        self._index()
        line = scroll_y + y
        if line >= self._total:
            return Strip.blank(width, style)
        index = bisect.bisect_right(self._starts, line) - 1
        strips = self._strips(self._entries[index])
        return strips[line - self._starts[index]].crop_extend(scroll_x, scroll_x + width, style)

    def _strips(self, entry: _Entry) -> list[Strip]:
        if entry.strips is None:
            self.drawn += 1
            console = self.app.console
            style = self.rich_style
            entry.strips = [
                Strip(line.render(console), cell_len(line.plain)).apply_style(style)
                for line in record_lines(entry.record, self.hex_view)
            ]
            widest = max(strip.cell_length for strip in entry.strips)
            if widest > self._widest:  # wider than any line before: the sideways scroll grows after this frame
                self._widest = widest
                self.call_after_refresh(self._resize)
        return entry.strips


__all__ = ["LOG_RECORDS", "Record", "TrafficLog", "line_count", "record_lines", "record_of", "record_text"]
