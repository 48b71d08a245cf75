#!/usr/bin/env python3
"""udp-listen --raw vs `socat -u UDP-RECV:PORT STDOUT`: receive rate and loss.

Each receiver writes to /dev/null; this script is the one sender for all of
them (64-byte datagrams to 127.0.0.1). What a receiver took is read from the
kernel, not from its output: /proc/net/udp counts the datagrams its socket
dropped, so received = sent - dropped once its queue has drained.

  flood  send COUNT datagrams as fast as one Python process can;
         rate = received / (time from the first send until the queue drained)
  paced  send at RATE datagrams/s for SECONDS; loss = dropped / sent

Runs alternate between the receivers, in a different order each round, so
that drift of the machine hits them alike. Reports medians and ratios.

  python bench/bench_udp.py                       # defaults below
  python bench/bench_udp.py --rounds 5 --flood-count 500000 --paced-rate 50000 --paced-seconds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

PAYLOAD = b"x" * 64
ROOT = Path(__file__).resolve().parent.parent


def socktool_command() -> list[str]:
    exe = Path(sys.executable).with_name("socktool")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "socktool"]


def receivers(port: int, *, with_buffer_variant: bool) -> dict[str, list[str]]:
    tools = {
        "socktool udp-listen --raw": [*socktool_command(), "udp-listen", f"127.0.0.1:{port}", "--raw", "-q"],
        "socat -u UDP-RECV": ["socat", "-u", f"UDP-RECV:{port},bind=127.0.0.1", "STDOUT"],
    }
    if with_buffer_variant:
        # socktool asks for an 8 MiB receive queue; this shows socat given a deep one too.
        tools["socat -u UDP-RECV,rcvbuf=8M"] = [
            "socat",
            "-u",
            f"UDP-RECV:{port},bind=127.0.0.1,rcvbuf=8388608",
            "STDOUT",
        ]
    return tools


# -- the kernel's view of the receiving socket ---------------------------------------
def socket_line(port: int) -> list[str] | None:
    """The /proc/net/udp row of the socket bound to 127.0.0.1:port."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 12 and fields[1] == local:
                return fields
    return None


def queue_and_drops(port: int) -> tuple[int, int]:
    fields = socket_line(port)
    if fields is None:
        raise RuntimeError(f"no socket on 127.0.0.1:{port}")
    rx_queue = int(fields[4].split(":")[1], 16)
    return rx_queue, int(fields[12])


def wait_bound(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while socket_line(port) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"receiver did not bind 127.0.0.1:{port}: {proc.args}")
        time.sleep(0.01)


