"""udp-send's engine: datagrams out, paced, and the replies that come back.

Rules:
- Every datagram is checked against MAX_DATAGRAM before it is sent; stdin is
  read whole (one datagram) or line by line (--lines), never cut.
- The socket stays unconnected, so a reply is shown whoever sends it (a
  server may answer from another port); with --wait on Linux, IP_RECVERR
  still reports an ICMP "port unreachable" so a closed port fails at once.
- Sending and receiving share one poll loop: replies show up while stdin
  lines are still being sent.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.address import Endpoint, resolve, sockaddr_text
from socktool.net.errors import BindError, NetworkError, TimedOut, UsageError, describe
from socktool.net.fdio import CHUNK, write_all
from socktool.net.multicast import is_multicast, set_sending_interface
from socktool.net.sockets import bind_source, remove_stale_socket
from socktool.net.udp import (
    MAX_DATAGRAM,
    DatagramBuffer,
    DatagramCounters,
    check_size,
    max_datagram,
    widen_receive_buffer,
)
from socktool.values import HexDecoder, LineSplitter, decode_hex, format_duration

_IP_RECVERR = 11  # Linux values the socket module does not export
_IPV6_RECVERR = 25


class SendOptions(NamedTuple):
    broadcast: bool = False
    ttl: int | None = None
    interface: str | None = None  # for multicast; default loopback
    source: str | None = None
    source_port: int | None = None
    replies: bool = False  # --wait: make sure replies can reach us


class Target:
    """An open socket and where its datagrams go."""

    def __init__(
        self,
        sock: socket.socket,
        sockaddr: object,
        peer: str,
        temp_dir: str | None = None,
        source_path: str | None = None,
    ):
        self.sock = sock
        self.sockaddr = sockaddr
        self.peer = peer
        self.temp_dir = temp_dir
        self.source_path = source_path  # a unix source file we made: removed on close
        self.limit = max_datagram(sock.family)  # the largest datagram that may be sent

    def close(self) -> None:
        self.sock.close()
        if self.source_path is not None:
            path, self.source_path = self.source_path, None
            try:
                os.unlink(path)
            except OSError:
                pass
        if self.temp_dir is not None:
            import shutil

            shutil.rmtree(self.temp_dir, ignore_errors=True)


def open_target(endpoint: Endpoint, *, family: int = socket.AF_UNSPEC, options: SendOptions | None = None) -> Target:
    """A socket ready to send to `endpoint`, configured by `options`; nothing is sent yet."""
    options = options or SendOptions()
    if endpoint.path is not None:
        if options.source_port is not None:
            raise UsageError("-p/--source-port does not apply to a unix: destination", hint="give -s PATH")
        return _open_unix_target(endpoint.path, options.replies, options.source)
    candidates = resolve(endpoint.host, endpoint.port, family=family, kind=socket.SOCK_DGRAM)
    fam, sockaddr = next(
        ((f, a) for f, a in candidates[:-1] if _routable(f, a)), candidates[-1]
    )  # like a connect, try address by address: a name may have an address we cannot reach
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        _configure(sock, fam, sockaddr[0], options)
    except BaseException:
        sock.close()
        raise
    return Target(sock, sockaddr, sockaddr_text(sockaddr))


def _routable(family: int, sockaddr: tuple) -> bool:
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect(sockaddr)  # a UDP connect sends nothing: it only finds a route
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _configure(sock: socket.socket, family: int, host: str, options: SendOptions) -> None:
    v6 = family == socket.AF_INET6
    multicast = is_multicast(host)
    try:
        if options.broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if multicast:
            set_sending_interface(sock, options.interface)
        if options.ttl is not None:
            if v6:
                name = socket.IPV6_MULTICAST_HOPS if multicast else socket.IPV6_UNICAST_HOPS
                sock.setsockopt(socket.IPPROTO_IPV6, name, options.ttl)
            else:
                name = socket.IP_MULTICAST_TTL if multicast else socket.IP_TTL
                sock.setsockopt(socket.IPPROTO_IP, name, options.ttl)
        if options.replies:
            widen_receive_buffer(sock)  # replies wait in the queue while a burst is sent
        if options.replies and not multicast and sys.platform == "linux":
            # ICMP "port unreachable" then fails our receive at once, instead of a silent wait.
            level, name = (socket.IPPROTO_IPV6, _IPV6_RECVERR) if v6 else (socket.IPPROTO_IP, _IP_RECVERR)
            sock.setsockopt(level, name, 1)
    except OSError as exc:
        raise NetworkError("cannot set socket options", describe(exc)) from exc
    if options.source is not None or options.source_port is not None:
        bind_source(sock, family, options.source, options.source_port)


def _open_unix_target(path: str, replies: bool, source: str | None = None) -> Target:
    """A unix datagram socket; bound to `source` (-s PATH) so the receiver can answer, or
    with --wait to a name of its own: an unbound one has no address a reply could go to."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        if source is not None:
            source_path = source.removeprefix("unix:")
            _bind_unix_source(sock, source_path)
            return Target(sock, path, f"unix:{path}", source_path=source_path)
        if replies:
            return Target(sock, path, f"unix:{path}", _bind_unix_reply_name(sock))
    except BaseException:
        sock.close()
        raise
    return Target(sock, path, f"unix:{path}")


