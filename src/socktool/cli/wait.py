"""wait: until every endpoint is up (or, inverted, down), then run a command."""

import os
import shutil
from typing import TYPE_CHECKING, Annotated

import typer

from socktool.cli import options as opt
from socktool.net.address import parse_connect_endpoint
from socktool.net.errors import SocktoolError, TimedOut, describe
from socktool.values import format_duration
from socktool.view.terminal import Terminal

if TYPE_CHECKING:  # pragma: no cover
    from typer._click.core import Context


class CommandAfterDashes(opt.Command):
    """A command that hands everything after the first `--` to ctx.meta[AFTER_DASHES],
    unparsed: `wait db:5432 -- sh -c 'exit 3'` runs `sh -c 'exit 3'` as given."""

    AFTER_DASHES = "socktool.after_dashes"

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if "--" in args:
            split = args.index("--")
            args, ctx.meta[self.AFTER_DASHES] = args[:split], args[split + 1 :]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: "Context") -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- CMD [ARGS]...]"]


def wait(
    ctx: typer.Context,
    endpoints: Annotated[
        list[str],
        typer.Argument(
            metavar="HOST:PORT...",
            help="Endpoints to wait for: HOST:PORT, [IPV6]:PORT or unix:PATH.",
            show_default=False,
        ),
    ],
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Time between tries.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "250ms",  # type: ignore[assignment]
    timeout: Annotated[
        float,
        typer.Option(
            "-w",
            "--timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Give up (exit 1) after DUR.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "30s",  # type: ignore[assignment]
    invert: Annotated[
        bool,
        typer.Option(
            "--invert", help="Wait until every endpoint stops accepting connections.", rich_help_panel=opt.CONNECTION
        ),
    ] = False,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Wait until every HOST:PORT accepts TCP connections, then run CMD (after --).

    Tries every --interval until all are up (exit 0, or CMD's exit status)
    or --timeout passes (exit 1). --invert waits for them to go down.

    Examples:
      socktool wait db:5432 cache:6379 -- ./migrate --all
      socktool wait -w 2m localhost:8080 && curl localhost:8080/health
      socktool wait --invert 127.0.0.1:8080
    """
    from socktool.net.wait import Waiter
    from socktool.view.wait import WaitView

    family = opt.family(ipv4, ipv6)
    parsed = []
    for text in endpoints:
        try:
            parsed.append(parse_connect_endpoint(text))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="HOST:PORT") from None
    command = _command(ctx.meta.get(CommandAfterDashes.AFTER_DASHES))
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    with WaitView(terminal, [str(endpoint) for endpoint in parsed], invert=invert) as view:
        waiter = Waiter(parsed, interval=interval, timeout=timeout, invert=invert, family=family, on_ready=view)
        all_there = waiter.run()
    if not all_there:
        goal = " to stop accepting" if invert else ""
        late = ", ".join(f"{endpoint} ({waiter.last.get(endpoint, '?')})" for endpoint in waiter.waiting_for)
        raise TimedOut(f"timed out after {format_duration(timeout)} waiting for {late}{goal}")
    if command is None:
        return 0
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        raise SocktoolError(f"cannot run {command[0]!r}", describe(exc)) from exc
    return 1  # not reached: exec replaced this process


wait.command_settings = {"cls": CommandAfterDashes}  # type: ignore[attr-defined]


def _command(argv: list[str] | None) -> list[str] | None:
    """The command after `--`, checked now rather than after a long wait."""
    if argv is None:
        return None
    if not argv:
        raise typer.BadParameter("nothing after '--'", param_hint="CMD")
    name = argv[0]
    found = shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK) else None)
    if found is None:
        raise typer.BadParameter(f"command not found: {name}", param_hint="CMD")
    return argv
