"""--progress: a transfer bar on stderr (bytes, rate, and percent of a file on stdin).

The relay only bumps integer counters; a ticker thread reads them ten times a
second, so the payload path pays nothing for the bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from socktool.view.terminal import Terminal

Counters = Callable[[], "tuple[int, int]"]


class TransferProgress:
    def __init__(self, terminal: Terminal, counters: Counters, *, total: int | None = None):
        self.terminal = terminal
        self.counters = counters
        self.total = total
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TransferProgress:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        columns: list[ProgressColumn] = [TextColumn("{task.description}")]
        if self.total is not None:
            columns += [BarColumn(), TaskProgressColumn()]
        columns += [DownloadColumn(binary_units=True), TransferSpeedColumn(), TimeElapsedColumn()]
        self._progress = Progress(*columns, console=self.terminal.console(stderr=True), transient=False)
        self._sent = self._progress.add_task("→ sent", total=self.total)
        self._received = self._progress.add_task("← received", total=None)
        self._progress.start()
        self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._thread.start()
        return self

    def _update(self) -> None:
        sent, received = self.counters()
        self._progress.update(self._sent, completed=sent)
        self._progress.update(self._received, completed=received)

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            self._update()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._update()
        self._progress.stop()
