#!/usr/bin/env python3
"""wait and ping against the shell loops over `nc -z` people write instead.

  wait   N endpoints on 127.0.0.1 that start listening at random moments
         (seeded) within SPREAD seconds; each one's detection delay is the
         time from its listen() to the line saying it is up:
           socktool wait -v --interval 250ms -w 60s EP...    ("EP is up" lines on stderr)
           bash: for each EP, (until nc -z H P; do sleep 0.25; done; echo P) &
         The goal (issue 17): every endpoint detected within one interval.
         The nc loops are run for the first --nc-endpoints endpoints only (a
         shell and an nc per endpoint per try: 500 of them would swamp a
         shared 2-core machine), and socktool on that same subset too.
  ping   one listener on 127.0.0.1 that accepts and closes; per-probe wall time:
           socktool ping -q -c N -i 0.0001 H:P          (one process, N probes)
           bash: for i in 1..N; do nc -z H P; done      (a process per probe)
           bash: for i in 1..M; do socktool ping -c 1 -i 0.0001 H:P; done
                                                        (socktool in a shell loop)

All traffic goes to 127.0.0.1. Rounds alternate between the tools; medians.

  python bench/bench_checks.py
  python bench/bench_checks.py --endpoints 500 --rounds 3 --output bench/results/checks.md
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"  # never anything else
INTERVAL = 0.25


def socktool_command() -> list[str]:
    exe = Path(sys.executable).with_name("socktool")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "socktool"]


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
        self.listened_at: dict[int, float] = {}

    def start(self) -> None:
        began = time.monotonic()

        def run() -> None:
            for delay, sock, port in sorted(zip(self.delays, self.socks, self.ports, strict=True)):
                pause = began + delay - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                sock.listen(64)
                self.listened_at[port] = time.monotonic()

        threading.Thread(target=run, daemon=True).start()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def timed_lines(proc: subprocess.Popen, stream, pattern: re.Pattern[str]) -> dict[int, float]:
    """port → the moment its line was read."""
    seen: dict[int, float] = {}
    for raw in stream:
        match = pattern.search(raw.decode(errors="replace"))
        if match:
            seen[int(match.group(1))] = time.monotonic()
    proc.wait()
    return seen


def run_wait(tool: str, count: int, spread: float, seed: int) -> list[float]:
    listeners = LateListeners(count, spread, seed)
    try:
        endpoints = [f"{HOST}:{port}" for port in listeners.ports]
        if tool == "socktool":
            argv = [*socktool_command(), "wait", "-v", "--interval", "250ms", "-w", "60s", *endpoints]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            stream, pattern = proc.stderr, re.compile(r":(\d+) is up")
        else:
            loops = " ".join(str(port) for port in listeners.ports)
            script = f"for p in {loops}; do (until nc -z {HOST} $p 2>/dev/null; do sleep {INTERVAL}; done; echo $p) & done; wait"
            proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            stream, pattern = proc.stdout, re.compile(r"^(\d+)$")
        time.sleep(0.05)  # both tools are running before the first listen (at 0.2 s or later)
        listeners.start()
        seen = timed_lines(proc, stream, pattern)
        assert len(seen) == count, f"{tool}: {len(seen)} of {count} seen"
        return [seen[port] - listeners.listened_at[port] for port in listeners.ports]
    finally:
        listeners.close()


def describe(delays: list[float]) -> str:
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    within = sum(delay <= INTERVAL for delay in delays)
    return (
        f"median {statistics.median(delays) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {max(delays) * 1000:.0f} ms, within one interval: {within}/{len(delays)}"
    )


class Acceptor:
    def __init__(self):
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


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def ping_rounds(probes: int, loops: int, rounds: int) -> dict[str, list[float]]:
    acceptor = Acceptor()
    target = f"{HOST}:{acceptor.port}"
    socktool = " ".join(socktool_command())
    commands = {
        "socktool ping -c N (one process)": [
            *socktool_command(),
            "ping",
            "-q",
            "-c",
            str(probes),
            "-i",
            "0.0001",
            target,
        ],
        "nc -z in a bash loop": ["bash", "-c", f"for i in $(seq {probes}); do nc -z {HOST} {acceptor.port}; done"],
        "socktool ping -c 1 in a bash loop": [
            "bash",
            "-c",
            f"for i in $(seq {loops}); do {socktool} ping -c 1 -i 0.0001 {target} >/dev/null; done",
        ],
    }
    per_probe: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            count = loops if "bash loop" in name and name.startswith("socktool") else probes
            per_probe[name].append(wall(commands[name]) / count)
    acceptor.sock.close()
    return per_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--nc-endpoints", type=int, default=50)
    parser.add_argument("--spread", type=float, default=5.0, help="seconds over which endpoints come up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if not shutil.which("nc"):
        sys.exit("nc (netcat-openbsd) is needed")

    out: list[str] = [f"load average at start: {os.getloadavg()[0]:.2f}", ""]
    out.append(f"## wait: endpoints coming up at random moments within {args.spread:g} s, --interval 250ms")
    out.append("")
    out.append("| run | tool | endpoints | detection delay (listen → 'up' line) |")
    out.append("|---|---|---:|---|")
    for index in range(args.rounds):
        seed = 17 + index
        results = [
            ("socktool", args.endpoints, run_wait("socktool", args.endpoints, args.spread, seed)),
            ("socktool", args.nc_endpoints, run_wait("socktool", args.nc_endpoints, args.spread, seed)),
            ("nc -z loops", args.nc_endpoints, run_wait("nc", args.nc_endpoints, args.spread, seed)),
        ]
        for tool, count, delays in results:
            out.append(f"| {index + 1} | {tool} | {count} | {describe(delays)} |")
        print("\n".join(out[-3:]), flush=True)
    out.append("")
    out.append(f"## ping: wall time per probe ({args.probes} probes; {args.loops} socktool runs in the loop)")
    out.append("")
    per_probe = ping_rounds(args.probes, args.loops, args.rounds)
    nc_median = statistics.median(per_probe["nc -z in a bash loop"])
    out.append("| how | per probe (median of rounds) | vs nc -z loop |")
    out.append("|---|---:|---:|")
    for name, values in per_probe.items():
        median = statistics.median(values)
        out.append(f"| {name} | {median * 1000:.3f} ms | {median / nc_median:.2f}x |")
    out.append("")
    out.append(f"load average at end: {os.getloadavg()[0]:.2f}")
    text = "\n".join(out) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
