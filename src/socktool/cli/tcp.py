"""tcp-connect and tcp-listen: netcat's pipe, client and server side."""

import contextlib
import shutil
from typing import TYPE_CHECKING, Annotated, cast

import typer

from socktool import values
from socktool.cli import options as opt
from socktool.cli import tls as tlsopt
from socktool.cli.console import Control
from socktool.cli.frames import Checksum, Frame, FrameOptions, MaxFrame, frame_options
from socktool.net.access import AccessPolicy, Network
from socktool.shellwords import split_command
from socktool.values import decode_hex, to_crlf
from socktool.view.output import build_sink
from socktool.view.terminal import Mode, Terminal

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from socktool.console import Answer
    from socktool.net import events as ev
    from socktool.net.address import Endpoint
    from socktool.net.relay import Payload, RelayOptions
    from socktool.view.progress import Counters

# -- options the two commands share ----------------------------------------------
Send = Annotated[
    list[str] | None,
    typer.Option("--send", metavar="TEXT", help="Send TEXT instead of stdin (repeatable).", rich_help_panel=opt.IO),
]
HexInput = Annotated[
    bool,
    typer.Option(
        "--hex-input", help="stdin / --send is hex text (whitespace between bytes allowed).", rich_help_panel=opt.IO
    ),
]
Crlf = Annotated[bool, typer.Option("--crlf", help="Send line ends as CRLF.", rich_help_panel=opt.IO)]
NoShutdown = Annotated[
    bool,
    typer.Option("--no-shutdown", help="Do not half-close the socket at the end of stdin.", rich_help_panel=opt.IO),
]
KeepSending = Annotated[
    bool,
    typer.Option(
        "--keep-sending",
        help="When the peer has finished sending, go on sending stdin until it ends, as nc and ncat do "
        "(default: stop once stdin has been idle for 0.5s). A peer that closed for good resets the next write: exit 0.",
        rich_help_panel=opt.IO,
    ),
]


def _quit_after(text: str) -> float | None:
    """nc's -q SECS: a duration, or a negative number for 'wait for the peer' (the default)."""
    if text.startswith("-") and values.is_number(text[1:]):
        return None
    return values.parse_duration(text)


QuitAfter = Annotated[
    float | None,
    typer.Option(
        "--quit-after",
        metavar="DUR",
        parser=opt.value_parser(_quit_after),
        help="After the end of stdin, wait at most DUR for the peer to close, then exit 0 (nc's -q SECS; "
        "-1, the default, waits for the peer).",
        rich_help_panel=opt.IO,
        show_default=False,
    ),
]
SendOnly = Annotated[
    bool, typer.Option("--send-only", help="Only send; stop when the payload is sent.", rich_help_panel=opt.IO)
]
RecvOnly = Annotated[bool, typer.Option("--recv-only", help="Only receive; stdin is not read.", rich_help_panel=opt.IO)]
Repeat = Annotated[
    int,
    typer.Option(
        "--repeat", metavar="N", parser=opt.PositiveInt, help="Send the payload N times.", rich_help_panel=opt.IO
    ),
]
Interval = Annotated[
    float,
    typer.Option(
        "--interval",
        metavar="DUR",
        parser=opt.Duration,
        help="Pause between repeats.",
        rich_help_panel=opt.IO,
        show_default=False,
    ),
]
Expect = Annotated[
    str | None,
    typer.Option(
        "--expect",
        metavar="REGEX",
        help="Exit 0 as soon as received data matches; 1 if the peer closes or --timeout passes first.",
        rich_help_panel=opt.IO,
    ),
]
IdleTimeout = Annotated[
    float | None,
    typer.Option(
        "-i",
        "--idle-timeout",
        metavar="DUR",
        parser=opt.PositiveDuration,
        help="Close after DUR without traffic either way.",
        rich_help_panel=opt.CONNECTION,
    ),
]
Keepalive = Annotated[bool, typer.Option("--keepalive", help="Enable TCP keepalive.", rich_help_panel=opt.CONNECTION)]
Nodelay = Annotated[
    bool, typer.Option("--nodelay", help="Disable Nagle's algorithm (TCP_NODELAY).", rich_help_panel=opt.CONNECTION)
]
Progress = Annotated[
    bool,
    typer.Option(
        "--progress",
        help="A transfer bar on stderr: bytes, rate, percent of a file on stdin.",
        rich_help_panel=opt.OUTPUT,
    ),
]


