"""ui [KIND ADDRESS ...]: the full-screen SocketTool (socktool/ui/, Textual imported only here, when it runs)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from socktool.cli import options as opt
from socktool.ui.keys import keys_help


def ui(
    sessions: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[KIND ADDRESS]...",
            help="Sessions to open with: tcp-listen [HOST:]PORT, tcp-connect HOST:PORT, udp-listen [HOST:]PORT.",
            show_default=False,
        ),
    ] = None,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    no_color: opt.NoColor = False,
) -> int:
    from socktool.ui.sessions import parse_specs

    family = opt.family(ipv4, ipv6)
    try:
        specs = parse_specs(sessions or [], family)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'KIND ADDRESS'") from None
    if not _terminal():
        raise typer.BadParameter("the ui needs a terminal on stdin and stdout", param_hint="'ui'")
    from socktool.ui.app import SocktoolApp

    saved = os.environ.get("NO_COLOR")
    if no_color:
        os.environ["NO_COLOR"] = "1"  # Textual reads it when the app is made
    try:
        app = SocktoolApp(specs, family)
        try:
            result = app.run()
        finally:
            app.stop_all()
    finally:
        if no_color and saved is None:
            del os.environ["NO_COLOR"]  # the process's environment as it was (a caller in-process)
    return result or 0


def _terminal() -> bool:
    """Textual draws on stdout and reads keys from stdin: both must be a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


ui.__doc__ = f"""Full-screen SocketTool: TCP servers, TCP clients and UDP sockets side by side.

Each session shows its state and counters, its clients (pick one to send
to, or all; kick), and its traffic as escaped text or a hex dump. The send
box takes text (with LF, CRLF or no line end) or hex, to the chosen client
or all, from a file, or every N ms COUNT times; a session can be recorded
to the JSON Lines of --record. Sessions given on the command line are
opened at start: KIND ADDRESS pairs, with the addresses of the commands.

Keys (also in the footer):
{keys_help()}

Examples:
  socktool ui tcp-listen 8898 udp-listen 9999
  socktool ui tcp-connect 127.0.0.1:8898
"""
