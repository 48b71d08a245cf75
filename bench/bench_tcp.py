#!/usr/bin/env python3
"""TCP pipe benchmark: socktool vs OpenBSD nc vs socat, same run, alternating.

Throughput: SIZE bytes from a pipe (`head -c SIZE /dev/zero`) through
CLIENT → LISTENER on 127.0.0.1 into a pipe (`wc -c`), for each tool in turn,
ROUNDS times. Reports MiB/s (median), the ratio to nc, that every byte
arrived, and the listener's peak RSS (GNU time's %M).

Start-up: hyperfine medians of `socktool tcp-connect -z` to a listening port
vs `python -c "import typer"` in the same environment.

    python bench/bench_tcp.py                 # 2 GiB, 5 rounds
    python bench/bench_tcp.py --size 256M --rounds 3
    python bench/bench_tcp.py --tools socktool,nc,nc-to-socktool,socktool-to-nc --skip-startup
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOCKTOOL = str(Path(sys.executable).with_name("socktool"))

TOOLS = {
    "socktool": {
        "listen": f"{SOCKTOOL} tcp-listen -q 127.0.0.1:{{port}}",
        "connect": f"{SOCKTOOL} tcp-connect -q 127.0.0.1:{{port}}",
    },
    "nc": {"listen": "nc -l 127.0.0.1 {port}", "connect": "nc -N 127.0.0.1 {port}"},
    "socat": {
        "listen": "socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr STDOUT",
        "connect": "socat -u STDIN TCP:127.0.0.1:{port}",
    },
}
# Mixed pairs, to see which side of the pipe makes the difference (--tools socktool,nc,nc-to-socktool,...).
MIXED = {
    "nc-to-socktool": {"listen": TOOLS["socktool"]["listen"], "connect": TOOLS["nc"]["connect"]},
    "socktool-to-nc": {"listen": TOOLS["nc"]["listen"], "connect": TOOLS["socktool"]["connect"]},
}


PAIRS = {**TOOLS, **MIXED}


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.01)
    raise RuntimeError(f"nothing listening on {port}")


def transfer(tool: str, size: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        count_file, rss_file = Path(tmp, "count"), Path(tmp, "rss")
        listener = subprocess.Popen(
            [
                "bash",
                "-c",
                f"/usr/bin/time -f %M -o {rss_file} {PAIRS[tool]['listen'].format(port=port)} | wc -c > {count_file}",
            ],
            stdin=subprocess.DEVNULL,
        )
        wait_listening(port)
        start = time.perf_counter()
        subprocess.run(
            ["bash", "-c", f"head -c {size} /dev/zero | {PAIRS[tool]['connect'].format(port=port)}"],
            check=True,
            timeout=600,
        )
        listener.wait(timeout=600)
        elapsed = time.perf_counter() - start
        received = int(count_file.read_text())
        rss_kib = int(rss_file.read_text().split()[-1])
    return {"mib_s": size / elapsed / (1 << 20), "complete": received == size, "rss_mb": rss_kib / 1024}


def startup(port: int) -> dict:
    if shutil.which("hyperfine") is None:
        return {}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                "hyperfine",
                "-N",
                "--warmup",
                "5",
                "--runs",
                "60",
                "--export-json",
                out.name,
                f"{SOCKTOOL} tcp-connect -z 127.0.0.1:{port}",
                f"{sys.executable} -c 'import typer'",
            ],
            check=True,
            capture_output=True,
        )
        results = json.load(open(out.name))["results"]
    return {"socktool_ms": results[0]["median"] * 1000, "typer_ms": results[1]["median"] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2G")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset")
    args = parser.parse_args()
    size = parse_size(args.size)
    tools = [t for t in args.tools.split(",") if t in MIXED or t == "socktool" or shutil.which(t)]
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for round_ in range(args.rounds):
        order = tools[round_ % len(tools) :] + tools[: round_ % len(tools)]
        for tool in order:
            result = transfer(tool, size)
            runs[tool].append(result)
            print(
                f"round {round_ + 1} {tool:14} {result['mib_s']:8.0f} MiB/s  complete={result['complete']}  "
                f"listener RSS {result['rss_mb']:.1f} MB",
                flush=True,
            )
    print(f"\n{args.size} per transfer, {args.rounds} rounds, median MiB/s:")
    base = statistics.median(r["mib_s"] for r in runs["nc"]) if "nc" in runs else None
    print("| tool | MiB/s (median) | vs nc | every byte | listener peak RSS |")
    print("|---|---:|---:|---|---:|")
    for tool in tools:
        rate = statistics.median(r["mib_s"] for r in runs[tool])
        ratio = f"{rate / base:.2f}×" if base else "-"
        complete = all(r["complete"] for r in runs[tool])
        rss = max(r["rss_mb"] for r in runs[tool])
        print(f"| {tool} | {rate:.0f} | {ratio} | {'yes' if complete else 'NO'} | {rss:.1f} MB |")
    if not args.skip_startup:
        port = free_port()
        server = subprocess.Popen(
            [SOCKTOOL, "tcp-listen", "-k", "-q", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_listening(port)
            times = startup(port)
        finally:
            server.terminate()
            server.wait()
        if times:
            ratio = times["socktool_ms"] / times["typer_ms"]
            print(
                f"\nstart-up (hyperfine medians): socktool tcp-connect -z {times['socktool_ms']:.1f} ms, "
                f"python -c 'import typer' {times['typer_ms']:.1f} ms, ratio {ratio:.2f}×"
            )


if __name__ == "__main__":
    main()
