"""portscan's output: a table on a terminal, `PORT/tcp STATE SERVICE` lines in a
pipe, JSON Lines with --json; a progress bar on stderr while a big scan runs.

Rule: results are written after the scan, by port, open ports only unless
--all; the summary says what was left out. rich is imported only to draw
the table or the bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from socktool.net.events import (
    CLOSED,
    ERROR,
    FILTERED,
    OPEN,
    OPEN_FILTERED,
    STATES,
    UDP_STATES,
    ScanResult,
    Target,
    count_states,
)
from socktool.values import format_duration, printable
from socktool.view.render import text_or_none
from socktool.view.terminal import Mode, Terminal

if TYPE_CHECKING:  # pragma: no cover
    from rich.progress import Progress
    from rich.text import Text

BANNER_WIDTH = 60
PROGRESS_MIN_PORTS = 300  # smaller scans are over before a bar is worth drawing
STATE_STYLES = {OPEN: "bold green", CLOSED: "dim", FILTERED: "yellow", OPEN_FILTERED: "yellow", ERROR: "red"}
_QUIET_DETAILS = (
    "",
    "refused",
    "no answer",
    "reply",
    "no reply",
    "port unreachable",
)  # the usual reason for a state: not worth a note


def latency_ms(result: ScanResult) -> float | None:
    return None if result.latency is None else round(result.latency * 1000, 3)


def latency_text(result: ScanResult) -> str:
    ms = latency_ms(result)
    if ms is None:
        return "-"
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.0f} ms"


def port_record(
    target: Target, result: ScanResult, service: str | None, *, protocol: str = "tcp", banner: bytes | None = None
) -> dict[str, object]:
    record: dict[str, object] = {
        "event": "port",
        "host": target.address,
        "port": result.port,
        "state": result.state,
        "service": service,
        "latency_ms": latency_ms(result),
    }
    if protocol != "tcp":
        record["protocol"] = protocol
    if banner is not None:
        record["banner"] = text_or_none(banner)
        record["banner_hex"] = banner.hex()
    return record


def banner_text(banner: bytes | None, width: int = BANNER_WIDTH) -> str:
    """A banner as a table or a line shows it: its first line, escaped, cut to `width`."""
    if not banner:
        return ""
    first = banner.split(b"\n", 1)[0].rstrip(b"\r")
    text = printable(first.decode("utf-8", "surrogateescape"))
    return text if len(text) <= width else text[: width - 1] + "…"


def plain_line(result: ScanResult, service: str | None, protocol: str = "tcp", banner: bytes | None = None) -> str:
    line = f"{result.port}/{protocol} {result.state} {service or 'unknown'}"
    shown = banner_text(banner)
    return f"{line} {shown}" if shown else line


def summary_line(
    target: Target, counts: dict[str, int], *, show_all: bool, elapsed: float, listed: tuple[str, ...] = (OPEN,)
) -> str:
    total = sum(counts.values())
    name = target.address if target.host == target.address else f"{target.host} ({target.address})"
    shown = [f"{counts[OPEN]} open"]
    hidden: list[str] = []
    for state in [state for state in counts if state != OPEN]:
        if counts[state]:
            (shown if show_all or state in listed else hidden).append(f"{counts[state]} {state}")
    text = f"{name}: {total} port{'s' if total != 1 else ''} scanned in {format_duration(elapsed)}: " + ", ".join(shown)
    if hidden:
        text += "; not shown: " + ", ".join(hidden)
    return text


def summary_record(target: Target, counts: dict[str, int], elapsed: float) -> dict[str, object]:
    record: dict[str, object] = {"event": "summary", "host": target.address, "name": target.host}
    record["ports"] = sum(counts.values())
    record.update(counts)
    record["elapsed_ms"] = round(elapsed * 1000, 3)
    return record


class ScanReport:
    """Shows a finished scan in the output mode the Terminal chose."""

    def __init__(
        self,
        terminal: Terminal,
        mode: Mode,
        target: Target,
        services: Callable[[int], str | None],
        *,
        show_all: bool = False,
        protocol: str = "tcp",
        banners: dict[int, bytes] | None = None,
    ):
        self.terminal = terminal
        self.mode = mode
        self.target = target
        self.show_all = show_all
        self.services = services
        self.protocol = protocol
        self.banners = banners  # None: not asked for (--banner)

    def _listed(self) -> tuple[str, ...]:
        """The states shown without --all. UDP: an open|filtered port may be open, so it is listed too."""
        return (OPEN, OPEN_FILTERED) if self.protocol == "udp" else (OPEN,)

    def _banner(self, port: int) -> bytes | None:
        return None if self.banners is None else self.banners.get(port, b"")

    def show(self, results: list[ScanResult], elapsed: float) -> None:
        listed = self._listed()
        shown = results if self.show_all else [r for r in results if r.state in listed]
        counts = count_states(results, UDP_STATES if self.protocol == "udp" else STATES)
        if self.mode is Mode.JSON:
            records = [
                port_record(self.target, r, self.services(r.port), protocol=self.protocol, banner=self._banner(r.port))
                for r in shown
            ]
            records.append(summary_record(self.target, counts, elapsed))
            import json  # json costs start-up: only with --json

            from socktool.view.jsonl import shaped

            self._write(json.dumps(shaped(record), separators=(",", ":")) for record in records)
            return
        if self.mode is Mode.VIEW:
            if shown:
                self._table(shown)
        else:
            self._write(plain_line(r, self.services(r.port), self.protocol, self._banner(r.port)) for r in shown)
        self.terminal.status(
            summary_line(self.target, counts, show_all=self.show_all, elapsed=elapsed, listed=self._listed())
        )

    def _write(self, lines: Iterable[str]) -> None:
        """Lines to stdout in a few large writes (a full scan with --all is 65535 of them)."""
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line) + 1
            if size >= 1 << 16:
                self.terminal.write_out(("\n".join(chunk) + "\n").encode())
                chunk, size = [], 0
        if chunk:
            self.terminal.write_out(("\n".join(chunk) + "\n").encode())

    def _table(self, shown: list[ScanResult]) -> None:
        from rich.table import Table
        from rich.text import Text

        notes = any(r.detail not in _QUIET_DETAILS for r in shown)
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("PORT", justify="right")
        table.add_column("STATE")
        table.add_column("SERVICE")
        table.add_column("LATENCY", justify="right")
        if notes:
            table.add_column("NOTE", style="dim")
        if self.banners is not None:
            table.add_column("BANNER", overflow="fold")
        for r in shown:
            row: list[str | Text] = [
                f"{r.port}/{self.protocol}",
                Text(r.state, style=STATE_STYLES[r.state]),
                self.services(r.port) or "unknown",
                latency_text(r),
            ]
            if notes:
                row.append("" if r.detail in _QUIET_DETAILS else r.detail)
            if self.banners is not None:
                row.append(Text(banner_text(self._banner(r.port))))
            table.add_row(*row)
        self.terminal.console().print(table)


class ScanProgress:
    """A transient bar on stderr, fed by a ticker thread that reads the scanner's counter.

    The scan loop itself pays nothing for the bar. Off unless stderr is a
    terminal, -q is not given and the scan is big enough; and drawn only
    once the scan has run for DELAY, so a quick one does not flash a bar.
    """

    DELAY = 0.2

    def __init__(self, terminal: Terminal, label: str, total: int, done: Callable[[], int]):
        self.terminal = terminal
        self.label = label
        self.total = total
        self.done = done
        self.enabled = terminal.stderr_isatty and not terminal.quiet and total >= PROGRESS_MIN_PORTS
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: Progress | None = None

    def __enter__(self) -> ScanProgress:
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, name="scan-progress", daemon=True)
            self._thread.start()
        return self

    def _start(self) -> Progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.terminal.console(stderr=True),
            transient=True,
        )
        self._task = progress.add_task(f"scanning {self.label}", total=self.total, completed=self.done())
        progress.start()
        self._progress = progress
        return progress

    def _tick(self) -> None:
        if self._stop.wait(self.DELAY):
            return
        progress = self._start()
        while not self._stop.wait(0.1):
            progress.update(self._task, completed=self.done())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done())
            self._progress.stop()
