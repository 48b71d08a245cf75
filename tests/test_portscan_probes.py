"""portscan --banner and --udp, against real peers on loopback only."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import Proc, free_port, have, run


class BannerServer:
    """Every client gets `banner` at once, then the connection stays open until it goes."""

    def __init__(self, banner: bytes):
        self.banner = banner
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(self.banner)
                while conn.recv(4096):
                    pass
            except OSError:
                pass  # the scanner's reset

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def http_port(tmp_path: Path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port …": listening
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=5)


def scan_json(*args: str) -> tuple[dict[int, dict], dict]:
    result = run("portscan", *args, "--json")
    assert result.returncode == 0, result.stderr.decode()
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    return {r["port"]: r for r in records[:-1]}, records[-1]


def test_banners_of_an_ssh_like_server_an_http_server_and_a_silent_port(http_port):
    ssh = BannerServer(b"SSH-2.0-OpenSSH_9.6 socktool-test\r\n")
    silent = socket.create_server(("127.0.0.1", 0))
    quiet_port = silent.getsockname()[1]
    try:
        ports = f"{ssh.port},{http_port},{quiet_port}"
        records, summary = scan_json("127.0.0.1", ports, "--banner", "-w", "1s")
        plain = run("portscan", "127.0.0.1", ports, "--banner", "-w", "1s")
    finally:
        ssh.close()
        silent.close()
    assert summary["open"] == 3
    assert records[ssh.port]["banner"] == "SSH-2.0-OpenSSH_9.6 socktool-test\r\n"
    assert records[ssh.port]["banner_hex"] == b"SSH-2.0-OpenSSH_9.6 socktool-test\r\n".hex()
    assert re.match(r"HTTP/1\.[01] 200 OK\r\n", records[http_port]["banner"])  # the answer to HEAD
    assert records[quiet_port]["banner"] == "" and records[quiet_port]["banner_hex"] == ""
    # The silent port's banner was waited for its whole -w 1s: the scan's time includes that wait.
    assert summary["elapsed_ms"] >= 1000
    lines = plain.stdout.decode().splitlines()
    assert f"{ssh.port}/tcp open unknown SSH-2.0-OpenSSH_9.6 socktool-test" in lines
    assert any(re.fullmatch(rf"{http_port}/tcp open \S+ HTTP/1\.[01] 200 OK", line) for line in lines), lines
    assert f"{quiet_port}/tcp open unknown" in lines


def test_banner_size_cuts_the_banner():
    server = BannerServer(b"0123456789abcdef\n")
    try:
        records, _ = scan_json("127.0.0.1", str(server.port), "--banner", "--banner-size", "4")
    finally:
        server.close()
    assert records[server.port]["banner"] == "0123"


def test_without_banner_the_json_record_is_unchanged():
    server = BannerServer(b"hello\n")
    try:
        records, _ = scan_json("127.0.0.1", str(server.port))
    finally:
        server.close()
    assert set(records[server.port]) == {"event", "v", "host", "port", "state", "service", "latency_ms"}


@pytest.fixture
def udp_peers():
    """(echo port, time-server port, a closed port, a port that drops everything)."""
    with (
        Proc("echo", "-v", "--udp-only", "127.0.0.1:0") as echo,
        Proc("time-server", "-v", "--udp-only", "127.0.0.1:0") as clock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as drops,
    ):
        drops.bind(("127.0.0.1", 0))
        yield echo.wait_listening(), clock.wait_listening(), free_port(socket.SOCK_DGRAM), drops.getsockname()[1]


def test_udp_scan_states(udp_peers):
    echo, clock, closed, drops = udp_peers
    ports = ",".join(map(str, udp_peers))
    records, summary = scan_json("127.0.0.1", ports, "--udp", "--all", "-w", "500ms")
    states = {port: record["state"] for port, record in records.items()}
    assert states == {echo: "open", clock: "open", closed: "closed", drops: "open|filtered"}
    assert all(record["protocol"] == "udp" for record in records.values())
    assert (summary["open"], summary["closed"], summary["open|filtered"], summary["error"]) == (2, 1, 1, 0)
    plain = run("portscan", "127.0.0.1", ports, "--udp", "-w", "500ms", "--banner")
    lines = plain.stdout.decode().splitlines()
    assert f"{drops}/udp open|filtered unknown" in lines  # listed without --all: it may be open
    assert not any(line.startswith(f"{closed}/udp") for line in lines)
    clock_line = next(line for line in lines if line.startswith(f"{clock}/udp open"))
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", clock_line)  # the empty request's reply


def test_udp_scan_agrees_with_nmap(udp_peers):
    if not have("nmap"):
        pytest.skip("nmap is not installed")
    ports = ",".join(map(str, udp_peers))
    nmap = subprocess.run(["nmap", "-sU", "-n", "-p", ports, "127.0.0.1"], capture_output=True, timeout=60, text=True)
    if nmap.returncode != 0 or "requires root" in nmap.stdout + nmap.stderr:
        pytest.skip("nmap -sU cannot run here: " + (nmap.stderr or nmap.stdout).strip())
    theirs = dict(re.findall(r"^(\d+)/udp\s+(\S+)", nmap.stdout, re.MULTILINE))
    records, _ = scan_json("127.0.0.1", ports, "--udp", "--all", "-w", "500ms")
    ours = {str(port): record["state"] for port, record in records.items()}
    compared = {port: state for port, state in theirs.items() if state in ("open", "closed")}
    assert compared, nmap.stdout  # nmap settled at least the closed port: something was compared
    for port, state in compared.items():
        assert ours[port] == state, (nmap.stdout, ours)


def test_retries_ask_a_silent_port_again():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as drops:
        drops.bind(("127.0.0.1", 0))
        port = drops.getsockname()[1]
        records, _ = scan_json("127.0.0.1", str(port), "--udp", "--all", "-w", "200ms", "--retries", "2")
        drops.settimeout(5)
        got = [drops.recv(100) for _ in range(3)]  # the first try and two retries
    assert records[port]["state"] == "open|filtered"
    assert got == [b"", b"", b""]


# -- protocol probes, in process -----------------------------------------------------
class DnsLikeResponder:
    """Answers only what parses as a DNS query for one question (as a DNS server would
    ignore anything else): a UDP port that stays silent to an empty datagram."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            if len(data) < 12:
                continue
            query_id, flags, questions = struct.unpack(">HHH", data[:6])
            if flags & 0x8000 or questions != 1:
                continue
            self.sock.sendto(struct.pack(">HHHHHH", query_id, 0x8180, 1, 0, 0, 0) + data[12:], peer)


