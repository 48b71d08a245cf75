#!/usr/bin/env python3
"""TLS handshakes per second: socktool echo --tls and tcp-listen -k --tls vs ncat --ssl -lk.

CLIENTS clients at once (default 1,000, spread over --procs client processes,
asyncio), each doing HANDSHAKES handshakes one after another against a TLS
listener on 127.0.0.1: connect, handshake (TLS 1.3, ECDSA P-256, no
verification: the point is the server's handshake path), then an abortive
close (RST, so that no TIME_WAIT piles up on either side). Reports
handshakes per second (median of --rounds, tools alternating) and the ratio
to ncat; a handshake that fails or takes longer than 10 s is counted, not
timed. The listeners all use one certificate made here with openssl; ncat
is given --max-conns to match the clients (its default is 100).

    python bench/bench_tls_handshakes.py                     # 1,000 clients x 3, 3 rounds
    python bench/bench_tls_handshakes.py --clients 200 --handshakes 5 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_echo import wait_accepting  # this directory: run as python bench/...
from bench_hostile import cpu_seconds
from bench_tls import free_port, make_certificate

SOCKTOOL = str(Path(sys.executable).with_name("socktool"))

TOOLS = {
    "socktool-echo": f"{SOCKTOOL} echo -q --tcp-only --tls --cert {{cert}} --key {{key}} 127.0.0.1:{{port}}",
    "socktool-listen": f"{SOCKTOOL} tcp-listen -q -k --tls --cert {{cert}} --key {{key}} 127.0.0.1:{{port}}",
    "ncat": "ncat --ssl --ssl-cert {cert} --ssl-key {key} -l -k --max-conns {clients} 127.0.0.1 {port}",
}
TIMEOUT = 10.0


async def _client(port: int, count: int, ctx: ssl.SSLContext, failures: list[str]) -> int:
    done = 0
    for _ in range(count):
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), TIMEOUT)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            failures.append(type(exc).__name__)
            continue
        writer.transport.abort()
        done += 1
    return done


async def _clients(port: int, clients: int, count: int) -> tuple[int, list[str]]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    failures: list[str] = []
    done = await asyncio.gather(*(_client(port, count, ctx, failures) for _ in range(clients)))
    return sum(done), failures


def _client_process(args: tuple[int, int, int]) -> tuple[int, list[str]]:
    return asyncio.run(_clients(*args))


def one_round(
    tool: str, clients: int, handshakes: int, procs: int, cert: str, key: str
) -> tuple[float, float, int, int]:
    """(handshakes per second, listener CPU ms per handshake, done, failed) against a fresh listener."""
    port = free_port()
    command = TOOLS[tool].format(port=port, cert=cert, key=key, clients=clients)
    server = subprocess.Popen(
        f"exec {command}", shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_accepting(port)
        shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            cpu_before = cpu_seconds(server.pid)
            started = time.monotonic()
            results = pool.map(_client_process, [(port, share, handshakes) for share in shares])
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=10)
    done = sum(result[0] for result in results)
    failed = sum(len(result[1]) for result in results)
    return done / elapsed, cpu * 1000 / max(1, done), done, failed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--handshakes", type=int, default=3, help="per client, one after another")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    tools = args.tools.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_certificate(tmp)
        rates: dict[str, list[float]] = {tool: [] for tool in tools}
        costs: dict[str, list[float]] = {tool: [] for tool in tools}
        failed: dict[str, int] = {tool: 0 for tool in tools}
        for round_ in range(args.rounds):
            order = tools[round_ % len(tools) :] + tools[: round_ % len(tools)]
            for tool in order:
                rate, cost, done, bad = one_round(tool, args.clients, args.handshakes, args.procs, cert, key)
                rates[tool].append(rate)
                costs[tool].append(cost)
                failed[tool] += bad
                print(
                    f"round {round_ + 1} {tool:16} {rate:8.1f} handshakes/s  {cost:6.2f} CPU ms each"
                    f"  ({done} done, {bad} failed)",
                    flush=True,
                )
    base = statistics.median(rates["ncat"]) if "ncat" in rates else None
    base_cost = statistics.median(costs["ncat"]) if "ncat" in costs else None
    total = args.clients * args.handshakes
    load = os.getloadavg()[0]
    print(f"\n{args.clients} clients x {args.handshakes} handshakes ({total} a round), {args.rounds} rounds, median;")
    print(f"load average {load:.1f} at the end")
    print("| listener | handshakes/s | vs ncat | listener CPU ms / handshake | vs ncat | failed |")
    print("|---|---:|---:|---:|---:|---:|")
    for tool in tools:
        median, cost = statistics.median(rates[tool]), statistics.median(costs[tool])
        ratio = f"{median / base:.2f}x" if base else ""
        cost_ratio = f"{cost / base_cost:.2f}x" if base_cost else ""
        print(f"| {tool} | {median:.0f} | {ratio} | {cost:.2f} | {cost_ratio} | {failed[tool]} |")


if __name__ == "__main__":
    main()
