"""What a UDP service may answer, and to whom.

A UDP source address can be forged, so whoever a server answers may not be
who asked. Two rules keep a forged datagram harmless:

Rule 1 (no amplification): a reply's payload is never larger than
`reply_limit(request payload)` = max(request payload, REPLY_ALLOWANCE). A
forged request can then make the server send no more than it got (plus a
few bytes, so that an empty request can still be answered).

Rule 2 (no loops): a datagram whose source port is one a small service
answers on gets no answer and is counted as dropped, as inetd's check_loop
does. Those ports are the well-known echo, daytime, chargen, time and ntp
ports, socktool's default echo and time-server ports, and the server's own
port (a datagram forged from the server to itself). Otherwise one forged
datagram makes two servers (or one server and itself) answer each other
for ever.

Both are pure decisions over sizes and addresses; the servers call them
once per datagram.
"""

from __future__ import annotations

from collections.abc import Iterable

from socktool.net import events as ev

REPLY_ALLOWANCE = 32  # bytes any request may get back, whatever its size
# echo, daytime, chargen, time, ntp; socktool's default time-server and echo ports.
LOOP_PORTS = frozenset({7, 13, 19, 37, 123, 9000, 9999})


def reply_limit(request_size: int) -> int:
    """The largest reply payload a request of this size may get."""
    return max(request_size, REPLY_ALLOWANCE)


def loop_ports(own_ports: Iterable[int]) -> frozenset[int]:
    """Source ports a server with these ports of its own never answers."""
    return LOOP_PORTS | {port for port in own_ports if port}


class LoopGuard:
    """Refuses datagrams from loop ports; warns at the first, counts the rest.

    `refuses(addr)` is called with the source of each datagram before it is
    answered; unix datagram sources (paths, or None) are never refused: the
    kernel sets them, they cannot be forged.
    """

    __slots__ = ("_address", "dropped", "ports", "sink")

    def __init__(self, address: str, own_ports: Iterable[int], sink: ev.Sink = ev.ignore):
        self.ports = loop_ports(own_ports)
        self.sink = sink
        self.dropped = 0
        self._address = address

    def refuses(self, addr: object) -> bool:
        if addr.__class__ is not tuple or addr[1] not in self.ports:
            return False
        self.dropped += 1
        if self.dropped == 1:
            host, port = addr[0], addr[1]
            self.sink(
                ev.Notice(
                    f"dropped a datagram to {self._address} from port {port} ({host}): "
                    "answering it could start a loop between two servers; "
                    "more are counted in the totals",
                    warning=True,
                )
            )
        return True


__all__ = ["LOOP_PORTS", "REPLY_ALLOWANCE", "LoopGuard", "loop_ports", "reply_limit"]
