"""portscan: port lists, exact states on loopback, agreement with nmap, no
self-connect false positives, resets instead of TIME_WAIT, and the outputs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import subprocess
import time

import pytest

from conftest import command, free_port, need, one_line_error, run
from reliability_helpers import limit_descriptors
from socktool.net.events import CLOSED, FILTERED, OPEN, ScanResult, Target
from socktool.net.ports import (
    BUILTIN_SERVICES,
    ServiceNames,
    parse_port_list,
    parse_scan_host,
)
from socktool.net.scan import Scanner, resolve_target
from socktool.view.scan import ScanReport, plain_line, summary_line
from socktool.view.terminal import Mode, Terminal

# -- loopback peers in each state ----------------------------------------------


@contextlib.contextmanager
def open_ports(count: int, family: int = socket.AF_INET, host: str = "127.0.0.1"):
    """Listeners that never accept: the kernel completes the handshake for them."""
    listeners = []
    try:
        for _ in range(count):
            listener = socket.socket(family)
            listener.bind((host, 0))
            listener.listen(64)
            listeners.append(listener)
        yield [listener.getsockname()[1] for listener in listeners]
    finally:
        for listener in listeners:
            listener.close()


@contextlib.contextmanager
def filtered_ports(count: int):
    """Ports whose SYNs go unanswered: listeners with backlog 0 and a full accept queue."""
    sockets = []
    ports = []
    try:
        for _ in range(count):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            sockets.append(listener)
            filler = socket.create_connection(listener.getsockname(), timeout=2)  # never accepted
            sockets.append(filler)
            ports.append(listener.getsockname()[1])
        yield ports
    finally:
        for sock in sockets:
            sock.close()


def closed_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def scan_json(*args: str, timeout: float = 30) -> tuple[list[dict], dict]:
    result = run("portscan", *args, "--json", timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert records and records[-1]["event"] == "summary", records[-1:]
    return records[:-1], records[-1]


def port_list(*ports: int) -> str:
    return ",".join(map(str, ports))


# -- port lists ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22", [22]),
        ("22,80,443", [22, 80, 443]),
        ("443, 22,80,22", [22, 80, 443]),
        ("8000-8003", [8000, 8001, 8002, 8003]),
        ("1-3,2-5,9", [1, 2, 3, 4, 5, 9]),
        ("-3", [1, 2, 3]),
        ("65534-", [65534, 65535]),
        ("7-7", [7]),
    ],
)
def test_port_list_forms(text, expected):
    assert parse_port_list(text) == expected


def test_dash_alone_is_every_port():
    assert parse_port_list("-") == list(range(1, 65536))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("100-10", "'100-10' is reversed"),
        ("0", "port 0 "),
        ("65536", "port 65536 "),
        ("80,70000-70001", "port 70000 "),
        ("nosuchname", "'nosuchname'"),
        ("22,,80", "empty item"),
        ("22,", "empty item"),
        ("1-2-3", "'1-2-3'"),
        ("", "empty port list"),
    ],
)
def test_bad_port_lists_name_the_bad_part(text, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_port_list(text)


@pytest.mark.parametrize("ports", ["100-10", "0", "65536", "nosuchname", "22,,80", "5-4-3"])
def test_bad_port_list_is_exit_2_with_one_line(ports):
    result = run("portscan", "127.0.0.1", ports)
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert "PORTS" in line


def test_host_with_a_port_is_a_usage_error_that_says_how():
    result = run("portscan", "localhost:80")
    assert result.returncode == 2
    assert "portscan localhost 80" in one_line_error(result.stderr)


def test_scan_host_takes_ipv6_with_or_without_brackets():
    assert parse_scan_host("::1") == "::1"
    assert parse_scan_host("[::1]") == "::1"
    assert parse_scan_host("fe80::1%lo") == "fe80::1%lo"
    assert parse_scan_host("db.example.test") == "db.example.test"


def test_unresolvable_host_is_exit_1():
    result = run("portscan", "no-such-host!.invalid", "22")
    assert result.returncode == 1
    assert "cannot resolve 'no-such-host!.invalid'" in one_line_error(result.stderr)


# -- service names -------------------------------------------------------------


def test_service_names_come_from_the_services_file_then_the_builtin_table(tmp_path):
    services = tmp_path / "services"
    services.write_text("ssh\t\t22/tcp\t# comment\nfoo 3306/udp\nmyhttp 80/tcp www\nsecond 80/tcp\n")
    names = ServiceNames(str(services))
    assert names(22) == "ssh"
    assert names(80) == "myhttp"  # the first entry wins
    assert names(3306) == "mysql"  # only a udp entry in the file: the built-in table
    assert names(40000) is None


def test_builtin_table_has_the_common_services():
    expected = {
        20: "ftp-data",
        21: "ftp",
        22: "ssh",
        23: "telnet",
        25: "smtp",
        53: "domain",
        69: "tftp",
        80: "http",
        443: "https",
        3306: "mysql",
        5432: "postgresql",
        6379: "redis",
    }
    assert {port: BUILTIN_SERVICES[port] for port in expected} == expected


def test_without_a_services_file_names_still_resolve():
    names = ServiceNames("/nonexistent/services")
    assert names(22) == "ssh"  # getservbyport, or else the built-in table
    assert names(69) == "tftp"


def test_plain_lines_name_the_service():
    port = 3306
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip("something listens on 3306 here")
    result = run("portscan", "127.0.0.1", "3306", "--all")
    assert result.returncode == 0
    assert result.stdout.decode() == "3306/tcp closed mysql\n"


# -- states --------------------------------------------------------------------


def test_every_state_on_a_block_of_loopback_ports_is_exact():
    with open_ports(3) as opened, filtered_ports(2) as filtered:
        closed = closed_ports(3)
        wanted = {
            **dict.fromkeys(opened, "open"),
            **dict.fromkeys(closed, "closed"),
            **dict.fromkeys(filtered, "filtered"),
        }
        records, summary = scan_json("127.0.0.1", port_list(*wanted), "--all", "-w", "500ms")
    assert {r["port"]: r["state"] for r in records} == wanted
    assert [r["port"] for r in records] == sorted(wanted)  # by port
    for record in records:
        assert set(record) == {"event", "v", "host", "port", "state", "service", "latency_ms"}
        assert record["host"] == "127.0.0.1"
        if record["state"] == "filtered":
            assert record["latency_ms"] is None
        else:
            assert 0 <= record["latency_ms"] < 500
    assert (summary["ports"], summary["open"], summary["closed"], summary["filtered"], summary["error"]) == (
        8,
        3,
        3,
        2,
        0,
    )


def test_without_all_only_open_ports_are_listed_as_plain_lines():
    with open_ports(2) as opened:
        closed = closed_ports(2)
        result = run("portscan", "127.0.0.1", port_list(*opened, *closed))
    assert result.returncode == 0
    lines = [line.split() for line in result.stdout.decode().splitlines()]
    assert [line[:2] for line in lines] == [[f"{port}/tcp", "open"] for port in sorted(opened)]
    assert all(len(line) == 3 for line in lines)  # PORT/tcp STATE SERVICE


def test_summary_on_stderr_says_what_was_not_shown():
    with open_ports(1) as opened, filtered_ports(1) as filtered:
        closed = closed_ports(2)
        result = run("portscan", "127.0.0.1", port_list(*opened, *closed, *filtered), "-w", "300ms", "-v")
    assert result.returncode == 0
    assert re.search(
        r"127\.0\.0\.1: 4 ports scanned in \S+: 1 open; not shown: 2 closed, 1 filtered", result.stderr.decode()
    )


def test_filtered_port_is_retried_then_reported_filtered():
    with filtered_ports(1) as filtered:
        records, summary = scan_json("127.0.0.1", str(filtered[0]), "--all", "-w", "300ms", "--retries", "2")
    assert [r["state"] for r in records] == ["filtered"]
    assert summary["elapsed_ms"] >= 3 * 300 * 0.95  # three tries of 300ms each


def test_300_ports_with_5_filtered_finish_within_twice_the_timeout():
    with open_ports(5) as opened, filtered_ports(5) as filtered:
        closed = closed_ports(290)
        ports = port_list(*opened, *filtered, *closed)
        started = time.monotonic()
        _records, summary = scan_json("127.0.0.1", ports, "--all", "-w", "1s")
        wall = time.monotonic() - started
    assert summary["ports"] == 300 and summary["filtered"] == 5 and summary["open"] == 5
    assert wall < 2.0, f"took {wall:.2f}s"


def test_ipv6_literal_with_or_without_brackets():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        context = open_ports(1, socket.AF_INET6, "::1")
        opened = context.__enter__()
    except OSError:
        pytest.skip("no ::1 here")
    try:
        closed = free_port()
        for host in ("::1", "[::1]"):
            records, _summary = scan_json(host, port_list(opened[0], closed), "--all")
            assert {r["port"]: r["state"] for r in records} == {opened[0]: "open", closed: "closed"}
            assert records[0]["host"] == "::1"
    finally:
        context.__exit__(None, None, None)


def test_require_open_exits_1_naming_the_ports_not_open():
    with open_ports(2) as opened:
        closed = free_port()
        result = run("portscan", "127.0.0.1", port_list(*opened, closed), "--require-open", "-q")
        assert result.returncode == 1
        assert f"{closed} closed" in one_line_error(result.stderr)
        assert run("portscan", "127.0.0.1", port_list(*opened), "--require-open", "-q").returncode == 0


# -- agreement with nmap, self-connects ----------------------------------------------


def nmap_open_ports(ports: str) -> set[int]:
    out = subprocess.run(
        ["nmap", "-sT", "-n", "-Pn", f"-p{ports}", "-oG", "-", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return {int(port) for port in re.findall(r"(\d+)/open/tcp", out)}


@pytest.mark.slow  # two scans of 63,511 ports (ours and nmap's), up to three times
def test_open_ports_over_a_large_range_equal_nmaps():
    need("nmap")
    # Other programs on this machine open and close listeners as we go, so a
    # difference is checked again; the same difference three times is a failure.
    with open_ports(4) as opened:
        for _attempt in range(3):
            records, _summary = scan_json("127.0.0.1", "2025-65535")
            ours = {r["port"] for r in records if r["state"] == "open"}
            theirs = nmap_open_ports("2025-65535")
            if ours == theirs:
                break
        assert ours == theirs
        assert set(opened) <= ours


def test_a_self_connected_socket_is_closed_not_open():
    # Bound to the port it then connects to: the kernel connects it to itself.
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.connect(("127.0.0.1", port))
        scanner = Scanner(resolve_target("127.0.0.1"), [port])
        assert scanner._settled(sock, port, 0, 0.001)[:2] == (port, CLOSED)


def test_no_self_connect_false_positives_over_the_ephemeral_range():
    # Scanning loopback ports in the ephemeral range, now and then the kernel
    # picks the target port as the source port: the connect "succeeds" to
    # itself. Sweep until that has happened, and check it was called closed.
    low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    target = resolve_target("127.0.0.1")
    for _sweep in range(25):
        results = Scanner(target, list(range(low, high + 1))).run()
        self_connects = [r for r in results if r.detail == "self-connect"]
        if self_connects:
            break
    else:
        pytest.skip("the kernel chose no target port as a source port in 25 sweeps")
    assert all(r.state == CLOSED for r in self_connects)
    opened = {r.port for r in results if r.state == OPEN}
    assert not opened & {r.port for r in self_connects}


# -- sockets are reset, descriptors are budgeted ---------------------------------


def connections_on(port: int) -> list[str]:
    """TCP states (hex, as /proc shows them) of every socket on `port` but listeners."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if port in (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)) and state != "0A":
                states.append(state)
    return states


