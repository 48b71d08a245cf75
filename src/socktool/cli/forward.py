"""forward LISTEN TARGET: a relay between two endpoints that shows, records and
can break the traffic on purpose."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from socktool.cli import options as opt
from socktool.cli import tls as tls_options
from socktool.cli.frames import Frame, MaxFrame, frame_options
from socktool.net import events as ev
from socktool.net.access import AccessPolicy, Network
from socktool.net.address import Endpoint
from socktool.view.output import build_sink
from socktool.view.terminal import Mode, Terminal

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.faults import FaultPlan, Faults
    from socktool.net.forward import ForwardOptions
    from socktool.net.tcp import SocketOptions


def _faults_option(*names: str, metavar: str, parser: "Callable[[str], object]", help: str) -> Any:
    return typer.Option(
        *names, metavar=metavar, parser=parser, help=help, rich_help_panel=opt.FAULTS, show_default=False
    )


NonNegativeInt = opt.value_parser(lambda text: _non_negative(text))


def _non_negative(text: str) -> int:
    """A byte count: 0 or more."""
    return 0 if text.strip().isdigit() and not int(text) else opt.positive_int(text)


def _rate(text: str) -> int:
    from socktool.net.faults import parse_rate

    return parse_rate(text)


def _fraction(text: str) -> float:
    from socktool.net.faults import parse_fraction

    return parse_fraction(text)


def forward(
    listen: Annotated[
        Endpoint,
        typer.Argument(
            metavar="LISTEN",
            parser=opt.value_parser(lambda text: _parse_listen(text)),
            help="Where to listen: PORT, HOST:PORT, [IPV6]:PORT or unix:PATH; port 0 picks a free one.",
            show_default=False,
        ),
    ],
    target: opt.ConnectAddress,
    udp: Annotated[
        bool,
        typer.Option(
            "--udp",
            help="UDP to UDP: a session per client address (see --idle-timeout).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = False,
    udp_to_tcp: Annotated[
        bool,
        typer.Option(
            "--udp-to-tcp",
            help="Listen on UDP, connect over TCP: a datagram is one write (--frame: one message); each line (message) back is one datagram.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = False,
    tcp_to_udp: Annotated[
        bool,
        typer.Option(
            "--tcp-to-udp",
            help="Listen on TCP, send over UDP: each line (--frame: message) is one datagram; a datagram back is one write (message).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = False,
    max_clients: Annotated[
        int | None,
        typer.Option(
            "--max-clients",
            metavar="N",
            parser=opt.PositiveInt,
            help="Turn away clients beyond N at once.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            metavar="CIDR",
            parser=opt.Cidr,
            help="Only clients in CIDR (repeatable).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    deny: Annotated[
        list[str] | None,
        typer.Option(
            "--deny",
            metavar="CIDR",
            parser=opt.Cidr,
            help="Turn away clients in CIDR (repeatable).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "-w",
            "--timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Connect timeout for each connection to the target [10s].",
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
            help="Close a connection after DUR without traffic either way (UDP sessions: 60s).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "-s",
            "--source",
            metavar="ADDR",
            help="Local address to connect to the target from.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    keepalive: Annotated[
        bool, typer.Option("--keepalive", help="TCP keepalive on both sides.", rich_help_panel=opt.CONNECTION)
    ] = False,
    nodelay: Annotated[
        bool,
        typer.Option("--nodelay", help="Disable Nagle's algorithm on both sides.", rich_help_panel=opt.CONNECTION),
    ] = False,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    delay: Annotated[
        float,
        _faults_option("--delay", metavar="DUR", parser=opt.Duration, help="Hold each read DUR before writing it."),
    ] = 0.0,
    jitter: Annotated[
        float,
        _faults_option("--jitter", metavar="DUR", parser=opt.Duration, help="Vary --delay by up to ±DUR (order kept)."),
    ] = 0.0,
    rate: Annotated[
        int | None,
        _faults_option(
            "--rate", metavar="BYTES/s", parser=opt.value_parser(_rate), help="At most this many bytes a second."
        ),
    ] = None,
    chunk: Annotated[
        int | None,
        _faults_option("--chunk", metavar="N", parser=opt.PositiveInt, help="Write in segments of at most N bytes."),
    ] = None,
    chunk_delay: Annotated[
        float | None,
        _faults_option(
            "--chunk-delay", metavar="DUR", parser=opt.Duration, help="Pause between two --chunk segments [10ms]."
        ),
    ] = None,
    drop: Annotated[
        float | None,
        _faults_option(
            "--drop", metavar="P", parser=opt.value_parser(_fraction), help="Drop a share of datagrams (0.1 or 10%)."
        ),
    ] = None,
    reset_after: Annotated[
        int | None,
        _faults_option(
            "--reset-after", metavar="BYTES", parser=NonNegativeInt, help="Reset both sides after BYTES in a direction."
        ),
    ] = None,
    close_after: Annotated[
        int | None,
        _faults_option(
            "--close-after", metavar="BYTES", parser=NonNegativeInt, help="Close both sides after BYTES in a direction."
        ),
    ] = None,
    upstream: Annotated[
        bool,
        typer.Option(
            "--upstream", help="Faults only client → target (default: both ways).", rich_help_panel=opt.FAULTS
        ),
    ] = False,
    downstream: Annotated[
        bool,
        typer.Option(
            "--downstream", help="Faults only target → client (default: both ways).", rich_help_panel=opt.FAULTS
        ),
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="N",
            help="Seed for --jitter and --drop, to repeat a run exactly.",
            rich_help_panel=opt.FAULTS,
        ),
    ] = None,
    tls_listen: Annotated[
        bool,
        typer.Option(
            "--tls-listen",
            help="Clients speak TLS to us: terminate it (an ephemeral certificate unless --cert) and relay the plaintext.",
            rich_help_panel=opt.TLS,
        ),
    ] = False,
    tls_target: Annotated[
        bool,
        typer.Option(
            "--tls-target",
            help="Speak TLS to TARGET (verified like tcp-connect --tls: --ca, --pin, --insecure, --sni).",
            rich_help_panel=opt.TLS,
        ),
    ] = False,
    cert: Annotated[
        str | None,
        typer.Option(
            "--cert",
            metavar="FILE",
            help="--tls-listen: our certificate (PEM; may hold the key too).",
            rich_help_panel=opt.TLS,
        ),
    ] = None,
    key: tls_options.Key = None,
    ca: tls_options.Ca = None,
    pin: tls_options.Pin = None,
    insecure: tls_options.Insecure = False,
    sni: tls_options.Sni = None,
    proxy: tls_options.ProxyUrl = None,
    proxy_auth: tls_options.ProxyAuth = None,
    record: opt.Record = None,
    frame: Frame = None,
    max_frame: MaxFrame = None,
    hex: opt.Hex = False,
    json: opt.Json = False,
    view: Annotated[
        bool | None,
        typer.Option(
            "--view/--no-view",
            help="Draw the traffic on stdout. Default: when stdout is a terminal.",
            rich_help_panel=opt.OUTPUT,
            show_default=False,
        ),
    ] = None,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Relay every client of LISTEN to TARGET, both ways, many at once.

    TCP and unix sockets in any combination. Each client gets its own
    connection to TARGET; half-close is carried through both ways; a target
    that refuses closes that client and the relay goes on. At a terminal both
    directions of every connection are drawn (--json: one object per event);
    with nothing to show, record or break, bytes move by splice.

    Examples:
      socktool forward 2375 unix:/var/run/docker.sock
      socktool forward 8080 127.0.0.1:8000 --record session.jsonl
      socktool forward 9000 127.0.0.1:9999 --delay 100ms --upstream
    """
    from socktool.net.faults import Faults
    from socktool.net.fdio import raise_open_file_limit
    from socktool.net.forward import ForwardOptions

    family = opt.family(ipv4, ipv6)
    bridge = _bridge(udp=udp, udp_to_tcp=udp_to_tcp, tcp_to_udp=tcp_to_udp)
    _check_addresses(bridge, listen, target)
    _check_bridge_options(bridge, timeout=timeout, keepalive=keepalive, nodelay=nodelay)
    opt.tcp_only(
        tcp=(not listen.is_unix and bridge not in (UDP, UDP_TO_TCP))
        or (not target.is_unix and bridge not in (UDP, TCP_TO_UDP)),
        why="both sides here are unix: sockets (or datagrams)",
        keepalive=keepalive,
        nodelay=nodelay,
    )
    _check_tls(bridge, tls_listen=tls_listen, tls_target=tls_target)
    if proxy is not None and (bridge is not None or target.is_unix):
        kind = "UDP" if bridge in (UDP, TCP_TO_UDP) else "a unix socket"
        what = (
            f"{bridge} has no proxy on its TCP side yet"
            if bridge == UDP_TO_TCP
            else f"a proxy reaches TCP HOST:PORT; this target is {kind}"
        )
        raise typer.BadParameter(what, param_hint="'--proxy'")
    proxy_config = tls_options.proxy_config(proxy, proxy_auth, {"-s": source, "-4": ipv4, "-6": ipv6})
    server_tls = tls_options.TlsOptions(tls_listen, "--tls-listen", cert=cert, key=key).server()
    client_tls = tls_options.TlsOptions(tls_target, "--tls-target", sni=sni, ca=ca, pin=pin, insecure=insecure).client(
        target, handshake_timeout=10.0 if timeout is None else timeout
    )
    plan = _fault_plan(
        bridge,
        Faults(
            delay=delay,
            jitter=jitter,
            rate=rate,
            chunk=chunk,
            chunk_gap=0.01 if chunk_delay is None else chunk_delay,
            drop=drop or 0.0,
            reset_after=reset_after,
            close_after=close_after,
        ),
        chunk_delay=chunk_delay,
        upstream=upstream,
        downstream=downstream,
        seed=seed,
    )
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json)
    if frame is not None and bridge == UDP:
        raise typer.BadParameter(f"frames a TCP stream; {bridge} carries datagrams", param_hint="'--frame'")
    framing = frame_options(frame, max_frame, None, crlf=False)
    sink = build_sink(terminal, mode, hex=hex, numbered=True, stats=True, record=record)
    if bridge is None:
        # A message over --max-frame: a warning, and that connection's records are shown per read from then on.
        sink = framing.sink(sink, keeps_going=True)
    # else a bridge's messages are its datagrams: --frame is how its stream side cuts and frames them
    raise_open_file_limit()
    if idle_timeout is None and bridge in (UDP, UDP_TO_TCP):
        idle_timeout = DATAGRAM_IDLE
    options = ForwardOptions(
        target=target,
        family=family,
        connect_timeout=10.0 if timeout is None else timeout,
        source=source,
        socket_options=_socket_options(keepalive, nodelay),
        max_clients=max_clients,
        access=AccessPolicy(tuple(cast("list[Network]", allow or ())), tuple(cast("list[Network]", deny or ()))),
        idle_timeout=idle_timeout,
        emit_data=mode is not Mode.RAW or record is not None,
        faults=plan,
        listen_datagrams=bridge in (UDP, UDP_TO_TCP),
        target_datagrams=bridge in (UDP, TCP_TO_UDP),
        tls_listen=server_tls,
        tls_target=client_tls,
        proxy=proxy_config,
        framing=framing.framing if bridge is not None else None,
        max_frame=max_frame,
    )
    _serve(bridge, listen, options, sink)
    return 0