def wait_drained(port: int, timeout: float = 30) -> float:
    """Poll until the socket's receive queue is empty; the time it was first seen empty."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if queue_and_drops(port)[0] == 0:
            return now
        if now > deadline:
            raise RuntimeError("receiver did not drain its queue")
        time.sleep(0.0005)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- senders ------------------------------------------------------------------------
def flood(sock: socket.socket, address: tuple[str, int], count: int) -> int:
    sendto = sock.sendto
    for _ in range(count):
        sendto(PAYLOAD, address)
    return count


def paced(sock: socket.socket, address: tuple[str, int], rate: int, seconds: float) -> int:
    """Send at `rate` datagrams/s: each datagram goes when its time comes (spinning)."""
    sendto, clock = sock.sendto, time.perf_counter
    total = int(rate * seconds)
    start = clock()
    sent = 0
    while sent < total:
        due = min(total, int((clock() - start) * rate) + 1)
        while sent < due:
            sendto(PAYLOAD, address)
            sent += 1
    return sent


def run_once(name: str, argv: list[str], port: int, kind: str, args: argparse.Namespace) -> dict:
    out = open(os.devnull, "wb")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        wait_bound(port, proc)
        _, drops_before = queue_and_drops(port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        address = ("127.0.0.1", port)
        start = time.monotonic()
        if kind == "flood":
            sent = flood(sock, address, args.flood_count)
        else:
            sent = paced(sock, address, args.paced_rate, args.paced_seconds)
        sent_at = time.monotonic()
        drained = wait_drained(port)
        _, drops = queue_and_drops(port)
        sock.close()
        dropped = drops - drops_before
        received = sent - dropped
        return {
            "tool": name,
            "kind": kind,
            "sent": sent,
            "received": received,
            "loss": dropped / sent,
            "rate": received / (drained - start),
            "send_rate": sent / (sent_at - start),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        if proc.stderr is not None:
            proc.stderr.close()


def verify(argv_for, args: argparse.Namespace) -> list[str]:
    """One run per receiver with output to a file: what it wrote must match the kernel's count."""
    notes = []
    for name in receivers(0, with_buffer_variant=args.socat_rcvbuf):
        port = free_udp_port()
        argv = argv_for(port)[name]
        path = Path(f"/tmp/bench-udp-verify-{os.getpid()}")
        with open(path, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            try:
                wait_bound(port, proc)
                _, before = queue_and_drops(port)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sent = flood(sock, ("127.0.0.1", port), 100_000)
                wait_drained(port)
                received = sent - (queue_and_drops(port)[1] - before)
                time.sleep(0.2)  # let the last write land
            finally:
                proc.terminate()
                proc.wait(timeout=5)
        size = path.stat().st_size
        path.unlink()
        ok = size == received * len(PAYLOAD)
        notes.append(
            f"{name}: kernel says {received} received, output has {size // len(PAYLOAD)} ({'ok' if ok else 'MISMATCH'})"
        )
        if not ok:
            raise SystemExit("verification failed: " + notes[-1])
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flood-count", type=int, default=500_000)
    parser.add_argument("--paced-rate", type=int, default=50_000)
    parser.add_argument("--paced-seconds", type=float, default=3.0)
    parser.add_argument(
        "--no-socat-rcvbuf",
        dest="socat_rcvbuf",
        action="store_false",
        help="skip the extra socat run with an 8 MiB receive buffer",
    )
    args = parser.parse_args()
    if shutil.which("socat") is None:
        raise SystemExit("socat is not installed")
    if not os.path.exists("/proc/net/udp"):
        raise SystemExit("needs Linux's /proc/net/udp to count drops")

    def argv_for(port: int) -> dict[str, list[str]]:
        return receivers(port, with_buffer_variant=args.socat_rcvbuf)

    for note in verify(argv_for, args):
        print("verify:", note)
    results: list[dict] = []
    names = list(argv_for(0))
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for kind in ("flood", "paced"):
            for name in order:
                port = free_udp_port()
                result = run_once(name, argv_for(port)[name], port, kind, args)
                results.append(result)
                print(
                    f"round {round_ + 1} {kind:5} {name:30} sent {result['sent']:>7} "
                    f"received {result['received']:>7}  {result['rate']:>9.0f}/s  loss {result['loss']:6.2%}  "
                    f"(sender {result['send_rate']:.0f}/s)",
                    flush=True,
                )
    print()
    print(report(results, names, args))


def report(results: list[dict], names: list[str], args: argparse.Namespace) -> str:
    def med(kind: str, name: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["kind"] == kind and r["tool"] == name)

    base = names[1]  # plain socat
    lines = [
        f"| receiver | flood: received/s (median of {args.rounds}) | vs socat | flood loss | "
        f"paced {args.paced_rate:,}/s: loss (median) | paced loss, worst |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        rate = med("flood", name, "rate")
        worst = max(r["loss"] for r in results if r["kind"] == "paced" and r["tool"] == name)
        lines.append(
            f"| {name} | {rate:,.0f} | {rate / med('flood', base, 'rate'):.2f}× | "
            f"{med('flood', name, 'loss'):.1%} | {med('paced', name, 'loss'):.2%} | {worst:.2%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
