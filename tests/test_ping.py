"""ping HOST:PORT: probes and ping(8)-style statistics, against real loopback peers."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess

import pytest

from conftest import Proc, command, free_port, one_line_error, run
from reliability_helpers import PtyProc
from tls_helpers import SServer, make_pki

PROBE = re.compile(r"^connected to 127\.0\.0\.1:(\d+): seq=(\d+) time=(\d+\.\d{3}) ms$")
RTT = re.compile(r"^rtt min/avg/max/mdev = (\d+\.\d{3})/(\d+\.\d{3})/(\d+\.\d{3})/(\d+\.\d{3}) ms$")


def test_five_probes_and_a_ping_style_summary():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = run("ping", "-c", "5", "-i", "50ms", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0] == f"PING 127.0.0.1:{port} (127.0.0.1:{port}): TCP connect"
    probes = [PROBE.match(line) for line in lines[1:6]]
    assert all(probes), lines
    assert [int(m.group(2)) for m in probes if m] == [1, 2, 3, 4, 5]
    assert lines[6:8] == ["", f"--- 127.0.0.1:{port} ping statistics ---"]
    assert re.fullmatch(r"5 probes, 5 answered, 0% loss, time \d+ms", lines[8]), lines[8]
    rtt = RTT.match(lines[9])
    assert rtt, lines
    low, avg, high, _mdev = map(float, rtt.groups())
    times = [float(m.group(3)) for m in probes if m]
    assert low == min(times) and high == max(times) and low <= avg <= high
    assert result.stderr == b""


def test_closed_port_is_100_percent_loss_and_exit_1():
    port = free_port()
    result = run("ping", "-c", "3", "-i", "50ms", f"127.0.0.1:{port}")
    assert result.returncode == 1
    out = result.stdout.decode()
    assert out.count("connection refused") == 3
    assert "3 probes, 0 answered, 100% loss" in out
    assert "rtt" not in out
    assert "0 of 3 probes answered" in one_line_error(result.stderr)


def test_json_per_probe_and_summary():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = run("ping", "-c", "3", "-i", "50ms", "--json", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr.decode()
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["event"] for r in records] == ["probe", "probe", "probe", "summary"]
    for seq, record in enumerate(records[:3], 1):
        assert set(record) == {"event", "v", "ts", "seq", "target", "peer", "ok", "time_ms", "size", "error"}
        assert record["seq"] == seq and record["ok"] is True and record["error"] is None
        assert isinstance(record["time_ms"], float) and record["time_ms"] >= 0
        assert record["target"] == record["peer"] == f"127.0.0.1:{port}"
    summary = records[3]
    assert set(summary) == {
        "event", "v", "ts", "target", "peer", "sent", "received", "loss_pct",
        "min_ms", "avg_ms", "max_ms", "mdev_ms", "elapsed_ms",
    }  # fmt: skip
    assert (summary["sent"], summary["received"], summary["loss_pct"]) == (3, 3, 0.0)
    times = [r["time_ms"] for r in records[:3]]
    assert summary["min_ms"] == min(times) and summary["max_ms"] == max(times)


def test_json_of_a_closed_port():
    result = run("ping", "-c", "2", "-i", "50ms", "--json", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [(r["ok"], r["error"], r["time_ms"]) for r in records[:2]] == [(False, "connection refused", None)] * 2
    assert records[2]["loss_pct"] == 100.0 and records[2]["min_ms"] is None


def test_udp_round_trips_against_echo_and_time_server():
    with (
        Proc("echo", "-v", "--udp-only", "127.0.0.1:0") as echo,
        Proc("time-server", "-v", "--udp-only", "127.0.0.1:0") as clock,
    ):
        echo_port, clock_port = echo.wait_listening(), clock.wait_listening()
        result = run("ping", "--udp", "--send", "hello", "-c", "2", "-i", "50ms", f"127.0.0.1:{echo_port}")
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().count(f"5 bytes from 127.0.0.1:{echo_port}") == 2
        result = run("ping", "--udp", "--send", "%Y", "--expect", r"^\d{4}$", "-c", "2", f"127.0.0.1:{clock_port}")
        assert result.returncode == 0, result.stderr.decode()
        assert "2 probes, 2 answered, 0% loss" in result.stdout.decode()


def test_udp_closed_port_is_unreachable():
    port = free_port(socket.SOCK_DGRAM)
    result = run("ping", "--udp", "-c", "2", "-i", "50ms", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stdout.decode().count("port unreachable") == 2


def test_require_counts_answered_probes():
    """Probe 3 of 3 is refused (the listener closes after the second line): --require 2 passes, 3 fails."""
    for require, code in ((2, 0), (3, 1)):
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            command("ping", "-c", "3", "-i", "1s", "--require", str(require), f"127.0.0.1:{port}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        seen = [proc.stdout.readline() for _ in range(3)]  # the header, probes 1 and 2
        server.close()
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == code, (seen, out, err)
        assert b"3 probes, 2 answered, 33.3% loss" in out


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "2", "--require", "3"],
        ["-c", "-1"],
        ["-i", "0"],
        ["--udp", "unix:/tmp/x.sock"],
        ["--expect", "("],
    ],
)
def test_usage_errors(args):
    target = [] if any(a.startswith("unix:") for a in args) else ["127.0.0.1:9"]
    result = run("ping", *args, *target)
    assert result.returncode == 2, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_a_live_line_per_probe_at_a_terminal():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proc = PtyProc("ping", "-c", "2", "-i", "3s", f"127.0.0.1:{port}")
        try:
            proc.wait_for(rb"seq=1 time=")
            assert proc.popen.poll() is None  # the first line is there while the second probe waits
            code, screen = proc.finish(timeout=15)
        finally:
            proc.kill()
    assert code == 0
    assert b"2 probes, 2 answered, 0% loss" in screen


def test_interrupt_prints_the_summary_and_exits_130():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            command("ping", "-c", "0", "-i", "100ms", f"127.0.0.1:{port}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        for _ in range(3):
            proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, _err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert f"--- 127.0.0.1:{port} ping statistics ---" in out.decode()


def test_timeout_is_how_long_a_probe_waits_for_its_answer():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        result = run("ping", "--udp", "-c", "2", "-i", "50ms", "-w", "150ms", f"127.0.0.1:{port}")
    assert result.returncode == 1
    out = result.stdout.decode()
    assert out.count("no reply within 150ms") == 2, out
    assert "2 probes, 0 answered, 100% loss" in out


# -- ping --tls --------------------------------------------------------------------------
TLS_PROBE = re.compile(
    r"^TLS with 127\.0\.0\.1:\d+: seq=(\d+) time=(\d+\.\d{3}) ms \(connect (\d+\.\d{3}) ms, handshake (\d+\.\d{3}) ms\)$"
)


def test_tls_times_connect_and_handshake_against_a_pinned_listener():
    with Proc("tcp-listen", "-k", "--tls", "127.0.0.1:0") as listener:
        match = listener.wait_for(r"listening on 127\.0\.0\.1:(\d+) \(tcp, tls (sha256:[0-9a-f]{64})\)")
        endpoint, fingerprint = f"127.0.0.1:{match[1]}", match[2]
        lines = run("ping", "--tls", "--pin", fingerprint, "-c", "3", "-i", "50ms", endpoint)
        records = run("ping", "--tls", "--pin", fingerprint, "-c", "2", "-i", "50ms", "--json", endpoint)
    assert lines.returncode == 0, lines.stderr.decode()
    out = lines.stdout.decode().splitlines()
    assert out[0] == f"PING {endpoint} ({endpoint}): TCP connect and TLS handshake"
    probes = [TLS_PROBE.match(line) for line in out[1:4]]
    assert all(probes), out
    for probe in probes:
        assert probe is not None
        total, connect, handshake = map(float, probe.groups()[1:])
        assert abs(total - (connect + handshake)) <= 0.002  # each rounded to the microsecond
    assert "3 probes, 3 answered, 0% loss" in out[6]
    assert records.returncode == 0, records.stderr.decode()
    probe_records = [json.loads(line) for line in records.stdout.decode().splitlines()][:2]
    for record in probe_records:
        assert record["ok"] is True and record["error"] is None
        assert record["connect_ms"] > 0 and record["handshake_ms"] > 0
        assert abs(record["time_ms"] - (record["connect_ms"] + record["handshake_ms"])) <= 0.002


def test_tls_pin_mismatch_is_100_percent_loss_with_the_reason_and_exit_1():
    with Proc("tcp-listen", "-k", "--tls", "127.0.0.1:0") as listener:
        match = listener.wait_for(r"listening on 127\.0\.0\.1:(\d+) \(tcp, tls (sha256:[0-9a-f]{64})\)")
        endpoint, seen = f"127.0.0.1:{match[1]}", match[2]
        wrong = "sha256:" + "0" * 64
        lines = run("ping", "-v", "--tls", "--pin", wrong, "-c", "2", "-i", "50ms", endpoint)
        records = run("ping", "--tls", "--pin", wrong, "-c", "1", "--json", endpoint)
    assert lines.returncode == 1
    out = lines.stdout.decode()
    reason = f"certificate check failed: pin mismatch (the server's certificate is {seen})"
    assert out.count(reason) == 2, out
    assert "2 probes, 0 answered, 100% loss" in out and "rtt" not in out
    err = lines.stderr.decode()
    assert "TCP connect and TLS handshake" in err  # -v: the plan names the check
    assert "0 of 2 probes answered" in err.splitlines()[-1]
    assert records.returncode == 1
    record = json.loads(records.stdout.decode().splitlines()[0])
    assert (record["ok"], record["error"], record["time_ms"], record["handshake_ms"]) == (False, reason, None, None)
    assert record["connect_ms"] > 0  # it connected; the handshake's check failed


def test_tls_ca_sni_insecure_and_min_days_decide_each_probe(tmp_path):
    pki = make_pki(tmp_path)
    with SServer(pki.cert, pki.key) as server:
        endpoint = f"127.0.0.1:{server.port}"
        verified = run("ping", "--tls", "--ca", str(pki.ca_file), "-c", "1", endpoint)
        unknown_ca = run("ping", "--tls", "-c", "1", endpoint)
        insecure = run("ping", "--tls", "--insecure", "-c", "1", endpoint)
        other_name = run("ping", "--tls", "--ca", str(pki.ca_file), "--sni", "other.test", "-c", "1", endpoint)
        too_soon = run("ping", "--tls", "--ca", str(pki.ca_file), "--min-days", "999999", "-c", "1", endpoint)
    assert verified.returncode == 0, verified.stderr.decode()
    assert unknown_ca.returncode == 1 and "certificate check failed: unknown CA" in unknown_ca.stdout.decode()
    assert insecure.returncode == 0, insecure.stderr.decode()
    assert "--insecure" in insecure.stderr.decode()  # the warning
    assert other_name.returncode == 1 and "name mismatch" in other_name.stdout.decode()
    assert too_soon.returncode == 1 and "(--min-days 999999)" in too_soon.stdout.decode()


@pytest.mark.parametrize("other", [["--udp"], ["--send", "x"], ["--expect", "x"]])
def test_tls_is_its_own_probe(other):
    result = run("ping", "--tls", "--insecure", *other, "-c", "1", f"127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert f"--tls and {other[0]} cannot be used together" in one_line_error(result.stderr)


def test_probes_start_on_a_grid_however_late_each_one_is(monkeypatch):
    """Every wake-up is late (epoll rounds its timeout up to a millisecond; a busy machine
    runs the loop late) and every probe takes its time: the next probe is still due one
    interval after the last one was due, so -c 20 -i 10ms takes 190 ms, not 20 x 11.5 ms.
    The prober is a stand-in on a made-up clock: that lateness cannot be made on demand."""
    from socktool.net import ping as ping_module
    from socktool.net.address import Endpoint
    from socktool.net.probe import Check, Outcome, Target

    now = [100.0]
    starts: list[float] = []

    class LateProber:
        def __init__(self, clock: object) -> None:
            pass

        def run_one(self, target: Target, check: Check, timeout: float) -> Outcome:
            starts.append(now[0])
            now[0] += 0.003  # the probe's own time
            return Outcome(True, "", 0.003)

        def poll(self, timeout: float) -> None:
            now[0] += timeout + 0.0015  # woken late

        def close(self) -> None:
            pass

    monkeypatch.setattr(ping_module, "Prober", LateProber)
    target = Target(Endpoint("127.0.0.1", 9), ((socket.AF_INET, ("127.0.0.1", 9)),))
    pinger = ping_module.Pinger(
        target, Check(), name="t", count=20, interval=0.01, sink=lambda event: None, clock=lambda: now[0]
    )
    summary = pinger.run()
    assert summary.received == 20 and len(starts) == 20
    for seq, start in enumerate(starts):
        assert 100.0 + seq * 0.01 - 1e-9 <= start <= 100.0 + seq * 0.01 + 0.0016  # one wake-up late at most