UDP, UDP_TO_TCP, TCP_TO_UDP = "--udp", "--udp-to-tcp", "--tcp-to-udp"
DATAGRAM_IDLE = 60.0  # seconds: a datagram session without traffic ends


def _bridge(**modes: bool) -> str | None:
    opt.exclusive(**modes)
    for name, given in modes.items():
        if given:
            return "--" + name.replace("_", "-")
    return None


def _check_addresses(bridge: str | None, listen: Endpoint, target: Endpoint) -> None:
    if bridge in (UDP, UDP_TO_TCP) and listen.is_unix:
        raise typer.BadParameter(f"{bridge} listens on UDP: give [HOST:]PORT, not a unix: path", param_hint="LISTEN")
    if bridge in (UDP, TCP_TO_UDP) and target.is_unix:
        raise typer.BadParameter(f"{bridge} sends to UDP: give HOST:PORT, not a unix: path", param_hint="TARGET")


def _check_bridge_options(bridge: str | None, *, timeout: float | None, keepalive: bool, nodelay: bool) -> None:
    """Options that concern a TCP connection to the target, or any TCP connection."""
    if bridge in (UDP, TCP_TO_UDP) and timeout is not None:
        raise typer.BadParameter(f"with {bridge} nothing connects to the target over TCP", param_hint="'-w'")
    if bridge == UDP and (keepalive or nodelay):
        name = "--keepalive" if keepalive else "--nodelay"
        raise typer.BadParameter(f"{name} is a TCP option; {bridge} is UDP both ways", param_hint=f"'{name}'")


