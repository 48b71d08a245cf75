"""--control: who drives tcp-listen -k / --broker and udp-listen, and the run with a console.

The rule (README "Console"): only a terminal on stdin is a console; in a
pipe stdin stays payload, binary-safe, as nc has it. --control says it
outright: `console` (needs a terminal), `json` (JSON Lines of commands on
stdin, answers on stdout), `none` (stdin is payload).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from socktool.cli import options as opt
from socktool.view.terminal import Terminal

if TYPE_CHECKING:  # pragma: no cover
    from socktool.console import Answer, Command
    from socktool.net import events as ev
    from socktool.view.console import Console

MODES = ("console", "json", "none")


def _mode(text: str) -> str:
    if text not in MODES:
        raise ValueError(f"{text!r} is not one of {', '.join(MODES)}")
    return text


Control = Annotated[
    str | None,
    typer.Option(
        "--control",
        metavar="MODE",  # the modes are in the help: a long metavar narrows every row's help at 60 columns
        parser=opt.value_parser(_mode),
        help="Who drives the server: console (typed lines and /commands; the default when stdin is a "
        "terminal), json (JSON Lines of commands on stdin), none (stdin is payload, binary-safe; "
        "the default in a pipe).",
        rich_help_panel=opt.IO,
        show_default=False,
    ),
]


def control_mode(control: str | None, terminal: Terminal, refusals: dict[str, bool]) -> str:
    """'console', 'json' or 'none'. `refusals`: option name -> given, for options a console cannot go with."""
    given = [name for name, on in refusals.items() if on]
    if control is None:
        return "console" if terminal.stdin_isatty and not given else "none"
    if control != "none":
        if given:
            raise typer.BadParameter(f"--control {control} cannot be used with {given[0]}", param_hint="'--control'")
        if control == "console" and not terminal.stdin_isatty:
            raise typer.BadParameter(
                "the console needs a terminal on stdin (in a pipe use --control json)", param_hint="'--control'"
            )
    return control


class Controlled(Protocol):
    """An engine a console drives."""

    def run(self) -> None: ...
    def submit(self, command: Command) -> None: ...
    def report(self, answer: Answer) -> None: ...
    def input_ended(self) -> None: ...


def run_controlled(
    mode: str,
    terminal: Terminal,
    sink: ev.Sink,
    build: Callable[[ev.Sink, Callable[[Answer], None]], Controlled],
    *,
    announced: bool = False,
) -> None:
    """Build the engine with the console's sink and answers (`build(sink, answer)`), run it under the console.

    `announced`: the listening line is out already (else the prompt waits for it, to come below it)."""
    from socktool.view.console import JsonControl, PromptConsole

    engine: Controlled | None = None

    def submit(command: Command) -> None:
        assert engine is not None
        engine.submit(command)

    def report(answer: Answer) -> None:
        assert engine is not None
        engine.report(answer)

    def ended() -> None:
        assert engine is not None
        engine.input_ended()

    kind = PromptConsole if mode == "console" else JsonControl
    console: Console = kind(terminal, submit, ended, report)
    engine = build(console.guard(sink), console.answer)
    console.start(announced=announced)
    try:
        engine.run()
    finally:
        console.close()