def _bind_unix_source(sock: socket.socket, path: str) -> None:
    remove_stale_socket(path)  # a live socket there is an error, a stale one goes
    try:
        sock.bind(path)
    except OSError as exc:
        raise BindError(f"cannot bind source unix:{path}", describe(exc)) from exc


def _bind_unix_reply_name(sock: socket.socket) -> str | None:
    """Bind a name replies can reach; the temporary directory to remove after, if one was made."""
    try:
        if sys.platform != "linux":
            raise OSError(errno.EINVAL, "no autobind")
        sock.bind("")  # Linux autobind: a unique abstract name, no file to clean up
        return None
    except OSError:
        import tempfile

        temp_dir = tempfile.mkdtemp(prefix="socktool-")
        sock.bind(os.path.join(temp_dir, "reply.sock"))
        return temp_dir


class Outgoing(NamedTuple):
    """The datagrams to send: fixed ones, or stdin read as it comes (--lines)."""

    datagrams: tuple[bytes, ...] = ()
    stdin_fd: int | None = None  # streamed one line per datagram
    hex_input: bool = False
    count: int = 1  # type: ignore[assignment]  # rounds of `datagrams` (shadows tuple.count)
    interval: float = 0.0  # pause between datagrams


def read_datagram(fd: int, *, hex_input: bool = False, limit: int = MAX_DATAGRAM) -> bytes:
    """All of stdin as one datagram; more than `limit` bytes is a UsageError."""
    decoder = HexDecoder() if hex_input else None
    data = bytearray()
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            break
        if decoder is not None:
            chunk = _decode(decoder, chunk)
        data += chunk
        check_size(data, "stdin", limit)
    if decoder is not None:
        _close(decoder)
    return bytes(data)


def read_lines(fd: int, *, hex_input: bool = False, limit: int = MAX_DATAGRAM) -> list[bytes]:
    splitter = line_splitter(hex_input, limit)
    datagrams: list[bytes] = []
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            break
        datagrams += lines_as_datagrams(splitter, chunk, hex_input, limit)
    return datagrams + lines_as_datagrams(splitter, b"", hex_input, limit)


HEX_CHARS_PER_BYTE = 4  # two digits and room for whitespace: the bound on a --hex-input line


def line_splitter(hex_input: bool, limit: int) -> LineSplitter:
    """A splitter that fails as soon as a line cannot be one datagram (in hex text, 4 characters a byte)."""
    return LineSplitter(limit * HEX_CHARS_PER_BYTE if hex_input else limit)


