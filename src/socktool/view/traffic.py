"""The traffic view: what the Windows SocketTool shows, drawn with rich.

One entry per event: time, peer, direction (→ sent, ← received), byte count
and the payload as escaped text or, with hex=True, a hex dump. Connection
events and a summary at close are drawn in the same stream.

Rule: the view is never the bottleneck of a transfer. Unless `full`, an
entry draws at most ROWS_PER_CHUNK rows of its chunk (then `… N more`), and
once ROWS_PER_SECOND rows went out in a second, further chunks are only
counted and drawn as one line (`… 37 chunks, 4.9 MiB`) when the next second
starts or anything else is drawn. Only the bytes that are shown are rendered.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from socktool.net import events as ev
from socktool.values import format_size
from socktool.view.render import escaped_lines, escaped_preview, hex_row_width, hexdump_lines, printable
from socktool.view.status import summary
from socktool.view.terminal import take_fresh_line

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.text import Text

ARROWS = {
    ev.SENT: ("→", "cyan"),
    ev.RECEIVED: ("←", "green"),
    ev.UPSTREAM: ("client → target", "cyan"),
    ev.DOWNSTREAM: ("client ← target", "green"),
}
INDENT = "  "
ROWS_PER_CHUNK = 8
ROWS_PER_SECOND = 120

Stream = tuple[int | None, str, str]  # (conn, peer, direction)


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


class TrafficView:
    def __init__(self, console: Console, *, hex: bool = False, numbered: bool = False, full: bool = False):
        from rich.text import Text  # the view is being drawn: rich is paid for here

        self._text = Text
        self.console = console
        self.hex = hex
        self.numbered = numbered
        self.full = full
        self._lock = threading.Lock()
        self._peer_width = 0  # peers are padded to the widest seen, so columns line up
        self._offsets: dict[Stream, int] = {}  # hex offsets run on across a connection's chunks
        self._window = 0.0  # start of the current second of the row budget
        self._rows = 0  # rows drawn in it
        self._held: dict[Stream, list[int]] = {}  # chunks counted, not drawn: [bytes, chunks]

    # -- layout -------------------------------------------------------------
    def _head(self, ts: float, conn: int | None, peer: str) -> Text:
        line = self._text()
        line.append(clock(ts), style="dim")  # the clock only: the payload keeps its own style
        line.append("  ")
        if conn is not None and self.numbered:
            line.append(f"#{conn} ", style="bold")
        peer = printable(peer)  # a unix peer names itself
        self._peer_width = max(self._peer_width, len(peer))
        line.append(peer.ljust(self._peer_width), style="blue")
        return line

    def _print(self, *lines: Text) -> None:
        width = max(1, self.console.width)
        if self.console.is_terminal and take_fresh_line():
            self.console.print()  # off the line where the terminal echoed ^C
        for line in lines:
            self.console.print(line, overflow="fold")
            self._rows += max(1, -(-line.cell_len // width))  # a folded line takes several rows

    # -- events -------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        with self._lock:
            if isinstance(event, ev.Data):
                self._chunk((event.conn, event.peer, event.direction), event.data)
                return
            if isinstance(event, ev.Datagram):
                self._chunk((None, event.peer, event.direction), event.data)
                return
            self._release_all()
            self._event(event)

    def _event(self, event: ev.Event) -> None:
        now = time.time()
        if isinstance(event, ev.Moved):
            line = self._head(now, event.conn, event.peer)
            arrow, style = ARROWS[event.direction]
            line.append(f"  {arrow} {format_size(event.size):>9}", style=style)
            line.append(f"  from {event.source}" if event.source else "", style="dim")
            self._print(line)
        elif isinstance(event, ev.Connected):
            line = self._head(now, event.conn, event.peer)
            line.append("  ⇄ connected" + (" (incoming)" if event.inbound else ""), style="bold green")
            self._print(line)
        elif isinstance(event, ev.Closed):
            line = self._head(now, event.conn, event.peer)
            line.append(f"  ✕ closed: {event.reason}", style="bold yellow")
            totals = self._text(INDENT + summary(event.sent, event.received, event.duration), style="dim")
            self._print(line, totals)
        elif isinstance(event, ev.Rejected):
            line = self._head(now, None, event.peer)
            line.append(f"  ⊘ rejected: {event.reason}", style="bold red")
            self._print(line)
        elif isinstance(event, ev.Stats) and (event.connections != 1 or event.datagrams_in or event.datagrams_out):
            # one connection: its closed line already carries the totals
            self._print(self._text(f"{clock(now)}  Σ {stats_text(event)}", style="dim"))

    # -- payload ------------------------------------------------------------
    def _chunk(self, stream: Stream, data: bytes) -> None:
        offset = self._offsets.get(stream, 0) if stream[0] is not None else 0
        self._offsets[stream] = offset + len(data)
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._rows = now, 0
            self._release_all()
        if not self.full and (self._rows >= ROWS_PER_SECOND or stream in self._held):
            held = self._held.setdefault(stream, [0, 0])
            held[0] += len(data)
            held[1] += 1
            return
        self._release_others(stream)
        self._draw_chunk(stream, data, offset)

    def _draw_chunk(self, stream: Stream, data: bytes, offset: int) -> None:
        conn, peer, direction = stream
        line = self._head(time.time(), conn, peer)
        arrow, style = ARROWS[direction]
        line.append(f"  {arrow} ", style=f"bold {style}")
        line.append(f"{format_size(len(data)):>9}", style=style)
        body, shown = self._body(data, offset)
        if self.hex or len(body) > 1 or shown < len(data):
            rest = [self._text(INDENT + row) for row in body]
            if shown < len(data):
                rest.append(self._text(f"{INDENT}… {format_size(len(data) - shown)} more", style="dim"))
            self._print(line, *rest)
        else:
            line.append("  ")
            line.append(body[0] if body else "")
            self._print(line)

    def _body(self, data: bytes, offset: int) -> tuple[list[str], int]:
        """The rows that show `data` and how many of its bytes they show."""
        columns = self.console.width - len(INDENT)
        if self.hex:
            width = hex_row_width(self.console.width, len(INDENT))
            shown = len(data) if self.full else min(len(data), ROWS_PER_CHUNK * width)
            return hexdump_lines(data[:shown], width=width, offset=offset), shown
        if self.full:
            return escaped_lines(data), len(data)
        return escaped_preview(data, rows=ROWS_PER_CHUNK, columns=columns)

    def _release_others(self, stream: Stream) -> None:
        if self._held and any(key != stream for key in self._held):
            self._release_all()

    def _release_all(self) -> None:
        """Draw one line per stream for the chunks that were only counted."""
        held, self._held = self._held, {}
        for (conn, peer, direction), (size, chunks) in held.items():
            line = self._head(time.time(), conn, peer)
            arrow, style = ARROWS[direction]
            line.append(f"  {arrow} {format_size(size):>9}", style=style)
            plural = "s" if chunks != 1 else ""
            line.append(f"  … {chunks:,} chunk{plural} not drawn (--full draws every one)", style="dim")
            self._print(line)


def stats_text(event: ev.Stats) -> str:
    text = ""
    if event.datagrams_in or event.datagrams_out:
        text = f"{plural(event.datagrams_in, 'datagram')} in, {event.datagrams_out} out; "
    return text + summary(event.sent, event.received, event.duration)


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
