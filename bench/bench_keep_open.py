#!/usr/bin/env python3
"""Many clients on one server: socktool tcp-listen -k and echo vs ncat, in the same run.

Three measurements (pick with --only):

- throughput: CLIENTS clients each send SIZE bytes at once to
  `socktool tcp-listen -k` and to `ncat -lk`; stdout is counted by this
  script. MiB/s = all bytes / (first connect → last byte on stdout); every
  byte must arrive.
- idle: IDLE clients connect and stay idle, held by `socktool tcp-listen -k`,
  `socktool echo --tcp-only` and `ncat -lk`. Reported: the server's RSS
  before and with them (VmRSS), per 1,000 clients, its thread count, and the
  latency of one more client while they are held (connect, send a line,
  until the line is on stdout, or echoed back), the median of 20.
- stall: head -c SIZE /dev/zero | tcp-listen -k with READERS clients, one of
  which never reads. Reported: whether the others got every byte, how long
  it took, and what became of the stalled one; ncat -lk alongside (bounded
  by --stall-timeout).

    python bench/bench_keep_open.py                       # all three, defaults below
    python bench/bench_keep_open.py --only idle --idle 10000
    python bench/bench_keep_open.py --only throughput --clients 50 --size 20M

Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
SOCKTOOL = Path(sys.executable).with_name("socktool")
MiB = 1024 * 1024


def socktool(*args: str) -> list[str]:
    exe = [str(SOCKTOOL)] if SOCKTOOL.exists() else [sys.executable, "-m", "socktool"]
    return [*exe, *args]


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_accepting(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket() as probe:
                probe.settimeout(1)
                probe.connect((HOST, port))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing accepted connections on port {port}") from None
            time.sleep(0.02)


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read())[1])


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listen_command(name: str, port: int) -> list[str]:
    if name == "socktool":
        return socktool("tcp-listen", "-k", "-q", f"{HOST}:{port}")
    if name == "ncat":
        return ["ncat", "-lk", "--max-conns", "20000", HOST, str(port)]
    if name == "echo":
        return socktool("echo", "--tcp-only", "-q", f"{HOST}:{port}")
    raise SystemExit(f"unknown server {name!r}")


class Counter(threading.Thread):
    """Counts what a server writes to stdout (and keeps the last bytes, to find a marker)."""

    def __init__(self, fd: int, *, discard: bool = False):
        super().__init__(daemon=True)
        self.fd = fd
        self.discard = discard  # count only: splice into /dev/null, never copy the bytes here
        self.count = 0
        self.tail = b""
        self.changed = threading.Condition()

    def run(self) -> None:
        if self.discard:
            null = os.open(os.devnull, os.O_WRONLY)
            while moved := os.splice(self.fd, null, MiB):
                with self.changed:
                    self.count += moved
                    self.changed.notify_all()
            with self.changed:
                self.changed.notify_all()
            return
        while chunk := os.read(self.fd, MiB):
            with self.changed:
                self.count += len(chunk)
                self.tail = (self.tail + chunk)[-4096:]
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_count(self, total: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.count < total:
                left = deadline - time.monotonic()
                if left <= 0 or not self.is_alive():
                    return False
                self.changed.wait(min(left, 0.5))
        return True

    def wait_marker(self, marker: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while marker not in self.tail:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True


# -- throughput ------------------------------------------------------------------------
def throughput(name: str, clients: int, size: int, timeout: float, reader: str) -> dict:
    port = free_port()
    proc = subprocess.Popen(listen_command(name, port), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        wait_accepting(port)
        counter = Counter(proc.stdout.fileno(), discard=reader == "splice")
        counter.start()
        payload = memoryview(bytes(size))
        socks = []
        started = time.monotonic()

        def send(sock: socket.socket) -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        senders = []
        for _ in range(clients):
            sock = socket.create_connection((HOST, port), timeout=30)
            socks.append(sock)
            thread = threading.Thread(target=send, args=(sock,), daemon=True)
            thread.start()
            senders.append(thread)
        total = clients * size
        complete = counter.wait_count(total, timeout)
        elapsed = time.monotonic() - started
        for sock in socks:
            sock.close()
        return {
            "server": name,
            "reader": reader,
            "MiB/s": total / MiB / elapsed,
            "seconds": elapsed,
            "every byte": complete and counter.count == total,
            "bytes": counter.count,
        }
    finally:
        stop(proc)


# -- idle clients -------------------------------------------------------------------------
def idle(name: str, count: int, samples: int = 20) -> dict:
    port = free_port()
    out_r, out_w = os.pipe()
    proc = subprocess.Popen(listen_command(name, port), stdin=subprocess.PIPE, stdout=out_w, stderr=subprocess.PIPE)
    os.close(out_w)
    counter = Counter(out_r)
    counter.start()
    held: list[socket.socket] = []
    try:
        wait_accepting(port)
        time.sleep(0.3)
        before = rss_kib(proc.pid)
        selector = selectors.DefaultSelector()
        in_flight = 0
        # Non-blocking connects, a few in flight at a time: fewer than the server's accept queue
        # holds (ncat's is 10 and cannot be set), or dropped SYNs cost each a retry of a second or more.
        most = 8 if name == "ncat" else 200
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((HOST, port))
            selector.register(sock, selectors.EVENT_WRITE)
            held.append(sock)
            in_flight += 1
            while in_flight >= most:
                for key, _ in selector.select(5):
                    selector.unregister(key.fileobj)
                    in_flight -= 1
        while in_flight:
            ready = selector.select(5)
            if not ready:
                break
            for key, _ in ready:
                selector.unregister(key.fileobj)
                in_flight -= 1
        deadline = time.monotonic() + 60
        while len(os.listdir(f"/proc/{proc.pid}/fd")) < count and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.1)  # until the server has accepted them all
        time.sleep(0.5)
        if proc.poll() is not None:
            why = proc.stderr.read().decode(errors="replace").strip().splitlines()
            return {"server": name, "clients": count, "failed": f"exit {proc.returncode}: {why[-1] if why else ''}"}
        descriptors = len(os.listdir(f"/proc/{proc.pid}/fd"))
        with_clients = rss_kib(proc.pid)
        latencies = []
        for n in range(samples):
            line = f"probe {n}\n".encode()
            started = time.monotonic()
            with socket.create_connection((HOST, port), timeout=10) as sock:
                sock.sendall(line)
                if name == "echo":
                    got = b""
                    while len(got) < len(line):
                        got += sock.recv(100)
                elif not counter.wait_marker(line, 10):
                    raise SystemExit(f"{name}: the probe line never reached stdout")
                latencies.append(time.monotonic() - started)
        return {
            "server": name,
            "clients": count,
            "RSS before": before / 1024,
            "RSS with clients": with_clients / 1024,
            "per 1,000 clients": (with_clients - before) / 1024 / count * 1000,
            "server fds": descriptors,
            "threads": threads(proc.pid),
            "new client (median)": statistics.median(latencies) * 1000,
            "new client (max)": max(latencies) * 1000,
        }
    finally:
        for sock in held:
            sock.close()
        stop(proc)


# -- one stalled reader ---------------------------------------------------------------------
def stall(name: str, readers: int, size: int, timeout: float) -> dict:
    port = free_port()
    stdin_r, stdin_w = os.pipe()
    command = listen_command(name, port)
    if name == "socktool":
        command = socktool("tcp-listen", "-k", "-v", f"{HOST}:{port}")
    proc = subprocess.Popen(command, stdin=stdin_r, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(stdin_r)
    stderr_lines: list[str] = []
    threading.Thread(target=lambda: stderr_lines.extend(line.decode() for line in proc.stderr), daemon=True).start()
    feeder = None
    try:
        wait_accepting(port)
        stalled = socket.create_connection((HOST, port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks = [socket.create_connection((HOST, port)) for _ in range(readers - 1)]
        time.sleep(1.0)  # every client accepted before the data starts
        got = [0] * len(socks)
        done = [threading.Event() for _ in socks]

        def read(index: int, sock: socket.socket) -> None:
            buffer = bytearray(MiB)
            sock.settimeout(timeout)
            try:
                while n := sock.recv_into(buffer):
                    got[index] += n
                    if got[index] >= size:
                        break
            except OSError:
                pass
            done[index].set()

        for index, sock in enumerate(socks):
            threading.Thread(target=read, args=(index, sock), daemon=True).start()
        started = time.monotonic()
        feeder = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=stdin_w)
        os.close(stdin_w)
        deadline = started + timeout
        for event in done:
            event.wait(max(0.0, deadline - time.monotonic()))
        elapsed = time.monotonic() - started
        everyone = all(n == size for n in got)
        dropped = any("dropped" in line for line in stderr_lines)
        for sock in [stalled, *socks]:
            sock.close()
        return {
            "server": name,
            "readers": readers,
            "others got every byte": everyone,
            "MiB each (min)": min(got) / MiB,
            "seconds": elapsed,
            "stalled reader": "dropped with a warning" if dropped else "kept",
        }
    finally:
        if feeder is not None:
            feeder.kill()
            feeder.wait()
        stop(proc)


def table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [_cell(row.get(key, "")) for key in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["throughput", "idle", "stall"], action="append")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--size", default="20M", help="bytes each throughput client sends")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per server (alternating)")
    parser.add_argument(
        "--reader",
        choices=["read", "splice"],
        action="append",
        help="how stdout is consumed: read() into memory (as `wc -c`), or splice into /dev/null (default: both)",
    )
    parser.add_argument("--idle", type=int, default=1000, help="idle clients")
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--stall-size", default="1G")
    parser.add_argument("--stall-timeout", type=float, default=60.0)
    args = parser.parse_args()
    only = args.only or ["throughput", "idle", "stall"]
    raise_fd_limit()
    have_ncat = shutil.which("ncat") is not None
    print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    if "throughput" in only:
        size = parse_size(args.size)
        rows = []
        readers = args.reader or ["read", "splice"]
        for _ in range(args.rounds):
            for reader in readers:
                for name in ["socktool", "ncat"] if have_ncat else ["socktool"]:
                    rows.append(throughput(name, args.clients, size, 120, reader))
                    print(rows[-1], flush=True)
        print(f"\n## throughput: {args.clients} clients x {args.size} to stdout\n")
        print(table(rows))
        for reader in readers:
            for name in ("socktool", "ncat"):
                best = [r["MiB/s"] for r in rows if r["server"] == name and r["reader"] == reader]
                if best:
                    print(f"{name}, stdout by {reader}: median {statistics.median(best):,.0f} MiB/s")
    if "idle" in only:
        rows = []
        for name in ["socktool", "echo", "ncat"] if have_ncat else ["socktool", "echo"]:
            rows.append(idle(name, args.idle))
            print(rows[-1], flush=True)
        print(f"\n## idle: {args.idle} clients held\n")
        print(table(rows))
    if "stall" in only:
        rows = []
        for name in ["socktool", "ncat"] if have_ncat else ["socktool"]:
            rows.append(stall(name, args.readers, parse_size(args.stall_size), args.stall_timeout))
            print(rows[-1], flush=True)
        print(f"\n## stall: {args.stall_size} of stdin to {args.readers} readers, one never reads\n")
        print(table(rows))


if __name__ == "__main__":
    main()