def test_scanned_open_port_is_closed_with_a_reset_leaving_no_connection_behind():
    with open_ports(1) as opened:
        result = run("portscan", "127.0.0.1", str(opened[0]))
        assert result.stdout.decode().startswith(f"{opened[0]}/tcp open")
        # A FIN would leave FIN-WAIT here and CLOSE-WAIT in the listener's queue.
        assert connections_on(opened[0]) == []


def test_concurrency_beyond_the_open_file_limit_is_capped_with_a_warning():
    with open_ports(1) as opened:
        result = run("portscan", "127.0.0.1", str(opened[0]), "-c", "100000000")
    assert result.returncode == 0
    assert "using" in result.stderr.decode() and "open-file limit" in result.stderr.decode()
    assert result.stdout.decode().startswith(f"{opened[0]}/tcp open")


def test_a_tiny_descriptor_limit_slows_the_scan_but_never_breaks_it():
    with open_ports(2) as opened, filtered_ports(4) as filtered:
        ports = port_list(*opened, *filtered, *closed_ports(20))
        result = subprocess.run(
            command("portscan", "127.0.0.1", ports, "--json", "--all", "-w", "300ms"),
            capture_output=True,
            timeout=30,
            preexec_fn=limit_descriptors(48),
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 0, result.stderr.decode()
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    states = {r["port"]: r["state"] for r in records[:-1]}
    assert [port for port, state in states.items() if state == "open"] == sorted(opened)
    assert sorted(port for port, state in states.items() if state == "filtered") == sorted(filtered)


# -- on a terminal -------------------------------------------------------------------


def run_in_pty(*args: str, timeout: float = 20) -> tuple[int, str]:
    """Run socktool with stdout and stderr on a pseudo-terminal; return (status, screen text)."""
    master, slave = os.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(command(*args), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal's other side closed
                break
            if not chunk:
                break
            output += chunk
        status = proc.wait(timeout=5)
    finally:
        proc.kill() if proc.poll() is None else None
        os.close(master)
    return status, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))


