"""The TLS and proxy options, shared by the commands that take them.

Nothing here imports `ssl`: the values are checked and handed to the engine
as plain records (net/tlsconfig.py); a command that uses TLS imports net/tls.
Start-up time: this module is only the declarations; net/tlsconfig.py is
imported when a TLS option is given or TLS settings are built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any

import typer

from socktool.cli import options as opt

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net import tlsconfig
    from socktool.net.address import Endpoint
    from socktool.net.probe import Check
    from socktool.net.proxy import ProxyConfig
    from socktool.net.tls import TlsCheck
    from socktool.view.terminal import Terminal

TLS = opt.TLS
PROXY = opt.PROXY


def _parse_pin(text: str) -> str:
    from socktool.net import tlsconfig

    return tlsconfig.parse_pin(text)


def _parse_tls_version(text: str) -> str:
    from socktool.net import tlsconfig

    return tlsconfig.parse_tls_version(text)


Tls = Annotated[bool, typer.Option("--tls", help="Speak TLS on the connection.", rich_help_panel=TLS)]
Sni = Annotated[
    str | None,
    typer.Option(
        "--sni",
        metavar="NAME",
        help="Send NAME as the server name (SNI) and check the certificate against it. Default: HOST.",
        rich_help_panel=TLS,
    ),
]
NoSni = Annotated[
    bool,
    typer.Option(
        "--no-sni", help="Send no server name; the certificate is still checked against HOST.", rich_help_panel=TLS
    ),
]
Ca = Annotated[
    str | None,
    typer.Option("--ca", metavar="FILE", help="Also trust the CA certificates in FILE (PEM).", rich_help_panel=TLS),
]
Pin = Annotated[
    list[str] | None,
    typer.Option(
        "--pin",
        metavar="sha256:HEX",
        parser=opt.value_parser(_parse_pin),
        help="Accept exactly a certificate with this SHA-256 fingerprint, even self-signed (repeatable).",
        rich_help_panel=TLS,
    ),
]
Insecure = Annotated[
    bool,
    typer.Option("--insecure", help="Do not verify the server's certificate (said on stderr).", rich_help_panel=TLS),
]
Cert = Annotated[
    str | None,
    typer.Option("--cert", metavar="FILE", help="Our certificate (PEM; may hold the key too).", rich_help_panel=TLS),
]
Key = Annotated[
    str | None, typer.Option("--key", metavar="FILE", help="The private key for --cert (PEM).", rich_help_panel=TLS)
]
Alpn = Annotated[
    str | None,
    typer.Option("--alpn", metavar="LIST", help="ALPN protocols to offer, e.g. h2,http/1.1.", rich_help_panel=TLS),
]
TlsMin = Annotated[
    str | None,
    typer.Option(
        "--tls-min",
        metavar="1.2|1.3",
        parser=opt.value_parser(_parse_tls_version),
        help="The lowest TLS version to accept.",
        rich_help_panel=TLS,
    ),
]
Ciphers = Annotated[
    str | None,
    typer.Option("--ciphers", metavar="LIST", help="OpenSSL cipher list (TLS 1.2 and below).", rich_help_panel=TLS),
]
MinDays = Annotated[
    int | None,
    typer.Option(
        "--min-days",
        metavar="N",
        parser=opt.PositiveInt,
        help="Fail when the certificate expires within N days.",
        rich_help_panel=TLS,
    ),
]
StrictClose = Annotated[
    bool,
    typer.Option(
        "--strict-close",
        help="Exit 1 when the peer ends the connection without TLS close_notify (else a warning); one peer only, not -k/--broker.",
        rich_help_panel=TLS,
    ),
]
ClientCa = Annotated[
    str | None,
    typer.Option(
        "--client-ca",
        metavar="FILE",
        help="Require a client certificate issued by a CA in FILE (mutual TLS).",
        rich_help_panel=TLS,
    ),
]


@dataclass(frozen=True)
class TlsOptions:
    """The TLS options of one command line, as given: built once by the command and turned
    into the engine's settings by `client` or `server` (which check them: exit 2).

    A command sets the fields it has options for; the others keep their defaults, which
    mean "not given". `flag` is the option that turns TLS on (--tls, --tls-listen, ...).
    """

    tls: bool = False
    flag: str = "--tls"
    sni: str | None = None
    no_sni: bool = False
    ca: str | None = None
    pin: Sequence[str] | None = None
    insecure: bool = False
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None
    alpn: str | None = None
    tls_min: str | None = None
    ciphers: str | None = None
    min_days: int | None = None
    strict_close: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any], flag: str = "--tls") -> TlsOptions:
        """The options a parsed command line holds (a click context's params), by name."""
        names = [field.name for field in fields(cls) if field.name not in ("tls", "flag")]
        return cls(params.get("tls", False), flag, **{name: params[name] for name in names if name in params})

    def _given(self) -> None:
        """Without TLS, any TLS option is a usage error (the first given is named)."""
        if self.tls:
            return
        for field in fields(self):
            if field.name in ("tls", "flag"):
                continue
            if getattr(self, field.name) not in (None, False, (), []):
                raise typer.BadParameter(f"--{field.name.replace('_', '-')} needs {self.flag}")

    def _pair(self) -> None:
        if self.key is not None and self.cert is None:
            raise typer.BadParameter("--key needs --cert")

    def _one_trust(self) -> None:
        """--insecure, --pin, --ca: one way to trust the server at most."""
        opt.exclusive(insecure=self.insecure, pin=self.pin)
        opt.exclusive(insecure=self.insecure, ca=self.ca)
        opt.exclusive(pin=self.pin, ca=self.ca)

    def _ciphers_apply(self) -> None:
        if self.ciphers is not None and self.tls_min == "1.3":
            raise typer.BadParameter(
                "--ciphers picks TLS 1.2 and older ciphers, which --tls-min 1.3 rules out (TLS 1.3's suites are fixed)",
                param_hint="'--ciphers'",
            )

    def client(self, address: Endpoint, handshake_timeout: float) -> tlsconfig.ClientTls | None:
        """The client's TLS settings, or None without TLS."""
        self._given()
        if not self.tls:
            return None
        self._ciphers_apply()
        opt.exclusive(sni=self.sni, no_sni=self.no_sni)
        self._one_trust()
        self._pair()
        host = address.host
        if host is None and not (self.sni or self.pin or self.insecure):
            raise typer.BadParameter(
                f"{self.flag} to a unix socket has no host name to check: give --sni NAME, --pin or --insecure"
            )
        name = self.sni or host
        from socktool.net import tlsconfig

        return tlsconfig.ClientTls(
            server_name=None if self.no_sni else name,
            check_name=name,
            ca=self.ca,
            pins=tuple(self.pin or ()),
            insecure=self.insecure,
            cert=self.cert,
            key=self.key,
            alpn=_alpn(self.alpn),
            tls_min=self.tls_min,
            ciphers=self.ciphers,
            min_days=self.min_days,
            strict_close=self.strict_close,
            handshake_timeout=handshake_timeout,
        )

    def server(self) -> tlsconfig.ServerTls | None:
        """The server's TLS settings, or None without TLS."""
        self._given()
        if not self.tls:
            return None
        self._pair()
        self._ciphers_apply()
        from socktool.net import tlsconfig

        return tlsconfig.ServerTls(
            cert=self.cert,
            key=self.key,
            client_ca=self.client_ca,
            alpn=_alpn(self.alpn),
            tls_min=self.tls_min,
            ciphers=self.ciphers,
            strict_close=self.strict_close,
        )


def _alpn(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    from socktool.net import tlsconfig

    try:
        return tlsconfig.parse_alpn(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--alpn'") from None


def probe_tls(
    tls: bool,
    *,
    sni: str | None,
    ca: str | None,
    pin: list[str] | None,
    insecure: bool,
    min_days: int | None,
    timeout: float,
) -> TlsCheck | None:
    """`wait --tls`: the check every endpoint gets (its host is the name to check, unless --sni)."""
    given = TlsOptions(tls, sni=sni, ca=ca, pin=pin, insecure=insecure, min_days=min_days)
    given._given()
    if not tls:
        return None
    given._one_trust()
    from socktool.net import tls as tls_engine
    from socktool.net import tlsconfig

    settings = tlsconfig.ClientTls(
        server_name=sni, check_name=sni, ca=ca, pins=tuple(pin or ()), insecure=insecure, min_days=min_days,
        handshake_timeout=timeout,
    )  # fmt: skip
    return tls_engine.TlsCheck(tls_engine.client_context(settings._replace(server_name="")), settings)


def with_probe_tls(check: Check, tls_check: TlsCheck | None, **other_checks: object) -> Check:
    """`check` with the TLS handshake in it (wait --tls, ping --tls): a TLS probe is its own
    check, so any of `other_checks` given with it is a usage error."""
    if tls_check is None:
        return check
    opt.exclusive(tls=True, **other_checks)
    return check._replace(tls=tls_check)


def warn_if_insecure(terminal: Terminal, check: Check) -> None:
    """--insecure with --tls on a probe: the warning tcp-connect --insecure gives too."""
    if check.tls is not None and check.tls.settings.insecure:
        from socktool.net.tls import INSECURE_WARNING

        terminal.warn(INSECURE_WARNING)


# -- proxies ------------------------------------------------------------------
ProxyUrl = Annotated[
    str | None,
    typer.Option(
        "--proxy",
        metavar="URL",
        help="Connect through a proxy: socks5://, socks5h:// (the proxy resolves names), socks4://, socks4a://, http:// (CONNECT); USER:PASS@ allowed.",
        rich_help_panel=PROXY,
    ),
]
ProxyAuth = Annotated[
    str | None,
    typer.Option("--proxy-auth", metavar="USER:PASS", help="Credentials for --proxy.", rich_help_panel=PROXY),
]


def proxy_config(url: str | None, auth: str | None, excluded: dict[str, object]) -> ProxyConfig | None:
    """The proxy to dial through, or None; options a proxied connect cannot honour
    (`excluded`, by option name) are exit 2."""
    if url is None:
        if auth is not None:
            raise typer.BadParameter("--proxy-auth needs --proxy")
        return None
    for name, value in excluded.items():
        if value not in (None, False):
            raise typer.BadParameter(f"--proxy and {name} cannot be used together (the proxy makes the connection)")
    try:
        from socktool.net.proxy import parse_proxy_url  # only with --proxy: start-up time

        return parse_proxy_url(url, auth)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--proxy'") from None
