#!/usr/bin/env python3
"""socktool ui under a flood: keys stay answered and memory stays bounded (issue 16).

The app runs headless (Textual's App.run_test, 80x24) with one udp-listen
session; a sender thread paces RATE datagrams of 64 bytes a second at it for
SECONDS. Every 100 ms a key (ctrl+l, the line-end choice) is posted to the
app and the time until its action has run is measured (the app's own
latency: the pilot's press() is not used, it waits for the screen to settle).
The same keys are timed with no traffic first, as the baseline. Memory: the
process's RSS before and after, and what the session keeps (records on
screen, events queued).

There is no other full-screen socket tool to run side by side: the baseline
is the same app, idle.

    python bench/bench_ui.py                   # 10,000 datagrams/s for 5 s
    python bench/bench_ui.py --rate 20000 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import threading
import time

from textual import events

from socktool.ui.app import SocktoolApp
from socktool.ui.sessions import parse_specs


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def flood(port: int, rate: int, seconds: float, sent: list[int]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * 64
    start = time.monotonic()
    count = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while count < due:
            sock.sendto(payload, ("127.0.0.1", port))
            count += 1
        time.sleep(0.001)
    sent.append(count)
    sock.close()


async def key_latencies(app: SocktoolApp, pilot, duration: float) -> list[float]:
    times = []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        before = app.line_end
        start = time.monotonic()
        app.post_message(events.Key("ctrl+l", None))
        while app.line_end == before:
            await asyncio.sleep(0.0005)
        times.append(time.monotonic() - start)
        await asyncio.sleep(0.1)
    return times


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[int(len(ms) * 0.95) - 1] if len(ms) >= 20 else ms[-1]
    return f"{len(ms)} keys: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"


async def run(rate: int, seconds: float) -> None:
    app = SocktoolApp(parse_specs(["udp-listen", "127.0.0.1:0"]))
    async with app.run_test(size=(80, 24)) as pilot:
        session = app.sessions[0]
        while session.state != "listening":
            await asyncio.sleep(0.01)
        port = int(session.address.rsplit(":", 1)[1])
        idle = await key_latencies(app, pilot, 2.0)
        rss_before = rss_mib()
        sent: list[int] = []
        sender = threading.Thread(target=flood, args=(port, rate, seconds, sent))
        sender.start()
        busy = await key_latencies(app, pilot, seconds)
        sender.join()
        while session.events:  # what is still queued
            await asyncio.sleep(0.05)
        view = app.views[session.number]
        print(f"idle:  {summary(idle)}")
        print(f"flood: {summary(busy)}")
        print(
            f"sent {sent[0]:,} datagrams in {seconds:g} s ({sent[0] / seconds:,.0f}/s); "
            f"the session counted {session.messages_in:,}"
        )
        print(f"RSS {rss_before:.1f} MiB before the flood, {rss_mib():.1f} MiB after; records kept {len(view.records)}")
        await pilot.press("ctrl+q")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.seconds))


if __name__ == "__main__":
    main()
