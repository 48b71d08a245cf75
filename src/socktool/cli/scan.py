"""portscan: is anything listening there."""

from typing import Annotated

import typer

from socktool.cli import options as opt
from socktool.net.errors import ExpectNotMet
from socktool.net.ports import ALL_PORTS, PortList, parse_port_argument, parse_scan_host
from socktool.view.terminal import Terminal


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
            parser=opt.value_parser(opt.non_negative_int),
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
    from socktool.net.events import OPEN
    from socktool.net.ports import ServiceNames
    from socktool.net.scan import Scanner, descriptor_budget, resolve_target
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
    ScanReport(terminal, mode, target, ServiceNames(), show_all=all_).show(results, scanner.elapsed)
    if require_open:
        missing = [r for r in results if r.state != OPEN]
        if missing:
            listed = ", ".join(f"{r.port} {r.state}" for r in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ExpectNotMet(f"--require-open: {len(missing)} of {len(results)} ports not open", listed + more)
    return 0
