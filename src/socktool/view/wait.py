"""wait's output: a line on stderr per endpoint as it gets there, and a spinner
on a terminal while it waits. Silent with -q; rich only for the spinner.
With --json, also a record on stdout per endpoint (view/jsonl.py's schema):
"up" (or "down" with --invert) as it gets there, "failed" for each one
still late at the timeout, with its last failure.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from socktool.net.events import Ready
from socktool.values import format_duration
from socktool.view.terminal import Terminal

if TYPE_CHECKING:  # pragma: no cover
    from rich.progress import Progress


def ready_record(ready: Ready, *, invert: bool) -> dict[str, object]:
    record: dict[str, object] = {
        "event": "down" if invert else "up",
        "ts": round(time.time(), 6),
        "endpoint": ready.endpoint,
        "elapsed": round(ready.elapsed, 6),
    }
    if ready.detail:
        record["detail"] = ready.detail
    return record


def ready_line(ready: Ready, *, invert: bool) -> str:
    after = format_duration(ready.elapsed)
    if invert:
        return f"{ready.endpoint} is down ({ready.detail}, after {after})"
    return f"{ready.endpoint} is up (after {after})"


class WaitView:
    def __init__(self, terminal: Terminal, waiting_for: list[str], *, invert: bool = False, json: bool = False):
        self.terminal = terminal
        self.invert = invert
        self.json = None
        if json:
            from socktool.view.jsonl import JsonLines

            self.json = JsonLines(terminal.write_out)
        self.pending = list(waiting_for)
        self.spinner = terminal.stderr_isatty and not terminal.quiet
        self._lock = threading.Lock()
        self._progress: Progress | None = None

    def _description(self) -> str:
        goal = "to stop accepting" if self.invert else ""
        return " ".join(filter(None, ["waiting for", ", ".join(self.pending), goal]))

    def __enter__(self) -> WaitView:
        if self.spinner:
            from rich.progress import (
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.terminal.console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(self._description(), total=None)
            self._progress.start()
        return self

    def __call__(self, ready: Ready) -> None:
        """An endpoint got there (called from a watcher thread)."""
        line = ready_line(ready, invert=self.invert)
        if self.json is not None:
            self.json.write(ready_record(ready, invert=self.invert))
        with self._lock:
            text = str(ready.endpoint)
            if text in self.pending:
                self.pending.remove(text)
            if self._progress is not None:
                # Printed through the live display, so the spinner redraws below it.
                self._progress.console.print(f"socktool: {line}", style="green", highlight=False)
                self._progress.update(self._task, description=self._description())
            else:
                self.terminal.always(line)

    def failed(self, endpoint: str, reason: str, elapsed: float) -> None:
        """The wait timed out with this endpoint not there: its record with --json."""
        if self.json is not None:
            ts = round(time.time(), 6)
            self.json.write({"event": "failed", "ts": ts, "endpoint": endpoint, "elapsed": elapsed, "reason": reason})

    def missed(self, endpoint: str, reason: str) -> None:
        """An attempt that did not get there: a status line with -v (called from a watcher thread)."""
        if not self.terminal.verbose or self.terminal.quiet:
            return
        line = f"{endpoint}: {reason}; trying again"
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(f"socktool: {line}", style="dim", highlight=False)
            else:
                self.terminal.status(line)

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()
