"""udp-send and udp-listen: datagrams out, datagrams in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from socktool.cli import options as opt
from socktool.cli.console import Control
from socktool.cli.console import control_mode as control_mode_of
from socktool.net.address import Endpoint
from socktool.view.output import build_sink
from socktool.view.terminal import Mode, Terminal

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net import udpsend


def _ttl(text: str) -> int:
    number = opt.positive_int(text)
    if number > 255:
        raise ValueError(f"must be at most 255, got {number}")
    return number


def _interface(text: str) -> str:
    from socktool.net.multicast import check_interface

    return check_interface(text)


def _group(text: str) -> str:
    from socktool.net.multicast import parse_group

    return parse_group(text)


Interface = Annotated[
    str | None,
    typer.Option(
        "--interface",
        metavar="IFACE",
        parser=opt.value_parser(_interface),
        help="Network interface for multicast: a name (eth0) or, for IPv4, its address. "
        "Default: the loopback interface, so multicast leaves this host only when asked.",
        rich_help_panel=opt.CONNECTION,
    ),
]


def udp_send(
    address: opt.ConnectAddress,
    message: Annotated[
        str | None,
        typer.Argument(
            metavar="[MESSAGE]",
            help="Send exactly these bytes (no newline added; '' is an empty datagram). Default: stdin.",
            show_default=False,
        ),
    ] = None,
    lines: Annotated[
        bool,
        typer.Option("--lines", help="One datagram per line of stdin, without its line end.", rich_help_panel=opt.IO),
    ] = False,
    hex_input: Annotated[
        bool,
        typer.Option(
            "--hex-input",
            help="MESSAGE / stdin is hex text (whitespace between bytes allowed).",
            rich_help_panel=opt.IO,
        ),
    ] = False,
    count: Annotated[
        int,
        typer.Option(
            "--count",
            "--repeat",
            metavar="N",
            parser=opt.PositiveInt,
            help="Send the datagram(s) N times (as tcp-connect --repeat; --count is the first name it had).",
            rich_help_panel=opt.IO,
        ),
    ] = 1,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="DUR",
            parser=opt.Duration,
            help="Pause between datagrams.",
            rich_help_panel=opt.IO,
            show_default=False,
        ),
    ] = 0.0,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="After sending, show replies until --timeout; exit 1 if none came.", rich_help_panel=opt.IO
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            "-w",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="How long --wait waits after the last datagram (default 2s; giving it implies --wait).",
            rich_help_panel=opt.IO,
            show_default=False,
        ),
    ] = None,
    replies: Annotated[
        int | None,
        typer.Option(
            "--replies",
            metavar="N",
            parser=opt.PositiveInt,
            help="With --wait: exit 0 as soon as N replies came (default: 1 for one datagram to a unicast "
            "address, else all until --timeout); implies --wait.",
            rich_help_panel=opt.IO,
            show_default=False,
        ),
    ] = None,
    broadcast: Annotated[
        bool,
        typer.Option(
            "--broadcast", help="Allow sending to a broadcast address (SO_BROADCAST).", rich_help_panel=opt.CONNECTION
        ),
    ] = False,
    ttl: Annotated[
        int | None,
        typer.Option(
            "--ttl",
            metavar="N",
            parser=opt.value_parser(_ttl),
            help="IP TTL / hop limit (multicast or unicast), 1-255.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    interface: Interface = None,
    source: Annotated[
        str | None,
        typer.Option(
            "-s", "--source", metavar="ADDR", help="Local address to send from.", rich_help_panel=opt.CONNECTION
        ),
    ] = None,
    source_port: Annotated[
        int | None,
        typer.Option(
            "-p",
            "--source-port",
            metavar="PORT",
            parser=opt.value_parser(opt.port_number),
            help="Local port to send from.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    hex: opt.Hex = False,
    full: opt.Full = False,
    json: opt.Json = False,
    record: opt.Record = None,
    view: opt.View = None,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Send MESSAGE (or stdin) as one UDP datagram to HOST:PORT.

    MESSAGE goes out exactly as given; without it, all of stdin is one
    datagram (at most 65,507 bytes), or one per line with --lines. --wait
    shows the replies.

    Examples:
      socktool udp-send 127.0.0.1:9999 'hello'
      printf 'ping' | socktool udp-send localhost:7 --wait
      socktool udp-send 239.1.2.3:5000 'hi all' --count 5 --interval 1s
    """
    from socktool.net import udpsend

    family = opt.family(ipv4, ipv6)
    _check_interface(address, interface)
    if message is not None and lines:
        raise typer.BadParameter("--lines splits stdin; it does not apply to MESSAGE", param_hint="'--lines'")
    wait = wait or timeout is not None or replies is not None
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json, hex=hex)
    datagrams: tuple[bytes, ...] = ()
    if message is not None:
        datagrams = (_message_bytes(message, hex_input),)
    sink = build_sink(
        terminal, mode, hex=hex, stats=mode is not Mode.VIEW, record=record, full=full
    )  # the view draws its own totals
    target = udpsend.open_target(
        address,
        family=family,
        options=udpsend.SendOptions(
            broadcast=broadcast,
            ttl=ttl,
            interface=interface,
            source=source,
            source_port=source_port,
            replies=wait,
        ),
    )
    try:
        stdin_fd = terminal.stdin_fd
        if message is None and terminal.stdin_isatty:
            terminal.status(
                "reading datagrams from the terminal: one per line, sent as you type"
                if lines
                else "reading the datagram from the terminal: Ctrl-D sends it"
            )
        if message is not None:
            _check_message(datagrams[0], target.limit)
        elif not lines:
            datagrams = (udpsend.read_datagram(stdin_fd, hex_input=hex_input, limit=target.limit),)
        elif count > 1:
            datagrams = tuple(udpsend.read_lines(stdin_fd, hex_input=hex_input, limit=target.limit))
        streamed = message is None and lines and count == 1
        outgoing = udpsend.Outgoing(
            datagrams,
            stdin_fd if streamed else None,
            hex_input=hex_input,
            count=count,
            interval=interval,
        )
        udpsend.Sender(
            target,
            outgoing,
            wait=(timeout or 2.0) if wait else None,
            replies=replies or _default_replies(address, outgoing, broadcast),
            output_fd=terminal.stdout_fd if mode is Mode.RAW else None,
            emit=mode is not Mode.RAW or record is not None,
            sink=sink,
        ).run()
    finally:
        target.close()
    return 0


