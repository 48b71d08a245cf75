"""The TCP connect scanner: many non-blocking connects in flight on one selector.

Rule: a port's state comes only from what the kernel says about a connect
to it —
  open      the handshake completed, to someone other than ourselves;
  closed    refused (RST), or a self-connect (see below);
  filtered  no answer before the timeout (after every retry), or an ICMP
            unreachable: something in the path drops or blocks it;
  error     any other failure, with its description.

A TCP self-connect: connecting to a loopback port nobody listens on, the
kernel may pick that very port as the source port, and the SYN meets
itself (simultaneous open). The socket is connected, to itself; that is a
closed port, never an open one.

Every socket is made with SO_LINGER 0, so closing a connected one sends a
reset: a scan leaves no TIME_WAIT pile behind, on either side.

Speed on Linux: a loopback refusal is already known when connect() returns,
so a second connect() on the same socket reports it at once and leaves the
socket ready to be used for the next port. Only ports without an answer yet
go to the selector and hold a descriptor; so a closed port costs two system
calls, and an open or slow one a socket of its own. Then the kernel's work
is most of a scan's cost, so big scans are shared among forked workers, one
per CPU, each running this same loop on every n-th port.
"""

from __future__ import annotations

import contextlib
import errno
import marshal
import os
import selectors
import signal
import socket
import struct
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial

from socktool.net import interrupts
from socktool.net.address import resolve
from socktool.net.errors import NetworkError, describe
from socktool.net.events import CLOSED, ERROR, FILTERED, OPEN, ScanResult, Target
from socktool.net.fdio import raise_open_file_limit

DEFAULT_CONCURRENCY = 1000
DESCRIPTOR_RESERVE = 32  # for stdio, the selector, rich's threads, a spare socket

_LINGER_RESET = struct.pack("ii", 1, 0)
# Linux lets a socket whose connect failed connect again; elsewhere a new one is made.
_REUSE_REFUSED = sys.platform.startswith("linux")
_CONNECTED = (0, errno.EISCONN)
_PENDING = (errno.EINPROGRESS, errno.EALREADY)
_UNREACHABLE = (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH)
_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


# A ScanResult without the Python-level __new__: the hot loop makes one per closed port.
_result = partial(tuple.__new__, ScanResult)


def resolve_target(host: str, family: int = socket.AF_UNSPEC) -> Target:
    """The address to scan: the first the name resolves to."""
    candidates = resolve(host, 0, family=family)
    first_family, first = candidates[0]
    return Target(host, first_family, first, tuple(sockaddr[0] for _, sockaddr in candidates[1:]))


def named_target(host: str) -> Target:
    """The target as named, not resolved here: a scan through a proxy, which connects to it."""
    return Target(host, socket.AF_UNSPEC, (host, 0))


def descriptor_budget(requested: int, reserve: int = DESCRIPTOR_RESERVE) -> tuple[int, bool]:
    """How many sockets may be in flight: (limit, whether the request was cut).

    The soft open-file limit is raised to the hard one first; the budget is
    what is left of it after the descriptors already open and a reserve.
    """
    soft = raise_open_file_limit()
    if soft is None:  # pragma: no cover - not a POSIX system
        return min(requested, 256), requested > 256
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    available = max(1, soft - in_use - reserve)
    return min(requested, available), requested > available


class _Attempt:
    __slots__ = ("deadline", "live", "port", "sock", "started", "tries")

    def __init__(self, sock: socket.socket, port: int, tries: int, started: float, deadline: float):
        self.sock = sock
        self.port = port
        self.tries = tries
        self.started = started
        self.deadline = deadline
        self.live = True


