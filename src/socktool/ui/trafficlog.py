"""A session's traffic on screen: records, and the log widget that draws only what is in sight.

Rules:
- a record is drawn as lines: a head (time, client, peer, direction, size;
  or a notice) and its bytes as escaped text or a hex dump, one line per
  line of the payload, wrapped at the log's width; the hex dump shows as
  many bytes a line as fit (16, 8 or 4: `dump_width`), so it never wraps;
- the widget knows how many rows each record takes from its plain text,
  without drawing it (`rows_of`), so that a record costs no drawing until
  it scrolls into sight: a flood, a hex toggle or a search over the
  LOG_RECORDS kept costs the screen the rows it shows, never the whole log;
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


def dump_width(columns: int) -> int:
    """Bytes a hex-dump line shows in `columns`: 16, 8 or 4 (a line of N bytes is 4N+14 columns)."""
    return next((width for width in (16, 8) if 4 * width + 14 <= columns), 4)


def _parts(record: Record, hex_width: int) -> tuple[list[tuple[str, str]], list[str]]:
    """The record's head as (text, style) pieces, and its body's lines."""
    head = [(clock(record.ts), "dim"), ("  ", "")]
    if not record.direction:
        head.append((printable(record.note), "yellow" if record.warning else "italic"))
        return head, []
    if record.conn is not None:
        head.append((f"#{record.conn} ", "bold"))
    arrow, colour = ARROWS.get(record.direction, ("?", ""))
    head += [(printable(record.peer), "blue"), (f" {arrow} {len(record.data)} B", colour)]
    if hex_width:  # the offsets set the dump apart: no indent, so that 8 bytes a line fit at 80 columns
        return head, hexdump_lines(record.data, width=hex_width)
    return head, ["  " + line for line in escaped_lines(record.data)]


def record_lines(record: Record, hex_width: int = 0) -> list[Text]:
    """The record as drawn: its head, then the payload's lines (a hex dump when hex_width is not 0)."""
    head, body = _parts(record, hex_width)
    return [Text.assemble(*head), *(Text(line) for line in body)]


def plain_lines(record: Record, hex_width: int = 0) -> list[str]:
    head, body = _parts(record, hex_width)
    return ["".join(text for text, _ in head), *body]


def record_text(record: Record, hex_view: bool) -> str:
    """The record as plain text (what a search looks in)."""
    return "\n".join(plain_lines(record, HEX_WIDTH if hex_view else 0))


def rows_of(record: Record, hex_width: int, columns: int) -> int:
    """How many rows the record takes, each line wrapped at `columns` (from its text: nothing is drawn)."""
    return sum(max(1, -(-cell_len(line) // columns)) for line in plain_lines(record, hex_width))


class _Entry:
    __slots__ = ("record", "rows", "strips")

    def __init__(self, record: Record, rows: int):
        self.record = record
        self.rows = rows
        self.strips: list[Strip] | None = None  # drawn when first in sight


class TrafficLog(ScrollView, can_focus=True):
    """The selected session's records; rows are drawn only when they come into sight."""

    DEFAULT_CSS = """
    TrafficLog { background: $surface; color: $foreground; overflow-x: hidden; overflow-y: scroll; }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.hex_view = False
        self._entries: collections.deque[_Entry] = collections.deque(maxlen=LOG_RECORDS)
        self._starts: list[int] = []  # each entry's first row; rebuilt when entries change
        self._total = 0
        self._dirty = False
        self._columns = 0  # the width the rows were counted for
        self.writes = 0  # how many times the log was added to (a flood: once a tick)
        self.drawn = 0  # records drawn so far (those that came into sight)

    # -- content ------------------------------------------------------------------------
    def show(self, records: Iterable[Record], hex_view: bool) -> None:
        """Replace what is shown (another session, the hex toggle, a search); the view goes to the end."""
        self.hex_view = hex_view
        self._entries.clear()
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

    def clear(self) -> None:
        self.show((), self.hex_view)

    @property
    def columns(self) -> int:
        """The width rows are wrapped at (the scrollbar is always there: it does not change it)."""
        return max(20, self.scrollable_content_region.width)

    @property
    def hex_width(self) -> int:
        return dump_width(self.columns) if self.hex_view else 0

    def _add(self, records: Iterable[Record]) -> None:
        self._recount()
        hex_width, columns = self.hex_width, self._columns
        self._entries.extend(_Entry(record, rows_of(record, hex_width, columns)) for record in records)
        self._dirty = True
        self._resize()

    def _recount(self) -> bool:
        """Count the rows again if the width changed since they were counted (every record: rows wrap,
        and the hex dump's bytes a line, depend on it). True if it did."""
        columns = self.columns
        if columns == self._columns:
            return False
        self._columns = columns
        hex_width = self.hex_width
        for entry in self._entries:
            entry.rows = rows_of(entry.record, hex_width, columns)
            entry.strips = None
        self._dirty = True
        return True

    def on_resize(self) -> None:
        if self._recount():
            self._resize()
            self._follow()

    def _follow(self) -> None:
        """To the end: in the next frame already (no frame drawn at the old place), and again once the
        layout has settled."""
        self.set_scroll(None, self.max_scroll_y)
        self.scroll_end(animate=False, immediate=False, x_axis=False)

    def _resize(self) -> None:
        self._index()
        self.virtual_size = Size(self.columns, self._total)  # unchanged once full of same-sized records
        self.refresh()

    def _index(self) -> None:
        if not self._dirty:
            return
        starts, row = [], 0
        for entry in self._entries:
            starts.append(row)
            row += entry.rows
        self._starts, self._total, self._dirty = starts, row, False

    @property
    def records(self) -> list[Record]:
        return [entry.record for entry in self._entries]

    def text(self) -> str:
        """Every line the log holds, as plain text (drawn or not, unwrapped)."""
        hex_width = self.hex_width
        return "\n".join("\n".join(plain_lines(entry.record, hex_width)) for entry in self._entries)

    # -- drawing ---------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_y = self.scroll_offset.y
        width = self.size.width
        style = self.rich_style
        self._index()
        row = scroll_y + y
        if row >= self._total:
            return Strip.blank(width, style)
        index = bisect.bisect_right(self._starts, row) - 1
        strips = self._strips(self._entries[index])
        # min(): a frame drawn between a resize and its recount shows the record's last row, never fails.
        return strips[min(row - self._starts[index], len(strips) - 1)].crop_extend(0, width, style)

    def _strips(self, entry: _Entry) -> list[Strip]:
        if entry.strips is None:
            self.drawn += 1
            console, style, columns = self.app.console, self.rich_style, self._columns
            strips: list[Strip] = []
            for line in record_lines(entry.record, dump_width(columns) if self.hex_view else 0):
                strip = Strip(line.render(console), line.cell_len).apply_style(style)
                length = strip.cell_length
                # divide() leaves out what follows its last cut: the end is a cut too.
                strips += strip.divide([*range(columns, length, columns), length]) if length > columns else [strip]
            entry.strips = strips
        return entry.strips


__all__ = [
    "LOG_RECORDS",
    "Record",
    "TrafficLog",
    "dump_width",
    "plain_lines",
    "record_lines",
    "record_of",
    "record_text",
    "rows_of",
]