def _default_replies(address: Endpoint, outgoing: udpsend.Outgoing, broadcast: bool) -> int | None:
    """One datagram to one unicast peer gets one reply; a group, a broadcast or several
    datagrams may get many, so those wait out --timeout."""
    from socktool.net.multicast import is_multicast

    single = len(outgoing.datagrams) * outgoing.count == 1 and outgoing.stdin_fd is None
    return 1 if single and not broadcast and not is_multicast(address.host or "") else None


def _check_interface(address: Endpoint, interface: str | None) -> None:
    """--interface chooses where multicast leaves; to any other destination it would do nothing."""
    from socktool.net.multicast import is_multicast

    if interface is not None and not is_multicast(address.host or ""):
        raise typer.BadParameter(
            f"{address} is not a multicast group; --interface is where multicast goes out",
            param_hint="'--interface'",
        )


def _message_bytes(message: str, hex_input: bool) -> bytes:
    from socktool.net.udp import MAX_DATAGRAM_IPV6
    from socktool.values import decode_hex

    data = message.encode("utf-8", "surrogateescape")
    if hex_input:
        try:
            data = decode_hex(data)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'MESSAGE'") from None
    return _check_message(data, MAX_DATAGRAM_IPV6)  # no family holds more; the target's own limit follows


def _check_message(data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise typer.BadParameter(
            f"{len(data):,} bytes is more than one UDP datagram holds ({limit:,} bytes)",
            param_hint="'MESSAGE'",
        )
    return data


def udp_listen(
    address: opt.ListenAddress,
    reply: Annotated[
        str | None,
        typer.Option("--reply", metavar="TEXT", help="Answer each datagram with TEXT.", rich_help_panel=opt.IO),
    ] = None,
    echo: Annotated[
        bool, typer.Option("--echo", help="Send each datagram back to its sender.", rich_help_panel=opt.IO)
    ] = False,
    reply_last: Annotated[
        bool,
        typer.Option(
            "--reply-last",
            help="Console: plain lines answer whoever sent the last datagram (a chat).",
            rich_help_panel=opt.IO,
        ),
    ] = False,
    control: Control = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count", metavar="N", parser=opt.PositiveInt, help="Exit 0 after N datagrams.", rich_help_panel=opt.IO
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            "-w",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Stop after DUR without a datagram: exit 1 if none came (or fewer than --count).",
            rich_help_panel=opt.IO,
        ),
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            metavar="ADDR",
            parser=opt.value_parser(_group),
            help="Join multicast group ADDR, IPv4 or IPv6 (repeatable).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = None,
    interface: Interface = None,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    hex: opt.Hex = False,
    full: opt.Full = False,
    json: opt.Json = False,
    record: opt.Record = None,
    view: opt.View = None,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Receive UDP datagrams on [HOST:]PORT from any number of peers.

    A terminal shows each datagram with its time, source and size; a pipe
    gets the payload bytes as they came; --json one object per datagram.

    With stdin at a terminal, typed lines are datagrams to the peers that
    have sent to us (/to N picks one, --reply-last answers the last sender,
    /help lists the commands). In a pipe stdin is not read.

    Examples:
      socktool udp-listen 9999
      socktool udp-listen 5000 --reply 'ok' --count 1 --timeout 5s
      socktool udp-listen 5000 --group 239.1.2.3 --json
    """
    from socktool.net import udp

    family = opt.family(ipv4, ipv6)
    opt.exclusive(reply=reply, echo=echo, reply_last=reply_last)
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    mode = terminal.mode(view=view, json=json, hex=hex)
    sink = build_sink(
        terminal, mode, hex=hex, stats=mode is not Mode.VIEW, record=record, full=full
    )  # the view draws its own totals
    groups = tuple(dict.fromkeys(group or ()))
    control_mode = control_mode_of(control, terminal, {"--reply": reply is not None, "--echo": echo})
    if reply_last and control_mode == "none":
        raise typer.BadParameter(
            "answers lines typed at the console: it needs a terminal on stdin or --control json",
            param_hint="'--reply-last'",
        )
    options = udp.ListenOptions(
        reply=None if reply is None else reply.encode("utf-8", "surrogateescape"),
        echo=echo,
        count=count,
        timeout=timeout,
        output_fd=terminal.stdout_fd if mode is Mode.RAW else None,
        emit=mode is not Mode.RAW or record is not None,
    )
    with udp.listening(address, family=family, groups=groups, interface=interface, sink=sink) as listener:
        # From here an interrupt, however early, still closes it and removes a unix socket file.
        if control_mode == "none":
            udp.Receiver(listener, options, sink).serve()
            return 0
        from socktool.cli.console import run_controlled
        from socktool.net.udpconsole import UdpConsole

        run_controlled(
            control_mode,
            terminal,
            sink,
            lambda sink, answer: UdpConsole(listener, options, sink, answer=answer, reply_last=reply_last),
            announced=True,  # the listening line is out: the prompt may come at once
        )
    return 0
