"""Waiting for endpoints to accept TCP connections (or, inverted, to stop).

Rule: an endpoint is "up" when a connect to it completes, to any of the
addresses its name resolves to; anything else — refused, no answer within
the attempt timeout, a name that does not resolve yet — is "not up", and
is tried again every interval until the deadline. Each endpoint is watched
by its own thread, so one that hangs in a connect or a DNS lookup does not
hold up the others.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from socktool.net import tcp
from socktool.net.address import Endpoint
from socktool.net.errors import NetworkError
from socktool.net.events import Ready

MIN_ATTEMPT_TIMEOUT = 1.0  # a connect gets at least this long to complete, whatever the interval
WAIT_SLICE = 0.1  # the main thread waits in slices: a signal landing just before a wait is seen by the next


class Probe(NamedTuple):
    up: bool
    detail: str  # why not up ("connection refused", ...), "" when up


def probe(endpoint: Endpoint, *, family: int = socket.AF_UNSPEC, timeout: float = MIN_ATTEMPT_TIMEOUT) -> Probe:
    """Try one connect and close it at once."""
    try:
        sock = tcp.connect(endpoint, family=family, timeout=timeout)
    except NetworkError as exc:
        return Probe(False, exc.detail or exc.what)
    sock.close()
    return Probe(True, "")


class Waiter:
    """Probe every endpoint until each is in the wanted state, or the timeout passes.

    `run()` returns True when all got there in time. `on_ready` is called
    (from a watcher thread) for each endpoint as it gets there; `last`
    holds, for each one that has not, the last reason it was not.
    """

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        interval: float = 0.25,
        timeout: float = 30.0,
        invert: bool = False,
        family: int = socket.AF_UNSPEC,
        on_ready: Callable[[Ready], None] = lambda ready: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.endpoints = list(dict.fromkeys(endpoints))
        self.interval = interval
        self.timeout = timeout
        self.invert = invert
        self.family = family
        self.on_ready = on_ready
        self.clock = clock
        self.last: dict[Endpoint, str] = {endpoint: "not tried yet" for endpoint in self.endpoints}
        self._lock = threading.Lock()
        self._all_ready = threading.Event()
        self._stop = threading.Event()

    @property
    def waiting_for(self) -> list[Endpoint]:
        with self._lock:
            return list(self.last)

    def run(self) -> bool:
        self._began = self.clock()
        self._deadline = self._began + self.timeout
        watchers = [
            threading.Thread(target=self._watch, args=(endpoint,), name=f"wait {endpoint}", daemon=True)
            for endpoint in self.endpoints
        ]
        for watcher in watchers:
            watcher.start()
        try:
            while not self._all_ready.is_set() and (left := self._deadline - self.clock()) > 0:
                self._all_ready.wait(min(left, WAIT_SLICE))
        finally:
            self._stop.set()  # watchers still probing give up at their next step
        with self._lock:
            return not self.last

    def _watch(self, endpoint: Endpoint) -> None:
        attempt_timeout = max(self.interval, MIN_ATTEMPT_TIMEOUT)
        while not self._stop.is_set():
            started = self.clock()
            remaining = self._deadline - started
            if remaining <= 0:
                return
            result = probe(endpoint, family=self.family, timeout=min(attempt_timeout, remaining))
            if result.up != self.invert:
                self._arrived(Ready(endpoint, self.clock() - self._began, result.detail))
                return
            with self._lock:
                self.last[endpoint] = result.detail or "accepting connections"
            pause = min(self.interval - (self.clock() - started), self._deadline - self.clock())
            if pause > 0 and self._stop.wait(pause):
                return

    def _arrived(self, ready: Ready) -> None:
        if self._stop.is_set():
            return
        with self._lock:
            del self.last[ready.endpoint]
            done = not self.last
        self.on_ready(ready)
        if done:
            self._all_ready.set()
