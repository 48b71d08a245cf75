"""forward's accept loop, until forward runs on the loop (net/loop.py, whose
Acceptor is the one every other server uses).

Rule: a server never dies or spins for lack of descriptors. When accept fails
with EMFILE (or ENFILE, ENOBUFS, ENOMEM) the listener is taken out of the
selector, so the pending connection does not wake the loop again and again,
and it is put back as soon as a client leaves (or after a short pause, in
case a descriptor was freed some other way). The clients waiting meanwhile
stay in the kernel's accept queue and are served then.
"""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable

from socktool.net import events as ev
from socktool.net.errors import NetworkError, describe
from socktool.net.loop import ACCEPT_BATCH, CLIENT_GONE, OUT_OF_DESCRIPTORS, RETRY_PAUSED
from socktool.net.tcp import Listener


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
