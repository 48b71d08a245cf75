"""The error boundary: the one place where exceptions become exit codes.

Every error is one line on stderr, `socktool: error: <what>: <detail>`;
a traceback only with --debug (or SOCKTOOL_DEBUG=1).
"""

from __future__ import annotations

import atexit
import enum
import os
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import NoReturn

from socktool.net import interrupts
from socktool.net.errors import OutputClosed, SocktoolError, Terminated


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILURE = 1  # network or runtime failure
    USAGE = 2  # bad option, address, port, duration
    INTERRUPTED = 130  # 128 + SIGINT
    TERMINATED = 143  # 128 + SIGTERM


def _error(message: str) -> None:
    from socktool.values import printable
    from socktool.view.terminal import color_wanted

    color = os.isatty(2) and color_wanted() and "--no-color" not in sys.argv
    line = f"socktool: error: {printable(message)}"
    text = f"\x1b[31m{line}\x1b[0m\n" if color else line + "\n"
    try:
        os.write(2, text.encode(errors="replace"))
    except OSError:
        pass  # stderr gone: the exit code still tells


def _json_error(args: Sequence[str], message: str, code: int) -> None:
    """With --json, a failure is a record on stdout too (the schema's "error" event)."""
    if "--json" not in args:
        return
    from socktool.view.jsonl import json_line

    try:
        os.write(1, json_line({"event": "error", "message": message, "exit": code}))
    except OSError:
        pass  # stdout gone: stderr and the exit code still tell


def _open_standard_fds() -> None:
    """Put /dev/null on whichever of fds 0, 1, 2 was closed when we started.

    Otherwise the first socket opened takes that number: on fd 0 it would be
    read as stdin and its own data sent back to the peer; on fd 1 payload
    would be written into it.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this fd
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _silence_stdout() -> None:
    """After the reader of stdout left, make the interpreter's final flush harmless."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    from typer import Abort, Exit
    from typer._click.exceptions import ClickException
    from typer._click.exceptions import UsageError as ClickUsageError

    from socktool.cli.app import build_app
    from socktool.view.terminal import note_interrupt

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SOCKTOOL_DEBUG", "") not in ("", "0")
    _open_standard_fds()
    interrupts.install()
    interrupts.on_sigint(note_interrupt)
    try:
        result = build_app(args)(args=args, prog_name="socktool", standalone_mode=False)
        return int(result) if isinstance(result, int) else ExitStatus.OK
    except Exit as exc:
        return exc.exit_code
    except ClickUsageError as exc:
        if not exc.format_message():  # no arguments at all: help was shown
            return ExitStatus.USAGE
        command = exc.ctx.command_path if exc.ctx is not None else "socktool"
        _error(f"{exc.format_message().rstrip('.')} (see '{command} --help')")
        _json_error(args, exc.format_message().rstrip("."), ExitStatus.USAGE)
        return ExitStatus.USAGE
    except SocktoolError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc))
        _json_error(args, str(exc), exc.exit_code)
        return exc.exit_code
    except ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except (KeyboardInterrupt, Abort):
        return ExitStatus.INTERRUPTED
    except Terminated:
        return ExitStatus.TERMINATED
    except (OutputClosed, BrokenPipeError):
        _silence_stdout()
        return ExitStatus.OK
    except Exception as exc:  # a bug: say so in one line, keep the details for --debug
        if debug:
            traceback.print_exc()
        _error(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return ExitStatus.FAILURE


def run() -> NoReturn:
    """The process's entry (the `socktool` script, `python -m socktool`): main(), then leave.

    Leaving by os._exit skips the interpreter's teardown, which frees every
    module and object one by one: about 8 ms of a 60 ms `tcp-connect -z`, and
    start-up time is a feature. Nothing is lost by it: payload and records go
    out by os.write, the standard streams are flushed here and the atexit
    handlers run. A non-daemon thread still running (socktool starts none)
    gets the ordinary exit, which waits for it.
    """
    leave(main())


def leave(code: int) -> NoReturn:
    """Exit with `code`, by os._exit when nothing is left running (see `run`)."""
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # the reader left, or the stream was closed: nothing more can be said there
    os._exit(code)
