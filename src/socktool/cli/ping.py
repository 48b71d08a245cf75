"""ping HOST:PORT: connect (or UDP round-trip) times, like ping(8) for a port."""

from typing import Annotated

import typer

from socktool.cli import checks
from socktool.cli import options as opt
from socktool.cli import tls as tlsopt
from socktool.net.address import Endpoint
from socktool.net.errors import ExpectNotMet
from socktool.net.probe import Check
from socktool.values import format_duration
from socktool.view.terminal import Terminal


def ping(
    address: opt.ConnectAddress,
    count: Annotated[
        int,
        typer.Option(
            "-c",
            "--count",
            metavar="N",
            parser=opt.value_parser(opt.non_negative_int),
            help="Probes to send; 0: until interrupted.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = 4,
    interval: Annotated[
        float,
        typer.Option(
            "-i",
            "--interval",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Time from one probe's start to the next's.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "1s",  # type: ignore[assignment]
    timeout: Annotated[
        float,
        typer.Option(
            "-w",
            "--timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="A probe with no answer within DUR is lost.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "2s",  # type: ignore[assignment]
    require: Annotated[
        int,
        typer.Option(
            "--require",
            metavar="N",
            parser=opt.PositiveInt,
            help="Exit 0 only if at least N probes were answered.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = 1,
    udp: checks.Udp = False,
    send: checks.Send = None,
    expect: checks.Expect = None,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    tls: tlsopt.Tls = False,
    sni: tlsopt.Sni = None,
    ca: tlsopt.Ca = None,
    pin: tlsopt.Pin = None,
    insecure: tlsopt.Insecure = False,
    min_days: tlsopt.MinDays = None,
    json: opt.Json = False,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Probe HOST:PORT like ping(8): TCP connect, TLS handshake or UDP round-trip time.

    A line per probe as it ends, then ping's statistics: probes, answered,
    loss, rtt min/avg/max/mdev. --udp sends a datagram (--send TEXT, else
    empty) and times the reply; --expect makes only a matching answer count.
    --tls times the connect and the handshake (as wait --tls verifies it): a
    certificate that fails its check is a lost probe, with the reason.
    Exit 0 if at least --require probes (default 1) were answered, else 1.

    Examples:
      socktool ping --udp --send '' -c 3 127.0.0.1:9000
      socktool ping -c 10 -i 200ms --json 127.0.0.1:8080 > ping.jsonl
      socktool ping --tls --ca ca.pem -c 3 api.internal:443
    """
    from socktool.net.ping import Pinger, resolve_once
    from socktool.view.ping import PingView

    family = opt.family(ipv4, ipv6)
    check = checks.build_check(udp=udp, send=send, expect=expect)
    tls_check = tlsopt.probe_tls(tls, sni=sni, ca=ca, pin=pin, insecure=insecure, min_days=min_days, timeout=timeout)
    check = tlsopt.with_probe_tls(check, tls_check, udp=udp, send=send, expect=expect)
    checks.check_fits(check, address)
    if count and require > count:
        raise typer.BadParameter(f"--require {require} is more than --count {count}", param_hint="'--require'")
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    tlsopt.warn_if_insecure(terminal, check)
    view = PingView(terminal, terminal.mode(json=json), udp=udp, tls=tls)
    target = resolve_once(address, check, family)
    name = str(address)
    pinger = Pinger(target, check, name=name, count=count, interval=interval, timeout=timeout, sink=view)
    view.header(name, pinger.peer, _what(check, address))
    if verbose:  # the plan on stderr, whatever stdout gets (lines, JSON, a file)
        probes = f"{count} probes" if count else "probes until interrupted"
        terminal.status(
            f"pinging {name} at {pinger.peer} ({_what(check, address)}): {probes}, one every "
            f"{format_duration(interval)}, each lost without an answer within {format_duration(timeout)}"
        )
    summary = pinger.run()
    if summary.received < require:
        raise ExpectNotMet(f"{summary.received} of {summary.sent} probes answered", f"--require {require}")
    return 0


def _what(check: Check, address: Endpoint) -> str:
    if check.udp:
        return f"UDP, {len(check.send)} byte request"
    if check.tls is not None:
        return "unix connect and TLS handshake" if address.is_unix else "TCP connect and TLS handshake"
    return "unix connect" if address.is_unix else "TCP connect"
