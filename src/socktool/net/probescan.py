"""Scans that talk: banners from open TCP ports, and the UDP scan.

Rule for the UDP scan, port by port: a datagram goes out (a protocol probe
for the well-known ports, so the service has something to answer; an empty
datagram elsewhere), and the port is
  open           a datagram came back;
  closed         an ICMP port unreachable came back (ECONNREFUSED on the
                 connected socket);
  open|filtered  nothing came back before the timeout, after every retry:
                 a service that ignores this request, or a firewall that
                 drops it, look the same;
  error          anything else, with its description.
The kernel rate-limits ICMP errors (net.ipv4.icmp_ratelimit,
icmp_msgs_per_sec); a closed port whose answer was suppressed looks
open|filtered, which --retries makes less likely.

Banners: each open TCP port is connected again and what the service sends
first is read (up to a size, for up to the timeout); a port still silent at
half the timeout gets an HTTP HEAD request, so web servers say who they are.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from socktool.net.address import Endpoint
from socktool.net.events import CLOSED, ERROR, FILTERED, OPEN, OPEN_FILTERED, ScanResult
from socktool.net.events import Target as ScanTarget
from socktool.net.probe import PORT_UNREACHABLE, Check, Outcome, Prober, Target

if TYPE_CHECKING:  # pragma: no cover - imported only with --proxy
    from socktool.net.proxy import ProxyConfig

HTTP_HEAD = b"HEAD / HTTP/1.0\r\n\r\n"


def _tlv(tag: int, content: bytes) -> bytes:
    """One BER element (definite length; the contents here are all short)."""
    assert len(content) < 128
    return bytes((tag, len(content))) + content


def snmp_get_sysdescr(community: bytes = b"public", request_id: int = 0x534F434B) -> bytes:
    """An SNMPv1 GetRequest for sysDescr.0 (1.3.6.1.2.1.1.1.0)."""
    oid = _tlv(0x06, bytes((0x2B, 6, 1, 2, 1, 1, 1, 0)))
    varbinds = _tlv(0x30, _tlv(0x30, oid + _tlv(0x05, b"")))
    pdu = _tlv(0xA0, _tlv(0x02, struct.pack(">I", request_id)) + _tlv(0x02, b"\0") + _tlv(0x02, b"\0") + varbinds)
    return _tlv(0x30, _tlv(0x02, b"\0") + _tlv(0x04, community) + pdu)


def dns_query_root_ns(query_id: int = 0x5354) -> bytes:
    """A DNS query (recursion desired) for the root's NS records: any DNS server answers it."""
    header = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    return header + b"\x00" + struct.pack(">HH", 2, 1)  # root name, type NS, class IN


NTP_CLIENT = b"\x23" + bytes(47)  # NTPv4, mode 3 (client): a server answers with mode 4

# Port → the datagram that makes its usual service answer. Others get an empty datagram
# (which echo, daytime, chargen, time and socktool's time-server answer too).
UDP_PROBES: dict[int, bytes] = {
    7: b"socktool\n",  # echo
    53: dns_query_root_ns(),
    123: NTP_CLIENT,
    161: snmp_get_sysdescr(),
    5353: dns_query_root_ns(0),  # mDNS
}


def _target(scan: ScanTarget, port: int) -> Target:
    return Target(Endpoint(scan.address, port), ((scan.family, scan.sockaddr(port)),))


class _ProbeScan:
    """What the UDP and proxy scans share: results by port, the time taken, and the
    retry count of each silent port."""

    def __init__(self, target: ScanTarget, ports: list[int], timeout: float, retries: int, concurrency: int):
        self.target = target
        self.ports = ports
        self.timeout = timeout
        self.retries = retries
        self.concurrency = concurrency
        self.results: list[ScanResult] = []
        self.elapsed = 0.0
        self._tries: dict[int, int] = {}

    @property
    def done(self) -> int:
        return len(self.results)

    def _retry(self, port: int) -> bool:
        """True (probe `port` again) while it has retries left."""
        tries = self._tries.get(port, 0)
        if tries < self.retries:
            self._tries[port] = tries + 1
            return True
        return False

    def _run(
        self, prober: Prober, jobs: list[tuple[int, Target, Check]], settled: Callable[[int, Outcome], bool]
    ) -> list[ScanResult]:
        began = time.perf_counter()
        try:
            prober.run_all(jobs, self.timeout, self.concurrency, settled)
        finally:
            prober.close()
            self.elapsed = time.perf_counter() - began
        self.results.sort()
        return self.results


