"""The console at a terminal (readline) and its script twin (--control json).

Rules:
- only a terminal on stdin is a console; in a pipe stdin stays payload (the
  cli decides, through Terminal.stdin_isatty);
- line editing and history come from the standard library's readline (GNU
  readline on Linux): no extra dependency, the keys people already know, and
  its line buffer is readable (`get_line_buffer`), which is all we need to
  redraw the prompt;
- the prompt never garbles the traffic drawn above it: every event and answer
  is written under one lock as "erase the prompt line, write, draw the prompt
  and what was typed again" (`guard`);
- answers to commands go to stderr (the status stream), never into the
  payload on stdout; with --control json they are JSON objects on stdout,
  like the events;
- the terminal's settings are saved at start and put back at the end, even
  when the process ends while readline holds the line (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable

from socktool.console import Answer, Command, parse_json, parse_line
from socktool.net import events as ev
from socktool.values import LineSplitter, printable
from socktool.view.terminal import Terminal

Submit = Callable[[Command], None]
Report = Callable[[Answer], None]  # thread-safe: answers a line that did not parse
PROMPT = "> "
ERASE_LINE = "\r\x1b[K"
FIRST_EVENT_WAIT = 2.0


class PromptConsole:
    """Reads command lines at the terminal in a thread; keeps the prompt below the traffic."""

    def __init__(self, terminal: Terminal, submit: Submit, ended: Callable[[], None], report: Report):
        self.terminal = terminal
        self.submit = submit
        self.ended = ended
        self.report = report
        # readline draws its prompt on stdout: only when that is the terminal too (else plain lines, no prompt).
        self.editing = terminal.stdout_isatty
        self.prompt = PROMPT if self.editing else ""
        self._lock = threading.RLock()
        self._prompt_shown = False
        self._saved: list | None = None  # termios attributes to put back
        self._thread: threading.Thread | None = None
        # The prompt is first drawn after the first event (the listening line), not before it.
        self._first_event = threading.Event()

    # -- output --------------------------------------------------------------
    def guard(self, sink: ev.Sink) -> ev.Sink:
        """`sink`, with the prompt taken away while it writes and drawn again after."""

        def guarded(event: ev.Event) -> None:
            with self._lock:
                self._erase()
                try:
                    sink(event)
                finally:
                    self._redraw()
            self._first_event.set()

        return guarded

    def answer(self, answer: Answer) -> None:
        style = "31" if answer.kind == "error" else "36"
        text = "\n".join(printable(line) for line in answer.text.split("\n"))
        with self._lock:
            self._erase()
            try:
                prefix = "error: " if answer.kind == "error" else ""
                for line in text.split("\n"):
                    self._write_err(f"{prefix}{line}", style)
                    prefix = ""
            finally:
                self._redraw()

    def _write_err(self, line: str, sgr: str) -> None:
        if self.terminal.color and self.terminal.stderr_isatty:
            line = f"\x1b[{sgr}m{line}\x1b[0m"
        self.terminal.write_err(line)

    def _erase(self) -> None:
        if self.editing and self._prompt_shown:
            sys.stdout.flush()
            self._raw(ERASE_LINE)

    def _redraw(self) -> None:
        if self.editing and self._prompt_shown:
            sys.stdout.flush()
            import readline

            self._raw(self.prompt + readline.get_line_buffer())

    def _raw(self, text: str) -> None:
        try:
            os.write(self.terminal.stdout_fd, text.encode(errors="replace"))
        except OSError:
            pass

    # -- input ---------------------------------------------------------------
    def start(self, *, announced: bool = False) -> None:
        import termios

        if announced:
            self._first_event.set()
        try:
            self._saved = termios.tcgetattr(self.terminal.stdin_fd)
        except termios.error:
            self._saved = None
        if self.editing:
            import readline

            readline.parse_and_bind("set enable-bracketed-paste off")  # nothing left behind if we end mid-line
        self._thread = threading.Thread(target=self._read, name="console", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Put the terminal back as it was (readline may be holding it in its own mode)."""
        with self._lock:
            if self._prompt_shown:
                self._raw(ERASE_LINE)
                self._prompt_shown = False
        if self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self.terminal.stdin_fd, termios.TCSANOW, self._saved)
            except termios.error:
                pass

    def _read(self) -> None:
        self._first_event.wait(FIRST_EVENT_WAIT)
        while True:
            try:
                line = self._next_line()
            except EOFError:
                break
            except (OSError, ValueError):
                break
            if not line:
                continue
            try:
                command = parse_line(line)
            except ValueError as exc:
                self.report(Answer("error", str(exc)))
                continue
            self.submit(command)
        with self._lock:
            self._prompt_shown = False
        self.ended()

    def _next_line(self) -> str:
        if not self.editing:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line.rstrip("\r\n")
        with self._lock:
            self._prompt_shown = True
        try:
            return input(self.prompt)
        finally:
            with self._lock:
                self._prompt_shown = False


class JsonControl:
    """--control json: JSON Lines of commands on stdin; answers as JSON objects on stdout."""

    def __init__(self, terminal: Terminal, submit: Submit, ended: Callable[[], None], report: Report):
        self.terminal = terminal
        self.submit = submit
        self.ended = ended
        self.report = report
        self._thread: threading.Thread | None = None

    def guard(self, sink: ev.Sink) -> ev.Sink:
        return sink  # events and answers are written from the loop's thread, one after the other

    def answer(self, answer: Answer) -> None:
        record: dict[str, object] = {"event": answer.kind, "ts": round(time.time(), 6), "text": answer.text}
        record.update(answer.fields or {})
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        self.terminal.write_out(line.encode(errors="surrogateescape"))

    def start(self, *, announced: bool = False) -> None:
        self._thread = threading.Thread(target=self._read, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        pass

    def _read(self) -> None:
        splitter = LineSplitter()
        fd = self.terminal.stdin_fd
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            lines = splitter.feed(chunk) if chunk else splitter.close()
            for raw in lines:
                if raw.strip():
                    self._one(raw)
            if not chunk:
                break
        self.ended()

    def _one(self, raw: bytes) -> None:
        try:
            command = parse_json(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            self.report(Answer("error", str(exc)))
            return
        self.submit(command)


Console = PromptConsole | JsonControl

__all__ = ["Console", "JsonControl", "PromptConsole"]
