"""Build the sink a command reports to, from its Terminal and mode.

The one place that composes views: the payload view chosen by the
Terminal (raw, rich, JSON) plus status lines on stderr.
"""

from __future__ import annotations

from socktool.net import events as ev
from socktool.net.errors import OutputClosed
from socktool.view.status import StatusLines
from socktool.view.terminal import Mode, Terminal


def build_sink(
    terminal: Terminal, mode: Mode, *, hex: bool = False, numbered: bool = False, stats: bool = False
) -> ev.Sink:
    status = StatusLines(terminal, connections=mode is not Mode.VIEW, numbered=numbered, stats=stats)
    if mode is Mode.RAW:
        return status
    if mode is Mode.JSON:
        from socktool.view.jsonl import JsonLines

        payload: ev.Sink = JsonLines(terminal.write_out)
    else:
        from socktool.view.traffic import TrafficView

        payload = TrafficView(terminal.console(), hex=hex, numbered=numbered)

    def both(event: ev.Event) -> None:
        try:
            payload(event)
        except BrokenPipeError as exc:  # the reader of stdout left: a quiet end, not a failure
            raise OutputClosed from exc
        status(event)

    return both
