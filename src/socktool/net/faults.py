"""Faults `forward` puts into a direction of traffic: delay, jitter, rate, chunking,
datagram loss, and a reset or close after a number of bytes.

Pure: a `Shaper` turns the bytes read at a moment into segments, each with the
moment it is due to be written; the engine only writes them when due. Rules:
- bytes keep their order: a segment is never due before the one before it;
- `--delay D --jitter J` makes each read due D±J later (never before "now");
- `--rate R` spaces segments so that no more than R bytes a second are due;
- `--chunk N` cuts what is read into segments of at most N bytes, due
  `chunk_gap` apart, so a peer reading promptly sees one segment per read;
- `--reset-after N` / `--close-after N`: the segment that carries the Nth byte
  is the last; it ends the connection (a reset, or a close), and any bytes
  after the Nth are never written;
- a datagram (`schedule_datagram`) is never cut: it is dropped (`--drop`) or
  due after the delay, jitter and rate as a whole;
- randomness (jitter, datagram drops) comes from one `random.Random` per
  direction of a connection, seeded from `--seed`, so a run can be repeated.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

from socktool.net.events import UPSTREAM

RESET = "reset"
CLOSE = "close"
RATE_SLICES = 50  # a rate is kept in pieces of 1/50 s of traffic: smooth, but not a write per byte


class Faults(NamedTuple):
    """The faults of one direction."""

    delay: float = 0.0
    jitter: float = 0.0
    rate: int | None = None  # bytes per second
    chunk: int | None = None  # bytes per segment at most
    chunk_gap: float = 0.01  # seconds between two segments of --chunk
    drop: float = 0.0  # fraction of datagrams dropped (UDP)
    reset_after: int | None = None
    close_after: int | None = None

    @property
    def shapes_bytes(self) -> bool:
        """Anything that changes when or how a stream's bytes are written."""
        return bool(
            self.delay
            or self.jitter
            or self.rate
            or self.chunk
            or self.reset_after is not None
            or self.close_after is not None
        )

    @property
    def active(self) -> bool:
        return self.shapes_bytes or self.drop > 0


class FaultPlan(NamedTuple):
    """Faults for both directions and the seed their randomness comes from."""

    upstream: Faults = Faults()
    downstream: Faults = Faults()
    seed: int | None = None

    @property
    def active(self) -> bool:
        return self.upstream.active or self.downstream.active

    def for_direction(self, direction: str) -> Faults:
        return self.upstream if direction == UPSTREAM else self.downstream

    def rng(self, conn: int, direction: str) -> random.Random:
        """The same seed, connection number and direction give the same choices."""
        if self.seed is None:
            return random.Random()
        return random.Random(f"{self.seed}:{conn}:{direction}")


class Segment(NamedTuple):
    due: float  # monotonic time at which to write it
    data: bytes
    end: str | None = None  # RESET or CLOSE: end the connection once this is written


class Shaper:
    """Schedules one direction's bytes; see the module rules."""

    def __init__(self, faults: Faults, rng: random.Random):
        self.faults = faults
        self.rng = rng
        self.scheduled = 0  # bytes handed out in segments so far
        self.ended = False
        self._last_due = 0.0
        self._next_free = 0.0  # the earliest moment the rate lets the next byte go

    def _cut(self) -> tuple[int, str] | None:
        """(bytes still allowed, what happens after them), if a limit is set."""
        f = self.faults
        limits = [(n, RESET) for n in (f.reset_after,) if n is not None]
        limits += [(n, CLOSE) for n in (f.close_after,) if n is not None]
        if not limits:
            return None
        limit, end = min(limits)
        return limit - self.scheduled, end

    def limit(self, data: bytes) -> tuple[bytes, str | None]:
        """The part of `data` within --reset-after / --close-after, and the end it reaches
        there (RESET or CLOSE; None while under the limit). Counts it as scheduled."""
        if self.ended:
            return b"", None
        end: str | None = None
        cut = self._cut()
        if cut is not None and len(data) >= cut[0]:
            data, end = data[: cut[0]], cut[1]
            self.ended = True
        self.scheduled += len(data)
        return data, end

    def schedule(self, data: bytes, now: float) -> list[Segment]:
        """A stream's bytes read at `now`: cut at a limit, in pieces (--chunk, --rate), each when due."""
        if self.ended:
            return []
        data, end = self.limit(data)
        return self._timed(_pieces(data, self.faults), end, now)

    def schedule_datagram(self, data: bytes, now: float) -> Segment | None:
        """A datagram, never cut: dropped (None, --drop) or due after --delay/--jitter/--rate."""
        if self.drops():
            return None
        return self._timed([data], None, now)[0]

    def _timed(self, pieces: Sequence[bytes], end: str | None, now: float) -> list[Segment]:
        f = self.faults
        due = now + f.delay
        if f.jitter:
            due += self.rng.uniform(-f.jitter, f.jitter)
        due = max(due, now, self._last_due)
        segments = []
        for index, piece in enumerate(pieces):
            if f.chunk and (index or self._last_due):
                due = max(due, self._last_due + f.chunk_gap)
            if f.rate:
                due = max(due, self._next_free)
                self._next_free = due + len(piece) / f.rate
            self._last_due = due
            segments.append(Segment(due, piece, end if index == len(pieces) - 1 else None))
        return segments

    def drops(self) -> bool:
        """Whether to drop the next datagram."""
        return self.faults.drop > 0 and self.rng.random() < self.faults.drop


def _pieces(data: bytes, faults: Faults) -> Sequence[bytes]:
    size = faults.chunk
    if faults.rate:
        slice_ = max(1, faults.rate // RATE_SLICES)
        size = slice_ if size is None else min(size, slice_)
    if size is None or len(data) <= size:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


_SIZE_UNITS = {"": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}
_SIZE_UNITS |= {"g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_rate(text: str) -> int:
    """'1MiB/s' → 1048576, '500k' → 500000, '65536' → 65536 (bytes per second)."""
    raw = text.strip().lower().removesuffix("/s")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number) :].strip()
    if unit not in _SIZE_UNITS or not number:
        raise ValueError(f"not a rate: {text!r} (bytes per second, e.g. 65536, 500k, 1MiB/s)")
    try:
        rate = int(float(number) * _SIZE_UNITS[unit])
    except ValueError:
        raise ValueError(f"not a rate: {text!r} (bytes per second, e.g. 65536, 500k, 1MiB/s)") from None
    if rate < 1:
        raise ValueError(f"rate must be at least 1 byte per second: {text!r}")
    return rate


def parse_fraction(text: str) -> float:
    """'0.1' or '10%' → 0.1: a share of datagrams, 0 to 1."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"not a fraction: {text!r} (e.g. 0.1 or 10%)") from None
    if not 0 <= value <= 1:
        raise ValueError(f"must be between 0 and 1 (0% and 100%): {text!r}")
    return value


__all__ = ["CLOSE", "RESET", "FaultPlan", "Faults", "Segment", "Shaper", "parse_fraction", "parse_rate"]
