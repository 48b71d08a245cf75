"""The time server: strftime over UDP, daytime (RFC 867) over TCP, or RFC 868 binary time.

Rule: a UDP reply is never larger than the request, or REPLY_ALLOWANCE
(32) bytes for a shorter one (udpguard's rule 1), and never more than
MAX_REPLY bytes: a spoofed request cannot make this server send more than it
got to someone else. A format longer than MAX_REPLY is refused unread; a
format that renders longer than its limit, or that cannot be rendered, gets
a short error reply (at most REPLY_ALLOWANCE bytes) instead of the time,
never a cut time and never an empty datagram. RFC 868 replies are 4 bytes.

The replies are pure functions of (request, time, utc), tested without
sockets; `TimeServer` only moves them.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import NamedTuple

from socktool.net import events as ev
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.service import Service, ServiceKinds
from socktool.net.sockets import close_quietly
from socktool.net.udpguard import REPLY_ALLOWANCE, reply_limit

MAX_REPLY = 1024
DEFAULT_FORMAT = "%Y-%m-%d %X"
# Seconds from 1900-01-01 (RFC 868's epoch) to 1970-01-01 (Unix's).
RFC868_OFFSET = 2_208_988_800


# -- the replies ---------------------------------------------------------------
class TimeReply(NamedTuple):
    data: bytes
    format: bytes  # the format rendered (the default for an empty request)
    error: str = ""  # set when `data` is an error message rather than the time


def _moment(now: float, utc: bool) -> time.struct_time:
    return time.gmtime(now) if utc else time.localtime(now)


def _split_line_end(request: bytes) -> tuple[bytes, bytes]:
    """A request typed into nc ends with a newline; the reply ends with the same one."""
    for end in (b"\r\n", b"\n"):
        if request.endswith(end):
            return request[: -len(end)], end
    return request, b""


def _error_reply(fmt: bytes, short: str, error: str, end: bytes) -> TimeReply:
    """`short` goes on the wire (it fits REPLY_ALLOWANCE); `error` is the full story, for the log."""
    data = f"error: {short}".encode() + end
    assert len(data) <= REPLY_ALLOWANCE
    return TimeReply(data, fmt, error)


def format_reply(request: bytes, now: float, *, utc: bool = False) -> TimeReply:
    """The reply to a UDP request: the time `now` in the strftime format it carries."""
    fmt, end = _split_line_end(request)
    if len(request) > MAX_REPLY:
        return _error_reply(b"", "format too long", f"the format is longer than {MAX_REPLY} bytes", end)
    if not fmt.strip():
        fmt = DEFAULT_FORMAT.encode()
    try:
        text = fmt.decode("utf-8")
    except UnicodeDecodeError:
        return _error_reply(fmt, "format not UTF-8", "the format is not UTF-8 text", end)
    try:
        rendered = time.strftime(text, _moment(now, utc)).encode("utf-8", "surrogateescape")
    except (ValueError, UnicodeError) as exc:
        return _error_reply(fmt, "cannot render format", f"cannot render the format: {exc}", end)
    if not rendered:  # glibc gives up on a format it cannot fit (%9999999Y): never an empty reply
        return _error_reply(fmt, "cannot render format", "the format renders to nothing", end)
    reply = rendered + end
    limit = min(MAX_REPLY, reply_limit(len(request)))
    if len(reply) > limit:
        error = f"the time in that format is {len(reply)} bytes, more than {limit} (the request's size or {REPLY_ALLOWANCE})"
        return _error_reply(fmt, "reply too long", error, end)
    return TimeReply(reply, fmt)


def daytime_line(now: float, *, utc: bool = False) -> bytes:
    """RFC 867 daytime: 'Weekday, Month Day, Year HH:MM:SS-ZONE' and CRLF."""
    moment = _moment(now, utc)
    zone = "UTC" if utc else (moment.tm_zone or time.strftime("%z", moment))
    return (time.strftime("%A, %B %d, %Y %H:%M:%S", moment) + f"-{zone}\r\n").encode()


def rfc868_time(now: float) -> bytes:
    """RFC 868: seconds since 1900-01-01 00:00 UTC, 32 bits big-endian (wraps in 2036)."""
    return struct.pack("!I", (int(now) + RFC868_OFFSET) & 0xFFFFFFFF)


def decode_rfc868(data: bytes) -> int:
    """Unix time from an RFC 868 reply (for clients; assumes the era 1970-2106)."""
    seconds: int = struct.unpack("!I", data)[0]
    return seconds - RFC868_OFFSET if seconds >= RFC868_OFFSET else seconds + (1 << 32) - RFC868_OFFSET


# -- the server ----------------------------------------------------------------
class TimeOptions(NamedTuple):
    rfc868: bool = False
    utc: bool = False


class TimeServer(Service):
    """Answers each TCP connection with one reply, then closes; each datagram with one."""

    def __init__(
        self,
        endpoint: Endpoint,
        kinds: ServiceKinds = ServiceKinds(),
        options: TimeOptions = TimeOptions(),
        sink: ev.Sink = ev.ignore,
    ):
        super().__init__(endpoint, kinds, sink)
        self.options = options

    def on_client(self, sock: socket.socket, addr: object) -> None:
        self.connections += 1
        now = time.time()
        reply = rfc868_time(now) if self.options.rfc868 else daytime_line(now, utc=self.options.utc)
        sent = 0
        try:
            sock.setblocking(False)
            # A fresh socket's send buffer is empty: a reply this small never waits.
            sent = sock.send(reply)
            sock.shutdown(socket.SHUT_WR if sent == len(reply) else socket.SHUT_RDWR)
            # What the client sent is thrown away (RFC 867); read it so that
            # close() does not answer with a reset that could lose the reply.
            for _ in range(16):
                if not sock.recv(4096):
                    break
        except OSError:
            pass
        finally:
            close_quietly(sock)
        self.sent += sent
        self.sink(ev.Served("tcp", sockaddr_text(addr), 0, sent, self.connections))

    def on_datagram(self, sock: socket.socket, size: int, addr: object) -> None:
        if self.options.rfc868:
            reply = TimeReply(rfc868_time(time.time()), b"")
        else:
            reply = format_reply(bytes(self.datagram_view[:size]), time.time(), utc=self.options.utc)
        sent = self.reply(sock, reply.data, addr)
        request = None if self.options.rfc868 else reply.format
        self.sink(ev.Served("udp", sockaddr_text(addr), size, sent, self.datagrams_in, request, reply.error))


__all__ = [
    "DEFAULT_FORMAT",
    "MAX_REPLY",
    "TimeOptions",
    "TimeReply",
    "TimeServer",
    "daytime_line",
    "decode_rfc868",
    "format_reply",
    "rfc868_time",
]
