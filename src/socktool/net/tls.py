"""TLS as a layer on a connection: contexts, the handshake, the checks, and the
sans-I/O `TlsLayer` (an ssl.SSLObject between two MemoryBIOs) that the pipe
drives from one thread and a selectors loop can drive the same way.

Rules:
- every failure is a TlsError with one line saying which check failed
  (expired, name mismatch, unknown CA, pin mismatch with the fingerprint
  seen, handshake timeout, not TLS at all);
- close_notify is sent when we are done sending and expected from the peer:
  our half-close never stops us reading what the peer still sends.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.errors import NetworkError, UsageError, describe
from socktool.net.tlsconfig import ClientTls, ServerTls, format_fingerprint
from socktool.values import format_duration

if TYPE_CHECKING:  # pragma: no cover
    from socktool.net.relay import Connection

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CA_UNKNOWN = {2, 18, 19, 20, 21}  # X509_V_ERR_*: issuer unknown, self-signed (leaf or in chain), cannot verify leaf
_HINTS = {
    "unknown CA": "trust it with --ca FILE or accept exactly this certificate with --pin",
    "name mismatch": "connect by a name the certificate holds, or set it with --sni NAME",
}
RECORD = 16 * 1024 + 256  # what one TLS record needs on the wire, at most


class TlsError(NetworkError):
    pass


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


# -- contexts -------------------------------------------------------------------
def _common(ctx: ssl.SSLContext, alpn: tuple[str, ...], tls_min: str | None, ciphers: str | None) -> None:
    if tls_min is not None:
        ctx.minimum_version = _VERSIONS[tls_min]
    if ciphers is not None:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError:
            raise UsageError("invalid --ciphers", f"no cipher matches {ciphers!r}") from None
    if alpn:
        ctx.set_alpn_protocols(list(alpn))


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:  # an OSError too: this one first
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise UsageError(f"the key in {key or cert} does not match the certificate in {cert}") from None
        raise UsageError(f"cannot load the certificate {cert} / key {key or cert}", _reason(exc)) from None
    except OSError as exc:
        bad = exc.filename or cert
        raise UsageError(f"cannot read {bad}", describe(exc)) from None


def _load_trust(ctx: ssl.SSLContext, path: str, option: str) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:  # an OSError too: this one first
        raise UsageError(f"cannot load {option} {path}", _reason(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot read {option} {path}", describe(exc)) from None


def client_context(opts: ClientTls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and a host name check
    if opts.insecure or opts.pins:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = opts.server_name is not None  # --no-sni: the name is checked after the handshake
        ctx.load_default_certs()
        if opts.ca is not None:
            _load_trust(ctx, opts.ca, "--ca")
    _common(ctx, opts.alpn, opts.tls_min, opts.ciphers)
    if opts.cert is not None:
        _load_chain(ctx, opts.cert, opts.key)
    return ctx


class ServerIdentity(NamedTuple):
    context: ssl.SSLContext
    fingerprint: str  # of our own certificate, "sha256:..."
    ephemeral: bool
    settings: ServerTls


def server_context(opts: ServerTls, listen_host: str | None) -> ServerIdentity:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # No TLS 1.3 session tickets: socktool keeps no session to resume, a listener's
    # certificate is often made for this run, and the two tickets OpenSSL sends by
    # default cost ~11 % of a full handshake's CPU (bench/bench_tls_handshakes.py).
    ctx.num_tickets = 0
    _common(ctx, opts.alpn, opts.tls_min, opts.ciphers)
    if opts.client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_trust(ctx, opts.client_ca, "--client-ca")
    if opts.cert is not None:
        _load_chain(ctx, opts.cert, opts.key)
        return ServerIdentity(ctx, format_fingerprint(_file_fingerprint(opts.cert)), False, opts)
    from socktool.net import tlscert  # cryptography: only to make the ephemeral certificate

    with tlscert.private_directory() as directory:
        files = tlscert.make_ephemeral(directory, tlscert.ephemeral_names(listen_host))
        ctx.load_cert_chain(files.cert, files.key)
        return ServerIdentity(ctx, format_fingerprint(_file_fingerprint(files.cert)), True, opts)


def _file_fingerprint(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as pem:
        text = pem.read()
    end = text.find("-----END CERTIFICATE-----")
    start = text.rfind("-----BEGIN CERTIFICATE-----", 0, end)
    return fingerprint(ssl.PEM_cert_to_DER_cert(text[start : end + len("-----END CERTIFICATE-----")]))


# -- the layer ------------------------------------------------------------------
class TlsLayer:
    """One TLS session over bytes: feed what the socket gave, send what `outgoing` holds."""

    def __init__(self, ctx: ssl.SSLContext, *, server_side: bool, server_name: str | None = None):
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side, server_hostname=server_name)
        self.close_sent = False
        self._close_seen = False  # the peer's close_notify came (maybe behind held plaintext)
        # Plaintext read out before our close_notify (see close), and the EOF error met doing so.
        self._held = bytearray()
        self._held_eof: ssl.SSLEOFError | None = None

    @property
    def close_received(self) -> bool:
        """The peer's close_notify came and every byte before it was read."""
        return self._close_seen and not self._held

    @property
    def holding(self) -> bool:
        """Plaintext read out before our close_notify waits for read_into."""
        return bool(self._held)

    def handshake(self) -> bool:
        """One step; True once done (send `outgoing` either way)."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def feed(self, data: bytes | memoryview) -> None:
        """Ciphertext from the socket; b"" is the socket's EOF."""
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    def read_into(self, buffer: bytearray | memoryview) -> int:
        """Plaintext into `buffer`: its size, or 0 when more ciphertext is needed or the peer closed.

        Raises ssl.SSLEOFError when the socket ended without the peer's close_notify.
        """
        if self._held:
            count = min(len(buffer), len(self._held))
            buffer[:count] = self._held[:count]
            del self._held[:count]
            return count
        if self._held_eof is not None:
            raise self._held_eof
        return self._read_obj(buffer)

    def _read_obj(self, buffer: bytearray | memoryview) -> int:
        if self._close_seen:
            return 0
        try:
            count = cast(int, self.obj.read(len(buffer), buffer))  # with a buffer: the count
        except ssl.SSLWantReadError:
            return 0
        except ssl.SSLZeroReturnError:  # close_notify, when ours went out first
            count = 0
        if not count:  # close_notify, when it came first: CPython returns 0 rather than raise
            self._close_seen = True
        return count

    def write(self, data: bytes | memoryview) -> None:
        self.obj.write(data)  # a MemoryBIO takes all of it: never a short write

    def close(self) -> None:
        """Send close_notify; reading goes on.

        unwrap() calls SSL_shutdown a second time, which reads on, looking for
        the peer's close_notify, and throws away the application data it meets.
        So every whole record already fed is read out first and held for
        read_into: a client whose first data came with its last handshake
        message, to a listener whose stdin had ended, lost that data."""
        if self.close_sent:
            return
        self.close_sent = True
        chunk = bytearray(64 * 1024)
        try:
            while count := self._read_obj(chunk):
                self._held += chunk[:count]
        except ssl.SSLEOFError as exc:
            self._held_eof = exc
        # WantRead: sent, the peer's has not come yet. An error: unread data was
        # still queued (an --expect match ends early); close_notify went out first.
        with suppress(ssl.SSLWantReadError, ssl.SSLError):
            self.obj.unwrap()

    def pending(self) -> bytes:
        return self.outgoing.read()


