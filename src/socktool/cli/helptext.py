"""Help that reads as written; imported only when --help is drawn.

Typer shows a required argument as `{HOST:PORT}` in the usage line and adds
a type column (`<convert>`, `<str>`) that says nothing the metavar does not.
The panels come in the order a reader looks for them: the argument, how to
connect (TLS, a proxy), what goes in and out, how it is shown (with --help last).
A flag's `--no-` spelling is said in its help rather than in a column of its
own: that column took 15 characters from every row, and at 60 columns
tcp-listen's descriptions were left 13.

A command's description is written as a docstring, wrapped at 80 columns in
the source; Typer keeps those line breaks and wraps again at the terminal's
width, so at 60 columns every other line was a stub. `reflow` wraps each
paragraph of prose to the width (78 at most) and breaks what is laid out by
hand (examples, a list of keys) to the width itself: an example at an
unquoted space with ` \\`, so that it still runs when pasted; a list entry
under its description.
"""

import inspect
import re
import textwrap
from typing import Any

import typer
from typer._click.types import ParamType
from typer.core import TyperArgument, TyperOption

from socktool.cli.options import CONNECTION, FAULTS, IO, OUTPUT, PROXY, TLS

PANEL_ORDER = {CONNECTION: 1, TLS: 2, PROXY: 3, FAULTS: 4, IO: 5, OUTPUT: 6}


class Unnamed(ParamType):
    """A parameter type that converts as `inner` does and has no name to show."""

    def __init__(self, inner: ParamType):
        self.inner = inner
        self.name = inner.name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return self.inner.convert(value, param, ctx)

    def get_metavar(self, param: Any, ctx: Any) -> str:
        return ""


MEASURE = 78  # prose is wrapped at most this wide, however wide the terminal: lines stay easy to follow


def help_width() -> int:
    """The columns Typer's help text gets: its console's width less the one-column margins."""
    from typer.rich_utils import _get_rich_console

    return _get_rich_console().width - 2


def reflow(text: str, width: int) -> str:
    """A description laid out for `width` columns (idempotent)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        if not any(line[:1].isspace() for line in lines):
            prose = " ".join(line.strip() for line in lines)
            out.append(textwrap.fill(prose, min(width, MEASURE), break_long_words=False, break_on_hyphens=False))
            continue
        shell = lines[0].strip() == "Examples:"
        out.append("\n".join(part for line in lines for part in _fit(line, width, shell=shell)))
    return "\n\n".join(out)


def _fit(line: str, width: int, *, shell: bool) -> list[str]:
    """A line laid out by hand, broken to `width` if it is longer."""
    if len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    if shell:  # an example: break between words, not in a quoted string, and continue the command
        words, end, more = _shell_words(line.strip()), " \\", len(indent) + 4
        words[0] = indent + words[0]
    else:  # "term   description": the description wraps under itself
        entry = re.match(r"(\s*\S+\s{2,})(\S.*)", line)
        head, body = (entry.group(1), entry.group(2)) if entry else (indent, line.strip())
        words, end, more = body.split(), "", len(head) if entry else len(indent) + 2
        words[0] = head + words[0]
    pieces, current = [], words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) + len(end) > width:
            pieces.append(current + end)
            current = " " * more + word
        else:
            current += " " + word
    return [*pieces, current]


def _shell_words(command: str) -> list[str]:
    """`command` split at the spaces a shell splits at (quotes kept as written)."""
    words, current, quote = [], "", ""
    for char in command:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == " ":
            if current:
                words.append(current)
            current = ""
            continue
        current += char
    return [*words, current] if current else words


def tidy(command: typer.core.TyperCommand) -> None:
    """Order the panels, drop the type column of named arguments, lay the description out (idempotent)."""
    if command.help:
        command.help = reflow(command.help, help_width())
    command.params.sort(key=lambda param: PANEL_ORDER.get(getattr(param, "rich_help_panel", None) or "", 0))
    for param in command.params:
        if isinstance(param, TyperArgument) and param.metavar and not isinstance(param.type, Unnamed):
            param.type = Unnamed(param.type)
        offs = [name for name in getattr(param, "secondary_opts", ()) if name.startswith("--no-")]
        if isinstance(param, TyperOption) and offs and offs == param.secondary_opts:  # help only: parsing is over
            default = "On by default; " if param.default is True else ""
            param.help = f"{param.help or ''} {default}{'/'.join(offs)} turns it off."
            param.secondary_opts, param.show_default = [], False
