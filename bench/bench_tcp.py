#!/usr/bin/env python3
"""TCP pipe benchmark: socktool vs OpenBSD nc vs socat, same run, alternating.

Throughput: SIZE bytes from a pipe (`head -c SIZE /dev/zero`) through
CLIENT → LISTENER on 127.0.0.1 into a pipe (`wc -c`), for each tool in turn,
ROUNDS times. Reports MiB/s (median), the ratio to nc, that every byte
arrived, and the listener's peak RSS (GNU time's %M).

Start-up: hyperfine medians of `socktool tcp-connect -z` to a listening port
vs `python -c "import typer"` in the same environment (and the bare
interpreter and `nc -z` for scale); `--startup-only` runs just that.

    python bench/bench_tcp.py                 # 2 GiB, 5 rounds
    python bench/bench_tcp.py --size 256M --rounds 3
    python bench/bench_tcp.py --tools socktool,nc,nc-to-socktool,socktool-to-nc --skip-startup
    python bench/bench_tcp.py --startup-only  # about 20 s
"""

from __future__ import annotations

import argparse
import json
import os
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

# Start-up: socktool's connect check against the anchor (the import socktool cannot do without)
# and against nc's, all to the same listening port.
STARTUP = {
    "socktool tcp-connect -z": f"{SOCKTOOL} tcp-connect -z 127.0.0.1:{{port}}",
    "import typer": f"{sys.executable} -c 'import typer'",
    "python -c pass": f"{sys.executable} -c pass",
    "nc -z": "nc -z 127.0.0.1 {port}",
}


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


def startup(port: int, runs: int = 60) -> list[dict]:
    """hyperfine -N over the start-up commands, in one run; [] without hyperfine.

    Bytecode is compiled first and PYTHONDONTWRITEBYTECODE dropped: otherwise
    every run would compile socktool's sources again and measure that.
    """
    if shutil.which("hyperfine") is None:
        return []
    src = Path(__file__).resolve().parent.parent / "src"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True, env=env)
    commands = {
        name: command.format(port=port) for name, command in STARTUP.items() if shutil.which(command.split()[0])
    }
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            ["hyperfine", "-N", "--warmup", "5", "--runs", str(runs), "--export-json", out.name, *commands.values()],
            check=True,
            capture_output=True,
            env=env,
        )
        results = json.load(open(out.name))["results"]
    return [
        {"name": name, "median_ms": r["median"] * 1000, "cpu_ms": (r["user"] + r["system"]) * 1000}
        for name, r in zip(commands, results, strict=True)
    ]


def startup_table(runs: int) -> None:
    """The start-up table, against a `socktool tcp-listen -k` that -z connects to."""
    port = free_port()
    server = subprocess.Popen(
        [SOCKTOOL, "tcp-listen", "-k", "-q", f"127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        times = startup(port, runs)
    finally:
        server.terminate()
        server.wait()
    if not times:
        print("start-up: hyperfine is not installed")
        return
    base = next(t for t in times if t["name"] == "import typer")
    print(f"\nstart-up, hyperfine -N, {runs} runs each, same run (anchor: python -c 'import typer'):")
    print("| command | median | vs import typer | user+sys | vs import typer |")
    print("|---|---:|---:|---:|---:|")
    for t in times:
        print(
            f"| {t['name']} | {t['median_ms']:.1f} ms | {t['median_ms'] / base['median_ms']:.2f}× "
            f"| {t['cpu_ms']:.1f} ms | {t['cpu_ms'] / base['cpu_ms']:.2f}× |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2G")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--startup-only", action="store_true", help="only the start-up table (about 20 s)")
    parser.add_argument("--startup-runs", type=int, default=60)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset")
    args = parser.parse_args()
    if args.startup_only:
        startup_table(args.startup_runs)
        return
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
        startup_table(args.startup_runs)


if __name__ == "__main__":
    main()