def flush(sock: socket.socket, data: bytes, deadline: float | None) -> None:
    """Send all of `data` on a non-blocking socket, waiting for room until `deadline`."""
    view = memoryview(data)
    waiter = interrupts.Waiter(sock.fileno(), select.POLLOUT)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            if not waiter.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                raise TimeoutError(errno.ETIMEDOUT, "timed out") from None


def handshake(sock: socket.socket, layer: TlsLayer, timeout: float, peer: str) -> None:
    """The handshake on a socket, within `timeout`; the socket is left non-blocking."""
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    waiter = interrupts.Waiter(sock.fileno())
    try:
        while True:
            done = layer.handshake()
            flush(sock, layer.pending(), deadline)
            if done:
                return
            if not waiter.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(errno.ETIMEDOUT, "timed out")
            try:
                layer.feed(sock.recv(64 * 1024))
            except BlockingIOError:
                continue
    except TimeoutError:
        raise TlsError(f"TLS handshake with {peer} failed", f"timed out after {format_duration(timeout)}") from None
    except ssl.SSLCertVerificationError as exc:
        check, detail = _verify_failure(exc)
        raise TlsError(
            f"TLS handshake with {peer} failed", f"certificate check failed: {check} ({detail})", _HINTS.get(check)
        ) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        raise TlsError(
            f"TLS handshake with {peer} failed", "the peer closed the connection during the handshake"
        ) from None
    except ssl.SSLError as exc:
        raise TlsError(f"TLS handshake with {peer} failed", handshake_failure(exc)) from None
    except OSError as exc:
        raise TlsError(f"TLS handshake with {peer} failed", describe(exc)) from None


