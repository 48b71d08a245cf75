"""Which options cannot go together, per command: the one table the parser checks.

Rule: an option that cannot apply in the mode another one sets is a usage
error (exit 2) that names both and says why, never accepted and ignored.
`Command.parse_args` (cli/options.py) checks these after parsing, before
the command runs. Options are named by their parameter (`send_only`); a
value after `=` narrows a rule to that value (`view=False` is --raw).
tests/test_option_pairs.py walks every pair of options of every command
against what the CLI does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from typer._click.core import Context


class Excludes(NamedTuple):
    """`first` and `second` given together is an error: `why`."""

    first: str
    second: str
    why: str


class Needs(NamedTuple):
    """`option` given without any of `any_of` is an error: `why`."""

    option: str
    any_of: tuple[str, ...]
    why: str


Rule = Excludes | Needs

# Every command that has both options of a rule is held to it.
COMMON: tuple[Rule, ...] = (
    Excludes("verbose", "quiet", "-q silences the status lines -v asks for"),
    Excludes("json", "view", "--json is the output format already"),
    Excludes("hex", "json", "JSON records carry the payload's hex already"),
    Excludes("hex", "view=False", "--hex is a way to draw the view, which this turns off"),
    Excludes("full", "json", "--full draws the view; JSON records carry every byte already"),
    Excludes("full", "view=False", "--full draws the view, which this turns off"),
    Excludes("progress", "quiet", "-q leaves stderr to errors; the bar is drawn there"),
)

_SENDING = ("send", "hex_input", "crlf", "repeat", "interval", "no_shutdown")
RELAY: tuple[Rule, ...] = (
    *(Excludes("recv_only", name, "--recv-only sends nothing") for name in _SENDING),
    Excludes("send_only", "expect", "--send-only reads nothing from the peer to match"),
    Excludes("send_only", "no_shutdown", "--send-only closes the connection once the payload is sent"),
    Excludes(
        "send_only", "idle_timeout", "--send-only stops once the payload is sent; there is no reading to time out"
    ),
    Needs("interval", ("repeat",), "--interval is the pause between --repeat rounds"),
)

HEX_DUMPED = ("tcp-connect", "tcp-listen", "udp-send", "udp-listen")

_NOTHING_MOVES = "-z connects and closes at once: nothing is sent, received or shown"
RULES: dict[str, tuple[Rule, ...]] = {
    "tcp-connect": (
        *RELAY,
        *(
            Excludes("zero", name, _NOTHING_MOVES)
            for name in (
                *_SENDING,
                "send_only",
                "recv_only",
                "expect",
                "idle_timeout",
                "hex",
                "full",
                "progress",
                "view",
            )
        ),
        Excludes("zero", "frame", _NOTHING_MOVES),
        Excludes("zero", "keep_sending", _NOTHING_MOVES),
        Excludes("zero", "quit_after", _NOTHING_MOVES),
        Needs("checksum", ("send",), "--checksum is added to each --send message; stdin is a stream, not messages"),
        Excludes("zero", "keepalive", "-z closes the connection before a keepalive could matter"),
        Excludes("zero", "nodelay", "-z closes the connection before --nodelay could matter"),
    ),
    "tcp-listen": (
        *RELAY,
        *(
            Excludes(
                mode,
                "progress",
                "the bar follows one transfer; with -k/--broker clients come and go (-v gives each one's totals)",
            )
            for mode in ("keep_open", "broker")
        ),
        Excludes(
            "broker", "no_shutdown", "a broker never shuts a client's write side (the others may still send to it)"
        ),
        *(
            Excludes(
                mode,
                "record",
                "-k, --broker and --exec do not record what clients are sent (--record keeps one relayed connection's two directions)",
            )
            for mode in ("keep_open", "broker", "exec_")
        ),
        *(
            Excludes("exec_", name, "the command reads and writes the connection's bytes as they are, not messages")
            for name in ("frame", "checksum")
        ),
    ),
    "udp-send": (
        Needs("interval", ("count", "lines"), "--interval paces several datagrams (--count, --lines)"),
        Excludes("broadcast", "ipv6", "IPv6 has no broadcast; send to a multicast group instead"),
    ),
    "udp-listen": (Needs("interface", ("group",), "--interface says where --group joins"),),
    "echo": (
        Excludes("max_clients", "udp_only", "UDP has no clients to count"),
        Excludes("idle_timeout", "udp_only", "UDP has no connections to time out"),
    ),
    "time-server": (
        Excludes("rfc868", "utc", "RFC 868 time is seconds since 1900 in UTC; --utc is for the text replies"),
    ),
}


def _given(ctx: Context, spec: str) -> str | None:
    """The option as the user wrote it (`--raw`), when `spec` (`view` or `view=False`) was given."""
    name, _, wanted = spec.partition("=")
    param = next((p for p in ctx.command.params if p.name == name), None)
    if param is None:
        return None
    source = ctx.get_parameter_source(name)
    if source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
        return None
    value = ctx.params.get(name)
    if wanted and str(value) != wanted:
        return None
    secondary = getattr(param, "secondary_opts", None)
    if secondary and value is False:
        return str(secondary[0])
    return str(max(param.opts, key=len))


def check(ctx: Context) -> None:
    """Raise the usage error of the first rule these options break."""
    from typer._click.exceptions import UsageError

    names = {p.name for p in ctx.command.params if p.name}
    _check_rules(ctx, names)
    # Where there is no view, the relay commands write --hex as a plain hex dump (view/hexout.py).
    if {"hex", "view"} <= names and _given(ctx, "hex") and ctx.info_name not in HEX_DUMPED and not _drawn(ctx):
        raise UsageError("--hex is a way to draw the view; stdout is not drawn (add --view)", ctx)
    if {"full", "view"} <= names and _given(ctx, "full") and not _drawn(ctx):
        raise UsageError("--full draws the view; stdout is not drawn (add --view)", ctx)


def _drawn(ctx: Context) -> bool:
    """Whether this run draws the traffic view, decided where every command decides it."""
    from socktool.view.terminal import Mode, Terminal

    return Terminal.from_options().mode(view=ctx.params.get("view"), json=bool(ctx.params.get("json"))) is Mode.VIEW


def _check_rules(ctx: Context, names: set[str]) -> None:
    from typer._click.exceptions import UsageError

    for rule in (*COMMON, *RULES.get(ctx.info_name or "", ())):
        if isinstance(rule, Excludes):
            if {rule.first.partition("=")[0], rule.second.partition("=")[0]} <= names:
                first, second = _given(ctx, rule.first), _given(ctx, rule.second)
                if first and second:
                    raise UsageError(f"{first} and {second} cannot be used together: {rule.why}", ctx)
        elif rule.option in names and (given := _given(ctx, rule.option)):
            if not any(_given(ctx, other) for other in rule.any_of):
                wanted = " or ".join(str(_flag(ctx, other)) for other in rule.any_of)
                raise UsageError(f"{given} needs {wanted}: {rule.why}", ctx)


def _flag(ctx: Context, name: str) -> str:
    param = next((p for p in ctx.command.params if p.name == name), None)
    return name if param is None else str(max(getattr(param, "opts", [name]), key=len))
