"""ui [KIND ADDRESS ...]: the full-screen SocketTool (socktool/ui/, Textual imported only here, when it runs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from socktool.cli import options as opt
from socktool.ui.keys import keys_help

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net import tlsconfig
    from socktool.net.access import AccessPolicy
    from socktool.ui.sessions import Spec

# The options a session takes, by kind (the rest of the command's options are refused, never ignored).
SESSION_OPTIONS = {
    "tcp-listen": ("tls", "cert", "key", "frame", "max_frame", "checksum", "max_clients", "allow", "deny"),
    "tcp-connect": (
        *("tls", "ca", "pin", "insecure", "sni", "no_sni", "cert", "key", "alpn"),
        *("frame", "max_frame", "checksum"),
    ),
    "udp-listen": (),
}


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
    words = sessions or []
    if words and words[0].startswith("-"):
        raise typer.BadParameter(f"no such option: {words[0]}", param_hint="'ui'")
    try:
        specs = parse_specs(words, family, session_options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'KIND ADDRESS'") from None
    if not _terminal():
        raise typer.BadParameter("the ui needs a terminal on stdin and stdout", param_hint="'ui'")
    from socktool.ui.app import SocktoolApp

    saved = os.environ.get("NO_COLOR")
    if no_color:
        os.environ["NO_COLOR"] = "1"  # Textual reads it when the app is made
    try:
        app = SocktoolApp(specs, family, session_options)
        try:
            result = app.run()
        finally:
            app.stop_all()
    finally:
        if no_color and saved is None:
            del os.environ["NO_COLOR"]  # the process's environment as it was (a caller in-process)
    return result or 0


def session_options(spec: Spec, words: Sequence[str]) -> Spec:
    """A session's options, read by its command's own parser and option objects; ValueError if refused."""
    import typer.main
    from typer._click.core import ParameterSource
    from typer._click.exceptions import ClickException

    from socktool.cli import tls as tlsopt
    from socktool.cli.app import build_app
    from socktool.cli.frames import frame_options

    group = typer.main.get_command(build_app([spec.kind]))
    command = group.commands[spec.kind]  # type: ignore[attr-defined]
    try:
        ctx = command.make_context(spec.kind, [spec.address, *words])
        params = ctx.params
        for param in command.params:
            name = param.name or ""
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE and name not in (
                "address",
                *SESSION_OPTIONS[spec.kind],
            ):
                raise ValueError(f"{spec.kind} {spec.address}: {param.opts[0]} is not for a ui session")
        framing = frame_options(params.get("frame"), params.get("max_frame"), params.get("checksum"), crlf=False)
        tls: tlsconfig.ServerTls | tlsconfig.ClientTls | None = None
        # Options a session does not take were refused above: theirs are the defaults here.
        tls_options = tlsopt.TlsOptions.from_params(params)
        if spec.kind == "tcp-connect":
            tls = tls_options.client(spec.endpoint, handshake_timeout=10.0)
        elif spec.kind == "tcp-listen":
            tls = tls_options.server()
            spec = spec._replace(max_clients=params["max_clients"], access=_access(spec, params))
    except ClickException as exc:
        raise ValueError(f"{spec.kind} {spec.address}: {exc.format_message()}") from None
    return spec._replace(options=tuple(words), tls=tls, framing=framing if framing.active else None)


def _access(spec: Spec, params: dict[str, Any]) -> AccessPolicy:
    """A server session's --allow / --deny, checked as tcp-listen checks them."""
    from socktool.cli.tcp import access_policy

    return access_policy(spec.endpoint, params["allow"], params["deny"])


def _terminal() -> bool:
    """Textual draws on stdout and reads keys from stdin: both must be a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


ui.command_settings = {"context_settings": {"ignore_unknown_options": True}}  # type: ignore[attr-defined]
ui.__doc__ = f"""Full-screen SocketTool: TCP servers, TCP clients and UDP sockets side by side.

Each session shows its state and counters, its clients (pick one to send
to, or all; kick), and its traffic as escaped text or a hex dump. The send
box takes text (with LF, CRLF or no line end) or hex, to the chosen client
or all, from a file, or every N ms COUNT times; a session can be recorded
to the JSON Lines of --record. Sessions given on the command line are
opened at start: KIND ADDRESS [OPTION...], with the addresses of the
commands and some of their options: tcp-listen --tls (--cert/--key, or an
ephemeral certificate whose fingerprint the session shows), --max-clients,
--allow, --deny; tcp-connect --tls (--pin, --ca, --insecure, --sni,
--no-sni, --cert/--key, --alpn); and --frame, --max-frame, --checksum on
tcp-listen and tcp-connect.

Keys (also in the footer):
{keys_help()}

Examples:
  socktool ui tcp-listen 8898 udp-listen 9999
  socktool ui tcp-connect 127.0.0.1:8898
  socktool ui tcp-listen 8898 --tls --frame len32
"""