def _check_tls(bridge: str | None, *, tls_listen: bool, tls_target: bool) -> None:
    """TLS needs a stream on its side; a bridge's stream side takes none yet."""
    if tls_listen and bridge is not None:
        why = "listens on UDP" if bridge in (UDP, UDP_TO_TCP) else "has no TLS on its TCP side yet"
        raise typer.BadParameter(f"{bridge} {why}", param_hint="'--tls-listen'")
    if tls_target and bridge is not None:
        why = "sends to UDP" if bridge in (UDP, TCP_TO_UDP) else "has no TLS on its TCP side yet"
        raise typer.BadParameter(f"{bridge} {why}", param_hint="'--tls-target'")


def _fault_plan(
    bridge: str | None,
    faults: "Faults",
    *,
    chunk_delay: float | None,
    upstream: bool,
    downstream: bool,
    seed: int | None,
) -> "FaultPlan":
    from socktool.net.faults import FaultPlan, Faults

    if faults.chunk is None and chunk_delay is not None:
        raise typer.BadParameter("--chunk-delay spaces --chunk segments: give --chunk N", param_hint="'--chunk-delay'")
    if (upstream or downstream) and not faults.active:
        raise typer.BadParameter(
            "say which fault to put there (--delay, --rate, ...)", param_hint="'--upstream/--downstream'"
        )
    if seed is not None and not (faults.jitter or faults.drop):
        raise typer.BadParameter("nothing random to seed: --seed goes with --jitter or --drop", param_hint="'--seed'")
    stream_only = {
        "--rate": faults.rate,
        "--chunk": faults.chunk,
        "--reset-after": faults.reset_after,
        "--close-after": faults.close_after,
    }
    if bridge == TCP_TO_UDP and faults.chunk is not None and not downstream:
        raise typer.BadParameter(
            "--chunk cuts the stream to the client; --tcp-to-udp sends the target whole datagrams (add --downstream)",
            param_hint="'--chunk'",
        )
    if bridge in (UDP, UDP_TO_TCP):
        for name, value in stream_only.items():
            if value is not None:
                raise typer.BadParameter(
                    f"{name} shapes a byte stream; {bridge} relays datagrams", param_hint=f"'{name}'"
                )
    elif faults.drop and bridge != TCP_TO_UDP:
        raise typer.BadParameter(
            "--drop drops datagrams: use it with --udp, --udp-to-tcp or --tcp-to-udp", param_hint="'--drop'"
        )
    both = not upstream and not downstream
    return FaultPlan(
        upstream=faults if upstream or both else Faults(),
        downstream=faults if downstream or both else Faults(),
        seed=seed,
    )


def _socket_options(keepalive: bool, nodelay: bool) -> "SocketOptions":
    from socktool.net.tcp import SocketOptions

    return SocketOptions(keepalive=keepalive, nodelay=nodelay)


def _serve(bridge: str | None, listen: Endpoint, options: "ForwardOptions", sink: ev.Sink) -> None:
    from socktool.net.forward import run_forward

    run_forward(listen, options, sink)


def _parse_listen(text: str) -> Endpoint:
    from socktool.net.address import parse_listen_endpoint

    return parse_listen_endpoint(text)
