"""Help that reads as written; imported only when --help is drawn.

Typer shows a required argument as `{HOST:PORT}` in the usage line and adds
a type column (`<convert>`, `<str>`) that says nothing the metavar does not.
The panels come in the order a reader looks for them: the argument, how to
connect (TLS, a proxy), what goes in and out, how it is shown (with --help last).
"""

from typing import Any

import typer
from typer._click.types import ParamType
from typer.core import TyperArgument

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