class Scanner:
    """Scan `ports` of `target`; `run()` returns one ScanResult per port, by port.

    `done` counts finished ports as the scan goes (a progress bar reads it
    from another thread).
    """

    POLL_EVERY = 0.002  # seconds of launching between two looks at the selector, while answers are awaited
    SPLIT_MIN_PORTS = 4096  # scans this big are shared among worker processes, one per CPU
    MAX_WORKERS = 4

    def __init__(
        self,
        target: Target,
        ports: list[int],
        *,
        timeout: float = 1.0,
        retries: int = 0,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.target = target
        self.ports = ports
        self.timeout = timeout
        self.retries = retries
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self.elapsed = 0.0
        self.results: list[ScanResult] = []
        self._scale = 1.0

    @property
    def done(self) -> int:
        """Ports finished so far (during a split scan, estimated from this process's share)."""
        return min(len(self.ports), int(len(self.results) * self._scale))

    def _new_socket(self) -> socket.socket:
        sock = socket.socket(self.target.family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            sock.close()
            raise
        return sock

    def _settled(self, sock: socket.socket, port: int, code: int, latency: float) -> ScanResult:
        """The result of a connect that has its answer (`code` from connect_ex)."""
        if code in _CONNECTED:
            try:
                itself = sock.getsockname()[:2] == sock.getpeername()[:2]
            except OSError as exc:  # reset between the handshake and now: it did answer
                return ScanResult(port, OPEN, latency, describe(exc))
            return ScanResult(port, CLOSED, latency, "self-connect") if itself else ScanResult(port, OPEN, latency)
        if code == errno.ECONNREFUSED:
            return ScanResult(port, CLOSED, latency, "refused")
        detail = describe(OSError(code, os.strerror(code)))
        return ScanResult(port, FILTERED if code in _UNREACHABLE else ERROR, None, detail)

    def run(self) -> list[ScanResult]:
        began = self.clock()
        try:
            workers = self._worker_count()
            if workers > 1:
                self._run_split(workers)
            else:
                self._scan(self.ports, self.concurrency)
        finally:
            self.elapsed = self.clock() - began
        self.results.sort()
        return self.results

    # -- big scans: shares scanned by forked workers -------------------------------
    def _worker_count(self) -> int:
        if len(self.ports) < self.SPLIT_MIN_PORTS or not hasattr(os, "fork"):
            return 1
        return max(1, min(self.MAX_WORKERS, os.cpu_count() or 1, self.concurrency))

    def _run_split(self, workers: int) -> None:
        """Scan every workers-th port here and the rest in forked children.

        On loopback the kernel's work per port is most of a scan's cost, and
        one process keeps one CPU busy; shares taken every n-th port have
        alike mixes of slow and fast ports. A child sends its results back
        as one marshal blob when it is done.
        """
        shares = [self.ports[index::workers] for index in range(workers)]
        share_limit = max(1, self.concurrency // workers)
        children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
        try:
            for share in shares[1:]:
                read_fd, write_fd = os.pipe()
                with warnings.catch_warnings():
                    # Python 3.12+ warns about forking with threads running (a
                    # progress bar's, say): the child runs only this loop and
                    # leaves by os._exit, touching no lock another thread holds.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
                if pid == 0:  # pragma: no cover - the child: measured by the CLI tests
                    os.close(read_fd)
                    self._child(share, share_limit, write_fd)
                os.close(write_fd)
                children.append((pid, read_fd))
            self._scale = len(self.ports) / len(shares[0])
            self._scan(shares[0], share_limit)
            while children:
                pid, read_fd = children[0]
                blob = _read_all(read_fd)
                os.close(read_fd)
                _pid, status = os.waitpid(pid, 0)
                children.pop(0)
                self._merge(blob, status)
        finally:
            self._scale = 1.0
            for pid, read_fd in children:
                os.close(read_fd)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)

    def _child(self, share: list[int], limit: int, write_fd: int) -> None:
        """A worker's whole life: scan the share, send (error, results), exit without clean-up."""
        status = 0
        interrupts.forget()  # the parent's wakeup pipe is the parent's to drain
        try:
            self.results = []
            self._scan(share, limit)
            blob = marshal.dumps((None, [tuple(result) for result in self.results]))
        except NetworkError as exc:
            blob = marshal.dumps(((exc.what, exc.detail), []))
        except BaseException:  # interrupted: the parent is being interrupted too
            blob, status = b"", 1
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(write_fd, view) :]
        except OSError:
            status = 1
        os._exit(status)

    def _merge(self, blob: bytes, status: int) -> None:
        try:
            error, results = marshal.loads(blob)
        except (EOFError, ValueError, TypeError):
            raise NetworkError("a scan worker failed", f"wait status {status}") from None
        if error is not None:
            raise NetworkError(*error)
        self.results.extend(map(_result, results))

    # -- one process's scan -------------------------------------------------------------
    def _scan(self, ports: list[int], concurrency: int) -> None:
        clock = self.clock
        self._selector = selectors.DefaultSelector()
        wakeup = interrupts.wakeup_fd()
        if wakeup is not None:  # so that a signal is never missed while waiting for answers
            self._selector.register(wakeup, selectors.EVENT_READ, None)
        self._inflight: dict[int, _Attempt] = {}  # fd → attempt waiting for its answer
        self._by_deadline: deque[_Attempt] = deque()  # one timeout for all: start order is deadline order
        self._again: deque[tuple[int, int]] = deque()  # (port, tries so far): retries, and ports put back
        self._spare: socket.socket | None = None  # an unconnected socket, ready for the next port
        self._limit = concurrency
        fresh = iter(ports)
        fresh_left = True
        try:
            while fresh_left or self._again or self._inflight:
                while self._again and len(self._inflight) < self._limit:
                    port, tries = self._again.popleft()
                    self._launch(iter((port,)), tries)
                if fresh_left and len(self._inflight) < self._limit:
                    fresh_left = not self._launch(fresh, 0)
                if self._inflight:
                    more = (fresh_left or self._again) and len(self._inflight) < self._limit
                    self._collect(0.0 if more else max(0.0, self._by_deadline[0].deadline - clock()))
                    self._expire()
        finally:
            if self._spare is not None:
                self._spare.close()
            for attempt in self._inflight.values():
                attempt.sock.close()
            self._selector.close()

    def _launch(self, ports: Iterator[int], tries: int) -> bool:
        """Connect to ports from the iterator until the window is full, or, while
        answers are awaited, POLL_EVERY has passed. True when the iterator ran out.

        The hot loop of a scan: a refused port is settled here with two connect
        calls on a reused socket, and never reaches the selector.
        """
        clock, record, inflight = self.clock, self.results.append, self._inflight
        host, tail = self.target.template[0], self.target.template[2:]
        room = self._limit - len(inflight)
        poll_at = clock() + self.POLL_EVERY
        spare = self._spare
        try:
            for port in ports:
                if spare is None:
                    try:
                        spare = self._new_socket()
                    except OSError as exc:
                        if exc.errno not in _NO_DESCRIPTORS or not inflight:
                            raise NetworkError("cannot open a socket", describe(exc)) from exc
                        self._again.appendleft((port, tries))
                        self._limit = len(inflight)  # out of descriptors after all: fewer at once
                        return False
                addr = (host, port, *tail)
                started = clock()
                code = spare.connect_ex(addr)
                if code == errno.EINPROGRESS:
                    code = spare.connect_ex(addr)  # what the kernel knows already
                if code == errno.ECONNREFUSED:
                    record(_result((port, CLOSED, clock() - started, "refused")))
                    if not _REUSE_REFUSED:
                        spare.close()
                        spare = None
                elif code in _PENDING:
                    attempt = _Attempt(spare, port, tries, started, started + self.timeout)
                    self._selector.register(spare, selectors.EVENT_WRITE, attempt)
                    inflight[spare.fileno()] = attempt
                    self._by_deadline.append(attempt)
                    spare = None
                    room -= 1
                    if room <= 0:
                        return False
                else:
                    record(self._settled(spare, port, code, clock() - started))
                    spare.close()
                    spare = None
                if inflight and started >= poll_at:
                    return False
            return True
        finally:
            self._spare = spare

    def _collect(self, wait: float) -> None:
        """Settle the ports whose answer has come, waiting up to `wait` for one."""
        for key, _events in self._selector.select(wait):
            attempt = key.data
            if attempt is None:
                interrupts.drain()
                continue
            sock = attempt.sock
            code = sock.connect_ex(self.target.sockaddr(attempt.port))
            if code in _PENDING:
                continue  # woken early: still connecting
            latency = self.clock() - attempt.started
            self._forget(attempt)
            self.results.append(self._settled(sock, attempt.port, code, latency))
            sock.close()

    def _expire(self) -> None:
        """Give up on the attempts past their deadline: try again, or call the port filtered."""
        now = self.clock()
        by_deadline = self._by_deadline
        while by_deadline and by_deadline[0].deadline <= now:
            attempt = by_deadline.popleft()
            if not attempt.live:
                continue
            self._forget(attempt)
            attempt.sock.close()
            if attempt.tries < self.retries:
                self._again.append((attempt.port, attempt.tries + 1))
            else:
                self.results.append(ScanResult(attempt.port, FILTERED, None, "no answer"))

    def _forget(self, attempt: _Attempt) -> None:
        attempt.live = False
        self._selector.unregister(attempt.sock)
        del self._inflight[attempt.sock.fileno()]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)