def _verify_failure(exc: ssl.SSLCertVerificationError) -> tuple[str, str]:
    code, message = exc.verify_code, (exc.verify_message or "").rstrip(".")
    if code == 10:
        return "expired", message
    if code == 9:
        return "not yet valid", message
    if code in (62, 64):
        return "name mismatch", message
    if code in _CA_UNKNOWN:
        return "unknown CA", message
    return "rejected", message or _reason(exc)


def handshake_failure(exc: ssl.SSLError) -> str:
    """Why a handshake failed, in a few words (certificate checks are the client's: see handshake)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        check, detail = _verify_failure(exc)
        return f"certificate check failed: {check} ({detail})"
    reason = exc.reason or ""
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return f"the peer does not speak TLS ({_reason(exc)})"
    if reason.startswith(("TLSV1_ALERT_", "SSLV3_ALERT_", "TLSV13_ALERT_")):
        alert = reason.split("ALERT_", 1)[1].lower().replace("_", " ")
        return f"the peer refused the handshake: {alert} alert"
    return _reason(exc)


def _reason(exc: ssl.SSLError) -> str:
    return (exc.reason or exc.strerror or str(exc)).lower().replace("_", " ")


# -- after the handshake --------------------------------------------------------
def check_server(layer: TlsLayer, opts: ClientTls, peer: str) -> None:
    """The checks the handshake does not make: pins, the name with --no-sni, --min-days."""
    der = layer.obj.getpeercert(binary_form=True)
    what = f"TLS handshake with {peer} failed"
    if der is None:
        raise TlsError(what, "the server sent no certificate")
    if opts.pins:
        seen = fingerprint(der)
        if seen not in opts.pins:
            raise TlsError(
                what, f"certificate check failed: pin mismatch (the server's certificate is {format_fingerprint(seen)})"
            )
    elif not opts.insecure and opts.server_name is None and opts.check_name is not None:
        if not _matches(layer.obj.getpeercert() or {}, opts.check_name):
            raise TlsError(
                what,
                f"certificate check failed: name mismatch (not valid for {opts.check_name!r})",
                _HINTS["name mismatch"],
            )
    if opts.min_days is not None:
        expires = _summary(layer.obj).not_after
        left = expires - datetime.datetime.now(datetime.timezone.utc)
        if left < datetime.timedelta(days=opts.min_days):
            raise TlsError(
                f"the certificate of {peer} expires too soon",
                f"on {expires:%Y-%m-%d %H:%M} UTC, in {max(0, left.days)} days (--min-days {opts.min_days})",
            )


def _matches(cert: Any, name: str) -> bool:
    """The certificate's subjectAltName holds `name` (a DNS name, wildcard in the first label, or an IP)."""
    import ipaddress

    try:
        ip: object = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    for kind, value in cert.get("subjectAltName", ()):
        if ip is not None:
            if kind == "IP Address" and ipaddress.ip_address(value.strip()) == ip:
                return True
        elif kind == "DNS" and _dns_match(value.lower(), name.lower().rstrip(".")):
            return True
    return False


