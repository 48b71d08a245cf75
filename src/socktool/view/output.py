"""Build the sink a command reports to, from its Terminal and mode.

The one place that composes views: the payload view chosen by the
Terminal (raw, rich, JSON) plus status lines on stderr.
"""

from __future__ import annotations

from socktool.net import events as ev
from socktool.net.errors import output_error
from socktool.view.status import StatusLines
from socktool.view.terminal import Mode, Terminal


def build_sink(
    terminal: Terminal,
    mode: Mode,
    *,
    hex: bool = False,
    numbered: bool = False,
    stats: bool = False,
    record: str | None = None,
    full: bool = False,
) -> ev.Sink:
    """The view for `mode` and status lines; with `record`, every event also goes to that file."""
    sink = _view_sink(terminal, mode, hex=hex, numbered=numbered, stats=stats, full=full)
    if record is None:
        return sink
    from socktool.view.record import recorder

    recording = recorder(record)

    def with_recording(event: ev.Event) -> None:
        recording(event)
        sink(event)

    return with_recording


def _view_sink(terminal: Terminal, mode: Mode, *, hex: bool, numbered: bool, stats: bool, full: bool) -> ev.Sink:
    status = StatusLines(terminal, connections=mode is not Mode.VIEW, numbered=numbered, stats=stats)
    if mode is Mode.RAW:
        return status
    payload: ev.Sink
    if mode is Mode.JSON:
        from socktool.view.jsonl import JsonLines

        payload = JsonLines(terminal.write_out)
    elif mode is Mode.HEX:
        from socktool.view.hexout import HexOut

        payload = HexOut(terminal.write_out)
    else:
        from socktool.view.traffic import TrafficView

        payload = TrafficView(terminal.console(), hex=hex, numbered=numbered, full=full)

    def both(event: ev.Event) -> None:
        try:
            payload(event)
        except OSError as exc:  # the reader of stdout left (a quiet end), or stdout failed (exit 1)
            raise output_error(exc) from exc
        status(event)

    return both
