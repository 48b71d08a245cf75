#!/usr/bin/env python3
"""Relays: socktool forward vs socat (TCP-LISTEN,fork … TCP:) vs ncat --sh-exec, same run.

Throughput: SIZE bytes from a pipe (`head -c SIZE /dev/zero | nc -N`) through
RELAY to `nc -l | wc -c` on 127.0.0.1, for each relay in turn, ROUNDS times,
alternating; plus `direct` (nc → nc, no relay) as the ceiling. Reports MiB/s
(median; the clock runs from the client's start to the receiving pipeline's
end), that every byte arrived, and the ratios.

Round trips: CLIENTS connections through each relay to one `socktool echo`,
each doing RT round trips of 64 B (bench_echo.py's client: every byte
checked). Reports round trips per second and the ratio to socat.

Memory: the relay's RSS with CLIENTS pairs open (socktool: one process; the
others: the parent only, or the sum of their processes with --sum-rss).

    python bench/bench_forward.py                       # 2 GiB x 3, 1000 clients x 20 (about 3 minutes)
    python bench/bench_forward.py --size 512M --rounds 3 --clients 200 --rt 20
    python bench/bench_forward.py --skip-throughput --relays socktool,socat

Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_echo import CONNECTS_IN_FLIGHT, free_port, rss_kib, run_load, wait_accepting
from bench_tcp import parse_size

HOST = "127.0.0.1"
SOCKTOOL = str(Path(sys.executable).with_name("socktool"))


def relay_command(name: str, port: int, target: int) -> list[str] | None:
    if name == "socktool":
        return [SOCKTOOL, "forward", "-q", f"{HOST}:{port}", f"{HOST}:{target}"]
    if name == "socat":
        return ["socat", f"TCP-LISTEN:{port},bind={HOST},fork,reuseaddr,backlog=4096", f"TCP:{HOST}:{target}"]
    if name == "ncat":
        return ["ncat", "-lk", "--max-conns", "5000", HOST, str(port), "--sh-exec", f"ncat {HOST} {target}"]
    if name == "direct":
        return None
    raise SystemExit(f"unknown relay {name!r}")


class Relay:
    """A relay process from `port` to `target` (nothing for `direct`), stopped with its children."""

    def __init__(self, name: str, port: int, target: int):
        self.name = name
        command = relay_command(name, port, target)
        self.proc = None
        if command is not None:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            wait_bound(port)  # not a probe connection: the target may serve one client only
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited at start (status {self.proc.returncode})")

    def rss_kib(self, total: bool = False) -> int:
        if self.proc is None:
            return 0
        if not total:
            return rss_kib(self.proc.pid)
        return sum(rss_kib(pid) for pid in session_pids(self.proc.pid))

    def cpu_seconds(self, settle: bool = False) -> float:
        """User + system CPU of the relay and its reaped children (a forking relay's sessions)."""
        if self.proc is None:
            return 0.0
        if settle:  # a forking relay reaps the finished session's process on SIGCHLD
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and len(session_pids(self.proc.pid)) > 1:
                time.sleep(0.01)
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def transfer(name: str, size: int) -> dict:
    """One pass of SIZE bytes: client nc → relay → nc -l | wc -c.

    Besides the rate: CPU seconds (user + system) of the relay (its children
    included, once reaped) and of the four endpoint processes (head, both nc,
    wc), from the kernel's accounting: on 2 CPUs, endpoints that need most of
    the machine for themselves set the pace whatever the relay does."""
    target, port = two_ports()
    with tempfile.TemporaryDirectory() as tmp:
        count_file = Path(tmp, "count")
        sink = subprocess.Popen(
            ["bash", "-c", f"nc -l {HOST} {target} < /dev/null | wc -c > {count_file}"],
            start_new_session=True,
        )
        wait_bound(target)
        relay = Relay(name, port, target) if name != "direct" else None
        try:
            relay_before = relay.cpu_seconds() if relay is not None else 0.0
            started = time.monotonic()
            client = subprocess.Popen(
                ["bash", "-c", f"head -c {size} /dev/zero | nc -N {HOST} {port if relay else target}"],
                stdin=subprocess.DEVNULL,
            )
            client_status, client_cpu = wait_cpu(client)
            _status, sink_cpu = wait_cpu(sink)
            seconds = time.monotonic() - started
            relay_cpu = relay.cpu_seconds(settle=True) - relay_before if relay is not None else 0.0
        finally:
            if relay is not None:
                relay.stop()
        counted = int(count_file.read_text().strip() or 0)
    if counted != size or client_status:
        print(f"  {name}: {counted} of {size} bytes arrived, client exit {client_status}", file=sys.stderr)
    gib = size / (1 << 30)
    return {
        "rate": size / seconds / (1 << 20),
        "complete": counted == size and client_status == 0,
        "relay_cpu": relay_cpu / gib,
        "endpoint_cpu": (client_cpu + sink_cpu) / gib,
    }


def wait_cpu(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for `proc`: its exit status and the CPU seconds of it and its reaped children."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def session_pids(session: int) -> list[int]:
    listed = subprocess.run(["pgrep", "-s", str(session)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in listed]


def two_ports() -> tuple[int, int]:
    """Two different free ports (a port just freed may be handed out again at once)."""
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def wait_bound(port: int, timeout: float = 10) -> None:
    """Until something listens on 127.0.0.1:PORT exactly (other tests on the machine use ports too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = subprocess.run(["ss", "-Hltn", "src", f"{HOST}:{port}"], capture_output=True, text=True).stdout
        if listening.strip():
            return
        time.sleep(0.01)
    raise SystemExit(f"nothing listening on {HOST}:{port}")


def throughput(names: list[str], size: int, rounds: int) -> None:
    results: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            result = transfer(name, size)
            results[name].append(result)
            print(
                f"  {name:9s} {result['rate']:8.0f} MiB/s  complete={result['complete']}  "
                f"CPU/GiB relay {result['relay_cpu']:.2f} endpoints {result['endpoint_cpu']:.2f}",
                file=sys.stderr,
            )
    medians = {name: statistics.median(r["rate"] for r in rs) for name, rs in results.items()}
    print(f"\n### Throughput, {size >> 20} MiB x {rounds} (median; load average {os.getloadavg()[0]:.1f} at the end)\n")
    print("| relay | MiB/s | vs socat | vs direct nc → nc | every byte | relay CPU s/GiB | endpoints' CPU s/GiB |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name in names:
        socat = medians.get("socat")
        direct = medians.get("direct")
        vs_socat = f"{medians[name] / socat:.2f}x" if socat else "-"
        vs_direct = f"{medians[name] / direct:.2f}x" if direct else "-"
        complete = all(r["complete"] for r in results[name])
        relay_cpu = statistics.median(r["relay_cpu"] for r in results[name])
        endpoint_cpu = statistics.median(r["endpoint_cpu"] for r in results[name])
        print(
            f"| {name} | {medians[name]:.0f} | {vs_socat} | {vs_direct} | {'yes' if complete else 'NO'} "
            f"| {relay_cpu:.2f} | {endpoint_cpu:.2f} |"
        )


def round_trips(names: list[str], clients: int, rt: int, sum_rss: bool) -> None:
    echo_port = free_port()
    echo = subprocess.Popen(
        [SOCKTOOL, "echo", "--tcp-only", "-q", f"{HOST}:{echo_port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = {}
    try:
        wait_accepting(echo_port)
        for name in names:
            port = free_port()
            while port == echo_port:  # a port just freed may be handed out again at once
                port = free_port()
            relay = Relay(name, port, echo_port)
            try:
                in_flight = CONNECTS_IN_FLIGHT.get(name, 8)
                _setup, seconds, errors = run_load(port, clients, rt, 64, 1, in_flight)
                rows[name] = (clients * rt / seconds, errors, relay.rss_kib(total=sum_rss))
            except (threading.BrokenBarrierError, OSError) as exc:  # a relay that could not take the clients
                print(f"  {name}: the load did not run ({exc!r}); left out of the table", file=sys.stderr)
                continue
            finally:
                relay.stop()
            print(f"  {name:9s} {rows[name][0]:>10,.0f} round trips/s  errors {errors}", file=sys.stderr)
    finally:
        echo.terminate()
        echo.wait(10)
    socat = rows.get("socat", (0,))[0]
    print(f"\n### {clients} clients x {rt} round trips of 64 B through the relay to socktool echo\n")
    print("| relay | round trips/s | vs socat | errors | relay RSS after the run |")
    print("|---|---:|---:|---:|---:|")
    for name, (rate, errors, rss) in rows.items():
        ratio = f"{rate / socat:.2f}x" if socat else "-"
        scope = "" if name == "socktool" or sum_rss else " (parent only)"
        print(f"| {name} | {rate:,.0f} | {ratio} | {errors} | {rss / 1024:.0f} MiB{scope} |")


def open_pairs_rss(clients: int) -> None:
    """socktool forward's RSS with CLIENTS pairs open at once (idle)."""
    import socket

    echo_port, port = two_ports()
    echo = subprocess.Popen([SOCKTOOL, "echo", "--tcp-only", "-q", f"{HOST}:{echo_port}"])
    relay = None
    socks = []
    try:
        wait_accepting(echo_port)
        relay = Relay("socktool", port, echo_port)
        before = relay.rss_kib()
        for _ in range(clients):
            sock = socket.create_connection((HOST, port), timeout=10)
            sock.sendall(b"x")
            socks.append(sock)
        for sock in socks:
            sock.recv(1)  # every pair is open end to end
        with_pairs = relay.rss_kib()
        print(
            f"\n### socktool forward RSS: {before / 1024:.1f} MiB idle, {with_pairs / 1024:.1f} MiB with {clients} pairs"
        )
    finally:
        for sock in socks:
            sock.close()
        if relay is not None:
            relay.stop()
        echo.terminate()
        echo.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="2G")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rt", type=int, default=20, help="round trips per client")
    parser.add_argument("--relays", default="socktool,socat,ncat,direct")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-round-trips", action="store_true")
    parser.add_argument("--sum-rss", action="store_true", help="count every process of a forking relay")
    args = parser.parse_args()

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    names = [n for n in args.relays.split(",") if n in ("socktool", "direct") or shutil.which(n)]
    print(f"# socktool forward vs {', '.join(n for n in names if n != 'socktool')}; {os.cpu_count()} CPUs")
    if not args.skip_throughput:
        throughput(names, parse_size(args.size), args.rounds)
    if not args.skip_round_trips:
        round_trips([n for n in names if n != "direct"], args.clients, args.rt, args.sum_rss)
        open_pairs_rss(args.clients)
    return 0


if __name__ == "__main__":
    sys.exit(main())
