"""What the built-in servers (echo, time-server) share: one port bound for TCP
and UDP at once, the open-file limit, and an accept loop that survives
running out of descriptors.

Rule: a server never dies or spins for lack of descriptors. When accept fails
with EMFILE (or ENFILE, ENOBUFS, ENOMEM) the listener is taken out of the
selector, so the pending connection does not wake the loop again and again,
and it is put back as soon as a client leaves (or after a short pause, in
case a descriptor was freed some other way). The clients waiting meanwhile
stay in the kernel's accept queue and are served then.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Callable

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.address import Endpoint, sockaddr_text
from socktool.net.errors import BindError, NetworkError, UsageError, describe
from socktool.net.tcp import Listener, listen
from socktool.net.udpguard import LoopGuard

# The kernel caps this at net.core.somaxconn; a thousand clients connecting
# at once must not have their SYNs dropped (a one-second retry each).
BACKLOG = 4096
ACCEPT_BATCH = 128  # accepts per wake-up, so a flood of clients cannot starve the others
RETRY_PAUSED = 1.0  # seconds before trying accept again when no client has left
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Failures that concern only the connection being accepted (it left already).
CLIENT_GONE = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.EINTR,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
    }
)


def bind_service(endpoint: Endpoint, *, family: int, tcp: bool, udp: bool) -> tuple[Listener | None, Listener | None]:
    """Bind the TCP listener and the UDP socket of a service on one port, non-blocking.

    With port 0 the UDP socket takes the port TCP got (trying again with a new
    port if that one is taken for UDP), so one number serves both. The UDP
    socket is bound without SO_REUSEADDR: with it, anyone on the host could
    bind the same port and take the clients' datagrams.
    """
    if endpoint.is_unix and tcp and udp:
        raise UsageError(
            f"cannot serve TCP and UDP on {endpoint}",
            "a unix socket is one or the other",
            "add --tcp-only or --udp-only",
        )
    attempts = 10 if endpoint.port == 0 and tcp and udp else 1
    for attempt in range(attempts):
        stream = listen(endpoint, family=family, backlog=BACKLOG) if tcp else None
        try:
            port = stream.port if stream is not None and not endpoint.is_unix else endpoint.port
            dgram = (
                listen(endpoint._replace(port=port), family=family, kind=socket.SOCK_DGRAM, reuse_addr=False)
                if udp
                else None
            )
        except BindError:
            if stream is not None:
                stream.close()
            if attempt + 1 < attempts:
                continue
            raise
        for listener in (stream, dgram):
            if listener is not None:
                listener.sock.setblocking(False)
        return stream, dgram
    raise AssertionError("unreachable")  # pragma: no cover


def peer_text(listener: Listener, addr: object) -> str:
    return sockaddr_text(addr) if listener.path is None else "unix:(client)"


class Acceptor:
    """Accepts clients of a non-blocking listener registered in a selector.

    `accept()` hands each client waiting now (at most ACCEPT_BATCH) to
    `handle`; out of descriptors, it warns once and stops watching the
    listener. `client_left()` and `tick()` put the listener back.
    """

    def __init__(self, listener: Listener, selector: selectors.BaseSelector, data: object, sink: ev.Sink):
        self.listener = listener
        self.selector = selector
        self.data = data
        self.sink = sink
        self.paused_until: float | None = None  # monotonic time of the next retry while paused
        self._warned = False
        selector.register(listener.sock, selectors.EVENT_READ, data)

    def accept(self, now: float, handle: Callable[[socket.socket, object], None]) -> None:
        sock = self.listener.sock
        for _ in range(ACCEPT_BATCH):
            try:
                client, addr = sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._pause(now, exc)
                    return
                if exc.errno in CLIENT_GONE:
                    continue
                raise NetworkError(f"accept on {self.listener.address} failed", describe(exc)) from exc
            handle(client, addr)

    def _pause(self, now: float, exc: OSError) -> None:
        if self.paused_until is None:
            self.selector.unregister(self.listener.sock)
        self.paused_until = now + RETRY_PAUSED
        if not self._warned:
            self._warned = True
            self.sink(
                ev.Notice(
                    f"cannot accept more clients on {self.listener.address}: {describe(exc)}; "
                    "new clients wait until one leaves (raise 'ulimit -n' to serve more)",
                    warning=True,
                )
            )

    def client_left(self) -> None:
        if self.paused_until is not None:
            self._resume()

    def tick(self, now: float) -> None:
        if self.paused_until is not None and now >= self.paused_until:
            self._resume()

    def _resume(self) -> None:
        self.paused_until = None
        self.selector.register(self.listener.sock, selectors.EVENT_READ, self.data)


ACCEPT = "accept"  # selector data of the TCP listener
DATAGRAMS = "datagrams"  # selector data of the UDP socket
WAKEUP = "wakeup"  # selector data of the interrupts' wakeup pipe: drain it and go on


class TcpUdpService:
    """What echo and time-server share: TCP and UDP listeners on one selector,
    the counters their totals report, and closing both listeners once."""

    def __init__(self, tcp: Listener | None, udp: Listener | None, sink: ev.Sink):
        self.tcp = tcp
        self.udp = udp
        self.sink = sink
        self.selector = selectors.DefaultSelector()
        self.acceptor = Acceptor(tcp, self.selector, ACCEPT, sink) if tcp is not None else None
        self.loop_guard: LoopGuard | None = None
        if udp is not None:
            self.selector.register(udp.sock, selectors.EVENT_READ, DATAGRAMS)
            own_ports = (udp.port, tcp.port if tcp is not None else 0)
            self.loop_guard = LoopGuard(udp.address, own_ports, sink)
        wakeup = interrupts.wakeup_fd()
        if wakeup is not None:  # so that a signal is never missed while the loop waits
            self.selector.register(wakeup, selectors.EVENT_READ, WAKEUP)
        self.started = time.monotonic()
        self.connections = 0
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.sent = 0
        self.received = 0
        self._closed = False

    def totals(self) -> ev.Stats:
        return ev.Stats(
            self.sent,
            self.received,
            time.monotonic() - self.started,
            self.connections,
            self.datagrams_in,
            self.datagrams_out,
            self.loop_guard.dropped if self.loop_guard is not None else 0,
        )

    def close_listeners(self) -> None:
        for listener in (self.tcp, self.udp):
            if listener is not None:
                listener.close()
        self.selector.close()


def close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
