#!/usr/bin/env python3
"""TLS pipe benchmark: socktool vs ncat --ssl vs socat OPENSSL, same run, alternating.

SIZE bytes from a pipe (`head -c SIZE /dev/zero`) through a TLS CLIENT →
TLS LISTENER on 127.0.0.1 into a pipe (`wc -c`), for each tool in turn,
ROUNDS times, the way a file is sent: the client only sends (--send-only,
socat -u), the listener only receives. Reports MiB/s (median), the ratio to
socat, and the byte count each tool delivered (ncat's sender skips
close_notify; its reader may drop the tail).

All listeners use one ECDSA P-256 certificate made here with openssl; the
clients do not verify it (the point is the data path, not the check).

    python bench/bench_tls.py                  # 1 GiB, 3 rounds
    python bench/bench_tls.py --size 2G --rounds 3   # issue 13's figure, about 3 minutes
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_tcp import free_port, parse_size  # this directory: run as python bench/...

SOCKTOOL = str(Path(sys.executable).with_name("socktool"))

TOOLS = {
    "socktool": {
        "listen": f"{SOCKTOOL} tcp-listen -q --recv-only --tls --cert {{cert}} --key {{key}} 127.0.0.1:{{port}}",
        "connect": f"{SOCKTOOL} tcp-connect -q --send-only --tls --insecure 127.0.0.1:{{port}}",
    },
    "ncat": {
        "listen": "ncat -l --recv-only --ssl --ssl-cert {cert} --ssl-key {key} 127.0.0.1 {port}",
        "connect": "ncat --send-only --ssl 127.0.0.1 {port}",
    },
    "socat": {
        "listen": "socat -u OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={cert},key={key},verify=0 STDOUT",
        "connect": "socat -u STDIN OPENSSL:127.0.0.1:{port},verify=0",
    },
}


def make_certificate(directory: str) -> tuple[str, str]:
    """An ECDSA P-256 certificate and key for localhost, a day long, made with openssl."""
    cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def wait_for(port: int, timeout: float = 10.0) -> None:
    """Until the listener's port accepts (probing with a connect would use up a
    one-client listener, so look at the kernel's table instead)."""
    deadline = time.monotonic() + timeout
    needle = f":{port:04X} "
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as table:
            if any(needle in line and line.split()[3] == "0A" for line in table):
                return
        time.sleep(0.01)
    raise RuntimeError(f"nothing listening on {port}")


def children_cpu() -> float:
    """CPU seconds (user + system) of every child waited for so far, and of theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_round(tool: str, size: int, cert: str, key: str) -> tuple[float, int, float]:
    """(seconds, bytes delivered, CPU seconds of both ends with head and wc)."""
    cpu_before = children_cpu()
    port = free_port()
    fmt = {"port": port, "cert": cert, "key": key}
    listener = subprocess.Popen(
        f"{TOOLS[tool]['listen'].format(**fmt)} | wc -c", shell=True, stdout=subprocess.PIPE, text=True
    )
    wait_for(port)
    started = time.monotonic()
    subprocess.run(f"head -c {size} /dev/zero | {TOOLS[tool]['connect'].format(**fmt)}", shell=True, check=False)
    out, _ = listener.communicate(timeout=600)
    elapsed = time.monotonic() - started
    return elapsed, int(out.strip() or 0), children_cpu() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="1G")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    size = parse_size(args.size)
    tools = args.tools.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_certificate(tmp)
        rates: dict[str, list[float]] = {tool: [] for tool in tools}
        counts: dict[str, list[int]] = {tool: [] for tool in tools}
        cpus: dict[str, list[float]] = {tool: [] for tool in tools}
        for round_ in range(args.rounds):
            order = tools[round_ % len(tools) :] + tools[: round_ % len(tools)]
            for tool in order:
                elapsed, received, cpu = one_round(tool, size, cert, key)
                rates[tool].append(received / elapsed / (1 << 20))
                counts[tool].append(received)
                cpus[tool].append(cpu / (received / (1 << 30)) if received else float("inf"))
                print(
                    f"round {round_ + 1} {tool:9} {received / elapsed / (1 << 20):8.1f} MiB/s  {received} bytes"
                    f"  {cpus[tool][-1]:5.2f} CPU s/GiB",
                    flush=True,
                )
    base = statistics.median(rates["socat"]) if "socat" in rates else None
    base_cpu = statistics.median(cpus["socat"]) if "socat" in cpus else None
    print(f"\n{args.size} × {args.rounds} rounds, median MiB/s; bytes delivered of {size};")
    print("CPU s/GiB: both ends, head and wc together (what the load cannot skew)")
    for tool in tools:
        median, cpu = statistics.median(rates[tool]), statistics.median(cpus[tool])
        ratio = f"{median / base:.2f}× socat" if base else ""
        cpu_ratio = f"{cpu / base_cpu:.2f}× socat's CPU" if base_cpu else ""
        lost = [size - count for count in counts[tool]]
        delivered = "every byte" if not any(lost) else f"short by {', '.join(str(n) for n in lost)} bytes"
        print(f"  {tool:9} {median:8.1f}  {ratio:12}  {cpu:5.2f} CPU s/GiB {cpu_ratio:20}  {delivered}")


if __name__ == "__main__":
    main()
