"""Probes: one try at "is the service there and answering?", many at once on one selector.

Rule: a probe's outcome comes only from what the peer did within the
probe's deadline —
  TCP   the connect completed (its time is the probe's time); then, when the
        check asks for it, the bytes to send went out and what came back
        matched (--expect) or carried a wanted HTTP status (--http);
  UDP   the request datagram was answered (and the answer matched); an ICMP
        port unreachable (ECONNREFUSED on the connected socket) is a
        refusal, silence until the deadline is "no reply".
Anything else is a failure with a short reason ("connection refused",
"no match for '^SSH' in 'garbage' (peer closed)", "HTTP 503 Service
Unavailable, want 200"). Running out of descriptors is neither: `Prober.start`
returns False and the caller tries again later.

Every socket is non-blocking and lives on the Prober's selector, so the
number of probes in flight is the number of descriptors they hold, and the
caller bounds it. Names are resolved before a probe starts (`Target`).
"""

from __future__ import annotations

import errno
import os
import re
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from socktool.net import interrupts
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.errors import NetworkError, describe
from socktool.values import format_duration, printable

if TYPE_CHECKING:  # pragma: no cover - ssl is imported only when --tls is used
    from socktool.net.proxy import ProxyConfig
    from socktool.net.tls import ProbeHandshake, TlsCheck

PORT_UNREACHABLE = "port unreachable"  # a UDP probe's ICMP answer
READ_LIMIT = 65536  # bytes of a reply kept for matching
SHOWN = 40  # characters of a reply quoted in a failure reason
NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_LINGER_RESET = struct.pack("ii", 1, 0)


class HttpRequest(NamedTuple):
    path: str = "/"
    host: str = ""  # the Host header; the endpoint's host:port when empty
    statuses: frozenset[int] = frozenset(range(200, 300))
    method: str = "GET"


class Check(NamedTuple):
    """What makes an endpoint count as up."""

    udp: bool = False
    send: bytes = b""
    expect: re.Pattern[bytes] | None = None  # with http: matched against the body
    http: HttpRequest | None = None
    banner: int = 0  # read up to this many bytes, whatever they are (portscan --banner)
    fallback: bytes = b""  # sent when nothing came within half the time (a banner probe)
    tls: TlsCheck | None = None  # up = the TLS handshake succeeds and the certificate passes (net/tls.py)
    proxy: ProxyConfig | None = None  # connect through it (net/proxy.py, in a thread); the rest as without

    @property
    def reads(self) -> bool:
        return self.expect is not None or self.http is not None or self.banner > 0


class Target(NamedTuple):
    """An endpoint and the socket addresses it resolved to, in the order to try them."""

    endpoint: Endpoint
    addresses: tuple[tuple[int, object], ...]  # (family, sockaddr); a unix path has AF_UNIX


class Outcome(NamedTuple):
    ok: bool
    detail: str  # why not ok; for ok probes what was seen ("HTTP 200 OK"), may be ""
    elapsed: float  # seconds from the start to the outcome (TCP without reading: the connect time)
    reply: bytes = b""  # what the peer sent (up to READ_LIMIT)
    peer: str = ""  # the address answered / tried last
    status: int | None = None  # the HTTP status
    silent: bool = False  # nothing decided before the deadline (no reply, no answer)
    connect: float | None = None  # with TLS: seconds from the start to the connect (elapsed - connect: the handshake)
    error: NetworkError | None = None  # through a proxy: its failure as net/proxy.py raised it (what it said)
    late: bool = False  # connected, but the answer was not all there in time: a longer try may get it


def http_request(request: HttpRequest, endpoint: Endpoint) -> bytes:
    from socktool import __version__

    host = request.host or str(endpoint)
    return (
        f"{request.method} {request.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: socktool/{__version__}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("utf-8", "surrogateescape")


_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})(?: ([^\r\n]*))?\r?\n")


