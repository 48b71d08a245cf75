"""portscan and wait: is anything listening there, and wait until it is."""

import os
import shutil
from typing import TYPE_CHECKING, Annotated

import typer

from socktool.cli import options as opt
from socktool.net.address import parse_connect_endpoint
from socktool.net.errors import ExpectNotMet, SocktoolError, TimedOut, describe
from socktool.net.ports import ALL_PORTS, PortList, parse_port_argument, parse_scan_host
from socktool.net.values import format_duration
from socktool.view.terminal import Terminal

if TYPE_CHECKING:  # pragma: no cover
    from typer._click.core import Context


def non_negative_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if number < 0:
        raise ValueError(f"must be 0 or more, got {number}")
    return number


def portscan(
    host: Annotated[
        str,
        typer.Argument(
            metavar="HOST",
            parser=opt.value_parser(parse_scan_host),
            help="Name or address to scan (IPv6 with or without brackets).",
            show_default=False,
        ),
    ],
    ports: Annotated[
        PortList,
        typer.Argument(
            metavar="[PORTS]",
            parser=opt.value_parser(parse_port_argument),
            help=f"Ports: 22 · 22,80,443 · 8000-8100 · - (all, {ALL_PORTS}) · a mix.",
            show_default=False,
        ),
    ] = "1-1024",  # type: ignore[assignment]
    concurrency: Annotated[
        int,
        typer.Option(
            "-c",
            "--concurrency",
            metavar="N",
            parser=opt.PositiveInt,
            help="Connects in flight at once (capped by the open-file limit).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = 1000,
    timeout: Annotated[
        float,
        typer.Option(
            "-w",
            "--timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="A port with no answer within DUR is filtered.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "1s",  # type: ignore[assignment]  # parsed like a given value,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            metavar="N",
            parser=opt.value_parser(non_negative_int),
            help="Try a filtered port N more times.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = 0,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    all_: Annotated[
        bool, typer.Option("--all", help="List every port, not only the open ones.", rich_help_panel=opt.OUTPUT)
    ] = False,
    require_open: Annotated[
        bool,
        typer.Option(
            "--require-open", help="Exit 1 unless every port scanned is open (a CI check).", rich_help_panel=opt.OUTPUT
        ),
    ] = False,
    json: opt.Json = False,
    view: Annotated[
        bool | None,
        typer.Option(
            "--view/--raw",
            help="A table, or PORT/tcp STATE SERVICE lines. Default: table when stdout is a terminal.",
            rich_help_panel=opt.OUTPUT,
            show_default=False,
        ),
    ] = None,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """TCP connect scan of HOST's PORTS (default 1-1024): open, closed, filtered.

    Open ports are listed (all with --all) with their service names; on a
    terminal as a table after a progress bar, in a pipe as PORT/tcp STATE
    SERVICE lines, with --json as one object per port and a summary.

    Examples:
      socktool portscan 127.0.0.1
      socktool portscan ::1 22,80,443,8000-8100 --all
      socktool portscan db.internal 5432 --require-open -q || exit 1
    """
    from socktool.net.scan import OPEN, Scanner, descriptor_budget, resolve_target
    from socktool.view.scan import ScanProgress, ScanReport

    family = opt.family(ipv4, ipv6)
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json)
    target = resolve_target(host, family)
    if target.others:
        terminal.status(
            f"{host} has {len(target.others) + 1} addresses; scanning {target.address} "
            f"(also {', '.join(target.others)}; -4/-6 choose the family)"
        )
    limit, cut = descriptor_budget(concurrency)
    if cut:
        terminal.warn(f"--concurrency {concurrency} is more than the open-file limit allows; using {limit}")
    scanner = Scanner(target, ports.ports, timeout=timeout, retries=retries, concurrency=limit)
    with ScanProgress(terminal, target.address, len(ports.ports), lambda: scanner.done):
        results = scanner.run()
    ScanReport(terminal, mode, target, show_all=all_).show(results, scanner.elapsed)
    if require_open:
        missing = [r for r in results if r.state != OPEN]
        if missing:
            listed = ", ".join(f"{r.port} {r.state}" for r in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ExpectNotMet(f"--require-open: {len(missing)} of {len(results)} ports not open", listed + more)
    return 0


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
