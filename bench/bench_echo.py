#!/usr/bin/env python3
"""Echo servers under load: socktool echo vs socat vs ncat, in the same run.

Each server is started on a free loopback port and gets the same load:
CLIENTS TCP connections open at once, each doing ROUNDS round trips of SIZE
bytes (send a message, read it back, check every byte, send the next). One
warm-up round trip per connection comes first and is not timed, so that a
forking server (socat, ncat) has its per-connection processes running.

The client is an epoll loop; --procs splits the clients over several
client processes (started together, timed from the first start to the
last finish). Reported: round trips per second and the ratio to socat.

    python bench/bench_echo.py                     # 1000 clients x 200 round trips
    python bench/bench_echo.py --rounds 20         # the acceptance load
    python bench/bench_echo.py --servers socktool  # one server only

Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
SOCKTOOL = Path(sys.executable).with_name("socktool")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# Clients connected at once during set-up: below each server's accept queue
# (ncat's is 10 and cannot be set), or the kernel drops SYNs and each costs a
# retry after a second or more.
CONNECTS_IN_FLIGHT = {"socktool": 250, "socktool-old": 250, "socat": 250, "ncat": 8}
OLD_SOURCE: str | None = None  # --old-source: a socktool source tree to compare with (as socktool-old)


def server_command(name: str, port: int) -> list[str]:
    if name == "socktool":
        exe = [str(SOCKTOOL)] if SOCKTOOL.exists() else [sys.executable, "-m", "socktool"]
        return [*exe, "echo", "--tcp-only", "-q", f"{HOST}:{port}"]
    if name == "socktool-old":
        assert OLD_SOURCE is not None
        return [sys.executable, "-c", _RUN_FROM.format(src=OLD_SOURCE), "echo", "--tcp-only", "-q", f"{HOST}:{port}"]
    if name == "socat":
        return ["socat", f"TCP-LISTEN:{port},bind={HOST},fork,reuseaddr,backlog=4096", "EXEC:cat"]
    if name == "ncat":
        return ["ncat", "-lk", "--max-conns", "5000", "--exec", "/bin/cat", HOST, str(port)]
    raise SystemExit(f"unknown server {name!r}")


_RUN_FROM = "import sys; sys.path.insert(0, {src!r}); from socktool.cli.boundary import main; sys.exit(main())"


def wait_accepting(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing accepted connections on port {port}") from None
            time.sleep(0.02)


# -- the client ------------------------------------------------------------------
def message(pool: bytes, conn: int, round_: int, size: int) -> bytes:
    start = (conn * 7919 + round_ * 104729) % (len(pool) - size)
    return pool[start : start + size]


def open_clients(port: int, count: int) -> list[socket.socket]:
    """`count` connected non-blocking sockets, connected in parallel."""
    done: list[socket.socket] = []
    pending: dict[int, socket.socket] = {}
    epoll = select.epoll()
    deadline = time.monotonic() + 120
    started = 0
    while len(done) < count:
        while started < count:
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((HOST, port))
            pending[sock.fileno()] = sock
            epoll.register(sock.fileno(), select.EPOLLOUT)
            started += 1
        if time.monotonic() > deadline:
            raise SystemExit(f"could not open {count} connections to port {port}")
        for fd, _ in epoll.poll(1.0):
            sock = pending.pop(fd)
            epoll.unregister(fd)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                sock.close()
                started -= 1  # try that one again
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            done.append(sock)
    epoll.close()
    return done


def ping_pong(socks: list[socket.socket], first_conn: int, rounds: int, size: int, pool: bytes, round_base: int) -> int:
    """Every socket does `rounds` round trips; returns the number of bad replies."""
    epoll = select.epoll(len(socks))
    state = {}  # fd → [sock, conn, round, expected, received bytearray]
    for index, sock in enumerate(socks):
        conn = first_conn + index
        expected = message(pool, conn, round_base, size)
        state[sock.fileno()] = [sock, conn, 0, expected, bytearray()]
    active = len(socks)
    errors = 0
    for sock in socks:
        try:
            sock.send(state[sock.fileno()][3])
            epoll.register(sock.fileno(), select.EPOLLIN)
        except OSError:
            errors += 1
            active -= 1
    while active:
        for fd, _events in epoll.poll():
            entry = state[fd]
            sock = entry[0]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                errors += 1
                epoll.unregister(fd)
                active -= 1
                continue
            got = entry[4]
            got += data
            if len(got) < size:
                continue
            if got != entry[3]:
                errors += 1
            got.clear()
            entry[2] += 1
            if entry[2] == rounds:
                epoll.unregister(fd)
                active -= 1
                continue
            entry[3] = message(pool, entry[1], round_base + entry[2], size)
            try:
                sock.send(entry[3])
            except OSError:
                errors += 1
                epoll.unregister(fd)
                active -= 1
    epoll.close()
    return errors


def client_worker(port, first_conn, count, rounds, size, in_flight, barrier, results) -> None:
    pool = os.urandom(1 << 16)
    # Connect in batches, each one warmed up (one round trip, untimed) before
    # the next: the round trip proves the server took the batch off its
    # accept queue, so that queue never overflows.
    socks: list[socket.socket] = []
    warmup_errors = 0
    while len(socks) < count:
        batch = open_clients(port, min(in_flight, count - len(socks)))
        warmup_errors += ping_pong(batch, first_conn + len(socks), 1, size, pool, 10_000)
        socks += batch
    barrier.wait()
    started = time.monotonic()
    errors = ping_pong(socks, first_conn, rounds, size, pool, 0)
    finished = time.monotonic()
    for sock in socks:
        sock.close()
    results.put((started, finished, errors, warmup_errors))


def run_load(port: int, clients: int, rounds: int, size: int, procs: int, in_flight: int) -> tuple[float, float, int]:
    """(setup seconds, timed seconds, errors)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(procs + 1)
    results = ctx.Queue()
    share = [clients // procs + (i < clients % procs) for i in range(procs)]
    workers = []
    first = 0
    setup_started = time.monotonic()
    for count in share:
        worker = ctx.Process(
            target=client_worker, args=(port, first, count, rounds, size, in_flight // procs or 1, barrier, results)
        )
        worker.start()
        workers.append(worker)
        first += count
    barrier.wait(timeout=120)
    setup = time.monotonic() - setup_started
    outcomes = []
    while len(outcomes) < len(workers):
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            if not any(w.is_alive() for w in workers) and results.empty():
                raise SystemExit("a client process failed") from None
    for worker in workers:
        worker.join(timeout=30)
    start = min(o[0] for o in outcomes)
    end = max(o[1] for o in outcomes)
    return setup, end - start, sum(o[2] + o[3] for o in outcomes)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def bench_server(name: str, args: argparse.Namespace) -> dict:
    port = free_port()
    server = subprocess.Popen(
        server_command(name, port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_accepting(port)
        setup, seconds, errors = run_load(
            port, args.clients, args.rounds, args.size, args.procs, CONNECTS_IN_FLIGHT[name]
        )
        rss = rss_kib(server.pid)
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the children it forked
        except ProcessLookupError:
            pass
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    trips = args.clients * args.rounds
    return {"name": name, "setup": setup, "seconds": seconds, "errors": errors, "rate": trips / seconds, "rss": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per server; the best is kept")
    parser.add_argument("--servers", default="socktool,socat,ncat")
    parser.add_argument(
        "--old-source",
        metavar="DIR",
        help="also run the socktool in DIR/src (e.g. `git archive v0.1.0 src | tar -x -C DIR`) as socktool-old",
    )
    args = parser.parse_args()
    global OLD_SOURCE
    if args.old_source:
        OLD_SOURCE = str(Path(args.old_source, "src"))
        args.servers += ",socktool-old"

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    names = [n for n in args.servers.split(",") if n.startswith("socktool") or shutil.which(n)]
    print(
        f"# {args.clients} clients x {args.rounds} round trips of {args.size} B, "
        f"{args.procs} client process(es), best of {args.repeat}; {os.cpu_count()} CPUs"
    )
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for name in names:  # interleaved, so a slow moment of the machine hits them all
            result = bench_server(name, args)
            if name not in best or result["rate"] > best[name]["rate"]:
                best[name] = result
            print(f"  {name:9s} {result['rate']:>10,.0f} round trips/s  errors {result['errors']}", file=sys.stderr)
    base = best.get("socat", {}).get("rate")
    print("| server | round trips/s | vs socat | timed phase | connect + warm-up | errors | server RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = best[name]
        ratio = f"{r['rate'] / base:.2f}x" if base else "-"
        rss = f"{r['rss'] / 1024:.0f} MiB" + (" (parent only)" if not name.startswith("socktool") else "")
        print(
            f"| {name} | {r['rate']:,.0f} | {ratio} | {r['seconds']:.2f}s | {r['setup']:.2f}s | {r['errors']} | {rss} |"
        )
    return 1 if any(r["errors"] for r in best.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
