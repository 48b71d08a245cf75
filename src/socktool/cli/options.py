"""Option types shared by the commands: one definition each, reused by name.

Values are parsed here by the one parser for each kind (address, duration,
CIDR, ...): a bad value is Typer's usage error, exit 2.
"""

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from socktool import values
from socktool.net import address
from socktool.net.access import parse_cidr

if TYPE_CHECKING:  # pragma: no cover
    from typer._click.core import Context
    from typer._click.formatting import HelpFormatter

T = TypeVar("T")

CONNECTION = "Connection"
FAULTS = "Faults"  # forward's faults for testing clients and servers
TLS = "TLS"
PROXY = "Proxy"
IO = "Input and output"
OUTPUT = "Output"


def connect_endpoint(text: str) -> address.Endpoint:
    """HOST:PORT, [IPV6]:PORT or unix:PATH; a URL or a port range gets a hint to the right form."""
    from socktool.cli import habits

    hint = habits.endpoint_hint(text)
    if hint is not None:
        raise ValueError(hint)
    return address.parse_connect_endpoint(text)


def value_parser(parse: Callable[[str], T]) -> Callable[[object], T]:
    """Adapt a pure parser (ValueError on bad input) to Typer's parser= hook."""

    def convert(text: object) -> T:
        if not isinstance(text, str):
            return text  # type: ignore[return-value]  # a default, already parsed
        try:
            return parse(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return convert


def positive_duration(text: str) -> float:
    seconds = values.parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"duration must be more than zero: {text!r}")
    return seconds


def positive_int(text: str) -> int:
    number = values.parse_integer(text)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def non_negative_int(text: str) -> int:
    number = values.parse_integer(text)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {number}")
    return number


def port_number(text: str) -> int:
    return address.parse_port(text)


ConnectAddress = Annotated[
    address.Endpoint,
    typer.Argument(
        metavar="HOST:PORT",
        parser=value_parser(connect_endpoint),
        help="Where to connect: HOST:PORT, [IPV6]:PORT or unix:PATH.",
        show_default=False,
    ),
]

ListenAddress = Annotated[
    address.Endpoint,
    typer.Argument(
        metavar="[HOST:]PORT",
        parser=value_parser(address.parse_listen_endpoint),
        help="Where to listen: PORT, HOST:PORT, [IPV6]:PORT or unix:PATH; port 0 picks a free one.",
        show_default=False,
    ),
]

Duration = value_parser(values.parse_duration)
PositiveDuration = value_parser(positive_duration)
PositiveInt = value_parser(positive_int)
Cidr = value_parser(parse_cidr)


def expect_pattern(expect: str | None) -> re.Pattern[bytes] | None:
    """--expect's REGEX, compiled over bytes (a usage error when it is not one)."""
    if expect is None:
        return None
    try:
        return re.compile(expect.encode("utf-8", "surrogateescape"))
    except re.error as exc:
        raise typer.BadParameter(f"not a regular expression: {exc}", param_hint="'--expect'") from None


class Command(TyperCommand):
    """Every socktool command: usage reads `HOST:PORT` (Typer writes `{HOST:PORT}`
    for a required argument), and --help is tidied when drawn (cli/helptext.py)."""

    def collect_usage_pieces(self, ctx: "Context") -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece for piece in pieces]

    def get_help_option(self, ctx: "Context") -> TyperOption | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.rich_help_panel = OUTPUT  # listed with the other output options
        return option

    def parse_args(self, ctx: "Context", args: list[str]) -> list[str]:
        """Read nc's forms as socktool's (cli/habits.py), parse, then refuse options that
        cannot go together (cli/combinations.py)."""
        from typer._click.exceptions import NoSuchOption, UsageError

        from socktool.cli import habits
        from socktool.cli.combinations import check

        names = [(name, param) for param in self.params for name in _option_names(param)]
        command = ctx.info_name or ""
        try:
            args = habits.join_host_port(command, args, (n for n, p in names if not getattr(p, "is_flag", True)))
        except habits.RangeGiven as exc:
            raise UsageError(habits.range_hint(str(exc)), ctx) from None
        given = list(args)  # (the parser consumes `args`)
        try:
            rest = super().parse_args(ctx, args)
        except NoSuchOption as exc:
            raise UsageError(habits.no_such_option(command, exc.option_name, (n for n, _ in names)), ctx) from None
        except UsageError as exc:
            hint = habits.quiet_hint(given)
            if hint:
                exc.message = f"{exc.message.rstrip('.')}; {hint}"
            raise
        check(ctx)
        return rest

    def format_help(self, ctx: "Context", formatter: "HelpFormatter") -> None:
        from socktool.cli.helptext import tidy

        tidy(self)
        super().format_help(ctx, formatter)


