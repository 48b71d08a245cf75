"""echo and time-server: the small servers every network programmer writes once."""

from typing import TYPE_CHECKING, Annotated

import typer

from socktool.cli import options as opt
from socktool.cli import tls as tlsopt
from socktool.net import events as ev
from socktool.net.address import Endpoint, parse_listen_endpoint
from socktool.view.output import build_sink
from socktool.view.terminal import Mode, Terminal

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.service import ServiceKinds

ECHO_PORT = 9999
TIME_PORT = 9000


def _service_address(default_port: int) -> object:
    return typer.Argument(
        metavar="[[HOST:]PORT]",
        parser=opt.value_parser(parse_listen_endpoint),
        help=f"Where to listen: PORT, HOST:PORT, [IPV6]:PORT or unix:PATH (default: port {default_port} on all interfaces).",
        show_default=False,
    )


TcpOnly = Annotated[bool, typer.Option("--tcp-only", help="Serve TCP only.", rich_help_panel=opt.CONNECTION)]
UdpOnly = Annotated[bool, typer.Option("--udp-only", help="Serve UDP only.", rich_help_panel=opt.CONNECTION)]


def _service_setup(
    json: bool,
    verbose: bool,
    quiet: bool,
    no_color: bool,
    debug: bool,
    *,
    ipv4: bool,
    ipv6: bool,
    tcp_only: bool,
    udp_only: bool,
) -> "tuple[ev.Sink, ServiceKinds]":
    """The sink and the sockets to bind, from the options echo and time-server share."""
    from socktool.net.service import ServiceKinds

    family = opt.family(ipv4, ipv6)
    opt.exclusive(tcp_only=tcp_only, udp_only=udp_only)
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    sink = build_sink(terminal, Mode.JSON if json else Mode.RAW, numbered=True, stats=True)
    return sink, ServiceKinds(tcp=not udp_only, udp=not tcp_only, family=family)


def echo(
    address: Annotated[Endpoint, _service_address(ECHO_PORT)] = Endpoint(port=ECHO_PORT),
    tcp_only: TcpOnly = False,
    udp_only: UdpOnly = False,
    max_clients: Annotated[
        int | None,
        typer.Option(
            "--max-clients",
            metavar="N",
            parser=opt.PositiveInt,
            help="Turn away TCP clients beyond N at once.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            "-i",
            "--idle-timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Close a TCP client after DUR without traffic either way.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    tls: tlsopt.Tls = False,
    cert: tlsopt.Cert = None,
    key: tlsopt.Key = None,
    client_ca: tlsopt.ClientCa = None,
    alpn: tlsopt.Alpn = None,
    tls_min: tlsopt.TlsMin = None,
    ciphers: tlsopt.Ciphers = None,
    json: opt.Json = False,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Echo server (RFC 862): send back whatever clients send, over TCP and UDP.

    Serves TCP and UDP on the same port, any number of clients at once, until
    interrupted. Status lines (stderr) show each client connecting and leaving,
    with bytes and duration, and each datagram echoed.

    Examples:
      socktool echo
      socktool echo -v --idle-timeout 30s 127.0.0.1:7
      socktool echo --tcp-only --max-clients 100 --json 9999 > events.jsonl
    """
    from socktool.net.echo import EchoOptions, EchoServer

    sink, kinds = _service_setup(
        json, verbose, quiet, no_color, debug, ipv4=ipv4, ipv6=ipv6, tcp_only=tcp_only, udp_only=udp_only
    )
    server_tls = tlsopt.TlsOptions(
        tls, cert=cert, key=key, client_ca=client_ca, alpn=alpn, tls_min=tls_min, ciphers=ciphers
    ).server()
    if server_tls is not None and udp_only:
        raise typer.BadParameter("--tls is for the TCP side (there is no TLS over UDP here)", param_hint="'--tls'")
    options = EchoOptions(max_clients=max_clients, idle_timeout=idle_timeout, tls=server_tls)
    EchoServer(address, kinds, options, sink).serve()
    return 0


def time_server(
    address: Annotated[Endpoint, _service_address(TIME_PORT)] = Endpoint(port=TIME_PORT),
    rfc868: Annotated[
        bool,
        typer.Option(
            "--rfc868",
            help="Serve RFC 868 time (4 bytes: seconds since 1900, big-endian) over TCP and UDP.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = False,
    utc: Annotated[
        bool, typer.Option("--utc", help="UTC instead of local time.", rich_help_panel=opt.CONNECTION)
    ] = False,
    tcp_only: TcpOnly = False,
    udp_only: UdpOnly = False,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    json: opt.Json = False,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Time server: strftime over UDP, RFC 867 daytime over TCP, or RFC 868 time.

    UDP: the request is a strftime format and the reply is the time in it (an
    empty request gets '%Y-%m-%d %X'; a trailing newline is kept). TCP: one
    daytime line, then close. A UDP reply is never larger than the request
    (or 32 bytes for a shorter one) and never more than 1024 bytes: a format
    that would render larger, is longer than 1024 bytes or cannot be
    rendered gets a short error reply, so the server cannot be used to
    amplify traffic.

    Examples:
      socktool time-server
      socktool udp-send --wait 127.0.0.1:9000 '%H:%M'
      socktool time-server --rfc868 --utc 127.0.0.1:3700
    """
    from socktool.net.timeserver import TimeOptions, TimeServer

    sink, kinds = _service_setup(
        json, verbose, quiet, no_color, debug, ipv4=ipv4, ipv6=ipv6, tcp_only=tcp_only, udp_only=udp_only
    )
    TimeServer(address, kinds, TimeOptions(rfc868=rfc868, utc=utc), sink).serve()
    return 0
