#!/usr/bin/env python3
"""The traffic view at a terminal: never the bottleneck (issue 12, item 2).

With stdout a pty (drained by this script as a terminal would), each tool in
turn, ROUNDS times, in the same run:

- both ways: `head -c SIZE /dev/zero | TOOL 127.0.0.1:P` while the peer (a
  Python loopback server) sends SIZE bytes and reads all it gets: SIZE sent
  and SIZE received. Tools: socktool's view (the default at a terminal),
  `socktool --raw` (the same transfer, raw bytes to the pty) and `nc -N`.
  Goal: view ≤ 1.5× the time of --raw.
- lines in: `seq 1 N | nc -N 127.0.0.1 P` into a listener at the terminal:
  `socktool tcp-listen` (view) vs `nc -l`.

    python bench/bench_view.py                       # 1 GiB each way, 200,000 lines, 3 rounds
    python bench/bench_view.py --size 256M --rounds 2
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_tcp import free_port, parse_size  # this directory: run as python bench/...

SOCKTOOL = str(Path(sys.executable).with_name("socktool"))
BLOCK = b"\0" * (1 << 20)


def peer(size: int) -> tuple[int, threading.Thread]:
    """A server for one client: sends `size` bytes, reads until EOF, then closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:

                def send() -> None:
                    left = size
                    while left > 0:
                        conn.sendall(BLOCK[: min(left, len(BLOCK))])
                        left -= len(BLOCK)
                    conn.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send)
                sender.start()
                while conn.recv(1 << 20):
                    pass
                sender.join()

    thread = threading.Thread(target=serve)
    thread.start()
    return server.getsockname()[1], thread


def at_a_terminal(command: str, columns: int = 120) -> tuple[float, int]:
    """Run a shell command with stdout and stderr on a pty; (seconds, bytes it drew)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"}
    started = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", command], stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    drawn = 0
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 1 << 20)
            except OSError:
                break
            if not chunk:
                break
            drawn += len(chunk)
        elif proc.poll() is not None:
            break
    proc.wait()
    elapsed = time.perf_counter() - started
    os.close(master)
    if proc.returncode != 0:
        raise SystemExit(f"{command}: exit {proc.returncode}")
    return elapsed, drawn


def both_ways(tool: str, size: int) -> tuple[float, int]:
    port, thread = peer(size)
    client = {
        "socktool view": f"{SOCKTOOL} tcp-connect 127.0.0.1:{port}",
        "socktool --raw": f"{SOCKTOOL} tcp-connect --raw 127.0.0.1:{port}",
        "nc -N": f"nc -N 127.0.0.1 {port}",
    }[tool]
    result = at_a_terminal(f"head -c {size} /dev/zero | {client}")
    thread.join()
    return result


def lines_in(tool: str, lines: int) -> tuple[float, int]:
    port = free_port()
    listener = {"socktool tcp-listen": f"{SOCKTOOL} tcp-listen 127.0.0.1:{port}", "nc -l": f"nc -l 127.0.0.1 {port}"}[
        tool
    ]
    # The sender retries until the listener is up (nc -z would be its one client).
    sender = f"until seq 1 {lines} | nc -N 127.0.0.1 {port} 2>/dev/null; do sleep 0.05; done"
    return at_a_terminal(f"{sender} & {listener} </dev/null; wait")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1G")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)
    have_nc = shutil.which("nc") is not None
    results: dict[str, list[float]] = {}
    drawn: dict[str, int] = {}
    for _ in range(args.rounds):
        for tool in ("socktool view", "socktool --raw", *(("nc -N",) if have_nc else ())):
            seconds, out = both_ways(tool, size)
            results.setdefault(f"both ways: {tool}", []).append(seconds)
            drawn[f"both ways: {tool}"] = out
        if have_nc:
            for tool in ("socktool tcp-listen", "nc -l"):
                seconds, out = lines_in(tool, args.lines)
                results.setdefault(f"lines in: {tool}", []).append(seconds)
                drawn[f"lines in: {tool}"] = out
    print(f"size {size:,} bytes each way, {args.lines:,} lines, {args.rounds} rounds; stdout a pty\n")
    print("| transfer | median s | drawn to the terminal | ratio |")
    print("|---|---:|---:|---:|")
    base = {"both ways": statistics.median(results["both ways: socktool --raw"])}
    if have_nc:
        base["lines in"] = statistics.median(results["lines in: nc -l"])
    for name, times in results.items():
        median = statistics.median(times)
        ratio = median / base[name.split(":")[0]]
        print(f"| {name} | {median:.2f} | {drawn[name]:,} B | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
