#!/usr/bin/env python3
"""portscan vs `nmap -sT` and `nc -z`: a TCP connect scan of 127.0.0.1 ports 2025-65535.

Only 127.0.0.1 is scanned, and only ports from 2025 up (this machine's own
services live below). The script starts a handful of listeners in that
range, so every tool has the same open ports to find.

  full      the whole range, every port answering at once (open or refused):
              socktool portscan 127.0.0.1 2025-65535        (piped: PORT/tcp lines)
              nmap -sT -n -Pn -p2025-65535 -oG - 127.0.0.1
              nc -z 127.0.0.1 2025-65535                    (timed; prints nothing)
              nc -zv 127.0.0.1 2025-65535                   (open ports on stderr)
  filtered  the same range with FILTERED ports whose SYNs are dropped (listeners
            with backlog 0 and a full accept queue), 1s to answer:
              socktool portscan 127.0.0.1 2025-65535 -w 1s --all  (--all: lists the filtered ones too)
              nmap -sT -n -Pn --max-rtt-timeout 1s -p2025-65535 -oG - 127.0.0.1
              nmap -sT -n -Pn -p2025-65535 -oG - 127.0.0.1  (nmap's defaults)
              nmap ... --max-retries 0 --initial-rtt-timeout 1s --min-rtt-timeout 1s
                       --max-rtt-timeout 1s  (as close to socktool's "1s, no retry" as nmap goes)

Wall time of each command, process start included; runs alternate between
the tools, in a different order each round; medians reported, and socktool's
median divided by each tool's (below 1: socktool is faster).
Each run's open set is checked against the listeners this script started
and against the others' (nc -z reports self-connects as open: those show up
as its extra ports).

  python bench/bench_scan.py
  python bench/bench_scan.py --rounds 7 --filtered 5 --output bench/results/scan.md
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = "127.0.0.1"  # never anything else
RANGE = "2025-65535"


def socktool_command() -> list[str]:
    exe = Path(sys.executable).with_name("socktool")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "socktool"]


# -- what each tool says is open ---------------------------------------------------
def socktool_open(stdout: str, stderr: str) -> set[int]:
    return {int(m) for m in re.findall(r"^(\d+)/tcp open", stdout, re.MULTILINE)}


def nmap_open(stdout: str, stderr: str) -> set[int]:
    return {int(m) for m in re.findall(r"(\d+)/open/tcp", stdout)}


def nmap_filtered(stdout: str) -> set[int]:
    return {int(m) for m in re.findall(r"(\d+)/filtered/tcp", stdout)}


def nc_open(stdout: str, stderr: str) -> set[int]:
    return {int(m) for m in re.findall(r"Connection to \S+ (\d+) port \S+ succeeded", stderr)}


def socktool_filtered(stdout: str) -> set[int]:  # needs --all
    return {int(m) for m in re.findall(r"^(\d+)/tcp filtered", stdout, re.MULTILINE)}


# -- loopback peers -----------------------------------------------------------------------
def start_listeners(count: int) -> list[socket.socket]:
    """Listeners in the scanned range: half at a free port below the ephemeral range, half at port 0."""
    listeners = []
    candidate = 20000
    while len(listeners) < count:
        sock = socket.socket()
        try:
            if len(listeners) % 2 == 0:
                sock.bind((TARGET, candidate))
                candidate += 1
            else:
                sock.bind((TARGET, 0))
        except OSError:
            sock.close()
            candidate += 1
            continue
        sock.listen(128)
        listeners.append(sock)
    return listeners


def start_filtered(count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        listener = socket.socket()
        listener.bind((TARGET, 0))
        listener.listen(0)
        filler = socket.create_connection(listener.getsockname(), timeout=2)  # fills the queue, never accepted
        sockets += [listener, filler]
    return sockets


def timed(argv: list[str]) -> tuple[float, str, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]}")
    return elapsed, done.stdout, done.stderr


def run_case(tools: dict[str, tuple[list[str], object]], rounds: int) -> dict[str, list[tuple[float, str, str]]]:
    runs: dict[str, list[tuple[float, str, str]]] = {name: [] for name in tools}
    names = list(tools)
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            runs[name].append(timed(tools[name][0]))
    return runs


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(found: list[set[int]], expected: set[int], unstable: set[int]) -> str:
    """How the sets found compare with what listened (ports that came or went during the run aside)."""
    missing = set().union(*(expected - s for s in found)) - unstable
    surplus = set().union(*(s - expected for s in found)) - unstable
    if not missing and not surplus:
        return "all listening ports, nothing else"
    parts = []
    if missing:
        parts.append(f"missed {sorted(missing)}")
    if surplus:
        parts.append(f"extra {sorted(surplus)[:6]}{' …' if len(surplus) > 6 else ''}")
    return "; ".join(parts)


def report_case(title, tools, runs, baseline, expected, unstable, filtered=None) -> list[str]:
    head = "| tool | command | median s | min s | socktool ÷ tool | open ports found |"
    rule = "|---|---|---:|---:|---:|---|"
    if filtered is not None:
        head += " filtered ports found |"
        rule += "---|"
    lines = [f"### {title}", "", head, rule]
    ours = median([r[0] for r in runs[baseline]])
    for name, (argv, parse) in tools.items():
        times = [r[0] for r in runs[name]]
        found = [parse(out, err) for _t, out, err in runs[name]]
        command_text = (
            " ".join(["socktool", *argv[len(socktool_command()) :]]) if name.startswith("socktool") else " ".join(argv)
        )
        row = (
            f"| {name} | `{command_text}` | {median(times):.3f} | {min(times):.3f} | "
            f"{ours / median(times):.2f} | {verdict(found, expected, unstable) if found[0] is not None else 'n/a (prints nothing)'} |"
        )
        if filtered is not None:
            counts = [filtered_in(name, out, err) for _t, out, err in runs[name]]
            exact = sum(1 for c in counts if c == filtered)
            row += f" exactly the {len(filtered)} blocked: {exact}/{len(counts)} runs |"
        lines.append(row)
    lines.append("")
    return lines


def filtered_in(name: str, stdout: str, stderr: str):
    if name.startswith("socktool"):
        return socktool_filtered(stdout)
    return nmap_filtered(stdout)


def listening_now(low: int = 2025, high: int = 65535) -> set[int]:
    """Ports in the range with a TCP listener on 127.0.0.1 or a wildcard address, per /proc."""
    found = set()
    for table, local_ok in (("/proc/net/tcp", ("0100007F", "00000000")), ("/proc/net/tcp6", None)):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, port_hex = fields[1].rsplit(":", 1)
            port = int(port_hex, 16)
            if fields[3] != "0A" or not low <= port <= high:
                continue
            if local_ok is not None and address not in local_ok:
                continue
            if local_ok is None and address not in (
                "00000000000000000000000000000000",
                "0000000000000000FFFF00000100007F",
            ):
                continue
            found.add(port)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--listeners", type=int, default=6)
    parser.add_argument("--filtered", type=int, default=5)
    parser.add_argument("--timeout", default="1s", help="socktool -w and nmap --max-rtt-timeout in the filtered case")
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    args = parser.parse_args()
    for tool in ("nmap", "nc"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")

    st = socktool_command()
    listeners = start_listeners(args.listeners)
    ours = {sock.getsockname()[1] for sock in listeners}
    report = [
        "## portscan: TCP connect scan of 127.0.0.1 ports 2025-65535",
        "",
        f"`python bench/bench_scan.py --rounds {args.rounds} --listeners {args.listeners} --filtered {args.filtered} --timeout {args.timeout}`",
        "",
        f"{args.rounds} rounds, tools alternating; wall time per command, process start included. "
        f"Listeners started for the run: {sorted(ours)}.",
        "",
    ]
    try:
        expected = listening_now()  # ours, and whatever else already listened there
        full = {
            "socktool portscan": ([*st, "portscan", TARGET, RANGE], socktool_open),
            "nmap -sT": (["nmap", "-sT", "-n", "-Pn", f"-p{RANGE}", "-oG", "-", TARGET], nmap_open),
            "nc -z": (["nc", "-z", TARGET, RANGE], lambda out, err: None),  # silent: nothing to check
            "nc -zv": (["nc", "-zv", TARGET, RANGE], nc_open),
        }
        runs = run_case(full, args.rounds)
        unstable = expected ^ listening_now()
        report += report_case("All ports answer (open or refused)", full, runs, "socktool portscan", expected, unstable)

        blocked = start_filtered(args.filtered)
        try:
            filtered_ports = {sock.getsockname()[1] for sock in blocked[::2]}
            timeout = args.timeout
            nmap = ["nmap", "-sT", "-n", "-Pn"]
            cases = {
                f"socktool portscan -w {timeout}": (
                    [*st, "portscan", TARGET, RANGE, "-w", timeout, "--all"],
                    socktool_open,
                ),
                f"nmap -sT --max-rtt-timeout {timeout}": (
                    [*nmap, "--max-rtt-timeout", timeout, f"-p{RANGE}", "-oG", "-", TARGET],
                    nmap_open,
                ),
                "nmap -sT (defaults)": ([*nmap, f"-p{RANGE}", "-oG", "-", TARGET], nmap_open),
                f"nmap -sT --max-retries 0, rtt {timeout}": (
                    [
                        *nmap,
                        "--max-retries",
                        "0",
                        "--initial-rtt-timeout",
                        timeout,
                        "--min-rtt-timeout",
                        timeout,
                        "--max-rtt-timeout",
                        timeout,
                        f"-p{RANGE}",
                        "-oG",
                        "-",
                        TARGET,
                    ],
                    nmap_open,
                ),
            }
            runs = run_case(cases, args.rounds)
            unstable |= expected ^ listening_now()
            report += report_case(
                f"{args.filtered} filtered ports ({sorted(filtered_ports)}) in the range, {timeout} to answer",
                cases,
                runs,
                f"socktool portscan -w {timeout}",
                expected,
                unstable,
                filtered_ports,
            )
        finally:
            for sock in blocked:
                sock.close()
    finally:
        for sock in listeners:
            sock.close()

    text = "\n".join(report)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
