"""--record FILE: every event, payload bytes included, as JSON Lines in a file.

The records are exactly those of --json (view/jsonl.py), one object per line,
each stamped with `ts`; a `data` (or datagram) record carries its bytes in
full as `hex`, so a recording rebuilds the exact bytes of each connection and
direction (the `hex` of its records, joined in file order), for a later replay.
"""

from __future__ import annotations

import functools
import os

from socktool.net import events as ev
from socktool.net.errors import UsageError, describe


def recorder(path: str) -> ev.Sink:
    """A sink writing JSON Lines to `path` (created, or emptied)."""
    return Recording(path)


class Recording:
    """A recording being written: a sink, and `close()` to end it (called where the sink is)."""

    def __init__(self, path: str):
        from socktool.view.jsonl import JsonLines

        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot write the recording to {path}", describe(exc)) from exc
        self.path = path
        self._lines = JsonLines(functools.partial(_write_all, self.fd))

    def __call__(self, event: ev.Event) -> None:
        if self.fd >= 0:
            self._lines(event)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
