"""Waiting for endpoints to pass their check (or, inverted, to fail it).

Rule: an endpoint is "up" when one probe of it passes its check (net/probe:
a connect that completes, to any of the addresses its name resolves to,
and, when asked, the right answer); anything else — refused, no answer
within the attempt timeout, the wrong answer, a name that does not resolve
yet — is "not up", and it is tried again every interval until the deadline.
The reason for the last failure is kept for each endpoint. A try gets
max(interval, 1s); after a try that connected but whose answer was not all
there in time, the next one gets twice as long, up to 8s (an sshd that looks
up the client's name before its banner, a health check that takes 2 s),
so a slow service is found rather than timed out at every try.

Rule: an endpoint that comes up is seen up within one interval of it, as
long as the machine runs this loop within the headroom below of when it
should. Tries of an endpoint are due on a fixed grid on the monotonic clock
(next_due), not an interval after the last try happened to start (that
carried each try's lateness into the next), and the grid's step is a
little under the interval (try_period): the headroom takes up the loop's
lateness (epoll rounds its timeout up to a millisecond; a busy machine runs
the loop late) and the time from a connect to its report. The endpoints'
grids are spread over one step (first_due), so that 500 endpoints are not
all probed in one burst at every step, the last of them a burst late.

Probes run on one selector (net/probe.Prober), at most `budget` at once:
the descriptors they may hold, as portscan's budget is found. An endpoint
whose probe cannot start for lack of a descriptor is "not up yet" and
waits its turn; endpoints take turns in the order they fell due, so one
that hangs in a connect does not starve the others. Names (not literal
addresses) are resolved in a few helper threads, so a slow DNS lookup does
not hold up the others either.
"""

from __future__ import annotations

import heapq
import ipaddress
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from socktool.net.address import Endpoint, resolve
from socktool.net.errors import NetworkError
from socktool.net.events import Ready
from socktool.net.probe import Check, Outcome, Prober, Target, next_due

if TYPE_CHECKING:
    from concurrent.futures import Future

MIN_ATTEMPT_TIMEOUT = 1.0  # a probe gets at least this long to complete, whatever the interval
MAX_ATTEMPT_TIMEOUT = 8.0  # ... and after tries that were answered too slowly, up to this long
WAIT_SLICE = 0.1  # the loop looks at the clock at least this often
RESOLVING_SLICE = 0.02  # ... and this often while a name is being resolved
RESOLVER_THREADS = 4
HEADROOM_SHARE = 0.04  # of the interval, at most HEADROOM_MAX: how much sooner than one interval
HEADROOM_MAX = 0.010  # after a try the next one is due (room for the loop's own lateness)
NOT_TRIED = "not tried yet"
OUT_OF_DESCRIPTORS = "out of file descriptors; retrying"


def try_period(interval: float) -> float:
    """How far apart the tries of one endpoint are due: the interval less the headroom."""
    return interval - min(interval * HEADROOM_SHARE, HEADROOM_MAX)


def first_due(began: float, period: float, index: int, count: int) -> float:
    """Where the first try of endpoint `index` of `count` sits on its grid. Every endpoint
    is tried at `began`; the grids are spread evenly over the step before it, so each
    endpoint's second try comes within one step of the first and the loop then starts a
    few probes at a time rather than all of them at every step."""
    return began - period * (count - 1 - index) / count


class Watch(NamedTuple):
    """One endpoint to wait for: where, how to check it, and how to name it."""

    endpoint: Endpoint
    check: Check = Check()
    label: str = ""  # as the user wrote it (a URL); str(endpoint) when empty

    @property
    def name(self) -> str:
        return self.label or str(self.endpoint)


class _State:
    __slots__ = ("attempt_timeout", "due", "resolving", "target", "watch")

    def __init__(self, watch: Watch, attempt_timeout: float):
        self.watch = watch
        self.attempt_timeout = attempt_timeout  # how long the next try may take
        self.due = 0.0  # where the try being made (or the next) sits on the endpoint's grid
        self.target: Target | None = None
        self.resolving: Future[Target] | None = None


