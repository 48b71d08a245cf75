"""Status lines on stderr: listening, connected, closed, stats, notices."""

from __future__ import annotations

from socktool.net import events as ev
from socktool.net.values import format_duration, format_size
from socktool.view.terminal import Terminal


def rate(count: int, seconds: float) -> str:
    return f"{format_size(count / seconds)}/s" if seconds > 0 else "-"


def summary(sent: int, received: int, duration: float) -> str:
    moved = max(sent, received)
    return (
        f"{format_size(sent)} sent, {format_size(received)} received "
        f"in {format_duration(duration)} ({rate(moved, duration)})"
    )


class StatusLines:
    """Writes one plain line per event to stderr, when status lines are on.

    `connections=False` leaves connection events to a traffic view that draws
    them itself, so a terminal does not see them twice.
    """

    def __init__(self, terminal: Terminal, *, connections: bool = True, numbered: bool = False):
        self.terminal = terminal
        self.connections = connections
        self.numbered = numbered

    def _who(self, conn: int, peer: str) -> str:
        return f"#{conn} {peer}" if self.numbered else peer

    def __call__(self, event: ev.Event) -> None:
        t = self.terminal
        if isinstance(event, ev.Listening):
            t.always(f"listening on {event.address} ({event.kind})")
        elif isinstance(event, ev.Notice):
            t.warn(event.message) if event.warning else t.status(event.message)
        elif not self.connections:
            return
        elif isinstance(event, ev.Rejected):
            t.status(f"rejected {event.peer}: {event.reason}")
        elif isinstance(event, ev.Connected):
            verb = "connection from" if event.inbound else "connected to"
            t.status(f"{verb} {self._who(event.conn, event.peer)}")
        elif isinstance(event, ev.Closed):
            t.status(
                f"closed {self._who(event.conn, event.peer)} ({event.reason}): "
                + summary(event.sent, event.received, event.duration)
            )