def test_terminal_gets_a_table_and_a_summary():
    with open_ports(2) as opened:
        status, screen = run_in_pty("portscan", "127.0.0.1", port_list(*opened, *closed_ports(2)))
    assert status == 0, screen
    assert re.search(r"PORT\s+STATE\s+SERVICE\s+LATENCY", screen), screen
    for port in opened:
        assert re.search(rf"{port}/tcp\s+open\s+unknown\s+[\d.]+ ms", screen), screen
    assert "4 ports scanned" in screen and "not shown: 2 closed" in screen


def test_terminal_scan_of_many_ports_draws_a_progress_bar_and_still_the_table():
    with open_ports(1) as opened, filtered_ports(1) as filtered:
        status, screen = run_in_pty("portscan", "127.0.0.1", f"{opened[0]},{filtered[0]},20000-20998", "-w", "600ms")
    assert status == 0, screen
    assert "scanning 127.0.0.1" in screen, screen  # the bar, while the filtered port held the scan up
    assert re.search(rf"{opened[0]}/tcp\s+open", screen), screen


# -- the views, fed results directly ---------------------------------------------------


def fake_target(host: str = "127.0.0.1") -> Target:
    return Target(host, socket.AF_INET, ("127.0.0.1", 0))


def test_summary_line_says_what_is_not_shown_unless_all():
    counts = {"open": 2, "closed": 1021, "filtered": 1, "error": 0}
    assert summary_line(fake_target("localhost"), counts, show_all=False, elapsed=0.05) == (
        "localhost (127.0.0.1): 1024 ports scanned in 50ms: 2 open; not shown: 1021 closed, 1 filtered"
    )
    assert summary_line(fake_target(), counts, show_all=True, elapsed=1.5) == (
        "127.0.0.1: 1024 ports scanned in 1.50s: 2 open, 1021 closed, 1 filtered"
    )


