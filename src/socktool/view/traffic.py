"""The traffic view: what the Windows SocketTool shows, drawn with rich.

One entry per event: time, peer, direction (→ sent, ← received), byte count
and the payload as escaped text or, with hex=True, a hex dump. Connection
events and a summary at close are drawn in the same stream.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from socktool.net import events as ev
from socktool.values import format_size
from socktool.view.render import escaped_lines, hexdump_lines, printable
from socktool.view.status import summary

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console, RenderableType
    from rich.text import Text

ARROWS = {
    ev.SENT: ("→", "cyan"),
    ev.RECEIVED: ("←", "green"),
    ev.UPSTREAM: ("client → target", "cyan"),
    ev.DOWNSTREAM: ("client ← target", "green"),
}


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


class TrafficView:
    def __init__(self, console: Console, *, hex: bool = False, numbered: bool = False):
        from rich.text import Text  # the view is being drawn: rich is paid for here

        self._text = Text
        self.console = console
        self.hex = hex
        self.numbered = numbered
        self._lock = threading.Lock()

    def _head(self, ts: float, conn: int | None, peer: str) -> Text:
        line = self._text(clock(ts), style="dim")
        line.append("  ")
        if conn is not None and self.numbered:
            line.append(f"#{conn} ", style="bold")
        line.append(printable(peer), style="blue")  # a unix peer names itself
        return line

    def _print(self, *renderables: RenderableType) -> None:
        with self._lock:
            for renderable in renderables:
                self.console.print(renderable, overflow="fold")

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Data):
            self._payload(self._head(time.time(), event.conn, event.peer), event.direction, event.data)
        elif isinstance(event, ev.Datagram):
            self._payload(self._head(time.time(), None, event.peer), event.direction, event.data)
        elif isinstance(event, ev.Connected):
            line = self._head(time.time(), event.conn, event.peer)
            line.append("  ⇄ connected" + (" (incoming)" if event.inbound else ""), style="bold green")
            self._print(line)
        elif isinstance(event, ev.Closed):
            line = self._head(time.time(), event.conn, event.peer)
            line.append(f"  ✕ closed: {event.reason}", style="bold yellow")
            totals = self._text("    " + summary(event.sent, event.received, event.duration), style="dim")
            self._print(line, totals)
        elif isinstance(event, ev.Rejected):
            line = self._head(time.time(), None, event.peer)
            line.append(f"  ⊘ rejected: {event.reason}", style="bold red")
            self._print(line)
        elif isinstance(event, ev.Stats) and (event.connections != 1 or event.datagrams_in or event.datagrams_out):
            # one connection: its closed line already carries the totals
            text = (
                f"{event.datagrams_in} datagrams in, {event.datagrams_out} out; "
                if (event.datagrams_in or event.datagrams_out)
                else ""
            )
            text += summary(event.sent, event.received, event.duration)
            self._print(self._text(f"{clock(time.time())}  Σ {text}", style="dim"))

    def _payload(self, line: Text, direction: str, data: bytes) -> None:
        arrow, style = ARROWS[direction]
        line.append(f"  {arrow} ", style=f"bold {style}")
        line.append(f"{format_size(len(data)):>9}", style=style)
        body = hexdump_lines(data) if self.hex else escaped_lines(data) or [""]
        if self.hex or len(body) > 1:
            rest = [self._text("    " + row) for row in body]
            self._print(line, *rest)
        else:
            line.append("  ")
            line.append(body[0])
            self._print(line)
