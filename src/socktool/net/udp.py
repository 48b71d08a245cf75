"""UDP and unix datagram sockets: what udp-send and udp-listen share, and udp-listen.

Rules:
- A datagram goes out exactly as given, never split and never cut: more than
  MAX_DATAGRAM bytes is the caller's mistake (UsageError), found before any
  byte of it is sent.
- The receiving socket stays unconnected: it hears any number of peers, and a
  reply goes to the address each datagram came from.
- The raw receive loop (payload to a file descriptor, nothing else asked of
  it) touches no Python object per datagram beyond a memoryview and two
  counters.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

from socktool.framing import MAX_DATAGRAM, MAX_DATAGRAM_IPV6
from socktool.net import events as ev
from socktool.net import interrupts, sockets
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.errors import NetworkError, TimedOut, UsageError, describe, output_error
from socktool.net.fdio import write_all
from socktool.net.multicast import Interface, join_groups
from socktool.net.sockets import BoundSocket
from socktool.values import format_duration

BytesT = TypeVar("BytesT", bytes, bytearray)
RECEIVE_BUFFER = 8 * 1024 * 1024  # the receive queue we ask for: bursts wait instead of being dropped
INET_BUFFER = 65_536  # no UDP payload is larger
UNIX_BUFFER = 256 * 1024  # unix datagrams may be larger, up to the sender's SO_SNDBUF

_SO_SNDBUFFORCE = 32  # Linux; the socket module does not export them
_SO_RCVBUFFORCE = 33


class DatagramBuffer:
    """A receive buffer no datagram overflows: `recv(flags)` / `recvfrom(flags)` fill
    `view` with one whole datagram and return its size (and source).

    An internet datagram fits 64 KiB. A unix one is as large as its sender's
    send buffer lets it be (hundreds of KiB, more for root), so on a unix
    socket the next datagram's size is peeked first (MSG_PEEK | MSG_TRUNC)
    and the buffer grows to hold it: never a silent cut. Internet sockets
    pay nothing for this: their calls are the socket's own.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        unix = sock.family == socket.AF_UNIX
        self.buffer = bytearray(UNIX_BUFFER if unix else INET_BUFFER)
        self.view = memoryview(self.buffer)
        self.recv: Callable[[int], int]
        self.recvfrom: Callable[[int], tuple[int, Any]]
        if unix:
            self._probe = bytearray(1)
            self.recv = self._recv_whole
            self.recvfrom = self._recvfrom_whole
        else:
            self.recv = functools.partial(sock.recv_into, self.buffer, 0)
            self.recvfrom = functools.partial(sock.recvfrom_into, self.buffer, 0)

    def _fit(self, flags: int) -> None:
        size = self.sock.recv_into(self._probe, 1, flags | socket.MSG_PEEK | socket.MSG_TRUNC)
        if size > len(self.buffer):
            self.buffer = bytearray(size)
            self.view = memoryview(self.buffer)

    def _recv_whole(self, flags: int = 0) -> int:
        self._fit(flags)
        return self.sock.recv_into(self.buffer, 0, flags)

    def _recvfrom_whole(self, flags: int = 0) -> tuple[int, Any]:
        self._fit(flags)
        return self.sock.recvfrom_into(self.buffer, 0, flags)


def max_datagram(family: int) -> int:
    """The largest payload one datagram of this family carries."""
    return MAX_DATAGRAM_IPV6 if family == socket.AF_INET6 else MAX_DATAGRAM


def check_size(data: BytesT, what: str = "datagram", limit: int = MAX_DATAGRAM) -> BytesT:
    if len(data) > limit:
        raise UsageError(
            f"{what} too large",
            # stdin is read until it passes the limit: what was read is a lower bound
            f"{'at least ' if what == 'stdin' else ''}{len(data):,} bytes; one UDP datagram holds at most {limit:,}",
            "split it, e.g. with --lines" if what != "line" else None,
        )
    return data


def widen_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> None:
    """Ask for a deep receive queue so a burst waits instead of being dropped. Best effort."""
    _widen(sock, (_SO_RCVBUFFORCE, socket.SO_RCVBUF), size)


def widen_send_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> None:
    """On a unix datagram socket the send buffer bounds the largest datagram: make room
    to answer any datagram a sender could send. Best effort."""
    _widen(sock, (_SO_SNDBUFFORCE, socket.SO_SNDBUF), size)


