"""wait's output: a line on stderr per endpoint as it gets there, and a spinner
on a terminal while it waits. Silent with -q; rich only for the spinner."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from socktool.net.events import Ready
from socktool.values import format_duration
from socktool.view.terminal import Terminal

if TYPE_CHECKING:  # pragma: no cover
    from rich.progress import Progress


def ready_line(ready: Ready, *, invert: bool) -> str:
    after = format_duration(ready.elapsed)
    if invert:
        return f"{ready.endpoint} is down ({ready.detail}, after {after})"
    return f"{ready.endpoint} is up (after {after})"


class WaitView:
    def __init__(self, terminal: Terminal, waiting_for: list[str], *, invert: bool = False):
        self.terminal = terminal
        self.invert = invert
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
