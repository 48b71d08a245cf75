"""What engines report, as small immutable records handed to a sink.

Views turn these into output; tests can collect them in a list. A sink is
any callable taking one event, called at the moment the thing happens (so a
view stamps the time itself). `peer` is a printable address; `conn` numbers
connections from 1 in the order they were accepted or made.

NamedTuples rather than dataclasses: they cost a tenth as much to define,
and start-up time is a feature. No `from __future__ import annotations`
here: NamedTuple turns each string annotation into a ForwardRef, compiling
it (about 7 ms for this module's fields at every start).
"""

from collections.abc import Callable
from typing import NamedTuple

SENT = "sent"
RECEIVED = "received"
# forward's two directions: Data.peer is then the client, and these say which way the bytes went.
UPSTREAM = "upstream"  # client → target
DOWNSTREAM = "downstream"  # client ← target


class Listening(NamedTuple):
    address: str
    kind: str = "tcp"
    tls_fingerprint: str = ""  # a TLS listener's own certificate, "sha256:HEX", for a client's --pin


class Connected(NamedTuple):
    conn: int
    peer: str
    local: str
    inbound: bool = False  # accepted by a listener rather than dialled


class Rejected(NamedTuple):
    """A client turned away before any byte was read."""

    peer: str
    reason: str


class Data(NamedTuple):
    conn: int
    peer: str
    direction: str  # SENT or RECEIVED (UPSTREAM or DOWNSTREAM in forward)
    data: bytes


class Tls(NamedTuple):
    """A TLS handshake done: what was agreed, and the peer's certificate (empty fields: none sent)."""

    conn: int
    peer: str
    version: str
    cipher: str
    alpn: str | None
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_after: str  # ISO 8601, UTC
    fingerprint: str  # "sha256:HEX"
    verified: str  # "ca", "pin", "insecure" (a client), "client-ca" / "" (a server)


class Moved(NamedTuple):
    """Bytes relayed without a Data event for each chunk: a view asked only for the total.

    `source` says where they came from ("stdin").
    """

    conn: int
    peer: str
    direction: str
    size: int
    source: str = ""


class Closed(NamedTuple):
    conn: int
    peer: str
    reason: str
    sent: int
    received: int
    duration: float


class Datagram(NamedTuple):
    peer: str
    direction: str
    data: bytes


class Notice(NamedTuple):
    """Anything else worth a status line (idle timeout, a retry, a warning)."""

    message: str
    warning: bool = False


class Stats(NamedTuple):
    """Totals at the end of a command's run."""

    sent: int = 0
    received: int = 0
    duration: float = 0.0
    connections: int = 0
    datagrams_in: int = 0
    datagrams_out: int = 0
    dropped: int = 0  # datagrams a UDP service left unanswered (udpguard's loop rule)


class Served(NamedTuple):
    """A request one of the built-in servers answered: a datagram echoed, a time sent.

    `count` numbers the requests of this kind (tcp/udp) served so far;
    `request` is what was asked, when it means something to a person (the
    time-server's format); `error` says why the reply is an error message.
    """

    kind: str  # "tcp" or "udp"
    peer: str
    received: int
    sent: int
    count: int  # type: ignore[assignment]  # a field that shadows tuple.count
    request: bytes | None = None
    error: str = ""


# -- portscan and wait: results handed to their views ------------------------------
OPEN = "open"
CLOSED = "closed"
FILTERED = "filtered"
ERROR = "error"
OPEN_FILTERED = "open|filtered"  # UDP: no reply, which an open port and a firewall both give
STATES = (OPEN, CLOSED, FILTERED, ERROR)
UDP_STATES = (OPEN, CLOSED, OPEN_FILTERED, ERROR)


class ScanResult(NamedTuple):
    port: int
    state: str
    latency: float | None  # seconds from the (last) SYN to the answer; None without one
    detail: str = ""  # why: "refused", "self-connect", "no answer", an error text


class Target(NamedTuple):
    host: str  # as the user gave it
    family: int
    template: tuple[str, int] | tuple[str, int, int, int]  # the resolved socket address, port 0
    others: tuple[str, ...] = ()  # further addresses the name resolved to, not scanned

    @property
    def address(self) -> str:
        return self.template[0]

    def sockaddr(self, port: int) -> tuple:
        return (self.template[0], port, *self.template[2:])


class Ready(NamedTuple):
    """wait: an endpoint got to the wanted state."""

    endpoint: str  # as the user named it (HOST:PORT, a URL)
    elapsed: float  # seconds since the wait began
    detail: str  # with invert: how it failed; else what was seen (may be "")


def count_states(results: list[ScanResult], states: tuple[str, ...] = STATES) -> dict[str, int]:
    counts = dict.fromkeys(states, 0)
    for result in results:
        counts[result.state] += 1
    return counts


Event = Listening | Connected | Rejected | Data | Moved | Tls | Closed | Datagram | Notice | Stats | Served
Sink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A sink that drops everything."""


class Probed(NamedTuple):
    """ping: one probe's outcome. `elapsed` is the connect (or round-trip) time when `ok`."""

    seq: int
    target: str  # as the user named it
    peer: str  # the address probed
    ok: bool
    elapsed: float
    detail: str = ""  # why not ok
    size: int = 0  # bytes of the reply (UDP, --expect)
    connect: float | None = None  # --tls: the connect's share of `elapsed` (the rest is the handshake)


class PingSummary(NamedTuple):
    """ping's totals, like ping(8)'s: times in seconds over the answered probes."""

    target: str
    peer: str
    sent: int
    received: int
    duration: float
    times: tuple[float, ...] = ()

    def spread(self) -> tuple[float, float, float, float]:
        """(min, avg, max, mdev) as ping(8) reports them; mdev = sqrt(mean(t²) - mean(t)²)."""
        times = self.times
        if not times:
            return (0.0, 0.0, 0.0, 0.0)
        mean = sum(times) / len(times)
        square_mean = sum(t * t for t in times) / len(times)
        return (min(times), mean, max(times), max(0.0, square_mean - mean * mean) ** 0.5)


PingEvent = Probed | PingSummary  # ping's own sink takes these (no other sink sees them)