class Waiter:
    """Probe every endpoint until each is in the wanted state, or the timeout passes.

    `run()` returns True when all got there in time. `on_ready` is called
    for each endpoint as it gets there; `last` holds, for each one that has
    not, the last reason it was not.
    """

    def __init__(
        self,
        watches: list[Watch],
        *,
        interval: float = 0.25,
        timeout: float = 30.0,
        invert: bool = False,
        family: int = socket.AF_UNSPEC,
        budget: int = 1000,
        on_ready: Callable[[Ready], None] = lambda ready: None,
        on_miss: Callable[[str, str], None] = lambda name, reason: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.watches = list(dict.fromkeys(watches))
        self.interval = interval
        self.period = try_period(interval)
        self.timeout = timeout
        self.invert = invert
        self.family = family
        self.budget = max(1, budget)
        self.on_ready = on_ready
        self.on_miss = on_miss  # (endpoint, why) after each attempt that did not get there (-v)
        self.clock = clock
        self.last: dict[str, str] = {watch.name: NOT_TRIED for watch in self.watches}
        self._resolver: _Resolver | None = None

    @property
    def waiting_for(self) -> list[str]:
        return list(self.last)

    def run(self) -> bool:
        began = self.clock()
        deadline = began + self.timeout
        states = [_State(watch, max(self.interval, MIN_ATTEMPT_TIMEOUT)) for watch in self.watches]
        queue: list[tuple[float, int]] = []  # (when, index): who probes next
        for index, state in enumerate(states):
            state.due = first_due(began, self.period, index, len(states))
            queue.append((began, index))
        prober = Prober(self.clock)
        resolving: list[int] = []

        def later(index: int, when: float) -> None:
            states[index].due = when
            heapq.heappush(queue, (when, index))

        try:
            while self.last and (now := self.clock()) < deadline:
                for index in list(resolving):
                    if self._resolved(states[index]):
                        resolving.remove(index)
                        later(index, now if states[index].target else now + self.period)
                while queue and queue[0][0] <= now and prober.in_flight < self.budget:
                    _when, index = heapq.heappop(queue)
                    state = states[index]
                    if state.target is None:
                        self._resolve(state)
                        if state.resolving is not None:
                            resolving.append(index)
                            continue
                        if state.target is None:  # the name does not resolve: try again later
                            later(index, now + self.period)
                            continue
                    probe_deadline = min(self.clock() + state.attempt_timeout, deadline)
                    cut = probe_deadline == deadline
                    done = self._done_callback(state, began, later, index, cut_at=deadline if cut else None)
                    if not prober.start(state.target, state.watch.check, probe_deadline, done):
                        self.last[state.watch.name] = OUT_OF_DESCRIPTORS
                        later(index, now + self.period)
                        # Fewer at once from now on; at least one, when the others have let go.
                        self.budget = max(1, prober.in_flight)
                        break
                wake = [deadline, now + WAIT_SLICE]
                if queue and prober.in_flight < self.budget:
                    wake.append(queue[0][0])
                if resolving:
                    wake.append(now + RESOLVING_SLICE)
                if (due := prober.next_deadline()) is not None:
                    wake.append(due)
                prober.poll(max(0.0, min(wake) - self.clock()))
        finally:
            prober.close()
        return not self.last

    def _done_callback(
        self,
        state: _State,
        began: float,
        later: Callable[[int, float], None],
        index: int,
        cut_at: float | None,
    ) -> Callable[[Outcome], None]:
        """What to do with a probe's outcome. `cut_at`: the probe's time ends with the wait's
        own deadline; a time-out then says less than the reason already known, so that stays."""

        def done(outcome: Outcome) -> None:
            name = state.watch.name
            if name not in self.last:
                return
            if outcome.ok != self.invert:
                del self.last[name]
                self.on_ready(Ready(name, self.clock() - began, outcome.detail))
                return
            cut_short = cut_at is not None and self.clock() >= cut_at and self.last[name] != NOT_TRIED
            if not cut_short:
                self.last[name] = outcome.detail or ("accepting connections" if self.invert else "not up")
                self.on_miss(name, self.last[name])
            if outcome.late:  # connected, but the answer was slower than the try: give the next one longer
                state.attempt_timeout = max(state.attempt_timeout, min(state.attempt_timeout * 2, MAX_ATTEMPT_TIMEOUT))
            state.target = None  # resolve again next time: the name may move
            later(index, next_due(state.due, self.period, self.clock()))

        return done

    # -- names -----------------------------------------------------------------------------
    def _resolve(self, state: _State) -> None:
        """Resolve at once (a literal address, a unix path) or start doing so in a thread."""
        endpoint = state.watch.endpoint
        if endpoint.path is not None:
            state.target = Target(endpoint, ((socket.AF_UNIX, endpoint.path),))
            return
        if state.watch.check.proxy is not None:  # the proxy connects: the name is its business
            state.target = Target(endpoint, ())
            return
        try:
            ipaddress.ip_address((endpoint.host or "").split("%", 1)[0])
        except ValueError:
            if self._resolver is None:
                self._resolver = _Resolver(RESOLVER_THREADS)
            state.resolving = self._resolver.submit(lambda: self._lookup(endpoint, state.watch.check.udp))
            return
        try:
            state.target = self._lookup(endpoint, state.watch.check.udp)
        except NetworkError as exc:
            self.last[state.watch.name] = exc.detail or exc.what

    def _resolved(self, state: _State) -> bool:
        future = state.resolving
        if future is None or not future.done():
            return False
        state.resolving = None
        try:
            state.target = future.result()
        except NetworkError as exc:
            self.last[state.watch.name] = exc.detail or exc.what
        except OSError as exc:  # pragma: no cover - getaddrinfo out of descriptors
            self.last[state.watch.name] = str(exc)
        return True

    def _lookup(self, endpoint: Endpoint, udp: bool) -> Target:
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        return Target(endpoint, tuple(resolve(endpoint.host, endpoint.port, family=self.family, kind=kind)))


class _Resolver:
    """A few daemon threads that run name lookups: a lookup still hanging when the wait
    is over (getaddrinfo cannot be cancelled) does not hold up the exit."""

    def __init__(self, threads: int):
        self._jobs: queue.SimpleQueue[tuple[Future[Target], Callable[[], Target]]] = queue.SimpleQueue()
        self._size = threads
        self._threads = 0

    def submit(self, lookup: Callable[[], Target]) -> Future[Target]:
        from concurrent.futures import Future  # only a name to look up needs it (2 ms of start-up)

        future: Future[Target] = Future()
        self._jobs.put((future, lookup))
        if self._threads < self._size:
            threading.Thread(target=self._work, name="wait-resolve", daemon=True).start()
            self._threads += 1
        return future

    def _work(self) -> None:
        while True:
            future, lookup = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(lookup())
            except BaseException as exc:  # handed to the waiting loop, which decides
                future.set_exception(exc)
