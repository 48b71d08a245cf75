"""The terminal a command runs in, and the one place that decides the view.

Rule: nothing else looks at isatty, NO_COLOR or -v/-q. Commands build one
`Terminal` from their output options and ask it where things go.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

from socktool.net.errors import OutputClosed, output_error
from socktool.values import printable

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


class Mode(Enum):
    RAW = "raw"  # payload bytes to stdout untouched
    VIEW = "view"  # rich traffic view on stdout
    JSON = "json"  # one JSON object per line on stdout
    HEX = "hex"  # --hex with stdout not a terminal: the received bytes as a plain hex dump


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


_fresh_line_owed = False  # the terminal echoed ^C where the cursor was: a line written next starts anew


def note_interrupt() -> None:
    """On SIGINT: a terminal that echoes control characters (ECHO and ECHOCTL) has just
    written ^C at the start of the line the next output would continue. Not when readline
    or a full-screen app holds it with echo off."""
    import termios

    echoctl = getattr(termios, "ECHOCTL", 0)
    for fd in (0, 2, 1):
        try:
            lflag = termios.tcgetattr(fd)[3]
        except (termios.error, OSError):
            continue
        if echoctl and lflag & (termios.ECHO | echoctl) == termios.ECHO | echoctl:
            owe_fresh_line()
        return


def owe_fresh_line() -> None:
    """The next line written at the terminal starts on a new one (the cursor is mid-line)."""
    global _fresh_line_owed
    _fresh_line_owed = True


def take_fresh_line() -> bool:
    """Whether a line about to be written at the terminal must start on a new one (asked once)."""
    global _fresh_line_owed
    owed, _fresh_line_owed = _fresh_line_owed, False
    return owed


def color_wanted() -> bool:
    """The environment's say: NO_COLOR set to anything but "" turns colour off (no-color.org),
    and so does TERM=dumb."""
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


class Terminal:
    """Where output goes and what the user asked of it. Tests build their own."""

    def __init__(
        self,
        *,
        verbose: bool = False,
        quiet: bool = False,
        no_color: bool = False,
        debug: bool = False,
        stdin_isatty: bool = False,
        stdout_isatty: bool = False,
        stderr_isatty: bool = False,
        stdin_fd: int = 0,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
    ):
        self.verbose = verbose
        self.quiet = quiet
        self.no_color = no_color
        self.debug = debug
        self.stdin_isatty = stdin_isatty
        self.stdout_isatty = stdout_isatty
        self.stderr_isatty = stderr_isatty
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        # Writes to stderr come from several threads; lines must not interleave.
        self._lock = threading.Lock()

    @classmethod
    def from_options(
        cls, *, verbose: bool = False, quiet: bool = False, no_color: bool = False, debug: bool = False
    ) -> Terminal:
        return cls(
            verbose=verbose,
            quiet=quiet,
            no_color=no_color or not color_wanted(),
            debug=debug,
            stdout_isatty=_isatty(1),
            stderr_isatty=_isatty(2),
            stdin_isatty=_isatty(0),
        )

    def mode(self, *, view: bool | None = None, json: bool = False, hex: bool = False) -> Mode:
        """--json wins; then --view/--raw; then stdout being a TTY. --hex without the view
        is a plain hex dump, never ignored (with --raw or --json it is refused at parsing)."""
        if json:
            return Mode.JSON
        if view is None:
            view = self.stdout_isatty
        if view:
            return Mode.VIEW
        return Mode.HEX if hex else Mode.RAW

    @property
    def show_status(self) -> bool:
        """Status lines: when stderr is a TTY or with -v; never with -q."""
        return not self.quiet and (self.verbose or self.stderr_isatty)

    @property
    def color(self) -> bool:
        return not self.no_color

    # -- stdout: what the views draw --------------------------------------
    def write_out(self, data: bytes) -> None:
        """All of `data` to stdout; a reader that left ends the command quietly (OutputClosed)."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.stdout_fd, view) :]
        except OSError as exc:  # EPIPE: OutputClosed, a quiet end; a full disk: OutputFailed, exit 1
            raise output_error(exc) from exc

    # -- stderr ---------------------------------------------------------
    def write_err(self, line: str) -> None:
        if self.stderr_isatty and take_fresh_line():
            line = "\n" + line  # off the line where the terminal echoed ^C
        data = (line + "\n").encode(errors="replace")
        with self._lock:
            try:
                os.write(self.stderr_fd, data)
            except OSError:
                pass  # stderr gone: nothing left to tell

    def status(self, message: str) -> None:
        if self.show_status:
            self.write_err(self._style(f"socktool: {message}", "2"))

    def always(self, message: str) -> None:
        """A status line shown unless -q (e.g. the port a listener got)."""
        if not self.quiet:
            self.write_err(self._style(f"socktool: {message}", "2"))

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.write_err(self._style(f"socktool: warning: {message}", "33"))

    def _style(self, text: str, sgr: str) -> str:
        text = printable(text)  # no control character from a name or path reaches the terminal
        if self.color and self.stderr_isatty:
            return f"\x1b[{sgr}m{text}\x1b[0m"
        return text

    # -- rich consoles, created only when something is drawn --------------
    def console(self, *, stderr: bool = False) -> Console:
        from rich.console import Console

        console = Console(
            file=sys.stderr if stderr else sys.stdout,
            no_color=not self.color,
            color_system="auto" if self.color else None,  # NO_COLOR: no styling at all
            force_terminal=None,
            highlight=False,
            soft_wrap=False,
            emoji=False,
            markup=False,
        )
        # rich's own answer to a closed pipe is SystemExit(1); ours is a quiet exit 0, made
        # by the boundary (stdout), or nothing more to tell (stderr).
        console.on_broken_pipe = _stderr_gone(console) if stderr else _stdout_gone  # type: ignore[method-assign]
        return console


def _stdout_gone() -> None:
    raise OutputClosed


def _stderr_gone(console: Console) -> Callable[[], None]:
    def quiet() -> None:
        console.quiet = True

    return quiet