def _dns_match(pattern: str, name: str) -> bool:
    if not pattern.startswith("*."):
        return pattern == name
    first, _, rest = name.partition(".")
    return bool(first) and rest == pattern[2:]


class _Summary(NamedTuple):
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_after: datetime.datetime


def _summary(obj: ssl.SSLObject) -> _Summary:
    info: Any = obj.getpeercert()
    if info:  # verified: the stdlib decoded it
        sans = tuple(
            f"{'IP' if kind == 'IP Address' else kind}:{value}" for kind, value in info.get("subjectAltName", ())
        )
        not_after = datetime.datetime.fromtimestamp(
            ssl.cert_time_to_seconds(str(info["notAfter"])), datetime.timezone.utc
        )
        return _Summary(_name(info.get("subject", ())), _name(info.get("issuer", ())), sans, not_after)
    der = obj.getpeercert(binary_form=True)
    assert der is not None
    from socktool.net import tlscert  # a certificate accepted by pin or --insecure: the stdlib will not decode it

    described = tlscert.describe_der(der)
    return _Summary(described.subject, described.issuer, described.sans, described.not_after)


_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "domainComponent": "DC",
}


def _name(rdns: Any) -> str:
    """RFC 4514 order and short keys, as cryptography writes a name."""
    return ",".join(f"{_SHORT.get(key, key)}={value}" for rdn in reversed(rdns) for key, value in rdn)


def session_event(conn: int, peer: str, layer: TlsLayer, verified: str) -> ev.Tls:
    """What was agreed and who the peer is, for the status line and the `tls` JSON event."""
    obj = layer.obj
    cipher = obj.cipher()
    der = obj.getpeercert(binary_form=True)
    if der is None:
        subject = issuer = not_after = ""
        sans: tuple[str, ...] = ()
        print_ = ""
    else:
        summary = _summary(obj)
        subject, issuer, sans = summary.subject, summary.issuer, summary.sans
        not_after = summary.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        print_ = format_fingerprint(fingerprint(der))
    return ev.Tls(
        conn,
        peer,
        version=obj.version() or "",
        cipher=cipher[0] if cipher else "",
        alpn=obj.selected_alpn_protocol(),
        subject=subject,
        issuer=issuer,
        sans=sans,
        not_after=not_after,
        fingerprint=print_,
        verified=verified,
    )


def client_verification(opts: ClientTls) -> str:
    if opts.insecure:
        return "insecure"
    if opts.pins:
        return "pin"
    return "ca"


# -- a connection's start ------------------------------------------------------
INSECURE_WARNING = "certificate verification is off (--insecure): anyone on the path can read and change this traffic"


def start_client(ctx: ssl.SSLContext, opts: ClientTls, conn: Connection, sink: ev.Sink) -> TlsLayer:
    """Handshake and check a server; reports the session as a Tls event."""
    if opts.insecure:
        sink(ev.Notice(INSECURE_WARNING, warning=True))
    layer = TlsLayer(ctx, server_side=False, server_name=opts.server_name)
    handshake(conn.sock, layer, opts.handshake_timeout, conn.peer)
    check_server(layer, opts, conn.peer)
    sink(session_event(conn.conn, conn.peer, layer, client_verification(opts)))
    return layer


def start_server(identity: ServerIdentity, conn: Connection, sink: ev.Sink) -> TlsLayer:
    """Handshake with a client (verifying its certificate with --client-ca)."""
    layer = TlsLayer(identity.context, server_side=True)
    handshake(conn.sock, layer, identity.settings.handshake_timeout, conn.peer)
    verified = "client-ca" if identity.settings.client_ca is not None else ""
    sink(session_event(conn.conn, conn.peer, layer, verified))
    return layer