def test_json_report_of_many_ports_is_one_whole_object_per_line(tmp_path):
    results = [ScanResult(port, OPEN if port % 7 == 0 else CLOSED, 0.000123, "") for port in range(1, 20001)]
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as file:
        terminal = Terminal(stdout_fd=file.fileno(), stderr_fd=file.fileno(), quiet=True)
        ScanReport(terminal, Mode.JSON, fake_target(), lambda port: None, show_all=True).show(results, 0.2)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["port"] for r in records[:-1]] == list(range(1, 20001))
    assert records[0] == {
        "event": "port",
        "v": 1,
        "host": "127.0.0.1",
        "port": 1,
        "state": "closed",
        "service": None,
        "latency_ms": 0.123,
    }
    assert records[-1]["event"] == "summary" and records[-1]["open"] == 20000 // 7


def test_plain_lines_are_port_state_service():
    assert plain_line(ScanResult(22, OPEN, 0.001), "ssh") == "22/tcp open ssh"
    assert plain_line(ScanResult(40000, FILTERED, None, "no answer"), None) == "40000/tcp filtered unknown"


def test_a_big_scan_shared_among_workers_reports_every_port_once_and_exactly():
    with open_ports(2) as opened, filtered_ports(2) as filtered:
        closed = set(range(21000, 27000)) - set(opened) - set(filtered)
        ports = f"21000-26999,{port_list(*opened, *filtered)}"
        records, summary = scan_json("127.0.0.1", ports, "--all", "-w", "500ms")
    states = {r["port"]: r["state"] for r in records}
    assert len(records) == len(states) == summary["ports"] == len(closed) + 4
    assert {port for port, state in states.items() if state == "filtered"} == set(filtered)
    assert set(opened) <= {port for port, state in states.items() if state == "open"}
    # Ports 21000-26999 may hold listeners of other programs; none of ours is there.
    assert all(states[port] in ("closed", "open") for port in closed)


def test_progress_counter_only_grows_and_ends_at_the_number_of_ports():
    import threading

    with filtered_ports(1) as filtered:  # holds the scan open long enough to watch it
        scanner = Scanner(resolve_target("127.0.0.1"), sorted({*range(30000, 40000), filtered[0]}), timeout=0.3)
        samples: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.005):
                samples.append(scanner.done)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            results = scanner.run()
        finally:
            stop.set()
            watcher.join()
    total = len(scanner.ports)
    assert len(results) == scanner.done == total
    assert samples == sorted(samples) and all(0 <= n <= total for n in samples)
    assert any(0 < n < total for n in samples) or samples[-1:] == [total]
