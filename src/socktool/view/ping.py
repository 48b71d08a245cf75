"""ping's output on stdout, as ping(8) writes it: a line per probe as it ends, then
the statistics; with --json, one object per probe and a summary object."""

from __future__ import annotations

import time

from socktool.net.events import PingEvent, PingSummary, Probed
from socktool.values import printable
from socktool.view.terminal import Mode, Terminal


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def loss_percent(summary: PingSummary) -> float:
    return 0.0 if not summary.sent else round(100 * (summary.sent - summary.received) / summary.sent, 1)


def probe_line(probe: Probed, udp: bool, tls: bool = False) -> str:
    if not probe.ok:
        return f"{probe.peer}: seq={probe.seq} {probe.detail}"
    if tls and probe.connect is not None:
        connect, handshake = ms(probe.connect), ms(probe.elapsed - probe.connect)
        return (
            f"TLS with {probe.peer}: seq={probe.seq} time={ms(probe.elapsed):.3f} ms "
            f"(connect {connect:.3f} ms, handshake {handshake:.3f} ms)"
        )
    what = f"{probe.size} bytes from" if udp or probe.size else "connected to"
    return f"{what} {probe.peer}: seq={probe.seq} time={ms(probe.elapsed):.3f} ms"


def summary_lines(summary: PingSummary) -> list[str]:
    lines = [
        f"--- {summary.target} ping statistics ---",
        f"{summary.sent} probes, {summary.received} answered, {loss_percent(summary):g}% loss, "
        f"time {ms(summary.duration):.0f}ms",
    ]
    if summary.times:
        low, mean, high, mdev = (ms(t) for t in summary.spread())
        lines.append(f"rtt min/avg/max/mdev = {low:.3f}/{mean:.3f}/{high:.3f}/{mdev:.3f} ms")
    return lines


def probe_record(probe: Probed, tls: bool = False) -> dict[str, object]:
    record: dict[str, object] = {
        "event": "probe",
        "ts": round(time.time(), 6),
        "seq": probe.seq,
        "target": probe.target,
        "peer": probe.peer,
        "ok": probe.ok,
        "time_ms": ms(probe.elapsed) if probe.ok else None,
        "size": probe.size,
        "error": probe.detail or None,
    }
    if tls:  # time_ms = connect_ms + handshake_ms; a probe lost in its handshake has connect_ms only
        record["connect_ms"] = None if probe.connect is None else ms(probe.connect)
        record["handshake_ms"] = ms(probe.elapsed - probe.connect) if probe.ok and probe.connect is not None else None
    return record


def summary_record(summary: PingSummary) -> dict[str, object]:
    low, mean, high, mdev = (ms(t) for t in summary.spread())
    answered = bool(summary.times)
    return {
        "event": "summary",
        "ts": round(time.time(), 6),
        "target": summary.target,
        "peer": summary.peer,
        "sent": summary.sent,
        "received": summary.received,
        "loss_pct": loss_percent(summary),
        "min_ms": low if answered else None,
        "avg_ms": mean if answered else None,
        "max_ms": high if answered else None,
        "mdev_ms": mdev if answered else None,
        "elapsed_ms": ms(summary.duration),
    }


class PingView:
    """A sink for ping's events: lines or JSON on stdout, written as each probe ends."""

    def __init__(self, terminal: Terminal, mode: Mode, *, udp: bool = False, tls: bool = False):
        self.terminal = terminal
        self.udp = udp
        self.tls = tls
        self.json = None
        if mode is Mode.JSON:
            from socktool.view.jsonl import JsonLines  # json costs start-up: only with --json

            self.json = JsonLines(terminal.write_out)

    def header(self, target: str, peer: str, what: str) -> None:
        if self.json is None:
            self._line(f"PING {target} ({peer}): {what}")

    def __call__(self, event: PingEvent) -> None:
        if isinstance(event, Probed):
            if self.json is not None:
                self.json.write(probe_record(event, self.tls))
            else:
                self._line(probe_line(event, self.udp, self.tls))
        elif self.json is not None:
            self.json.write(summary_record(event))
        else:
            self._line("")
            for line in summary_lines(event):
                self._line(line)

    def _line(self, text: str) -> None:
        self.terminal.write_out((printable(text) + "\n").encode("utf-8", "surrogateescape"))
