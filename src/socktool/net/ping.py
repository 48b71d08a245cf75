"""ping HOST:PORT: probe one endpoint N times, one probe every interval, like ping(8).

A probe is one net/probe check: a TCP connect (its time is the connect
time), with --tls a connect and a TLS handshake (the time of both, and the
connect's share), or with --udp a datagram and its answer (the round-trip time), or
with --send/--expect the time until the answer matched. The name is
resolved once, before the first probe, and the first address is probed
each time (ping(8) does the same), so every probe measures the same path.
Probes start one interval apart on a fixed grid (net/probe.next_due): a
probe that started late does not push back the ones after it.
Each probe's outcome is an event (Probed) as it ends; PingSummary at the end.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from socktool.net.address import Endpoint, resolve, sockaddr_text
from socktool.net.errors import NetworkError
from socktool.net.events import PingEvent, PingSummary, Probed
from socktool.net.probe import Check, Prober, Target, next_due

SHORT_PAUSE = 0.001  # pauses shorter than this sleep; longer ones wait in the selector


def resolve_once(endpoint: Endpoint, check: Check, family: int = socket.AF_UNSPEC) -> Target:
    """The one address every probe goes to."""
    if endpoint.path is not None:
        return Target(endpoint, ((socket.AF_UNIX, endpoint.path),))
    kind = socket.SOCK_DGRAM if check.udp else socket.SOCK_STREAM
    return Target(endpoint, (resolve(endpoint.host, endpoint.port, family=family, kind=kind)[0],))


class Pinger:
    """`count` probes (0: until interrupted), one every `interval`, each given `timeout`."""

    def __init__(
        self,
        target: Target,
        check: Check,
        *,
        name: str,
        count: int = 4,
        interval: float = 1.0,
        timeout: float = 2.0,
        sink: Callable[[PingEvent], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.target = target
        self.check = check
        self.name = name
        self.count = count
        self.interval = interval
        self.timeout = timeout
        self.sink = sink
        self.clock = clock
        self.sent = 0
        self.times: list[float] = []
        self.peer = sockaddr_text(target.addresses[0][1])

    def run(self) -> PingSummary:
        """Probe until done; the summary is sent (and returned) also when interrupted."""
        began = self.clock()
        prober = Prober(self.clock)
        try:
            due = began
            while not self.count or self.sent < self.count:
                self.sent += 1
                self._probe(prober, self.sent)
                if self.count and self.sent >= self.count:
                    break
                due = next_due(due, self.interval, self.clock())  # on a grid: -c 100 -i 10ms takes 990ms
                while (left := due - self.clock()) > 0:
                    if left < SHORT_PAUSE:
                        time.sleep(left)  # poll() would round it up to a millisecond
                    else:
                        prober.poll(left)  # sleeps, and wakes for a signal
        finally:
            prober.close()
            summary = PingSummary(
                self.name, self.peer, self.sent, len(self.times), self.clock() - began, tuple(self.times)
            )
            self.sink(summary)
        return summary

    def _probe(self, prober: Prober, seq: int) -> None:
        outcome = prober.run_one(self.target, self.check, self.timeout)
        if outcome is None:
            raise NetworkError("cannot open a socket", "out of file descriptors")
        if outcome.ok:
            self.times.append(outcome.elapsed)
        detail = "" if outcome.ok else outcome.detail
        size = len(outcome.reply)
        self.sink(Probed(seq, self.name, self.peer, outcome.ok, outcome.elapsed, detail, size, outcome.connect))
