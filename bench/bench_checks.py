#!/usr/bin/env python3
"""wait and ping against the shell loops over `nc -z` people write instead. One command,
about a minute and a half on 2 cores:

  python bench/bench_checks.py --output bench/results/checks.md

wait   N sockets on 127.0.0.1, bound (they refuse), start listening at seeded
       random moments within SPREAD seconds. An endpoint's detection time is
       the moment the tool itself knew it was up minus the moment just before
       its listen() — both wall-clock times on this machine, so how late this
       script reads the tool's output does not count:
         socktool wait --json -q --interval 250ms -w 60s EP...   (the "ts" of each "up" record)
         bash: per EP (until nc -z H P; do sleep 0.25; done; echo P $EPOCHREALTIME) &
       Goal (issue 17): each endpoint detected within one interval (250 ms).
       The nc loops get the first --nc-endpoints endpoints only (a shell and
       an nc per endpoint per try: 500 would swamp a shared 2-core machine);
       socktool runs on that subset too, for a like-for-like row.

ping   one listener on 127.0.0.1 that accepts and closes. Three figures, each
       the median of --repeats runs, the tools alternating:
         per probe, in one process: `socktool ping --json -c N -i 0.001ms`; the
           summary's elapsed_ms / N (its probing loop: start-up excluded; -i is
           below a probe's cost, so no pause is included either), and the
           median gap between two probes' records (the machine's hiccups left
           out). Also the probes' own connect times (time_ms), the first apart.
         per probe, nc -z: `for i in 1..N; do nc -z H P; done` in bash, wall / N
           (a process per probe: that is what the shell loop costs).
         whole command: `socktool ping -c K` against K `nc -z` calls in a bash
           loop, wall time, for K = 1, 10, 100, N (where socktool's start-up is paid
           back), and `socktool ping -c 1` in a bash loop, wall per call.

All traffic goes to 127.0.0.1. Run it with the bytecode compiled
(`python -m compileall -q src`, PYTHONDONTWRITEBYTECODE unset).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

METHOD = """# wait and ping vs shell loops over `nc -z`

One command (repository root, the project's virtualenv active, bytecode
compiled with `python -m compileall -q src`, PYTHONDONTWRITEBYTECODE unset),
about 80 s:

    python bench/bench_checks.py --output bench/results/checks.md

