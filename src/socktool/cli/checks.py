"""The check options wait and ping share: --udp, --send, --expect, --http, --status."""

from typing import Annotated

import typer

from socktool.cli import options as opt
from socktool.net.address import Endpoint
from socktool.net.probe import Check, HttpRequest, parse_statuses

Udp = Annotated[
    bool,
    typer.Option("--udp", help="Probe over UDP: send a datagram (--send), want a reply.", rich_help_panel=opt.IO),
]
Send = Annotated[
    str | None,
    typer.Option(
        "--send", metavar="TEXT", help="Send TEXT once connected (exactly those bytes).", rich_help_panel=opt.IO
    ),
]
Expect = Annotated[
    str | None,
    typer.Option(
        "--expect",
        metavar="REGEX",
        help="Up only when what the service sends (after --send) matches REGEX; with --http, the body.",
        rich_help_panel=opt.IO,
    ),
]
Statuses = Annotated[
    frozenset[int] | None,
    typer.Option(
        "--status",
        metavar="LIST",
        parser=opt.value_parser(parse_statuses),
        help="HTTP statuses that count as up: 200,204 · 200-299 · 2xx (default 2xx).",
        rich_help_panel=opt.IO,
        show_default=False,
    ),
]


def build_check(
    *, udp: bool, send: str | None, expect: str | None, http: str | None = None, statuses: frozenset[int] | None = None
) -> Check:
    """The check the options describe; a usage error for options that cannot go together.
    `statuses` applies only with `http` (the caller says when --status cannot apply)."""
    if http is not None:
        opt.exclusive(http=True, send=send, udp=udp)
        if not http.startswith("/"):
            raise typer.BadParameter(f"{http!r}: the path starts with '/'", param_hint="'--http'")
    request = HttpRequest(path=http, statuses=statuses or HttpRequest().statuses) if http is not None else None
    return Check(
        udp=udp,
        send=(send or "").encode("utf-8", "surrogateescape"),
        expect=opt.expect_pattern(expect),
        http=request,
    )


def check_fits(check: Check, endpoint: Endpoint) -> None:
    if check.udp and endpoint.is_unix:
        raise typer.BadParameter(
            f"--udp cannot probe {endpoint}: a unix datagram peer cannot answer", param_hint="'--udp'"
        )


def no_status_without_http(statuses: frozenset[int] | None, any_http: bool) -> None:
    if statuses is not None and not any_http:
        raise typer.BadParameter("--status needs --http (or an http:// endpoint)", param_hint="'--status'")