class Group(TyperGroup):
    """`socktool` itself: its description is laid out for the terminal's width as the commands' are."""

    def format_help(self, ctx: "Context", formatter: "HelpFormatter") -> None:
        from socktool.cli.helptext import help_width, reflow

        if self.help:
            self.help = reflow(self.help, help_width())
        super().format_help(ctx, formatter)


def _option_names(param: object) -> list[str]:
    return (
        [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())] if isinstance(param, TyperOption) else []
    )


# -- output options every command takes -------------------------------------
Verbose = Annotated[
    bool,
    typer.Option(
        "-v", "--verbose", help="Status lines on stderr even when it is not a terminal.", rich_help_panel=OUTPUT
    ),
]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Nothing on stderr but errors.", rich_help_panel=OUTPUT)]
NoColor = Annotated[
    bool, typer.Option("--no-color", help="No colour (also: NO_COLOR set in the environment).", rich_help_panel=OUTPUT)
]
Debug = Annotated[bool, typer.Option("--debug", help="Show a traceback with errors.", rich_help_panel=OUTPUT)]
View = Annotated[
    bool | None,
    typer.Option(
        "--view/--raw",
        help="Draw the traffic view, or write raw payload. Default: view when stdout is a terminal.",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.", rich_help_panel=OUTPUT)]
Hex = Annotated[
    bool,
    typer.Option(
        "--hex",
        help="Show payload as a hex dump (in a pipe: the received bytes as hex text).",
        rich_help_panel=OUTPUT,
    ),
]
Full = Annotated[
    bool,
    typer.Option(
        "--full", help="Draw every chunk whole in the view (default: the first rows of each).", rich_help_panel=OUTPUT
    ),
]
Record = Annotated[
    str | None,
    typer.Option(
        "--record",
        metavar="FILE",
        help="Also write every event, with every payload byte, to FILE as JSON Lines (the --json records).",
        rich_help_panel=OUTPUT,
    ),
]
IPv4 = Annotated[bool, typer.Option("-4", help="IPv4 only.", rich_help_panel=CONNECTION)]
IPv6 = Annotated[bool, typer.Option("-6", help="IPv6 only.", rich_help_panel=CONNECTION)]


def family(ipv4: bool, ipv6: bool) -> int:
    if ipv4 and ipv6:
        raise typer.BadParameter("-4 and -6 exclude each other", param_hint="-4/-6")
    return address.family_for(ipv4=ipv4, ipv6=ipv6)


def exclusive(**flags: object) -> None:
    """Usage error when more than one of the named options is set."""
    given = [name for name, value in flags.items() if value not in (None, False, (), [])]
    if len(given) > 1:
        names = " and ".join("--" + name.replace("_", "-") for name in given)
        raise typer.BadParameter(f"{names} cannot be used together")


def tcp_only(*, tcp: bool, why: str, keepalive: bool, nodelay: bool) -> None:
    """--keepalive and --nodelay act on TCP sockets: where there is none (`why`), they are refused."""
    if tcp:
        return
    for name, given in (("--keepalive", keepalive), ("--nodelay", nodelay)):
        if given:
            raise typer.BadParameter(f"it is a TCP option; {why}", param_hint=f"'{name}'")
