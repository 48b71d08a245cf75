"""portscan: is anything listening there."""

import time
from typing import Annotated

import typer

from socktool.cli import options as opt
from socktool.cli import tls as tlsopt
from socktool.net.errors import ExpectNotMet
from socktool.net.ports import ALL_PORTS, PortList, parse_port_argument, parse_scan_host
from socktool.view.terminal import Terminal

BANNER_SIZE = 256
UDP_CONCURRENCY = 128  # datagrams waiting for an answer at once: ICMP errors are rate-limited
PROXY_CONCURRENCY = 32  # connect requests in flight through a proxy: each is a thread here and a connection there


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
        int | None,
        typer.Option(
            "-c",
            "--concurrency",
            metavar="N",
            parser=opt.PositiveInt,
            help="Probes in flight at once (default 1000, 128 with --udp, 32 with --proxy; capped by the open-file limit).",
            rich_help_panel=opt.CONNECTION,
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "-w",
            "--timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="A port with no answer within DUR is filtered (open|filtered with --udp); also how long --banner reads.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "1s",  # type: ignore[assignment]  # parsed like a given value,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            metavar="N",
            parser=opt.value_parser(opt.non_negative_int),
            help="Try a filtered (UDP: open|filtered) port N more times.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = 0,
    udp: Annotated[
        bool,
        typer.Option(
            "--udp",
            help="UDP scan: a reply is open, ICMP port unreachable closed, silence open|filtered.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = False,
    banner: Annotated[
        bool,
        typer.Option(
            "--banner",
            help="Show what each open port's service says first (a silent one is sent an HTTP HEAD).",
            rich_help_panel=opt.OUTPUT,
        ),
    ] = False,
    banner_size: Annotated[
        int,
        typer.Option(
            "--banner-size",
            metavar="N",
            parser=opt.PositiveInt,
            help="Read at most N bytes of a banner (up to its first line end).",
            rich_help_panel=opt.OUTPUT,
        ),
    ] = BANNER_SIZE,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    proxy: tlsopt.ProxyUrl = None,
    proxy_auth: tlsopt.ProxyAuth = None,
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
    """TCP connect (or --udp) scan of HOST's PORTS (default 1-1024).

    Open ports are listed (all with --all) with their service names, and
    with --banner what each service says first; on a terminal as a table
    after a progress bar, in a pipe as PORT/tcp STATE SERVICE lines, with
    --json as one object per port and a summary. --udp sends each port a
    datagram (a DNS, NTP, SNMP or echo probe on those ports): a reply is
    open, ICMP port unreachable closed, silence open|filtered. --proxy asks
    the proxy to connect to each port: its reply says open, closed (refused)
    or filtered (unreachable, or no answer in time).

    Examples:
      socktool portscan 127.0.0.1 --banner
      socktool portscan db.internal 5432 --require-open -q || exit 1
      socktool portscan --proxy socks5h://127.0.0.1:1080 intranet.test 22,80,443
    """
    from socktool.net.events import OPEN
    from socktool.net.ports import BUILTIN_UDP_SERVICES, ServiceNames
    from socktool.net.probescan import ProxyScanner, UdpScanner, grab_banners
    from socktool.net.scan import DEFAULT_CONCURRENCY, Scanner, descriptor_budget, named_target, resolve_target
    from socktool.view.scan import ScanProgress, ScanReport

    family = opt.family(ipv4, ipv6)
    proxy_config = tlsopt.proxy_config(proxy, proxy_auth, {"--udp": udp, "-4": ipv4, "-6": ipv6})
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json)
    target = resolve_target(host, family) if proxy_config is None else named_target(host)
    if target.others:
        terminal.status(
            f"{host} has {len(target.others) + 1} addresses; scanning {target.address} "
            f"(also {', '.join(target.others)}; -4/-6 choose the family)"
        )
    wanted = concurrency or (UDP_CONCURRENCY if udp else PROXY_CONCURRENCY if proxy else DEFAULT_CONCURRENCY)
    limit, cut = descriptor_budget(wanted)
    if cut:
        terminal.warn(f"--concurrency {wanted} is more than the open-file limit allows; using {limit}")
    scanner: Scanner | UdpScanner | ProxyScanner
    if udp:
        scanner = UdpScanner(target, ports.ports, timeout=timeout, retries=retries, concurrency=limit)
    elif proxy_config is not None:
        scanner = ProxyScanner(target, ports.ports, proxy_config, timeout=timeout, retries=retries, concurrency=limit)
    else:
        scanner = Scanner(target, ports.ports, timeout=timeout, retries=retries, concurrency=limit)
    with ScanProgress(terminal, target.address, len(ports.ports), lambda: scanner.done):
        results = scanner.run()
    banners: dict[int, bytes] | None = None
    elapsed = scanner.elapsed
    if banner and isinstance(scanner, UdpScanner):
        banners = {port: reply[:banner_size] for port, reply in scanner.replies.items()}
    elif banner:
        opened = [r.port for r in results if r.state == OPEN]
        grabbing = time.monotonic()
        banners = grab_banners(target, opened, size=banner_size, timeout=timeout, concurrency=limit, proxy=proxy_config)
        elapsed += time.monotonic() - grabbing  # the scan's time is until the last banner is in
    protocol = "udp" if udp else "tcp"
    services = ServiceNames(builtin=BUILTIN_UDP_SERVICES, proto="udp") if udp else ServiceNames()
    report = ScanReport(terminal, mode, target, services, show_all=all_, protocol=protocol, banners=banners)
    report.show(results, elapsed)
    if require_open:
        missing = [r for r in results if r.state != OPEN]
        if missing:
            listed = ", ".join(f"{r.port} {r.state}" for r in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ExpectNotMet(f"--require-open: {len(missing)} of {len(results)} ports not open", listed + more)
    return 0