def test_the_dns_probe_makes_a_dns_server_answer():
    from socktool.net.probescan import UdpScanner, dns_query_root_ns
    from socktool.net.scan import resolve_target

    responder = DnsLikeResponder()
    try:
        target = resolve_target("127.0.0.1")
        probed = UdpScanner(target, [responder.port], timeout=0.5, probes={responder.port: dns_query_root_ns()})
        [with_probe] = probed.run()
        [without] = UdpScanner(target, [responder.port], timeout=0.3, probes={}).run()
    finally:
        responder.sock.close()
    assert with_probe.state == "open"
    assert probed.replies[responder.port][:2] == dns_query_root_ns()[:2]  # its answer to our query id
    assert without.state == "open|filtered"


def test_well_known_udp_probes_are_the_protocols_requests():
    from socktool.net.probescan import NTP_CLIENT, UDP_PROBES, dns_query_root_ns, snmp_get_sysdescr

    assert UDP_PROBES[53] == dns_query_root_ns()
    assert UDP_PROBES[123] == NTP_CLIENT and len(NTP_CLIENT) == 48 and NTP_CLIENT[0] & 0x07 == 3  # mode 3: client
    assert NTP_CLIENT[0] >> 3 & 0x07 == 4  # version 4
    # SNMPv1 GetRequest, community "public", sysDescr.0, as BER:
    assert snmp_get_sysdescr() == bytes.fromhex(
        "3029" "020100" "0406" + b"public".hex() + "a01c" "0204534f434b" "020100" "020100"
        "300e" "300c" "06082b06010201010100" "0500"
    )  # fmt: skip
    assert UDP_PROBES[161] == snmp_get_sysdescr()
    assert dns_query_root_ns(0x1234) == bytes.fromhex("1234" "0100" "0001" "0000" "0000" "0000" "00" "0002" "0001")  # fmt: skip
