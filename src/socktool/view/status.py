"""Status lines on stderr: listening, connected, closed, stats, notices."""

from __future__ import annotations

from socktool.net import events as ev
from socktool.values import format_duration, format_size
from socktool.view.render import escape_text
from socktool.view.terminal import Terminal


def listening_kind(event: ev.Listening) -> str:
    """What listens: a unix socket's kind says unix, not the tcp/udp its command is named after."""
    if event.address.startswith("unix:") and event.kind in ("tcp", "udp"):
        return "unix stream" if event.kind == "tcp" else "unix datagram"
    return event.kind


def rate(count: int, seconds: float) -> str:
    return f"{format_size(count / seconds)}/s" if seconds > 0 else "-"


def summary(sent: int, received: int, duration: float) -> str:
    moved = max(sent, received)
    return (
        f"{format_size(sent)} sent, {format_size(received)} received "
        f"in {format_duration(duration)} ({rate(moved, duration)})"
    )


def served_line(event: ev.Served) -> str:
    line = f"{event.kind} #{event.count} {event.peer}: {event.received} B in, {event.sent} B out"
    if event.request is not None:
        request = event.request if len(event.request) <= 60 else event.request[:57] + b"..."
        line += f", format '{escape_text(request)}'"
    if event.error:
        line += f" (error reply: {event.error})"
    return line


def tls_line(event: ev.Tls, who: str) -> str:
    line = f"tls {who}: {event.version} {event.cipher}"
    if event.alpn:
        line += f", alpn {event.alpn}"
    if not event.fingerprint:
        return line + ", no peer certificate"
    how = {"ca": "verified", "pin": "pinned", "insecure": "NOT verified", "client-ca": "verified"}.get(event.verified)
    line += f"; peer {event.subject or '(no subject)'}, issuer {event.issuer or '(none)'}"
    if event.sans:
        line += f", {' '.join(event.sans)}"
    return line + f", expires {event.not_after}, {event.fingerprint}" + (f" ({how})" if how else "")


def stats_line(event: ev.Stats) -> str:
    datagrams = event.datagrams_in or event.datagrams_out
    parts = (
        []
        if datagrams and not event.connections
        else [f"{event.connections} connection{'s' if event.connections != 1 else ''}"]
    )
    if datagrams:
        plural = "s" if event.datagrams_in != 1 else ""
        parts.append(f"{event.datagrams_in} datagram{plural} in, {event.datagrams_out} out")
    if event.dropped:
        parts.append(f"{event.dropped} dropped (loop check)")
    return "total: " + ", ".join(parts) + "; " + summary(event.sent, event.received, event.duration)


class StatusLines:
    """Writes one plain line per event to stderr, when status lines are on.

    `connections=False` leaves connection events to a traffic view that draws
    them itself, so a terminal does not see them twice.
    """

    def __init__(self, terminal: Terminal, *, connections: bool = True, numbered: bool = False, stats: bool = False):
        self.terminal = terminal
        self.connections = connections
        self.numbered = numbered
        self.stats = stats  # a totals line for ev.Stats (servers, whose closed lines are per client)

    def _who(self, conn: int, peer: str) -> str:
        return f"#{conn} {peer}" if self.numbered else peer

    def __call__(self, event: ev.Event) -> None:
        t = self.terminal
        if isinstance(event, ev.Listening):
            tls = f", tls {event.tls_fingerprint}" if event.tls_fingerprint else ""
            t.always(f"listening on {event.address} ({listening_kind(event)}{tls})")
        elif isinstance(event, ev.Tls):
            t.status(tls_line(event, self._who(event.conn, event.peer)))
        elif isinstance(event, ev.Notice):
            t.warn(event.message) if event.warning else t.status(event.message)
        elif isinstance(event, ev.Served):
            t.status(served_line(event))
        elif isinstance(event, ev.Stats):
            if self.stats:
                t.status(stats_line(event))
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