def http_response(data: bytes) -> tuple[int, str, bytes] | None:
    """(status, reason, body so far) once the headers are complete, else None.
    ValueError when what came is not HTTP."""
    match = _STATUS_LINE.match(data)
    if match is None:
        if b"\n" in data or not b"HTTP/".startswith(data[:5]):
            raise ValueError(f"not an HTTP response: {quote(data)}")
        return None
    end = data.find(b"\r\n\r\n")
    skip = 4
    if end < 0:
        end, skip = data.find(b"\n\n"), 2
    if end < 0:
        return None
    reason = (match.group(2) or b"").decode("latin-1").strip()
    body = data[end + skip :]
    if _CHUNKED.search(data[:end]):
        body = dechunk(body)
    return int(match.group(1)), reason, body


_CHUNKED = re.compile(rb"^transfer-encoding:[ \t]*chunked[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def dechunk(body: bytes) -> bytes:
    """The data of a chunked body, as far as it has come (a partial chunk counts as far as it goes)."""
    out = bytearray()
    rest = body
    while True:
        line, newline, after = rest.partition(b"\n")
        size_text = line.split(b";", 1)[0].strip()
        if not newline or not size_text:
            return bytes(out)
        try:
            size = int(size_text, 16)
        except ValueError:
            return bytes(out)
        if size == 0:
            return bytes(out)
        out += after[:size]
        rest = after[size:].removeprefix(b"\r\n").removeprefix(b"\n")


def quote(data: bytes) -> str:
    """A reply as a reason quotes it: printable, cut at SHOWN characters."""
    text = printable(data[: SHOWN * 4].decode("utf-8", "surrogateescape"))
    return repr(text[:SHOWN] + ("…" if len(text) > SHOWN or len(data) > SHOWN * 4 else ""))


class _Probe:
    """One probe's life: connect (each address in turn), send, read, decide."""

    __slots__ = (
        "addresses",
        "check",
        "connect_time",
        "created",
        "deadline",
        "fallback_at",
        "on_done",
        "outbox",
        "peer",
        "prober",
        "received",
        "sock",
        "stage",
        "started",
        "target",
        "tls",
    )

    def __init__(self, prober: Prober, target: Target, check: Check, deadline: float, on_done: OnDone):
        self.prober = prober
        self.check = check
        self.deadline = deadline
        self.on_done = on_done
        self.addresses = list(target.addresses)
        self.started = self.created = prober.clock()
        self.sock: socket.socket | None = None
        self.received = bytearray()
        self.outbox = b""
        self.peer = ""
        self.stage = "start"
        self.fallback_at: float | None = None
        self.target = target
        self.tls: ProbeHandshake | None = None
        self.connect_time: float | None = None
        request = http_request(check.http, target.endpoint) if check.http is not None else b""
        self.outbox = check.send + request

    # -- connecting -------------------------------------------------------------------
    def next_address(self, last: str = "") -> None:
        if self.check.proxy is not None:
            self.peer = str(self.check.proxy)
            self.stage = "proxy"
            self.prober.dial_through_proxy(self, self.check.proxy)
            return
        if not self.addresses:
            self.finish(False, last or "no address")
            return
        family, sockaddr = self.addresses.pop(0)
        self.peer = sockaddr_text(sockaddr)
        kind = socket.SOCK_DGRAM if self.check.udp else socket.SOCK_STREAM
        try:
            sock = socket.socket(family, kind)
        except OSError as exc:
            if self.stage == "start":
                raise  # Prober.start: out of descriptors is "try later", not a failure
            self.finish(False, describe(exc))
            return
        self.sock = sock
        self.stage = "connect"
        sock.setblocking(False)
        if family != socket.AF_UNIX and not self.check.udp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        code = sock.connect_ex(sockaddr)  # type: ignore[arg-type]
        if code == errno.EINPROGRESS:
            self.prober.watch(self, selectors.EVENT_WRITE)
        elif code == 0:
            self.connected()
        else:
            self.failed_address(code)

    def failed_address(self, code: int) -> None:
        if code == errno.EAGAIN:  # a unix listener whose backlog is full
            detail = "backlog full"
        else:
            detail = describe(OSError(code, os.strerror(code)))
        self.drop_socket()
        self.next_address(detail)

    def through_proxy(self, result: socket.socket | NetworkError) -> None:
        """The proxy's answer (Prober.dial_through_proxy): a socket connected to the target, or why not."""
        if isinstance(result, NetworkError):
            self.finish(False, result.detail or result.what, error=result)
            return
        result.setblocking(False)
        self.sock = result
        self.connected()

    def connected(self) -> None:
        sock = self.sock
        assert sock is not None
        if not self.check.udp and sock.family != socket.AF_UNIX:
            try:
                if sock.getsockname()[:2] == sock.getpeername()[:2]:
                    self.failed_address(errno.ECONNREFUSED)  # a self-connect: nobody listens there
                    return
            except OSError as exc:
                self.failed_address(exc.errno or errno.ECONNRESET)
                return
        if self.check.tls is not None:
            from socktool.net.tls import ProbeHandshake

            self.connect_time = self.prober.clock() - self.started
            self.tls = ProbeHandshake(sock, self.check.tls, self.target.endpoint.host, self.peer)
            self.stage = "handshake"
            self.handshake()
            return
        self.converse()

    def handshake(self) -> None:
        assert self.tls is not None
        state, detail = self.tls.step()
        if state == "done" and (self.outbox or self.check.reads):
            self.converse()  # --http, --send, --expect through the TLS session
        elif state == "done":
            self.finish(True, detail)
        elif state == "failed":
            self.finish(False, detail)
        else:
            self.prober.watch(self, selectors.EVENT_READ if state == "read" else selectors.EVENT_WRITE)

    # -- the conversation ---------------------------------------------------------------
    def converse(self) -> None:
        if not self.outbox and not self.check.reads and not self.check.udp:
            self.finish(True, "")
            return
        if self.check.fallback:
            self.fallback_at = self.started + (self.deadline - self.started) / 2
        self.stage = "send"
        self.send()

    def send(self) -> None:
        sock = self.sock
        assert sock is not None
        if self.tls is not None:
            self.send_tls()
            return
        while self.outbox or (self.check.udp and self.stage == "send"):  # a datagram may be empty
            try:
                sent = sock.send(self.outbox)
            except BlockingIOError:
                self.prober.watch(self, selectors.EVENT_WRITE)
                return
            except OSError as exc:
                self.finish(False, describe(exc))
                return
            self.outbox = self.outbox[sent:]
            if self.check.udp:
                self.stage = "read"
                self.started = self.prober.clock()  # a UDP probe times the round trip from here
        if not self.check.reads and not self.check.udp:
            self.finish(True, "")
            return
        self.stage = "read"
        self.prober.watch(self, selectors.EVENT_READ)

    def send_tls(self) -> None:
        assert self.tls is not None
        try:
            all_out = self.tls.write(self.outbox)
        except OSError as exc:
            self.finish(False, describe(exc))
            return
        self.outbox = b""
        if not all_out:
            self.prober.watch(self, selectors.EVENT_WRITE)
            return
        self.stage = "read"
        self.prober.watch(self, selectors.EVENT_READ)
        self.read()  # what came with the handshake's last records is in the session already

    def read(self) -> None:
        sock = self.sock
        assert sock is not None
        if self.tls is not None:
            try:
                data, ended = self.tls.read(READ_LIMIT - len(self.received))
            except OSError as exc:
                self.finish(False, describe(exc))
                return
            self.received += data
            self.judge(closed=ended or len(self.received) >= READ_LIMIT)
            return
        try:
            data = sock.recv(READ_LIMIT)
        except BlockingIOError:
            return
        except OSError as exc:
            refused = exc.errno == errno.ECONNREFUSED and self.check.udp
            self.finish(False, PORT_UNREACHABLE if refused else describe(exc))
            return
        if self.check.udp:
            self.received += data
            self.judge(closed=True)
            return
        if data:
            self.received += data[: READ_LIMIT - len(self.received)]
        self.judge(closed=not data or len(self.received) >= READ_LIMIT)

    def judge(self, *, closed: bool) -> None:
        """Decide on what came so far; with `closed`, nothing more will come."""
        data = bytes(self.received)
        check = self.check
        if check.http is not None:
            self.judge_http(data, closed=closed)
            return
        if check.expect is not None:
            if check.expect.search(data):
                self.finish(True, "")
            elif closed:
                why = "peer closed" if not check.udp else "one datagram"
                self.finish(False, f"no match for {quote(check.expect.pattern)} in {quote(data)} ({why})")
            return
        if check.banner and (closed or len(data) >= check.banner or b"\n" in data):  # a line is enough
            self.finish(True, "", data[: check.banner])
        elif check.udp and closed:
            self.finish(True, "")

    def judge_http(self, data: bytes, *, closed: bool) -> None:
        check = self.check
        assert check.http is not None
        try:
            parsed = http_response(data)
        except ValueError as exc:
            self.finish(False, str(exc))
            return
        if parsed is None:
            if closed:
                self.finish(False, f"peer closed before the HTTP headers ended: {quote(data)}")
            return
        status, reason, body = parsed
        line = f"HTTP {status} {reason}".rstrip()
        if status not in check.http.statuses:
            self.finish(False, f"{line}, want {status_text(check.http.statuses)}", status=status)
        elif check.expect is None:
            self.finish(True, line, status=status)
        elif check.expect.search(body):
            self.finish(True, line, status=status)
        elif closed:
            self.finish(False, f"{line} but no match for {quote(check.expect.pattern)} in the body", status=status)

    # -- the Prober's calls ------------------------------------------------------------
    def on_ready(self) -> None:
        sock = self.sock
        assert sock is not None
        if self.stage == "connect":
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self.prober.unwatch(self)
            if code:
                self.failed_address(code)
            else:
                self.connected()
        elif self.stage == "send":
            self.prober.unwatch(self)
            self.send()
        elif self.stage == "handshake":
            self.prober.unwatch(self)
            self.handshake()
        else:
            self.read()

    def due(self) -> float:
        return self.deadline if self.fallback_at is None else min(self.deadline, self.fallback_at)

    def on_tick(self, now: float) -> None:
        if now >= self.deadline:
            self.timed_out()
        elif self.fallback_at is not None and now >= self.fallback_at and not self.received and self.stage == "read":
            self.fallback_at = None
            self.outbox = self.check.fallback
            self.prober.unwatch(self)
            self.stage = "send"
            self.send()

    def timed_out(self) -> None:
        after = format_duration(
            round(self.deadline - self.created, 2)
        )  # the time it was given, not the microseconds lost before it started
        if self.stage in ("connect", "proxy"):
            self.finish(False, f"timed out after {after}", silent=True)
        elif self.stage == "handshake":
            self.finish(False, f"TLS handshake timed out after {after}", late=True)
        elif self.check.udp:
            self.finish(False, f"no reply within {after}", silent=True)
        elif self.check.banner:
            self.finish(True, "", bytes(self.received[: self.check.banner]))
        else:
            self.judge(closed=False)
            if self.sock is not None:
                seen = f"only {quote(bytes(self.received))}" if self.received else "nothing"
                self.finish(False, f"{seen} within {after}", late=True)

    def drop_socket(self) -> None:
        if self.sock is not None:
            self.prober.unwatch(self)
            self.sock.close()
            self.sock = None

    def finish(
        self,
        ok: bool,
        detail: str,
        reply: bytes | None = None,
        status: int | None = None,
        silent: bool = False,
        error: NetworkError | None = None,
        late: bool = False,
    ) -> None:
        elapsed = self.prober.clock() - self.started
        self.drop_socket()
        self.prober.forget(self)
        kept = bytes(self.received) if reply is None else reply
        self.on_done(Outcome(ok, detail, elapsed, kept, self.peer, status, silent, self.connect_time, error, late))


_HANDOFF = object()  # the selector key's data for the proxy threads' wake-up socket
OnDone = Callable[[Outcome], None]
K = TypeVar("K")
Job = tuple[K, Target, Check]  # (the caller's key, where, what)
JobDone = Callable[[K, Outcome], bool]  # True: probe it again


def next_due(due: float, period: float, now: float) -> float:
    """When the next probe is due, the last having been due at `due` (wait's tries of an
    endpoint, ping's probes): one period on along a fixed grid, however late the last one
    actually started, so lateness (epoll rounds its timeout up to a millisecond; a busy
    machine runs the loop late) is not carried from one probe into the next; at once, and
    the grid starts again from there, when the last one ran past that (a probe that
    timed out)."""
    return max(due + period, now)


def status_text(statuses: frozenset[int]) -> str:
    """200,204 or 200-299, as the user would write it."""
    ordered = sorted(statuses)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))


