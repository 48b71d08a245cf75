"""Help that reads as written; imported only when --help is drawn.

Typer shows a required argument as `{HOST:PORT}` in the usage line and adds
a type column (`<convert>`, `<str>`) that says nothing the metavar does not.
The panels come in the order a reader looks for them: the argument, how to
connect (TLS, a proxy), what goes in and out, how it is shown (with --help last).
A flag's `--no-` spelling is said in its help rather than in a column of its
own: that column took 15 characters from every row, and at 60 columns
tcp-listen's descriptions were left 13.
"""

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


def tidy(command: typer.core.TyperCommand) -> None:
    """Order the panels and drop the type column of named arguments (idempotent)."""
    command.params.sort(key=lambda param: PANEL_ORDER.get(getattr(param, "rich_help_panel", None) or "", 0))
    for param in command.params:
        if isinstance(param, TyperArgument) and param.metavar and not isinstance(param.type, Unnamed):
            param.type = Unnamed(param.type)
        offs = [name for name in getattr(param, "secondary_opts", ()) if name.startswith("--no-")]
        if isinstance(param, TyperOption) and offs and offs == param.secondary_opts:  # help only: parsing is over
            default = "On by default; " if param.default is True else ""
            param.help = f"{param.help or ''} {default}{'/'.join(offs)} turns it off."
            param.secondary_opts, param.show_default = [], False
