"""wait: until every endpoint is up (or, inverted, down), then run a command."""

import os
import shutil
from typing import TYPE_CHECKING, Annotated

import typer

from socktool.cli import checks
from socktool.cli import options as opt
from socktool.cli import tls as tlsopt
from socktool.net.address import parse_connect_endpoint
from socktool.net.errors import SocktoolError, TimedOut, describe
from socktool.net.probe import Check, HttpRequest, parse_url_endpoint
from socktool.net.wait import Watch
from socktool.values import format_duration
from socktool.view.terminal import Terminal

if TYPE_CHECKING:  # pragma: no cover
    from typer._click.core import Context

    from socktool.net.tls import TlsCheck


class CommandAfterDashes(opt.Command):
    """A command that hands everything after the first `--` to ctx.meta[AFTER_DASHES],
    unparsed: `wait db:5432 -- sh -c 'exit 3'` runs `sh -c 'exit 3'` as given."""

    AFTER_DASHES = "socktool.after_dashes"

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if "--" in args:
            split = args.index("--")
            args, ctx.meta[self.AFTER_DASHES] = args[:split], args[split + 1 :]
        return super().parse_args(ctx, _optional_path(args))

    def collect_usage_pieces(self, ctx: "Context") -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- CMD [ARGS]...]"]


def wait(
    ctx: typer.Context,
    endpoints: Annotated[
        list[str],
        typer.Argument(
            metavar="HOST:PORT...",
            help="Endpoints: HOST:PORT, [IPV6]:PORT, unix:PATH, http(s)://HOST[:PORT]/PATH or tcp://HOST:PORT.",
            show_default=False,
        ),
    ],
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Most time between two tries of an endpoint: one that comes up is seen within DUR.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "250ms",  # type: ignore[assignment]
    timeout: Annotated[
        float,
        typer.Option(
            "-w",
            "--timeout",
            metavar="DUR",
            parser=opt.PositiveDuration,
            help="Give up (exit 1) after DUR.",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = "30s",  # type: ignore[assignment]
    invert: Annotated[
        bool,
        typer.Option(
            "--invert",
            help="Wait until every endpoint fails its check (stops accepting).",
            rich_help_panel=opt.CONNECTION,
        ),
    ] = False,
    udp: checks.Udp = False,
    send: checks.Send = None,
    expect: checks.Expect = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="[PATH]",
            help="Up when GET PATH (default /) answers with a --status; an http:// endpoint does this too.",
            rich_help_panel=opt.IO,
            show_default=False,
        ),
    ] = None,
    statuses: checks.Statuses = None,
    ipv4: opt.IPv4 = False,
    ipv6: opt.IPv6 = False,
    tls: tlsopt.Tls = False,
    sni: tlsopt.Sni = None,
    ca: tlsopt.Ca = None,
    pin: tlsopt.Pin = None,
    insecure: tlsopt.Insecure = False,
    min_days: tlsopt.MinDays = None,
    proxy: tlsopt.ProxyUrl = None,
    proxy_auth: tlsopt.ProxyAuth = None,
    json_out: opt.Json = False,
    verbose: opt.Verbose = False,
    quiet: opt.Quiet = False,
    no_color: opt.NoColor = False,
    debug: opt.Debug = False,
) -> int:
    """Wait until every endpoint is up, then run CMD (after --).

    Up means: accepts a TCP connection; with --send/--expect, also answers
    with what REGEX matches; with --http or an http:// endpoint, answers GET
    with a wanted --status; with --udp, answers a datagram; with --tls, the
    handshake and certificate pass first (and the other checks go through
    TLS; an https:// endpoint is --http over TLS). The options set the check
    of HOST:PORT endpoints; a URL endpoint carries its own. Tries every --interval until all are up (exit 0, or CMD's exit
    status) or --timeout passes (exit 1, with each late endpoint's last
    failure). --invert waits for them to fail instead. With --proxy every
    endpoint is reached through the proxy (up: it connected us, and the
    check passed over that connection).

    Examples:
      socktool wait db:5432 cache:6379 -- ./migrate --all
      socktool wait -w 2m db:5432 http://api:8080/health --status 200,204
      socktool wait --expect '^SSH-2.0' git.internal:22
    """
    from socktool.net.scan import descriptor_budget
    from socktool.net.wait import Waiter
    from socktool.view.wait import WaitView

    family = opt.family(ipv4, ipv6)
    check = checks.build_check(udp=udp, send=send, expect=expect, http=http, statuses=statuses)
    tls_check = tlsopt.probe_tls(tls, sni=sni, ca=ca, pin=pin, insecure=insecure, min_days=min_days, timeout=timeout)
    check = tlsopt.with_probe_tls(check, tls_check, udp=udp)  # --http/--send/--expect go through TLS
    https_check = tls_check
    if https_check is None and any(text.lower().startswith("https://") for text in endpoints):
        https_check = tlsopt.probe_tls(
            True, sni=None, ca=None, pin=None, insecure=False, min_days=None, timeout=timeout
        )  # the system's CAs and the URL's host name
    watches = [_watch(text, check, statuses, https_check) for text in endpoints]
    proxy_config = tlsopt.proxy_config(proxy, proxy_auth, {"--udp": udp, "-4": ipv4, "-6": ipv6})
    if proxy_config is not None:
        if any(watch.endpoint.path is not None for watch in watches):
            raise typer.BadParameter("a proxy reaches TCP HOST:PORT, not a unix: socket", param_hint="'--proxy'")
        watches = [watch._replace(check=watch.check._replace(proxy=proxy_config)) for watch in watches]
    if tls_check is not None and any(watch.check.tls is None for watch in watches):
        raise typer.BadParameter("--tls applies to HOST:PORT and https:// endpoints, not to http:// or tcp:// ones")
    checks.no_status_without_http(statuses, any(watch.check.http is not None for watch in watches))
    command = _command(ctx.meta.get(CommandAfterDashes.AFTER_DASHES))
    terminal = Terminal.from_options(verbose=verbose, quiet=quiet, no_color=no_color, debug=debug)
    tlsopt.warn_if_insecure(terminal, check)
    budget, _cut = descriptor_budget(len(watches), reserve=DESCRIPTOR_RESERVE)
    with WaitView(terminal, [watch.name for watch in watches], invert=invert, json=json_out) as view:
        waiter = Waiter(
            watches,
            interval=interval,
            timeout=timeout,
            invert=invert,
            family=family,
            budget=budget,
            on_ready=view,
            on_miss=view.missed,
        )
        all_there = waiter.run()
        for name in [] if all_there else waiter.waiting_for:
            view.failed(name, waiter.last.get(name, "?"), timeout)
    if not all_there:
        plain = all(watch.check == Check() for watch in watches)
        goal = "" if not invert else " to stop accepting" if plain else " to fail"
        late = ", ".join(f"{name} ({waiter.last.get(name, '?')})" for name in waiter.waiting_for)
        raise TimedOut(f"timed out after {format_duration(timeout)} waiting for {late}{goal}")
    if command is None:
        return 0
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        raise SocktoolError(f"cannot run {command[0]!r}", describe(exc)) from exc
    return 1  # not reached: exec replaced this process