def _payload(
    terminal: Terminal,
    send: list[str] | None,
    hex_input: bool,
    crlf: bool,
    repeat: int,
    interval: float,
    framing: FrameOptions = FrameOptions(),
) -> "Payload":
    def finish(data: bytes) -> bytes:  # checksum and frame, or CRLF line ends
        data = framing.encode(data)
        return to_crlf(data) if crlf else data

    # socktool.console (templates) is imported only for a --send with a brace: start-up time.
    templates = not hex_input and any("{" in text for text in send or ())
    if templates:
        from socktool.console import fill_template, has_placeholders

        templates = any(has_placeholders(text) for text in send or ())
    messages: list[bytes] = []
    for text in send or ():
        data = text.encode("utf-8", "surrogateescape")
        try:
            if hex_input:
                data = decode_hex(data)
            # A template is filled when it is sent; filling it once here finds its mistakes now (exit 2).
            finish(fill_template(text, 1)) if templates else None
            messages.append(data if templates else finish(data))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--send'") from None

    def render(message: bytes, seq: int) -> bytes:
        return finish(fill_template(message.decode("utf-8", "surrogateescape"), seq))

    from socktool.net.relay import Payload

    return Payload(
        stdin_fd=None if send else terminal.stdin_fd,
        messages=tuple(messages),
        hex_input=hex_input,
        crlf=crlf,
        repeat=repeat,
        interval=interval,
        render=render if templates else None,
    )


def _relay_options(
    mode: Mode,
    *,
    send_only: bool,
    recv_only: bool,
    no_shutdown: bool,
    idle_timeout: float | None,
    expect: str | None,
    timeout: float | None,
    terminal: Terminal,
    record: str | None = None,
    summarize_sent: bool = False,
    keep_sending: bool = False,
    quit_after: float | None = None,
) -> "RelayOptions":
    opt.exclusive(send_only=send_only, recv_only=recv_only)
    for name, given in (("--keep-sending", keep_sending), ("--quit-after", quit_after is not None)):
        if given and (send_only or recv_only):
            other = "--send-only" if send_only else "--recv-only"
            raise typer.BadParameter(
                f"cannot be used with {other}: it is about sending and receiving both", param_hint=f"'{name}'"
            )
    from socktool.net.relay import RelayOptions

    return RelayOptions(
        send=not recv_only,
        receive=not send_only,
        half_close=not no_shutdown,
        output_fd=terminal.stdout_fd if mode is Mode.RAW else None,
        emit_data=mode is not Mode.RAW or record is not None,  # --record needs the bytes too
        idle_timeout=idle_timeout,
        summarize_sent=summarize_sent,
        expect=opt.expect_pattern(expect),
        expect_timeout=timeout,
        linger=None if keep_sending else 0.0 if terminal.stdin_isatty else 0.5,
        quit_after=quit_after,
    )


def _no_quit_after_with_tls(quit_after: float | None, tls: bool) -> None:
    if quit_after is not None and tls:
        raise typer.BadParameter("not with --tls yet (the TLS relay has no such timer)", param_hint="'--quit-after'")


def _progress(
    terminal: Terminal, enabled: bool, counters: "Counters", total: int | None
) -> contextlib.AbstractContextManager[object]:
    if not enabled:
        return contextlib.nullcontext()
    from socktool.view.progress import TransferProgress

    return TransferProgress(terminal, counters, total=total)


