"""Framing between streams and datagrams: pure, no I/O.

The rule for a stream that becomes datagrams (forward --tcp-to-udp and
--udp-to-tcp): one line, without its line end (LF or CRLF), is one datagram;
a line longer than the largest datagram goes as several datagrams of at most
that size; at the stream's end, the bytes after the last line end are one
more datagram. (A datagram that becomes stream bytes is written as it is.)

With --frame (frames.py) instead: one message of the stream, without its
framing, is one datagram, and a datagram becomes one framed message on the
stream; a message larger than a datagram (or --max-frame) is an error for
that connection, and an incomplete message at the stream's end is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - frames.py is loaded by a --frame that uses it (net/udp.py imports this module)
    from socktool.frames import Framing

MAX_DATAGRAM = 65_507  # the most a UDP datagram over IPv4 carries: 65,535 less the IPv4 (20) and UDP (8) headers
MAX_DATAGRAM_IPV6 = 65_527  # IPv6's payload length leaves out its own header: 65,535 less UDP's 8


class LineDatagrams:
    """A byte stream cut into datagrams at line ends (see the module's framing rule)."""

    dropped = 0  # never: the bytes after the last line end are a datagram too

    def __init__(self, limit: int = MAX_DATAGRAM):
        self.limit = limit
        self._rest = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        rest = self._rest
        rest += chunk
        out: list[bytes] = []
        start = 0
        while True:
            end = rest.find(b"\n", start)
            if end < 0:
                break
            line = bytes(rest[start:end])
            out.extend(self._pieces(line[:-1] if line.endswith(b"\r") else line))
            start = end + 1
        del rest[:start]
        while len(rest) > self.limit:  # a line too long for one datagram: send what fits
            out.append(bytes(rest[: self.limit]))
            del rest[: self.limit]
        return out

    def close(self) -> list[bytes]:
        rest, self._rest = bytes(self._rest), bytearray()
        return [rest] if rest else []

    def _pieces(self, line: bytes) -> list[bytes]:
        if len(line) <= self.limit:
            return [line]
        return [line[i : i + self.limit] for i in range(0, len(line), self.limit)]


class FramedDatagrams:
    """A byte stream cut into datagrams by --frame: one message, one datagram."""

    def __init__(self, framing: Framing, limit: int = MAX_DATAGRAM):
        self._decoder = framing.decoder(limit)
        self.dropped = 0  # bytes of an incomplete message at the stream's end

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._decoder.feed(chunk)  # FrameTooLarge: a message no datagram can carry

    def close(self) -> list[bytes]:
        self.dropped = len(self._decoder.rest())
        return []


def stream_to_datagrams(framing: Framing | None, max_frame: int | None) -> LineDatagrams | FramedDatagrams:
    """How a bridge cuts its stream side into datagrams: by line (the default) or by --frame."""
    if framing is None:
        return LineDatagrams()
    return FramedDatagrams(framing, min(max_frame or MAX_DATAGRAM, MAX_DATAGRAM))


def datagrams_to_stream(framing: Framing | None) -> Callable[[bytes], bytes] | None:
    """How a bridge writes a datagram to its stream side: as it is (None), or framed (ValueError: it cannot be)."""
    return None if framing is None else framing.encode


__all__ = [
    "MAX_DATAGRAM",
    "MAX_DATAGRAM_IPV6",
    "FramedDatagrams",
    "LineDatagrams",
    "datagrams_to_stream",
    "stream_to_datagrams",
]
