"""Signals that are never lost: SIGINT and SIGTERM end every wait of the main thread.

Two ways a signal can go unnoticed in Python, and the cure for each:

- Python runs a handler in the main thread only. A signal the kernel hands to
  another thread merely sets a flag, and a main thread blocked in poll() or
  accept() would not see it. `install` starts every thread with SIGINT and
  SIGTERM blocked, so the kernel delivers them to the main thread.
- Python runs a handler between two bytecodes. A signal that lands after the
  last check and before a blocking system call (recv, accept, poll, splice)
  only sets the flag, and the call then blocks as if nothing had happened:
  `kill` right after a datagram left udp-listen waiting for the next one.
  `install` makes the C handler also write a byte into a pipe
  (signal.set_wakeup_fd), and every blocking wait of the main thread watches
  that pipe too: a `Waiter` here, or a selector given `wakeup_fd()`. The
  byte wakes the wait; back in Python the handler runs and raises
  (KeyboardInterrupt, Terminated) from the wait. Reads and writes that could
  block go non-blocking first and wait in a Waiter only when they must.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator

from socktool.net.errors import Terminated

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_wakeup = -1  # read end of the wakeup pipe, once installed
_main = threading.main_thread().ident
_held: list[int] | None = None  # signals that came inside `held()`, while one is open
_on_sigint: list[Callable[[], None]] = []  # told before KeyboardInterrupt is raised


def install() -> None:
    """The handlers (SIGTERM raises Terminated, SIGINT KeyboardInterrupt), SIGINT/SIGTERM
    routed to the main thread, and the wakeup pipe. Call it from the main thread."""
    global _wakeup
    if threading.get_ident() != _main:
        return
    signal.signal(signal.SIGTERM, _raise_for)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started ignoring it (`cmd &`)
        signal.signal(signal.SIGINT, _raise_for)
    _signals_to_the_main_thread()
    if _wakeup >= 0:
        return
    read_end, write_end = os.pipe()  # close-on-exec: no child inherits it
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)  # set_wakeup_fd requires it; a full pipe is already awake
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    _wakeup = read_end


def on_sigint(callback: Callable[[], None]) -> None:
    """Have `callback` called (in the main thread) when SIGINT comes, before it is raised."""
    if callback not in _on_sigint:
        _on_sigint.append(callback)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, for a few calls that must not be cut
    in half: a process started is a process the caller has noted, so it can end it."""
    global _held
    if threading.get_ident() != _main or _held is not None:
        yield
        return
    _held = []
    try:
        yield
    finally:
        came, _held = _held, None
        if came:
            _raise_for(came[0], None)


def _raise_for(signum: int, frame: object) -> None:
    if _held is not None:
        _held.append(signum)
    elif signum == signal.SIGTERM:
        raise Terminated()
    else:
        for callback in _on_sigint:
            callback()
        raise KeyboardInterrupt


def wakeup_fd() -> int | None:
    """The pipe a signal writes to, for a wait in the main thread; None in any other thread.

    A selector or poller that registers it must call `drain` when it is
    readable and go on waiting (the handler ran and did not raise).
    """
    if _wakeup < 0 or threading.get_ident() != _main:
        return None
    return _wakeup


def forget() -> None:
    """In a forked child: leave the parent's wakeup pipe alone."""
    global _wakeup
    if _wakeup >= 0:
        signal.set_wakeup_fd(-1)
        _wakeup = -1


def drain() -> None:
    try:
        os.read(_wakeup, 4096)
    except OSError:
        pass


class Waiter:
    """Waits for one descriptor, again and again (one poll object for a whole loop).

    `wait` returns True when `fd` is ready for `events` (an error or hang-up
    counts) and False when `timeout` passed; a signal's handler raises from
    it, whenever the signal came.
    """

    def __init__(self, fd: int, events: int = select.POLLIN):
        self._poller = select.poll()
        self._poller.register(fd, events)
        self._wakeup = wakeup_fd()
        if self._wakeup is not None:
            self._poller.register(self._wakeup, select.POLLIN)

    def wait(self, timeout: float | None = None) -> bool:
        poll, wakeup = self._poller.poll, self._wakeup
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = poll(None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000)
            if _ready(ready, wakeup):
                return True
            if ready:
                drain()  # a signal whose handler did not raise: keep waiting
            elif deadline is not None and time.monotonic() >= deadline:
                return False

    def wait_ready(self) -> None:
        """Before a blocking call on the descriptor: in the main thread, wait for it here;
        in any other thread return at once and let the call wait (no signal is
        delivered there, so there is nothing to miss)."""
        if self._wakeup is not None:
            self.wait()


def wait(fd: int, events: int = select.POLLIN, timeout: float | None = None) -> bool:
    """Waiter(fd, events).wait(timeout), for a single wait."""
    return Waiter(fd, events).wait(timeout)


def _ready(ready: list[tuple[int, int]], wakeup: int | None) -> bool:
    return any(fd != wakeup for fd, _mask in ready)


def _signals_to_the_main_thread() -> None:
    """Start every thread with SIGINT and SIGTERM blocked, so the kernel delivers them to the main thread."""
    start = threading.Thread.start
    if getattr(start, "signals_blocked", False) or not hasattr(signal, "pthread_sigmask"):
        return

    def start_with_signals_blocked(self: threading.Thread) -> None:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            start(self)  # the new thread inherits the blocked mask
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    start_with_signals_blocked.signals_blocked = True  # type: ignore[attr-defined]
    threading.Thread.start = start_with_signals_blocked  # type: ignore[method-assign]