class Prober:
    """Probes in flight on one selector. `start` begins one; `poll` moves them on.

    `in_flight` is how many probes are running (each holds at most one
    descriptor). The caller's on_done runs inside start or poll.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._selector = selectors.DefaultSelector()
        wakeup = interrupts.wakeup_fd()
        if wakeup is not None:  # a signal is never missed while waiting for answers
            self._selector.register(wakeup, selectors.EVENT_READ, None)
        self._probes: set[_Probe] = set()
        self._watched: set[_Probe] = set()
        # Proxied probes dial in threads (net/proxy.py blocks) and hand their result back here.
        self._handoffs: deque[tuple[_Probe, socket.socket | NetworkError]] = deque()
        self._handoff_lock = threading.Lock()
        self._handoff_pair: tuple[socket.socket, socket.socket] | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self._probes)

    def start(self, target: Target, check: Check, deadline: float, on_done: OnDone) -> bool:
        """Begin a probe; False (and nothing started) when no descriptor is left."""
        probe = _Probe(self, target, check, deadline, on_done)
        self._probes.add(probe)
        try:
            probe.next_address()
        except OSError as exc:
            probe.drop_socket()
            self._probes.discard(probe)
            if exc.errno in NO_DESCRIPTORS:
                return False
            on_done(Outcome(False, describe(exc), 0.0, b"", probe.peer))
        return True

    def next_deadline(self) -> float | None:
        return min((probe.due() for probe in self._probes), default=None)

    def poll(self, timeout: float) -> None:
        """Wait up to `timeout` for answers, then settle what is due."""
        if self._watched or timeout > 0:
            for key, _events in self._selector.select(max(0.0, timeout)):
                probe = key.data
                if probe is None:
                    interrupts.drain()
                elif probe is _HANDOFF:
                    self._take_handoffs()
                elif probe in self._probes:
                    probe.on_ready()
        now = self.clock()
        for probe in [p for p in self._probes if p.due() <= now]:
            if probe in self._probes:
                probe.on_tick(now)

    def watch(self, probe: _Probe, events: int) -> None:
        assert probe.sock is not None
        if probe in self._watched:
            self._selector.modify(probe.sock, events, probe)
        else:
            self._selector.register(probe.sock, events, probe)
            self._watched.add(probe)

    def unwatch(self, probe: _Probe) -> None:
        if probe in self._watched:
            assert probe.sock is not None
            self._selector.unregister(probe.sock)
            self._watched.discard(probe)

    def forget(self, probe: _Probe) -> None:
        self._probes.discard(probe)

    def dial_through_proxy(self, probe: _Probe, proxy: ProxyConfig) -> None:
        """Connect `probe` to its target through `proxy` in a thread; its result comes back
        through poll(). A probe that timed out meanwhile has its late socket closed."""
        from socktool.net.proxy import connect as proxy_connect  # only with --proxy: start-up time

        if self._handoff_pair is None:
            self._handoff_pair = socket.socketpair()
            for end in self._handoff_pair:
                end.setblocking(False)
            self._selector.register(self._handoff_pair[0], selectors.EVENT_READ, _HANDOFF)
        wake = self._handoff_pair[1]
        endpoint = probe.target.endpoint
        timeout = max(0.001, probe.deadline - self.clock())

        def dial() -> None:
            result: socket.socket | NetworkError
            try:
                result = proxy_connect(proxy, endpoint, timeout=timeout)
            except NetworkError as exc:
                result = exc
            with self._handoff_lock:
                if self._closed:
                    if isinstance(result, socket.socket):
                        result.close()
                    return
                self._handoffs.append((probe, result))
                try:
                    wake.send(b"\0")
                except OSError:  # the pipe is full of wake-ups already: the loop will look
                    pass

        threading.Thread(target=dial, name="probe proxy", daemon=True).start()

    def _take_handoffs(self) -> None:
        assert self._handoff_pair is not None
        try:
            while self._handoff_pair[0].recv(4096):
                pass
        except OSError:
            pass
        with self._handoff_lock:
            handed, self._handoffs = list(self._handoffs), deque()
        for probe, result in handed:
            if probe in self._probes and probe.stage == "proxy":
                probe.through_proxy(result)
            elif isinstance(result, socket.socket):
                result.close()

    def close(self) -> None:
        for probe in list(self._probes):
            probe.drop_socket()
        self._probes.clear()
        with self._handoff_lock:
            self._closed = True
            for _probe, result in self._handoffs:
                if isinstance(result, socket.socket):
                    result.close()
            self._handoffs.clear()
        if self._handoff_pair is not None:
            for end in self._handoff_pair:
                end.close()
        self._selector.close()

    def run_all(self, jobs: Iterable[Job[K]], timeout: float, concurrency: int, on_done: JobDone[K]) -> None:
        """Every job probed, at most `concurrency` at once (fewer when descriptors run
        out), each given `timeout`; a job for which on_done returns True is queued again."""
        queue: deque[Job[K]] = deque(jobs)
        limit = max(1, concurrency)

        def finished(job: Job[K]) -> OnDone:
            return lambda outcome: queue.append(job) if on_done(job[0], outcome) else None

        while queue or self._probes:
            while queue and len(self._probes) < limit:
                job = queue[0]
                if not self.start(job[1], job[2], self.clock() + timeout, finished(job)):
                    if not self._probes:
                        raise NetworkError("cannot open a socket", "out of file descriptors")
                    limit = len(self._probes)  # out of descriptors after all: fewer at once
                    break
                queue.popleft()
            due = self.next_deadline()
            if due is not None:
                self.poll(max(0.0, due - self.clock()))

    def run_one(self, target: Target, check: Check, timeout: float) -> Outcome | None:
        """One probe, waited for (ping). None when no descriptor was free."""
        outcomes: list[Outcome] = []
        if not self.start(target, check, self.clock() + timeout, outcomes.append):
            return None
        while not outcomes:
            due = self.next_deadline()
            self.poll(0.0 if due is None else max(0.0, due - self.clock()))
        return outcomes[0]


def parse_statuses(text: str) -> frozenset[int]:
    """--status: 200 · 200,204 · 200-299 · 2xx · a mix. ValueError names the bad part."""
    codes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if len(part) == 3 and part[0] in "12345" and part[1:].lower() == "xx":
            first, last = int(part[0]) * 100, int(part[0]) * 100 + 99
        elif low.isascii() and low.isdigit() and (not dash or (high.isascii() and high.isdigit())):
            first, last = int(low), int(high) if dash else int(low)
        else:
            raise ValueError(f"{part!r} is not an HTTP status, a range (200-299) or a class (2xx)")
        if not 100 <= first <= last <= 599:
            raise ValueError(f"{part!r}: HTTP statuses are 100-599, low to high")
        codes.update(range(first, last + 1))
    return frozenset(codes)


class UrlEndpoint(NamedTuple):
    scheme: str  # "http", "https" or "tcp"
    endpoint: Endpoint
    path: str  # with its query; "/" when the URL has none
    host_header: str  # HOST[:PORT] as the URL wrote it


DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_url_endpoint(text: str) -> UrlEndpoint | None:
    """`http(s)://HOST[:PORT][/PATH]` or `tcp://HOST:PORT`; None when `text` is no URL.
    ValueError for a URL that cannot be waited for."""
    from socktool.net.address import parse_connect_endpoint

    scheme, sep, rest = text.partition("://")
    if not sep:
        return None
    scheme = scheme.lower()
    if scheme not in ("http", "https", "tcp"):
        raise ValueError(f"{text!r}: unknown scheme {scheme!r} (http://, https:// or tcp://)")
    authority, slash, path = rest.partition("#")[0].partition("/")
    authority = authority.rpartition("@")[2]
    if not authority:
        raise ValueError(f"{text!r}: no host in the URL")
    has_port = authority.rpartition("]")[2].count(":") == 1 if authority.startswith("[") else ":" in authority
    if not has_port:
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"{text!r}: tcp:// needs a port")
        authority_with_port = f"{authority}:{DEFAULT_PORTS[scheme]}"
    else:
        authority_with_port = authority
    endpoint = parse_connect_endpoint(authority_with_port)
    return UrlEndpoint(scheme, endpoint, "/" + path if slash else "/", authority)
