#!/usr/bin/env python3
"""Hostile peers of the UDP services (issue 11, items 1-3): a bounded soak.

  amplification  1,000 random strftime formats (seeded) to time-server over
                 UDP, and the same requests to echo; per request the reply
                 size over max(request, 32) (the rule: at most 1), and the
                 largest plain reply/request ratio for requests of 32 bytes
                 or more (at most 1).
  self-loop      one datagram forged (raw socket, root) from the server's own
                 address and port to the server: the server's CPU time in the
                 2 s after it (utime + stime from /proc/PID/stat), next to an
                 idle server's. Done for echo and time-server, and for
                 time-server with the datagram forged from port 7 (echo).
  held port      a UDP port held by another socket (SO_REUSEADDR set, as an
                 attacker would) and by another user (uid 65534): does the
                 service start there? socktool echo / time-server, and, side
                 by side, ncat -u -l and socat UDP-RECVFROM on the same port.

Traffic stays on 127.0.0.1. Bounded: a few seconds per part.

  sudo python bench/bench_hostile.py             # root for the forged datagrams and the other user
  python bench/bench_hostile.py --formats 1000 --seed 11
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

REPLY_ALLOWANCE = 32
PIECES = ["%c", "%A", "%B", "%Y", "%%", "%x", "%X", "%Z", "%j", "x", "é", " ", "%1024Y", "%0500c", "%9999999Y",
          "%1000%", "%01023s", "%-", "%E", "\n"]  # fmt: skip
CLOCK = os.sysconf("SC_CLK_TCK")


def socktool(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("socktool")
    return [str(exe) if exe.exists() else "socktool", *args]


def start(*args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(socktool(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"listening on \S+:(\d+) \(udp\)", line)
        if match:
            return proc, int(match[1])
    raise SystemExit(f"{args} did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def forge(source_port: int, port: int, payload: bytes) -> None:
    udp = struct.pack("!HHHH", source_port, port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(header + udp, ("127.0.0.1", 0))


# -- amplification --------------------------------------------------------------------------
def amplification(count: int, seed: int) -> None:
    rng = random.Random(seed)
    requests = [b""] + ["".join(rng.choices(PIECES, k=rng.randint(1, 40))).encode() for _ in range(count - 1)]
    print(f"## amplification: {count} random formats (seed {seed})")
    for service in ("time-server", "echo"):
        proc, port = start(service, "--udp-only", "127.0.0.1:0")
        worst_rule = worst_ratio = 0.0
        sent = received = 0
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(5)
                for request in requests:
                    client.sendto(request, ("127.0.0.1", port))
                    reply = client.recv(65535)
                    sent += len(request)
                    received += len(reply)
                    worst_rule = max(worst_rule, len(reply) / max(len(request), REPLY_ALLOWANCE))
                    if len(request) >= REPLY_ALLOWANCE:
                        worst_ratio = max(worst_ratio, len(reply) / len(request))
        finally:
            stop(proc)
        print(
            f"{service:12s} max reply/max(request,32) = {worst_rule:.3f}; "
            f"max reply/request (requests >= 32 B) = {worst_ratio:.3f}; "
            f"bytes out/in = {received}/{sent} = {received / max(sent, 1):.3f}"
        )


# -- self-loop -------------------------------------------------------------------------------
def cpu_after(proc: subprocess.Popen, seconds: float) -> float:
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    return cpu_seconds(proc.pid) - before


def self_loop(seconds: float) -> None:
    print(f"## self-loop: server CPU time in the {seconds:g} s after one forged datagram")
    if os.geteuid() != 0:
        print("skipped: forging a datagram needs root")
        return
    for service, source in (("echo", "own"), ("time-server", "own"), ("time-server", 7)):
        proc, port = start(service, "--udp-only", "127.0.0.1:0")
        try:
            idle = cpu_after(proc, seconds)
            forge(port if source == "own" else int(source), port, b"%Y loop?")
            busy = cpu_after(proc, seconds)
        finally:
            stop(proc)
        print(
            f"{service:12s} forged from {'its own port' if source == 'own' else f'port {source}':12s} "
            f"CPU {busy:.3f} s (idle: {idle:.3f} s)"
        )


# -- held ports --------------------------------------------------------------------------------
HOLD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as exc:
    print("refused", exc.errno, flush=True)
    sys.exit(0)
print("bound", flush=True)
time.sleep(3)
"""


def udp_sockets(port: int) -> int:
    """How many UDP sockets are bound to 127.0.0.1:port (from /proc/net/udp)."""
    local = f"0100007F:{port:04X}"
    return sum(line.split()[1] == local for line in Path("/proc/net/udp").read_text().splitlines()[1:])


def bound_or_exited(proc: subprocess.Popen, port: int, sockets: int, timeout: float = 15) -> str:
    """Wait until `proc` exits ('refused (exit N)') or `sockets` are bound to the port ('bound (runs)')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return f"refused (exit {code})"
        if udp_sockets(port) >= sockets:
            return "bound (runs)"
        time.sleep(0.02)
    return "undecided"


def starts(argv: list[str], port: int) -> str:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return bound_or_exited(proc, port, 2)  # the holder's socket and the server's
    finally:
        stop(proc)


def held_ports() -> None:
    print("## held ports")
    servers = {
        "socktool echo": lambda p: socktool("echo", "--udp-only", "-q", f"127.0.0.1:{p}"),
        "socktool time-server": lambda p: socktool("time-server", "--udp-only", "-q", f"127.0.0.1:{p}"),
    }
    if shutil.which("ncat"):
        servers["ncat -u -l -k"] = lambda p: ["ncat", "-u", "-l", "-k", "127.0.0.1", str(p)]
    if shutil.which("socat"):
        servers["socat UDP-RECVFROM,fork"] = lambda p: ["socat", f"UDP-RECVFROM:{p},bind=127.0.0.1,fork", "PIPE"]
    for name, argv_for in servers.items():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("127.0.0.1", 0))
            port = holder.getsockname()[1]
            outcome = starts(argv_for(port), port)
        line = f"{name:26s} port held (SO_REUSEADDR): {outcome}"
        if os.geteuid() == 0 and os.access("/usr/bin/python3", os.X_OK):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            server = subprocess.Popen(argv_for(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                bound_or_exited(server, port, 1)
                thief = subprocess.run(
                    ["/usr/bin/python3", "-c", HOLD, str(port)],
                    user=65534,
                    group=65534,
                    extra_groups=[],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
            finally:
                stop(server)
            line += f"; uid 65534 binding its port: {thief.stdout.split()[0] if thief.stdout else '?'}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    amplification(args.formats, args.seed)
    self_loop(args.seconds)
    held_ports()


if __name__ == "__main__":
    main()