def lines_as_datagrams(splitter: LineSplitter, chunk: bytes, hex_input: bool, limit: int) -> list[bytes]:
    """The datagrams of the lines `chunk` completes; an empty chunk is the end of input."""
    try:
        lines = splitter.feed(chunk) if chunk else splitter.close()
    except ValueError:
        what = f"{limit * HEX_CHARS_PER_BYTE:,} characters of hex text" if hex_input else f"{limit:,} bytes"
        raise UsageError(
            "line too large", f"more than {what} without a line end; one UDP datagram holds at most {limit:,} bytes"
        ) from None
    return [line_datagram(line, hex_input, limit) for line in lines]


def line_datagram(line: bytes, hex_input: bool, limit: int = MAX_DATAGRAM) -> bytes:
    return check_size(decode_hex_line(line) if hex_input else line, "line", limit)


def decode_hex_line(line: bytes) -> bytes:
    try:
        return decode_hex(line)
    except ValueError as exc:
        raise UsageError("invalid stdin", str(exc)) from None


def _decode(decoder: HexDecoder, chunk: bytes) -> bytes:
    try:
        return decoder.feed(chunk)
    except ValueError as exc:
        raise UsageError("invalid stdin", str(exc)) from None


def _close(decoder: HexDecoder) -> None:
    try:
        decoder.close()
    except ValueError as exc:
        raise UsageError("invalid stdin", str(exc)) from None


