"""tcp-connect and tcp-listen: netcat's pipe, client and server side."""

import contextlib
import shlex
import shutil
import socket
import time
from typing import TYPE_CHECKING, Annotated, cast

import typer

from socktool.cli import options as opt
from socktool.net import events as ev
from socktool.net.access import AccessPolicy, Network
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.relay import Connection, Payload, Relay, RelayOptions
from socktool.values import decode_hex, to_crlf
from socktool.view.output import build_sink
from socktool.view.terminal import Mode, Terminal

if TYPE_CHECKING:  # pragma: no cover
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
    terminal: Terminal, send: list[str] | None, hex_input: bool, crlf: bool, repeat: int, interval: float
) -> Payload:
    messages: list[bytes] = []
    for text in send or ():
        data = text.encode("utf-8", "surrogateescape")
        if hex_input:
            try:
                data = decode_hex(data)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="'--send'") from None
        messages.append(to_crlf(data) if crlf else data)
    return Payload(
        stdin_fd=None if send else terminal.stdin_fd,
        messages=tuple(messages),
        hex_input=hex_input,
        crlf=crlf,
        repeat=repeat,
        interval=interval,
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
) -> RelayOptions:
    opt.exclusive(send_only=send_only, recv_only=recv_only)
    return RelayOptions(
        send=not recv_only,
        receive=not send_only,
        half_close=not no_shutdown,
        output_fd=terminal.stdout_fd if mode is Mode.RAW else None,
        emit_data=mode is not Mode.RAW,
        idle_timeout=idle_timeout,
        expect=opt.expect_pattern(expect),
        expect_timeout=timeout,
        linger=0.0 if terminal.stdin_isatty else 0.5,
    )


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
    send: Send = None,
    hex_input: HexInput = False,
    crlf: Crlf = False,
    no_shutdown: NoShutdown = False,
    send_only: SendOnly = False,
    recv_only: RecvOnly = False,
    repeat: Repeat = 1,
    interval: Interval = 0.0,
    expect: Expect = None,
    hex: opt.Hex = False,
    json: opt.Json = False,
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
    from socktool.net import tcp

    family = opt.family(ipv4, ipv6)
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json)
    payload = _payload(terminal, send, hex_input, crlf, repeat, interval)
    relay_options = _relay_options(
        mode,
        send_only=send_only,
        recv_only=recv_only,
        no_shutdown=no_shutdown,
        idle_timeout=idle_timeout,
        expect=expect,
        timeout=timeout,
        terminal=terminal,
    )
    sink = build_sink(terminal, mode, hex=hex)
    sock = tcp.connect(
        address,
        family=family,
        timeout=timeout,
        source=source,
        source_port=source_port,
        options=tcp.SocketOptions(keepalive=keepalive, nodelay=nodelay),
        sink=sink,
    )
    conn = Connection(sock, 1, _peer_text(sock, address), _local_text(sock))
    sink(conn.connected_event())
    if zero:
        sock.close()
        return 0
    reason = "error"
    try:
        total = payload.stdin_fd is not None and _stdin_size(terminal)
        with _progress(terminal, progress, lambda: (conn.sent, conn.received), total or None):
            reason = Relay(conn, payload, relay_options, sink).run()
    finally:
        sock.close()
        sink(conn.closed_event(reason))
        sink(ev.Stats(sent=conn.sent, received=conn.received, duration=time.monotonic() - conn.started, connections=1))
    return 0


def _stdin_size(terminal: Terminal) -> int | None:
    from socktool.net.fdio import file_size

    return file_size(terminal.stdin_fd)


def _peer_text(sock: socket.socket, address: Endpoint) -> str:
    return str(address) if address.is_unix else sockaddr_text(sock.getpeername())


def _local_text(sock: socket.socket) -> str:
    return "" if sock.family == socket.AF_UNIX else sockaddr_text(sock.getsockname())


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
            help="With -k: turn away clients beyond N at once.",
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
            help="Wire each connection to a new process's stdin/stdout (no shell unless CMD runs one).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    broker: Annotated[
        bool,
        typer.Option(
            "--broker",
            help="Relay each client's data to every other client (implies -k).",
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
            help="Give up if no client connects within DUR; with --expect, how long to wait for a match.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    idle_timeout: IdleTimeout = None,
    keepalive: Keepalive = False,
    nodelay: Nodelay = False,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    send: Send = None,
    hex_input: HexInput = False,
    crlf: Crlf = False,
    no_shutdown: NoShutdown = False,
    send_only: SendOnly = False,
    recv_only: RecvOnly = False,
    repeat: Repeat = 1,
    interval: Interval = 0.0,
    expect: Expect = None,
    hex: opt.Hex = False,
    json: opt.Json = False,
    progress: Progress = False,
    view: opt.View = None,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Listen on [HOST:]PORT and relay one client ⇄ stdin/stdout, like nc -l.

    One client, then exit; -k serves many at once (their data to stdout, each
    stdin line to all of them); --broker relays between clients; --exec runs
    a program per connection.

    Examples:
      socktool tcp-listen 8898
      socktool tcp-listen -k --allow 127.0.0.1 9000 > log
      socktool tcp-listen -k --exec 'cat' 7000
    """
    from socktool.net import tcp
    from socktool.net.server import ServeOptions, Server
    from socktool.net.serving import BACKLOG

    family = opt.family(ipv4, ipv6)
    keep_open = keep_open or broker
    opt.exclusive(exec=exec_, broker=broker)
    exec_argv = _exec_argv(exec_)
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json)
    payload = _payload(terminal, send, hex_input, crlf, repeat, interval)
    relay_options = _relay_options(
        mode,
        send_only=send_only,
        recv_only=recv_only,
        no_shutdown=no_shutdown,
        idle_timeout=idle_timeout,
        expect=expect,
        timeout=timeout,
        terminal=terminal,
    )
    sink = build_sink(terminal, mode, hex=hex, numbered=keep_open)
    # With -k, a burst of clients must not overflow the accept queue (each dropped SYN costs a client 1s).
    backlog = BACKLOG if keep_open else 128
    listener = tcp.listen(address, family=family, reuse_addr=reuse_addr, backlog=backlog)
    with listener:  # closed (and a unix socket file removed) whatever happens next
        server = Server(
            listener,
            payload,
            relay_options,
            ServeOptions(
                keep_open=keep_open,
                max_clients=max_clients,
                access=AccessPolicy(
                    tuple(cast("list[Network]", allow or ())), tuple(cast("list[Network]", deny or ()))
                ),
                exec_argv=exec_argv,
                broker=broker,
                socket_options=tcp.SocketOptions(keepalive=keepalive, nodelay=nodelay),
                accept_timeout=None if keep_open else timeout,
            ),
            sink,
        )
        sink(ev.Listening(listener.address))
        total = _stdin_size(terminal) if payload.stdin_fd is not None else None
        with _progress(terminal, progress, server.totals, total):
            server.serve()
    return 0


def _exec_argv(command: str | None) -> tuple[str, ...] | None:
    if command is None:
        return None
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--exec'") from None
    if not argv:
        raise typer.BadParameter("empty command", param_hint="'--exec'")
    if shutil.which(argv[0]) is None:
        raise typer.BadParameter(f"command not found: {argv[0]}", param_hint="'--exec'")
    return argv