def _widen(sock: socket.socket, options: tuple[int, int], size: int) -> None:
    for option in options:  # FORCE passes rmem_max / wmem_max, for root
        if option in (_SO_RCVBUFFORCE, _SO_SNDBUFFORCE) and sys.platform != "linux":
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return
        except OSError:
            continue


# -- udp-listen ------------------------------------------------------------------------
def bind(
    endpoint: Endpoint,
    *,
    family: int = socket.AF_UNSPEC,
    groups: tuple[str, ...] = (),
    interface: str | None = None,
) -> BoundSocket:
    """The receiving socket: bound, joined to its groups, with a deep receive queue.

    SO_REUSEADDR is set only with groups (several receivers of one group on a
    host is normal); otherwise a port another process holds is an error, as
    it would not be for UDP if both set it.
    """
    if endpoint.is_unix:
        if groups:
            raise UsageError("--group needs a UDP address, not unix:")
        listener = sockets.bind(endpoint, kind=socket.SOCK_DGRAM)
    else:
        if groups:
            family = _group_family(endpoint, family, groups)
        listener = sockets.bind(endpoint, family=family, kind=socket.SOCK_DGRAM, reuse_addr=bool(groups))
    try:
        widen_receive_buffer(listener.sock)
        if groups:
            join_groups(listener.sock, groups, Interface.find(interface))
    except BaseException:
        listener.close()
        raise
    return listener


@contextlib.contextmanager
def listening(
    endpoint: Endpoint,
    *,
    family: int = socket.AF_UNSPEC,
    groups: tuple[str, ...] = (),
    interface: str | None = None,
    sink: ev.Sink = ev.ignore,
) -> Iterator[BoundSocket]:
    """udp-listen's socket (see `bind`), announced to `sink` (Listening, each group joined);
    closed, and a unix socket file removed, when the block ends however it ends."""
    with bind(endpoint, family=family, groups=groups, interface=interface) as listener:
        sink(ev.Listening(listener.address, "unix datagram" if listener.path else "udp"))
        for joined in groups:
            sink(ev.Notice(f"joined multicast group {joined} on {interface or 'the loopback interface'}"))
        yield listener


def _group_family(endpoint: Endpoint, family: int, groups: tuple[str, ...]) -> int:
    """The family to bind for these groups; multicast reaches only a wildcard (or group) bind."""
    host = endpoint.host
    if host is not None and host not in ("0.0.0.0", "::") and host not in groups:
        raise UsageError(
            f"--group with {endpoint}",
            "a socket bound to a unicast address does not receive multicast",
            f"listen on the port alone, e.g. {endpoint.port}",
        )
    versions = {ipaddress.ip_address(group).version for group in groups}
    if family == socket.AF_INET and 6 in versions:
        raise UsageError("-4 with an IPv6 --group")
    if family == socket.AF_INET6 and 4 in versions:
        raise UsageError("-6 with an IPv4 --group")
    if host is None and family == socket.AF_UNSPEC and len(versions) == 1:
        family = socket.AF_INET if versions == {4} else socket.AF_INET6
    return family


class ListenOptions(NamedTuple):
    reply: bytes | None = None  # --reply: sent to each sender
    echo: bool = False  # --echo: each datagram sent back
    count: int | None = None  # type: ignore[assignment]  # stop after this many datagrams (shadows tuple.count)
    timeout: float | None = None  # stop after this long without one
    output_fd: int | None = 1  # raw payload goes here; None when a view draws it
    emit: bool = False  # Datagram events, for a view or --json


class DatagramCounters:
    """Datagrams and bytes each way since `started`, and the Stats event that reports them."""

    def __init__(self) -> None:
        self.datagrams_in = self.bytes_in = 0
        self.datagrams_out = self.bytes_out = 0
        self.started = time.monotonic()

    def stats(self) -> ev.Stats:
        return ev.Stats(
            sent=self.bytes_out,
            received=self.bytes_in,
            duration=time.monotonic() - self.started,
            datagrams_in=self.datagrams_in,
            datagrams_out=self.datagrams_out,
        )


