"""--hex when stdout is not a terminal: the received bytes as a plain hex dump (like
`| xxd`), never ignored.

Rule: a connection's bytes are one dump, its offsets running on across chunks; each
chunk is written as it comes (its last row may be short, so that a reply is seen at
once); each datagram is a dump of its own. What we send is not written, as in the
raw pipe.
"""

from __future__ import annotations

from collections.abc import Callable

from socktool.net import events as ev
from socktool.view.render import hexdump_lines

ROW = 16


class HexOut:
    def __init__(self, write: Callable[[bytes], None]):
        self.write = write  # all of its bytes to stdout (Terminal.write_out)
        self._offsets: dict[int, int] = {}  # conn → bytes dumped so far

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.write(("\n".join(lines) + "\n").encode())

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Data) and event.direction == ev.RECEIVED:
            offset = self._offsets.get(event.conn, 0)
            self._offsets[event.conn] = offset + len(event.data)
            self._write(hexdump_lines(event.data, width=ROW, offset=offset))
        elif isinstance(event, ev.Datagram) and event.direction == ev.RECEIVED:
            self._write(hexdump_lines(event.data, width=ROW))
        elif isinstance(event, ev.Closed):
            self._offsets.pop(event.conn, None)