def tcp_connect(
    address: opt.ConnectAddress,
    zero: Annotated[
        bool,
        typer.Option("-z", "--zero", help="Connect, close, exit 0 if it connected.", rich_help_panel=opt.CONNECTION),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "-w",
            "--timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Connect timeout; with --expect, also how long to wait for a match.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "10s",  # type: ignore[assignment]  # parsed like a given value
    idle_timeout: IdleTimeout = None,
    source: Annotated[
        str | None,
        typer.Option(
            "-s", "--source", metavar="ADDR", help="Local address to connect from.", rich_help_panel=opt.CONNECTION
        ),
    ] = None,
    source_port: Annotated[
        int | None,
        typer.Option(
            "-p",
            "--source-port",
            metavar="PORT",
            parser=opt.value_parser(opt.port_number),
            help="Local port to connect from.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    keepalive: Keepalive = False,
    nodelay: Nodelay = False,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    tls: tlsopt.Tls = False,
    sni: tlsopt.Sni = None,
    no_sni: tlsopt.NoSni = False,
    ca: tlsopt.Ca = None,
    pin: tlsopt.Pin = None,
    insecure: tlsopt.Insecure = False,
    cert: tlsopt.Cert = None,
    key: tlsopt.Key = None,
    alpn: tlsopt.Alpn = None,
    tls_min: tlsopt.TlsMin = None,
    ciphers: tlsopt.Ciphers = None,
    min_days: tlsopt.MinDays = None,
    strict_close: tlsopt.StrictClose = False,
    proxy: tlsopt.ProxyUrl = None,
    proxy_auth: tlsopt.ProxyAuth = None,
    send: Send = None,
    hex_input: HexInput = False,
    crlf: Crlf = False,
    no_shutdown: NoShutdown = False,
    keep_sending: KeepSending = False,
    quit_after: QuitAfter = None,
    send_only: SendOnly = False,
    recv_only: RecvOnly = False,
    repeat: Repeat = 1,
    interval: Interval = 0.0,
    expect: Expect = None,
    frame: Frame = None,
    max_frame: MaxFrame = None,
    checksum: Checksum = None,
    hex: opt.Hex = False,
    full: opt.Full = False,
    json: opt.Json = False,
    record: opt.Record = None,
    progress: Progress = False,
    view: opt.View = None,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Connect to HOST:PORT and relay stdin ⇄ socket ⇄ stdout, like nc.

    At the end of stdin the write side is shut down and reading goes on until
    the peer closes; when the peer closes, socktool exits 0.

    Examples:
      printf 'GET / HTTP/1.0\\r\\n\\r\\n' | socktool tcp-connect example.test:80
      socktool tcp-connect -z db:5432 && echo up
      socktool tcp-connect localhost:6379 --send $'PING\\r\\n' --expect PONG
    """
    from socktool.net.pipe import Dial, DialOptions
    from socktool.net.tcp import SocketOptions

    family = opt.family(ipv4, ipv6)
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json, hex=hex)
    framing = frame_options(frame, max_frame, checksum, crlf=crlf)
    payload = _payload(terminal, send, hex_input, crlf, repeat, interval, framing)
    relay_options = _relay_options(
        mode,
        send_only=send_only,
        recv_only=recv_only,
        no_shutdown=no_shutdown,
        idle_timeout=idle_timeout,
        expect=expect,
        timeout=timeout,
        terminal=terminal,
        record=record,
        # A file or pipe on stdin is counted in the view, not drawn chunk by chunk.
        summarize_sent=mode is Mode.VIEW and not (full or send or frame) and not terminal.stdin_isatty,
        keep_sending=keep_sending,
        quit_after=quit_after,
    )
    sink = framing.sink(build_sink(terminal, mode, hex=hex, record=record, full=full))
    tls_options = tlsopt.TlsOptions(
        tls,
        sni=sni,
        no_sni=no_sni,
        ca=ca,
        pin=pin,
        insecure=insecure,
        cert=cert,
        key=key,
        alpn=alpn,
        tls_min=tls_min,
        ciphers=ciphers,
        min_days=min_days,
        strict_close=strict_close,
    )
    client_tls = tls_options.client(address, handshake_timeout=timeout)
    _no_quit_after_with_tls(quit_after, tls)
    proxy_config = tlsopt.proxy_config(
        proxy, proxy_auth, {"--source": source, "--source-port": source_port, "-4": ipv4, "-6": ipv6}
    )
    opt.tcp_only(
        tcp=proxy is not None or not address.is_unix,
        why="a unix: socket has no TCP layer",
        keepalive=keepalive,
        nodelay=nodelay,
    )
    dial_options = DialOptions(
        family=family,
        timeout=timeout,
        source=source,
        source_port=source_port,
        socket_options=SocketOptions(keepalive=keepalive, nodelay=nodelay),
        zero=zero,
        tls=client_tls,
        proxy=proxy_config,
    )
    session = Dial(address, dial_options, payload, relay_options, sink)
    total = _stdin_size(terminal) if payload.stdin_fd is not None and not zero else None
    with _progress(terminal, progress, session.counters, total):
        session.run()
    return 0


def _stdin_size(terminal: Terminal) -> int | None:
    from socktool.net.fdio import file_size

    return file_size(terminal.stdin_fd)


def tcp_listen(
    address: opt.ListenAddress,
    keep_open: Annotated[
        bool,
        typer.Option(
            "-k", "--keep-open", help="Serve clients concurrently until interrupted.", rich_help_panel=opt.CONNECTION
        ),
    ] = False,
    max_clients: Annotated[
        int | None,
        typer.Option(
            "--max-clients",
            metavar="N",
            parser=opt.PositiveInt,
            help="With -k or --broker: turn away clients beyond N at once (--exec: 100 unless given).",
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
    exec_: Annotated[
        str | None,
        typer.Option(
            "--exec",
            metavar="CMD",
            help=(
                "Wire each connection to a new process's stdin/stdout (CMD split as sh splits words;"
                " no shell unless CMD runs one). --crlf applies to its output."
            ),
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    broker: Annotated[
        bool,
        typer.Option(
            "--broker",
            help=(
                "Relay each client's data to every other client (implies -k). With --send-only clients"
                " get stdin only; with --recv-only their data goes to stdout only and they get nothing."
            ),
            rich_help_panel=opt.CONNECTION,
        ),
    ] = False,
    reuse_addr: Annotated[
        bool, typer.Option("--reuse-addr/--no-reuse-addr", help="SO_REUSEADDR.", rich_help_panel=opt.CONNECTION)
    ] = True,
    timeout: Annotated[
        float | None,
        typer.Option(
            "-w",
            "--timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help=(
                "Give up if no client is let in within DUR of the start; with --expect, how long each"
                " client has to match."
            ),
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    idle_timeout: IdleTimeout = None,
    keepalive: Keepalive = False,
    nodelay: Nodelay = False,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    tls: tlsopt.Tls = False,
    cert: tlsopt.Cert = None,
    key: tlsopt.Key = None,
    client_ca: tlsopt.ClientCa = None,
    alpn: tlsopt.Alpn = None,
    tls_min: tlsopt.TlsMin = None,
    ciphers: tlsopt.Ciphers = None,
    strict_close: tlsopt.StrictClose = False,
    send: Send = None,
    hex_input: HexInput = False,
    crlf: Crlf = False,
    no_shutdown: NoShutdown = False,
    keep_sending: KeepSending = False,
    quit_after: QuitAfter = None,
    send_only: SendOnly = False,
    recv_only: RecvOnly = False,
    repeat: Repeat = 1,
    interval: Interval = 0.0,
    expect: Expect = None,
    frame: Frame = None,
    max_frame: MaxFrame = None,
    checksum: Checksum = None,
    control: Control = None,
    hex: opt.Hex = False,
    full: opt.Full = False,
    json: opt.Json = False,
    record: opt.Record = None,
    progress: Progress = False,
    view: opt.View = None,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Listen on [HOST:]PORT and relay one client ⇄ stdin/stdout, like nc -l.

    One client, then exit; -k serves many at once on one thread (their data
    to stdout, stdin to all of them as it arrives; the I/O options apply to
    each client); --broker relays between clients; --exec runs a program per
    connection. A client that does not read is dropped after 2s with more
    than 1 MiB waiting for it, so that the others go on.

    With -k or --broker, stdin at a terminal is a console: lines go to every
    client, /to N picks one, /help lists the commands. In a pipe stdin stays
    payload, binary-safe, as with nc (--control says which outright).

    Examples:
      socktool tcp-listen 8898
      socktool tcp-listen -k --allow 127.0.0.1 9000 > log
      socktool tcp-listen -k --exec 'cat' 7000
    """
    from socktool.net.hub import Hub, ListenOptions

    family = opt.family(ipv4, ipv6)
    opt.exclusive(exec=exec_, broker=broker)
    many = keep_open or broker
    _no_quit_after_with_tls(quit_after, tls)
    server_tls = tlsopt.TlsOptions(
        tls,
        cert=cert,
        key=key,
        client_ca=client_ca,
        alpn=alpn,
        tls_min=tls_min,
        ciphers=ciphers,
        strict_close=strict_close,
    ).server()
    if strict_close and many:
        raise typer.BadParameter(
            "it makes the run exit 1 when its one client ends without TLS close_notify; with -k or --broker"
            " the listener outlives its clients (and runs until interrupted), so each such end is a warning",
            param_hint="'--strict-close'",
        )
    _check_listen_options(
        many=many,
        exec_=exec_,
        max_clients=max_clients,
        send=send,
        hex_input=hex_input,
        repeat=repeat,
        interval=interval,
        expect=expect,
        hex=hex,
        progress=progress,
    )
    for name, given in (("--keep-sending", keep_sending), ("--quit-after", quit_after is not None)):
        if given and (many or exec_):
            raise typer.BadParameter(
                "only for one connection relayed to stdin/stdout (not with -k, --broker or --exec)",
                param_hint=f"'{name}'",
            )
    opt.tcp_only(tcp=not address.is_unix, why="a unix: socket has no TCP layer", keepalive=keepalive, nodelay=nodelay)
    access = access_policy(address, allow, deny)
    exec_argv = _exec_argv(exec_)
    if exec_argv is not None and max_clients is None:
        from socktool.net.execute import DEFAULT_MAX_CLIENTS

        max_clients = DEFAULT_MAX_CLIENTS
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json, hex=hex)
    framing = frame_options(frame, max_frame, checksum, crlf=crlf)
    payload = _payload(terminal, send, hex_input, crlf, repeat, interval, framing)
    relay_options = _relay_options(
        mode,
        send_only=send_only,
        recv_only=recv_only,
        no_shutdown=no_shutdown,
        idle_timeout=idle_timeout,
        expect=expect,
        timeout=timeout,
        terminal=terminal,
        record=record,
        # A file or pipe on stdin is counted in the view, not drawn chunk by chunk.
        summarize_sent=mode is Mode.VIEW and not (full or send or frame) and not terminal.stdin_isatty,
        keep_sending=keep_sending,
        quit_after=quit_after,
    )
    served: list[Hub] = []  # the engine, once built: a message over --max-frame closes only its client

    def frame_error(conn: int) -> None:
        served[0].loop.kick(conn, "a message larger than --max-frame")

    sink = framing.sink(
        build_sink(terminal, mode, hex=hex, numbered=many, record=record, full=full), frame_error if many else None
    )
    from socktool.net.pipe import listen_engine
    from socktool.net.tcp import SocketOptions

    options = ListenOptions(
        keep_open=many,
        family=family,
        reuse_addr=reuse_addr,
        max_clients=max_clients,
        access=access,
        broker=broker,
        exec_argv=exec_argv,
        socket_options=SocketOptions(keepalive=keepalive, nodelay=nodelay),
        first_client_timeout=timeout,
        tls=server_tls,
    )
    control_mode = console_control(control, terminal, many=many, exec_=exec_, send=send, recv_only=recv_only)
    if checksum is not None and not send and control_mode == "none":
        raise typer.BadParameter(
            "it is added to each --send or console message; stdin here is a stream, not messages",
            param_hint="'--checksum'",
        )
    if control_mode != "none":
        from socktool.cli.console import run_controlled
        from socktool.console import Composer, text_encoder
        from socktool.net.console import ConsoleHub

        typed = text_encoder(hex_input=hex_input, crlf=crlf, line_end=not framing.active)
        compose = Composer(lambda text: framing.encode(typed(text)), templates=not hex_input)

        def console_hub(sink: "ev.Sink", answer: "Callable[[Answer], None]") -> ConsoleHub:
            hub = ConsoleHub(
                address,
                payload,
                relay_options,
                options,
                sink,
                answer=answer,
                encode=compose,
                frame=framing.encode,
            )
            served.append(hub)
            return hub

        run_controlled(control_mode, terminal, sink, console_hub)
        return 0
    engine = listen_engine(address, payload, relay_options, options, sink)
    if isinstance(engine, Hub):
        served.append(engine)
    total = _stdin_size(terminal) if payload.stdin_fd is not None else None
    with _progress(terminal, progress, engine.counters, total):
        engine.run()
    return 0


def console_control(
    control: str | None,
    terminal: Terminal,
    *,
    many: bool,
    exec_: str | None,
    send: list[str] | None,
    recv_only: bool,
) -> str:
    from socktool.cli.console import control_mode

    return control_mode(
        control,
        terminal,
        {
            "tcp-listen without -k/--broker (one client: stdin is its payload)": not many,
            "--exec": exec_ is not None,
            "--send": bool(send),
            "--recv-only": recv_only,
        },
    )


def access_policy(address: "Endpoint", allow: list[str] | None, deny: list[str] | None) -> AccessPolicy:
    """--allow / --deny as the listener applies them (exit 2 on a unix: socket, whose clients have no address)."""
    if address.is_unix and (allow or deny):
        raise typer.BadParameter(
            "they judge a client's IP address, and a unix: socket's clients have none "
            "(the socket file's permissions say who may connect)",
            param_hint="'--allow' / '--deny'",
        )
    return AccessPolicy(tuple(cast("list[Network]", allow or ())), tuple(cast("list[Network]", deny or ())))


def _check_listen_options(
    *,
    many: bool,
    exec_: str | None,
    max_clients: int | None,
    send: list[str] | None,
    hex_input: bool,
    repeat: int,
    interval: float,
    expect: str | None,
    hex: bool,
    progress: bool,
) -> None:
    """Reject what cannot mean anything in this mode (exit 2), rather than ignore it."""
    if max_clients is not None and not many:
        raise typer.BadParameter(
            "only with -k/--keep-open or --broker (one client is served without it)", param_hint="'--max-clients'"
        )
    if exec_ is None:
        return
    payload_options = {
        "--send": bool(send),
        "--hex-input": hex_input,
        "--repeat": repeat != 1,
        "--interval": bool(interval),
        "--expect": expect is not None,
        "--hex": hex,
        "--progress": progress,
    }
    for name, given in payload_options.items():
        if given:
            raise typer.BadParameter(
                f"{name} cannot be used with --exec (the command's output is what clients get)", param_hint="'--exec'"
            )


def _exec_argv(command: str | None) -> tuple[str, ...] | None:
    if command is None:
        return None
    try:
        argv = tuple(split_command(command))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--exec'") from None
    if not argv:
        raise typer.BadParameter("empty command", param_hint="'--exec'")
    if shutil.which(argv[0]) is None:
        raise typer.BadParameter(f"command not found: {argv[0]}", param_hint="'--exec'")
    return argv