class UdpScanner(_ProbeScan):
    """Scan `ports` of `target` over UDP; `run()` returns one ScanResult per port, by port,
    and keeps each open port's reply in `replies`."""

    def __init__(
        self,
        target: ScanTarget,
        ports: list[int],
        *,
        timeout: float = 1.0,
        retries: int = 0,
        concurrency: int = 256,
        probes: dict[int, bytes] = UDP_PROBES,
        prober: Callable[[], Prober] = Prober,
    ):
        super().__init__(target, ports, timeout, retries, concurrency)
        self.probes = probes
        self.prober = prober
        self.replies: dict[int, bytes] = {}

    def run(self) -> list[ScanResult]:
        jobs = [
            (port, _target(self.target, port), Check(udp=True, send=self.probes.get(port, b""))) for port in self.ports
        ]
        return self._run(self.prober(), jobs, self._settled)

    def _settled(self, port: int, outcome: Outcome) -> bool:
        if outcome.ok:
            self.replies[port] = outcome.reply
            self.results.append(ScanResult(port, OPEN, outcome.elapsed, "reply"))
        elif outcome.detail == PORT_UNREACHABLE:
            self.results.append(ScanResult(port, CLOSED, outcome.elapsed, PORT_UNREACHABLE))
        elif outcome.silent:
            if self._retry(port):
                return True
            self.results.append(ScanResult(port, OPEN_FILTERED, None, "no reply"))
        else:
            self.results.append(ScanResult(port, ERROR, None, outcome.detail))
        return False


class ProxyScanner(_ProbeScan):
    """Scan `ports` of `target` through a proxy (portscan --proxy): each port is a connect
    request to the proxy, and its state is what the proxy replied (net/proxy.py) —
      open      the proxy made the connection;
      closed    the proxy says the target refused (SOCKS4 says only "rejected or failed");
      filtered  the proxy says the target is unreachable, or nothing was settled in time;
      error     any other refusal, in the proxy's words.
    A proxy that fails us (cannot be reached, refuses our credentials) ends the scan with
    that error: no port would say anything else."""

    def __init__(
        self,
        target: ScanTarget,
        ports: list[int],
        proxy: ProxyConfig,
        *,
        timeout: float = 1.0,
        retries: int = 0,
        concurrency: int = 32,
    ):
        super().__init__(target, ports, timeout, retries, concurrency)
        self.check = Check(proxy=proxy)

    def run(self) -> list[ScanResult]:
        from socktool.net.proxy import ProxyFailed

        jobs = [(port, Target(Endpoint(self.target.host, port), ()), self.check) for port in self.ports]

        def settled(port: int, outcome: Outcome) -> bool:
            if isinstance(outcome.error, ProxyFailed):  # out of run_all: the scan ends with the proxy's words
                raise ProxyFailed(f"cannot scan {self.target.host} through {self.check.proxy}", outcome.error.detail)
            return self._settled(port, outcome)

        return self._run(Prober(), jobs, settled)

    def _settled(self, port: int, outcome: Outcome) -> bool:
        from socktool.net.proxy import TargetRefused, TargetUnreachable

        if outcome.ok:
            self.results.append(ScanResult(port, OPEN, outcome.elapsed))
        elif isinstance(outcome.error, TargetRefused):
            self.results.append(ScanResult(port, CLOSED, outcome.elapsed, outcome.detail))
        elif outcome.silent or isinstance(outcome.error, TargetUnreachable):
            if self._retry(port):
                return True
            self.results.append(ScanResult(port, FILTERED, None, outcome.detail))
        else:
            self.results.append(ScanResult(port, ERROR, None, outcome.detail))
        return False


def grab_banners(
    target: ScanTarget,
    ports: list[int],
    *,
    size: int = 256,
    timeout: float = 1.0,
    concurrency: int = 256,
    proxy: ProxyConfig | None = None,
) -> dict[int, bytes]:
    """port → what the service sent (b"" when it said nothing, even to HEAD)."""
    banners: dict[int, bytes] = {}

    def settled(port: int, outcome: Outcome) -> bool:
        banners[port] = outcome.reply[:size]
        return False

    check = Check(banner=size, fallback=HTTP_HEAD, proxy=proxy)
    prober = Prober()
    try:
        prober.run_all([(port, _target(target, port), check) for port in ports], timeout, concurrency, settled)
    finally:
        prober.close()
    return banners
