"""The `socktool` Typer application: the commands, in the order help lists them.

Start-up time is a feature, so `build_app` registers only the command being
run (Typer introspects every registered command on each call); help and
shell completion get them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
import typer.main
from typer.models import ParamMeta

from socktool import __version__
from socktool.cli import options as opt

SUMMARY = "A socket toolkit: netcat's pipe, a TCP/UDP console, echo and time servers, a port scanner."
EXAMPLES = """Examples:
  socktool tcp-listen 8898
  socktool tcp-connect localhost:8898
  tar c . | socktool tcp-connect backup:9000
  socktool udp-send --wait 127.0.0.1:9999 hi
  socktool echo
  socktool portscan 127.0.0.1 1-1024 --all
  socktool wait db:5432 -- ./migrate

socktool COMMAND --help shows each command's options and examples."""

ReadSignature = Callable[[Callable[..., Any]], dict[str, ParamMeta]]

# name → (module, function), in the order `socktool --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "tcp-connect": ("socktool.cli.tcp", "tcp_connect"),
    "tcp-listen": ("socktool.cli.tcp", "tcp_listen"),
    "udp-send": ("socktool.cli.udp", "udp_send"),
    "udp-listen": ("socktool.cli.udp", "udp_listen"),
    "echo": ("socktool.cli.services", "echo"),
    "time-server": ("socktool.cli.services", "time_server"),
    "forward": ("socktool.cli.forward", "forward"),
    "portscan": ("socktool.cli.scan", "portscan"),
    "wait": ("socktool.cli.wait", "wait"),
    "ping": ("socktool.cli.ping", "ping"),
    "ui": ("socktool.cli.ui", "ui"),
}


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"socktool {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """A socket toolkit: netcat's pipe, a TCP/UDP console, echo and time servers, a port scanner."""


def _signature_read_once(read: ReadSignature) -> ReadSignature:
    """Typer reads a command's signature (about 50 options each) twice in a row: for its
    options, then for its callback, which wants only the names. The second read of the
    same function gets the first's result (0.4 ms of every start); any other read is fresh."""
    last: tuple[Callable[..., Any] | None, dict[str, ParamMeta]] = (None, {})

    def read_once(function: Callable[..., Any]) -> dict[str, ParamMeta]:
        nonlocal last
        previous, params = last
        if function is previous:
            last = (None, {})
            return params
        params = read(function)
        last = (function, params)
        return params

    return read_once


typer.main.get_params_from_function = _signature_read_once(typer.main.get_params_from_function)  # type: ignore[assignment]  # the same signature


def build_app(args: Sequence[str] = ()) -> typer.Typer:
    """The app for this command line: only the named command, or all of them."""
    app = typer.Typer(
        name="socktool",
        cls=opt.Group,
        help=f"{SUMMARY}\n\n{EXAMPLES}",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    wanted = [args[0]] if args and args[0] in COMMANDS else list(COMMANDS)
    for name in wanted:
        module, function = COMMANDS[name]
        command = getattr(importlib.import_module(module), function)
        # A command may ask for more of app.command(), e.g. its own click class (an opt.Command).
        settings = {"cls": opt.Command, **getattr(command, "command_settings", {})}
        app.command(name, **settings)(command)
    return app