class Sender(DatagramCounters):
    """Sends the outgoing datagrams, paced; with `wait`, shows replies as they come."""

    def __init__(
        self,
        target: Target,
        outgoing: Outgoing,
        *,
        wait: float | None = None,
        replies: int | None = None,
        output_fd: int | None = 1,
        emit: bool = False,
        sink: ev.Sink = ev.ignore,
    ):
        self.target = target
        self.outgoing = outgoing
        self.wait = wait
        self.replies = replies  # with wait: stop as soon as this many replies came
        self.output_fd = output_fd
        self.emit = emit
        self.sink = sink
        super().__init__()
        self._inbox = DatagramBuffer(target.sock)
        self._splitter: LineSplitter | None = None  # stdin being read, one datagram a line
        self._wakeup: int | None = None

    def run(self) -> None:
        """Raises TimedOut when waiting for replies and none came. The caller closes the target."""
        try:
            self._run()
        finally:
            self.sink(self.stats())

    def _run(self) -> None:
        """Send what is due, then wait for the next thing: a send, a reply, stdin, a signal, the end."""
        poller = self._poller()
        pending = _Queue(self.outgoing.datagrams, self.outgoing.count)
        next_send = time.monotonic()
        deadline: float | None = None
        while True:
            now, next_send = self._send_due(pending, next_send)
            if not pending and self._splitter is None:
                if self.wait is None or (self.replies is not None and self.datagrams_in >= self.replies):
                    return
                if deadline is None:
                    deadline = now + self.wait
                if now >= deadline:
                    break
            waits = [deadline - now] if deadline is not None else []
            if pending:
                waits.append(next_send - now)
            timeout_ms = None if not waits else max(0, int(min(waits) * 1000) + 1)
            for fd, _mask in poller.poll(timeout_ms):
                self._ready(fd, poller, pending)
        if self.datagrams_in == 0:
            raise TimedOut(f"no reply from {self.target.peer} within {format_duration(self.wait or 0)}")

    def _poller(self) -> select.poll:
        """A poll over the socket (when waiting for replies), stdin (--lines) and the wakeup fd."""
        poller = select.poll()
        if self.wait is not None:
            poller.register(self.target.sock.fileno(), select.POLLIN)
        self._splitter = None
        if self.outgoing.stdin_fd is not None:
            self._splitter = line_splitter(self.outgoing.hex_input, self.target.limit)
            poller.register(self.outgoing.stdin_fd, select.POLLIN)
        self._wakeup = interrupts.wakeup_fd()
        if self._wakeup is not None:  # so that a signal is never missed while waiting
            poller.register(self._wakeup, select.POLLIN)
        return poller

    def _send_due(self, pending: _Queue, next_send: float) -> tuple[float, float]:
        """Send the datagrams whose time has come, paced by --interval: (now, when the next is due)."""
        now = time.monotonic()
        while pending and now >= next_send:
            self._send(pending.pop())
            now = time.monotonic()
            next_send = now + self.outgoing.interval
        return now, next_send

    def _ready(self, fd: int, poller: select.poll, pending: _Queue) -> None:
        if fd == self.target.sock.fileno():
            self._receive()
        elif fd == self._wakeup:
            interrupts.drain()
        elif self._splitter is not None:
            chunk = os.read(fd, CHUNK)
            pending.extend(lines_as_datagrams(self._splitter, chunk, self.outgoing.hex_input, self.target.limit))
            if not chunk:  # stdin ended: what is left of it was queued above
                poller.unregister(fd)
                self._splitter = None

    def _send(self, data: bytes) -> None:
        try:
            self._sendto(data)
        except ConnectionRefusedError:
            # With --wait, an ICMP error about an earlier datagram is reported on
            # the next call, which then sent nothing.
            if not self.datagrams_in:
                raise self._unreachable() from None
            self._sendto(data)  # replies came, so the error was stale: send again
        self.datagrams_out += 1
        self.bytes_out += len(data)
        if self.emit:
            self.sink(ev.Datagram(self.target.peer, ev.SENT, data))

    def _sendto(self, data: bytes) -> None:
        try:
            self.target.sock.sendto(data, self.target.sockaddr)  # type: ignore[call-overload]
        except ConnectionRefusedError:
            raise
        except OSError as exc:
            raise self._send_error(exc) from exc

    def _receive(self) -> None:
        try:
            n, addr = self._inbox.recvfrom(0)
        except ConnectionRefusedError:
            if self.datagrams_in:
                return  # a late ICMP error after replies: nothing to tell
            raise self._unreachable() from None
        except OSError as exc:
            raise NetworkError(f"receiving from {self.target.peer} failed", describe(exc)) from exc
        self.datagrams_in += 1
        self.bytes_in += n
        view = self._inbox.view[:n]
        if self.output_fd is not None and n:
            write_all(self.output_fd, view)
        if self.emit:
            self.sink(ev.Datagram(sockaddr_text(addr), ev.RECEIVED, bytes(view)))

    def _unreachable(self) -> NetworkError:
        return NetworkError(f"no reply from {self.target.peer}", "port unreachable", "nothing listens there")

    def _send_error(self, exc: OSError) -> NetworkError:
        what = f"cannot send to {self.target.peer}"
        if exc.errno == errno.EACCES:
            return NetworkError(what, "permission denied", "a broadcast address needs --broadcast")
        if exc.errno == errno.EMSGSIZE:
            return NetworkError(what, "message too long for this socket")
        group = self.target.sockaddr[0] if isinstance(self.target.sockaddr, tuple) else ""
        if exc.errno == errno.ENETUNREACH and is_multicast(group):
            return NetworkError(
                what,
                "network unreachable",
                "no route for this group from the interface it leaves by; IPv6 multicast does not go "
                "through loopback here: name an interface with --interface IFACE",
            )
        return NetworkError(what, describe(exc))


class _Queue:
    """Datagrams still to send: `rounds` passes over a fixed tuple, then whatever is added."""

    def __init__(self, datagrams: tuple[bytes, ...], rounds: int):
        self._items: Iterator[bytes] = (d for _ in range(rounds) for d in datagrams)
        self._extra: deque[bytes] = deque()
        self._next: bytes | None = next(self._items, None)

    def __bool__(self) -> bool:
        return self._next is not None or bool(self._extra)

    def pop(self) -> bytes:
        if self._next is not None:
            item, self._next = self._next, next(self._items, None)
            return item
        return self._extra.popleft()

    def extend(self, items: Iterable[bytes]) -> None:
        self._extra.extend(items)
