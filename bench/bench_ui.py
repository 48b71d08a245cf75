#!/usr/bin/env python3
"""socktool ui under a flood: keys stay answered and memory stays bounded (issue 16).

The app runs headless (Textual's App.run_test, 80x24) with one udp-listen
session; a sender thread paces RATE datagrams of 64 bytes a second at it for
SECONDS. Every 100 ms a key is posted to the app, in turn ctrl+l (the
line-end choice: a status bar) and ctrl+x (the hex toggle: the whole log
drawn again, up to 1,000 records), and the time until its action has run
is measured (the app's own latency: the pilot's press() is not used, it
waits for the screen to settle). The same keys are timed with no traffic
first, as the baseline. Memory: the process's RSS before and after the
flood and its peak, and what the session keeps (records on screen).

--hog N runs N busy processes beside it for the whole run, as the shared
machine's other work does (the figure of issue 16, 177-213 ms at worst,
was taken at a load average of about 8). There is no other full-screen
socket tool to run side by side: the baseline is the same app, idle.

    python bench/bench_ui.py                   # 10,000 datagrams/s for 5 s
    python bench/bench_ui.py --hog 3           # the same with 3 busy processes beside it
    python bench/bench_ui.py --rate 20000 --seconds 3
    python bench/bench_ui.py --compare REV --rounds 3   # REV's tree and this one in turn: a table
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from textual import events

from socktool.ui.app import SocktoolApp
from socktool.ui.sessions import parse_specs


def rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def hogs(count: int) -> Iterator[None]:
    """`count` processes spinning on a core each, ended when the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


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


async def key_latencies(app: SocktoolApp, duration: float) -> list[float]:
    times = []
    view = app.views[app.sessions[0].number]
    keys = [("ctrl+l", lambda: app.line_end), ("ctrl+x", lambda: view.hex_view)]
    end = time.monotonic() + duration
    while time.monotonic() < end:
        key, state = keys[len(times) % len(keys)]
        before = state()
        start = time.monotonic()
        app.post_message(events.Key(key, None))
        while state() == before:
            await asyncio.sleep(0.0005)
        times.append(time.monotonic() - start)
        await asyncio.sleep(0.1)
    return times


def figures(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[max(0, -(-len(ms) * 99 // 100) - 1)]
    return {"keys": len(ms), "median": statistics.median(ms), "p99": p99, "worst": ms[-1]}


def summary(times: list[float]) -> str:
    f = figures(times)
    return f"{f['keys']} keys: median {f['median']:.1f} ms, p99 {f['p99']:.1f} ms, worst {f['worst']:.1f} ms"


async def run(rate: int, seconds: float, hog: int, as_json: bool) -> None:
    app = SocktoolApp(parse_specs(["udp-listen", "127.0.0.1:0"]))
    async with app.run_test(size=(80, 24)) as pilot:
        session = app.sessions[0]
        while session.state != "listening":
            await asyncio.sleep(0.01)
        port = int(session.address.rsplit(":", 1)[1])
        idle = await key_latencies(app, 2.0)
        rss_before = rss_mib()
        sent: list[int] = []
        sender = threading.Thread(target=flood, args=(port, rate, seconds, sent))
        cpu = time.thread_time()  # the app's thread: its loop, its drawing
        sender.start()
        busy = await key_latencies(app, seconds)
        sender.join()
        cpu = time.thread_time() - cpu
        while session.events:  # what is still queued
            await asyncio.sleep(0.05)
        view = app.views[session.number]
        await pilot.press("ctrl+q")
        if as_json:
            record = {"flood": figures(busy), "idle": figures(idle), "cpu": cpu / seconds}
            print(json.dumps({**record, "rss_peak": rss_mib("VmHWM"), "sent": sent[0], "counted": session.messages_in}))
            return
        load = f", {hog} busy process{'es' if hog != 1 else ''} beside it" if hog else ""
        print(f"idle:  {summary(idle)}{load}")
        print(f"flood: {summary(busy)}{load}")
        print(
            f"sent {sent[0]:,} datagrams in {seconds:g} s ({sent[0] / seconds:,.0f}/s); "
            f"the session counted {session.messages_in:,}; the app's thread used {cpu / seconds:.0%} of a core"
        )
        print(
            f"RSS {rss_before:.1f} MiB before the flood, {rss_mib():.1f} MiB after, peak {rss_mib('VmHWM'):.1f} MiB; "
            f"records kept {len(view.records)}"
        )


def compare(rev: str, rounds: int, rate: int, seconds: float, hog: int) -> None:
    """This tree and REV's, in turn, `rounds` times, in one sitting: a table of the flood's figures."""
    before = tempfile.mkdtemp(prefix="bench-ui-")
    try:
        subprocess.run(f"git archive {shlex.quote(rev)} src | tar -x -C {before}", shell=True, check=True)
        trees = [("this tree", os.environ.get("PYTHONPATH", "")), (rev, os.path.join(before, "src"))]
        print("| round | tree | key median | p99 | worst | app thread, % of a core | peak RSS | counted |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        with hogs(hog):
            for round_ in range(1, rounds + 1):
                for name, path in trees:
                    argv = [sys.executable, __file__, "--json", "--rate", str(rate), "--seconds", str(seconds)]
                    out = subprocess.run(argv, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    f = r["flood"]
                    print(
                        f"| {round_} | {name} | {f['median']:.1f} ms | {f['p99']:.1f} ms | {f['worst']:.1f} ms "
                        f"| {r['cpu']:.0%} | {r['rss_peak']:.1f} MiB | {r['counted']:,} of {r['sent']:,} |"
                    )
    finally:
        shutil.rmtree(before, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--hog", type=int, default=0, help="busy processes beside it (a loaded machine)")
    parser.add_argument("--compare", metavar="REV", help="also run REV's tree (git archive), in turn with this one")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare: rounds of both trees")
    parser.add_argument("--json", action="store_true", help="one JSON line of figures (what --compare reads)")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.rounds, args.rate, args.seconds, args.hog)
        return
    with hogs(args.hog):
        asyncio.run(run(args.rate, args.seconds, args.hog, args.json))


if __name__ == "__main__":
    main()