class Receiver(DatagramCounters):
    """Receives datagrams on a bound socket until the count, the timeout or an interrupt.

    The caller owns the listener and closes it (a `with` block), so that an
    interrupt at any moment still removes a unix socket file.
    """

    def __init__(self, listener: BoundSocket, options: ListenOptions, sink: ev.Sink = ev.ignore):
        self.listener = listener
        self.sock = listener.sock
        self.options = options
        self.sink = sink
        super().__init__()
        self._warned: set[str] = set()
        self._inbox = DatagramBuffer(self.sock)

    def serve(self) -> None:
        """Raises TimedOut when --timeout passes with nothing (or less than --count) received."""
        opts = self.options
        try:
            if (
                opts.output_fd is not None
                and not opts.emit
                and opts.reply is None
                and not opts.echo
                and opts.count is None
                and opts.timeout is None
            ):
                self._raw_loop(opts.output_fd)
            else:
                self._loop()
        finally:
            self.sink(self.stats())

    def _raw_loop(self, fd: int) -> None:
        """The pipe path: one recv and one write per datagram, counters in locals."""
        inbox, write = self._inbox, os.write
        recv = inbox.recv
        count = total = 0
        waiter = interrupts.Waiter(self.sock.fileno())
        try:
            while True:
                try:  # a burst is read without a poll per datagram; an empty queue waits in wait()
                    n = recv(socket.MSG_DONTWAIT)
                except BlockingIOError:
                    waiter.wait()
                    continue
                if n:
                    view = inbox.view  # a unix socket's buffer grows for a large datagram
                    try:
                        written = write(fd, view[:n])
                    except OSError as exc:
                        raise output_error(exc) from exc
                    if written != n:  # rare: a signal in the middle of a write
                        write_all(fd, view[written:n])
                count += 1
                total += n
        except OSError as exc:
            raise NetworkError(f"receiving on {self.listener.address} failed", describe(exc)) from exc
        finally:
            self.datagrams_in += count
            self.bytes_in += total

    def _loop(self) -> None:
        opts, sock, inbox = self.options, self.sock, self._inbox
        deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
        waiter = interrupts.Waiter(sock.fileno())
        while opts.count is None or self.datagrams_in < opts.count:
            if not waiter.wait(None if deadline is None else deadline - time.monotonic()):
                self._timed_out()
                return
            try:
                n, addr = inbox.recvfrom(0)
            except OSError as exc:
                raise NetworkError(f"receiving on {self.listener.address} failed", describe(exc)) from exc
            view = inbox.view
            self.datagrams_in += 1
            self.bytes_in += n
            if deadline is not None:
                deadline = time.monotonic() + opts.timeout  # type: ignore[operator]
            if opts.output_fd is not None and n:
                write_all(opts.output_fd, view[:n])
            data = bytes(view[:n]) if opts.emit or opts.echo else b""
            peer = sockaddr_text(addr) if opts.emit or opts.reply is not None or opts.echo else ""
            if opts.emit:
                self.sink(ev.Datagram(peer, ev.RECEIVED, data))
            if opts.echo:
                self._answer(addr, peer, data)
            elif opts.reply is not None:
                self._answer(addr, peer, opts.reply)

    def _timed_out(self) -> None:
        opts = self.options
        waited = format_duration(opts.timeout or 0)
        if self.datagrams_in == 0:
            raise TimedOut(f"no datagram arrived on {self.listener.address} within {waited}")
        if opts.count is not None:
            raise TimedOut(
                f"only {self.datagrams_in} of {opts.count} datagrams arrived on {self.listener.address}",
                f"nothing more within {waited}",
            )
        self.sink(ev.Notice(f"nothing for {waited}; stopping"))

    def _answer(self, addr: object, peer: str, data: bytes) -> None:
        if not addr:
            self._warn_once("unnamed", f"cannot answer {peer}: an unbound unix socket has no address to reply to")
            return
        try:
            self.sock.sendto(data, addr)  # type: ignore[call-overload]
        except OSError as exc:
            self._warn_once(f"{peer} {exc.errno}", f"cannot answer {peer}: {describe(exc)}")
            return
        self.datagrams_out += 1
        self.bytes_out += len(data)
        if self.options.emit:
            self.sink(ev.Datagram(peer, ev.SENT, data))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.sink(ev.Notice(message, warning=True))