DESCRIPTOR_RESERVE = 8  # stdio, the wakeup pipe and the selector are counted already; a lookup's socket


def _watch(text: str, check: Check, statuses: frozenset[int] | None, https_check: "TlsCheck | None") -> Watch:
    """One endpoint argument: HOST:PORT (checked as the options say) or a URL (its own check;
    https:// with the --tls options' verification, else the system's CAs)."""
    try:
        url = parse_url_endpoint(text)
        endpoint = url.endpoint if url is not None else parse_connect_endpoint(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="HOST:PORT") from None
    if url is None:
        checks.check_fits(check, endpoint)
        return Watch(endpoint, check)
    if url.scheme == "tcp":
        return Watch(endpoint, Check(), text)
    request = HttpRequest(url.path, url.host_header, statuses or HttpRequest().statuses)
    return Watch(endpoint, Check(http=request, tls=https_check if url.scheme == "https" else None), text)


wait.command_settings = {"cls": CommandAfterDashes}  # type: ignore[attr-defined]


def _optional_path(args: list[str]) -> list[str]:
    """`--http` takes an optional PATH: given one only when the next word starts with '/'."""
    fixed: list[str] = []
    for index, arg in enumerate(args):
        fixed.append(arg)
        if arg == "--http" and not (index + 1 < len(args) and args[index + 1].startswith("/")):
            fixed.append("/")
    return fixed


def _command(argv: list[str] | None) -> list[str] | None:
    """The command after `--`, checked now rather than after a long wait."""
    if argv is None:
        return None
    if not argv:
        raise typer.BadParameter("nothing after '--'", param_hint="CMD")
    name = argv[0]
    found = shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK) else None)
    if found is None:
        raise typer.BadParameter(f"command not found: {name}", param_hint="CMD")
    return argv