def report_ragged_end(who: str, sink: ev.Sink, strict: Callable[[TlsError], None] | None = None) -> None:
    """`who` ended the connection without close_notify: a warning, or with `strict`
    (--strict-close) the failure handed to it."""
    what = f"{who} closed the connection without TLS close_notify"
    if strict is not None:
        strict(TlsError(what, "the data may be cut short (--strict-close)"))
    else:
        sink(ev.Notice(f"{what}: the data may be cut short", warning=True))


def end_quietly(conn: Connection, layer: TlsLayer) -> None:
    """Our close_notify, sent if the socket takes it at once (-z: the check is done)."""
    layer.close()
    with suppress(OSError):
        conn.sock.send(layer.pending())


# -- a probe's handshake (wait --tls) -------------------------------------------
class TlsCheck(NamedTuple):
    """`wait --tls`: up means the handshake succeeds and the certificate passes the checks.
    `settings.server_name` None: each endpoint's host is the name (SNI and check)."""

    context: ssl.SSLContext
    settings: ClientTls


class ProbeHandshake:
    """A client handshake on a connected non-blocking socket, one step per readiness
    (for net/probe.py's selector). `step()` says what to wait for next."""

    def __init__(self, sock: socket.socket, check: TlsCheck, host: str | None, peer: str):
        name = check.settings.check_name or host
        self.settings = check.settings._replace(server_name=check.settings.server_name or host, check_name=name)
        self.sock = sock
        self.peer = peer
        self.layer = TlsLayer(check.context, server_side=False, server_name=self.settings.server_name)
        self._out = b""

    def step(self) -> tuple[str, str]:
        """("read" | "write", "") to wait; ("done", summary) when verified; ("failed", why)."""
        try:
            if self._out and not self._send():
                return "write", ""
            try:
                self.layer.feed(self.sock.recv(64 * 1024))
            except BlockingIOError:
                pass
            try:
                done = self.layer.handshake()
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                return "failed", "the peer closed the connection during the TLS handshake"
            except ssl.SSLError as exc:
                return "failed", f"TLS handshake failed: {handshake_failure(exc)}"
            self._out += self.layer.pending()
            if self._out and not self._send():
                return "write", ""
            if not done:
                return "read", ""
            check_server(self.layer, self.settings, self.peer)
        except TlsError as exc:
            return "failed", exc.detail or exc.what
        except OSError as exc:
            return "failed", describe(exc)
        obj = self.layer.obj
        how = {"ca": "verified", "pin": "pinned", "insecure": "NOT verified (--insecure)"}
        return "done", f"{obj.version()}, certificate {how[client_verification(self.settings)]}"

    def _send(self) -> bool:
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            return False
        self._out = self._out[sent:]
        return not self._out

    # -- after the handshake: a conversation through it (wait --tls --http/--send/--expect) --
    def write(self, data: bytes) -> bool:
        """Plaintext out (b"": what is left of earlier writes). True once all of it is on the
        wire; False: wait until the socket takes more, then write(b"") again. OSError passes."""
        if data:
            self.layer.write(data)
        self._out += self.layer.pending()
        return not self._out or self._send()

    def read(self, limit: int) -> tuple[bytes, bool]:
        """The plaintext that has come (b"": none yet), and whether the peer is done: its
        close_notify, or the connection's end without one. OSError passes."""
        try:
            self.layer.feed(self.sock.recv(64 * 1024))
        except BlockingIOError:
            pass  # records already fed (they came with the handshake's last ones) are read below
        plain = bytearray()
        buffer = bytearray(min(limit, 64 * 1024) or 1)
        try:
            while len(plain) < limit and (count := self.layer.read_into(buffer)):
                plain += buffer[:count]
        except ssl.SSLEOFError:
            return bytes(plain), True
        except ssl.SSLError as exc:
            raise OSError(f"TLS error: {exc.reason or exc}") from exc
        self._out += self.layer.pending()  # a key update to answer, if any
        return bytes(plain), self.layer.close_received