What is measured (the script's docstring has the details):

- `wait`: 500 sockets bound on 127.0.0.1 (refusing) start listening at seeded
  random moments over 5 s. An endpoint's detection time is the tool's own
  time of "up" (the `ts` of `wait --json`'s `up` record; for the nc loops
  bash's `$EPOCHREALTIME` right after `nc -z` succeeded) minus the wall time
  taken just before its `listen()`. How late the benchmark reads the
  tool's output does not count (before 2026-11-27 11:00 it did: the time
  was taken when the script read the "is up" line). The nc loops are one
  bash subshell per endpoint running `until nc -z …; do sleep 0.25; done`
  (50 endpoints; socktool on the same 50 for a like-for-like row).
- `ping`, against a listener that accepts and closes:
  - *per probe*: inside one `socktool ping --json -c 1000 -i 0.001ms`, the
    summary's `elapsed_ms` / 1000: the probing loop only (no start-up), and
    `-i` below a probe's cost so no pause is counted; and the median gap
    between two probes' `ts`, which leaves out the moments the machine
    stalled the process (the steadier figure on a shared machine).
    The earlier figure (0.559 ms for 200, 3.8 ms for 50) was the whole
    command's wall time / N at `-i 0.1ms`: Python's start-up (≈ 70-150 ms)
    spread over N, plus the 0.1 ms pause per probe (and time.sleep's
    overshoot) — why it moved with N.
  - *nc -z*: a bash loop of N `nc -z` calls, wall / N (a process per probe:
    what the shell loop costs).
  - *whole command*: `socktool ping -c K` against K `nc -z` calls in a bash
    loop, K = 1, 10, 100, 1000; and `socktool ping -c 1` called from a bash
    loop, per call.
  Each figure is the median of 5 runs, the tools alternating.
"""

HOST = "127.0.0.1"  # never anything else
INTERVAL = 0.25


def socktool_command() -> list[str]:
    exe = Path(sys.executable).with_name("socktool")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "socktool"]


# -- wait --------------------------------------------------------------------------------


class LateListeners:
    """Sockets bound now (they refuse: bound, not listening) that listen at their moments."""

    def __init__(self, count: int, spread: float, seed: int):
        rng = random.Random(seed)
        self.socks = []
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            self.socks.append(sock)
        self.ports = [sock.getsockname()[1] for sock in self.socks]
        self.delays = [rng.uniform(0.2, spread) for _ in self.socks]
        self.listened_at: dict[int, float] = {}  # port -> wall time just before its listen()
        self.listen_call: dict[int, float] = {}  # port -> how long its listen() took, timestamps included
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        for delay, sock, port in sorted(zip(self.delays, self.socks, self.ports, strict=True)):
            pause = self._began + delay - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            before = time.time()
            sock.listen(64)
            self.listen_call[port] = time.time() - before
            self.listened_at[port] = before

    def close(self) -> None:
        self._thread.join(timeout=120)
        for sock in self.socks:
            sock.close()


def run_wait(tool: str, count: int, spread: float, seed: int) -> list[tuple[float, float]]:
    """(detection time, how long the listen() call took) for each endpoint."""
    listeners = LateListeners(count, spread, seed)
    try:
        if tool == "socktool":
            endpoints = [f"{HOST}:{port}" for port in listeners.ports]
            argv = [*socktool_command(), "wait", "--json", "-q", "--interval", "250ms", "-w", "60s", *endpoints]
        else:
            loops = " ".join(str(port) for port in listeners.ports)
            script = (
                f"for p in {loops}; do (until nc -z {HOST} $p 2>/dev/null; do sleep {INTERVAL}; done; "
                'echo "$p $EPOCHREALTIME") & done; wait'
            )
            argv = ["bash", "-c", script]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(0.05)  # the tool is running before the first listen (at 0.2 s or later)
        listeners.start()
        out, _ = proc.communicate(timeout=120)
    finally:
        listeners.close()
    seen: dict[int, float] = {}
    for line in out.decode().splitlines():
        if tool == "socktool":
            record = json.loads(line)
            if record.get("event") == "up":
                seen[int(record["endpoint"].rsplit(":", 1)[1])] = record["ts"]
        else:
            port, stamp = line.split()
            seen[int(port)] = float(stamp)
    assert len(seen) == count, f"{tool}: {len(seen)} of {count} seen"
    return [(seen[port] - listeners.listened_at[port], listeners.listen_call[port]) for port in listeners.ports]


def describe(results: list[tuple[float, float]]) -> str:
    delays = sorted(delay for delay, _call in results)
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    within = sum(delay <= INTERVAL for delay in delays)
    worst_call = max(results)[1]
    return (
        f"{statistics.median(delays) * 1000:.0f} | {p99 * 1000:.1f} | {delays[-1] * 1000:.1f} | "
        f"{within}/{len(delays)} | {worst_call * 1e6:.0f}"
    )


def wait_section(args: argparse.Namespace) -> list[str]:
    out = [
        f"## wait: endpoints coming up at random moments within {args.spread:g} s, --interval 250ms",
        "",
        "detection = the tool's own time of 'up' minus the time just before listen(); the last column is",
        "how long the worst endpoint's listen() call took, timestamps included (the measurement's slack)",
        "",
        "| round | load | tool | endpoints | median ms | p99 ms | max ms | within 250 ms | worst's listen() µs |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for index in range(args.rounds):
        seed = 17 + index
        for tool, count in (("socktool", args.endpoints), ("socktool", args.nc_endpoints), ("nc", args.nc_endpoints)):
            load = os.getloadavg()[0]
            results = run_wait(tool, count, args.spread, seed)
            name = "socktool wait" if tool == "socktool" else "nc -z loops"
            out.append(f"| {index + 1} | {load:.1f} | {name} | {count} | {describe(results)} |")
            print(out[-1], flush=True)
    return out


# -- ping --------------------------------------------------------------------------------


class Acceptor:
    def __init__(self) -> None:
        self.sock = socket.create_server((HOST, 0), backlog=512)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()


def wall(argv: list[str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, done.stdout


def nc_loop(count: int, port: int) -> list[str]:
    return ["bash", "-c", f"for i in $(seq {count}); do nc -z {HOST} {port}; done"]


def ping_section(args: argparse.Namespace) -> list[str]:
    acceptor = Acceptor()
    target = f"{HOST}:{acceptor.port}"
    socktool = socktool_command()
    quoted = " ".join(socktool)
    probes, loops = args.probes, args.loops
    sizes = sorted({1, 10, 100, probes})
    in_process: list[float] = []  # seconds per probe inside one ping -c N: its loop's time / N
    typical: list[float] = []  # ... the median gap between two probes' records (spikes left out)
    first: list[float] = []  # the first probe's connect time
    rest: list[float] = []  # the median connect time of the others
    whole: dict[tuple[str, int], list[float]] = {}
    jobs: list[tuple[str, int]] = [(tool, size) for size in sizes for tool in ("socktool", "nc")]
    jobs.append(("socktool-loop", loops))
    for repeat in range(args.repeats):
        shift = repeat % len(jobs)
        for tool, size in jobs[shift:] + jobs[:shift]:
            if tool == "socktool":
                argv = [*socktool, "ping", "--json", "-c", str(size), "-i", "0.001ms", target]
            elif tool == "nc":
                argv = nc_loop(size, acceptor.port)
            else:
                argv = ["bash", "-c", f"for i in $(seq {size}); do {quoted} ping -c 1 {target} >/dev/null; done"]
            seconds, stdout = wall(argv)
            whole.setdefault((tool, size), []).append(seconds)
            if tool == "socktool" and size == probes:
                records = [json.loads(line) for line in stdout.decode().splitlines()]
                summary = records[-1]
                assert summary["event"] == "summary" and summary["received"] == probes, summary
                in_process.append(summary["elapsed_ms"] / 1000 / probes)
                stamps = [record["ts"] for record in records[:-1]]
                typical.append(statistics.median(b - a for a, b in itertools.pairwise(stamps)))
                times = [record["time_ms"] / 1000 for record in records[:-1]]
                first.append(times[0])
                rest.append(statistics.median(times[1:]))
    acceptor.sock.close()

    def med(values: list[float]) -> float:
        return statistics.median(values)

    nc_per_call = med(whole[("nc", probes)]) / probes
    own = med(in_process)
    loop_per_call = med(whole[("socktool-loop", loops)]) / loops
    out = [
        f"## ping: per probe and per command (medians of {args.repeats} runs)",
        "",
        "| what | socktool | nc -z | socktool ÷ nc |",
        "|---|---:|---:|---:|",
        f"| per probe: inside one `ping -c {probes} -i 0.001ms` (its loop's time / N) vs one `nc -z` "
        f"in a bash loop | {own * 1000:.3f} ms | {nc_per_call * 1000:.3f} ms | {own / nc_per_call:.2f}x |",
        f"| per probe: the same, the median gap between two probes | {med(typical) * 1000:.3f} ms "
        f"| {nc_per_call * 1000:.3f} ms | {med(typical) / nc_per_call:.3f}x |",
    ]
    for size in sizes:
        ours, theirs = med(whole[("socktool", size)]), med(whole[("nc", size)])
        out.append(
            f"| whole command: `ping -c {size}` vs {size} x `nc -z` in bash "
            f"| {ours * 1000:.1f} ms | {theirs * 1000:.1f} ms | {ours / theirs:.2f}x |"
        )
    out.append(
        f"| per call: `ping -c 1` in a bash loop ({loops} calls) vs `nc -z` in a bash loop "
        f"| {loop_per_call * 1000:.1f} ms | {nc_per_call * 1000:.3f} ms | {loop_per_call / nc_per_call:.1f}x |"
    )
    out += [
        "",
        f"connect time (ping's time=) inside `ping -c {probes}`: first probe {med(first) * 1000:.3f} ms, "
        f"the others {med(rest) * 1000:.3f} ms (medians over the runs); the spread of the per-probe "
        f"figure over the runs: {min(in_process) * 1000:.3f}-{max(in_process) * 1000:.3f} ms "
        f"(median gap: {min(typical) * 1000:.3f}-{max(typical) * 1000:.3f} ms)",
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--nc-endpoints", type=int, default=50)
    parser.add_argument("--spread", type=float, default=5.0, help="seconds over which endpoints come up")
    parser.add_argument("--rounds", type=int, default=3, help="wait rounds")
    parser.add_argument("--probes", type=int, default=1000, help="N of ping -c N")
    parser.add_argument("--loops", type=int, default=20, help="ping -c 1 calls in the shell loop")
    parser.add_argument("--repeats", type=int, default=5, help="ping runs of each kind (medians)")
    parser.add_argument("--only", choices=("wait", "ping"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if not shutil.which("nc"):
        sys.exit("nc (netcat-openbsd) is needed")

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out: list[str] = [f"{stamp}, load average at start: {os.getloadavg()[0]:.2f}", ""]
    if args.only != "ping":
        out += [*wait_section(args), ""]
    if args.only != "wait":
        out += [*ping_section(args), ""]
    out.append(f"load average at end: {os.getloadavg()[0]:.2f}")
    text = "\n".join(out) + "\n"
    print(text)
    if args.output:
        args.output.write_text(f"{METHOD}\n## Run: {text}")


if __name__ == "__main__":
    main()
