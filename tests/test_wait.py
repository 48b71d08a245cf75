"""wait: until endpoints accept (or, inverted, refuse), then run the command after --."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time

import pytest

from conftest import Proc, free_port, one_line_error, run
from test_portscan import run_in_pty


class LateListener:
    """A port that refuses now and starts listening `delay` seconds later.

    The socket is bound from the start, so no one else can take the port
    in between; bound but not listening, it answers SYNs with a reset.
    """

    def __init__(self, delay: float, family: int = socket.AF_INET, host: str = "127.0.0.1"):
        self.sock = socket.socket(family)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.listening_at: float | None = None
        self._timer = threading.Timer(delay, self._listen)

    def _listen(self) -> None:
        self.sock.listen(16)
        self.listening_at = time.monotonic()

    def __enter__(self) -> LateListener:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        self.sock.close()


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_succeeds_when_the_port_comes_up_a_second_later():
    with LateListener(1.0) as late:
        started = time.monotonic()
        result = run("wait", f"127.0.0.1:{late.port}", "-w", "10s")
        finished = time.monotonic()
    assert result.returncode == 0, result.stderr.decode()
    assert late.listening_at is not None and late.listening_at <= finished
    assert finished - started >= 0.9
    assert f"127.0.0.1:{late.port} is up" in result.stderr.decode()


def test_exits_1_on_timeout_naming_the_endpoint_and_why():
    port = free_port()
    started = time.monotonic()
    result = run("wait", f"127.0.0.1:{port}", "-w", "600ms", "--interval", "100ms")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert f"timed out after 600ms waiting for 127.0.0.1:{port} (connection refused)" in line
    assert 0.55 <= elapsed < 5


def test_json_is_a_record_per_endpoint_up_or_failed_then_the_error():
    refused = free_port()
    with listening_socket() as server:
        up = server.getsockname()[1]
        result = run("wait", "--json", "-w", "600ms", "--interval", "100ms", f"127.0.0.1:{up}", f"127.0.0.1:{refused}")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [(r["event"], r["v"], r.get("endpoint")) for r in records] == [
        ("up", 1, f"127.0.0.1:{up}"),
        ("failed", 1, f"127.0.0.1:{refused}"),
        ("error", 1, None),
    ]
    assert records[1]["reason"] == "connection refused"
    assert records[1]["elapsed"] == 0.6
    assert records[2]["exit"] == 1
    assert "socktool: error: timed out after 600ms" in result.stderr.decode().splitlines()[-1]


def test_json_invert_says_down_with_how_it_failed():
    refused = free_port()
    result = run("wait", "--json", "--invert", "-q", f"127.0.0.1:{refused}")
    assert result.returncode == 0
    (record,) = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert (record["event"], record["endpoint"], record["detail"]) == (
        "down",
        f"127.0.0.1:{refused}",
        "connection refused",
    )


def test_runs_the_command_after_dashes_and_returns_its_status():
    with listening_socket() as server:
        port = server.getsockname()[1]
        result = run("wait", f"127.0.0.1:{port}", "--", "sh", "-c", "echo ran; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"ran\n"


def test_options_after_dashes_belong_to_the_command():
    with listening_socket() as server:
        port = server.getsockname()[1]
        result = run("wait", f"127.0.0.1:{port}", "-q", "--", "printf", "%s|", "-q", "--timeout", "-w", "--")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"-q|--timeout|-w|--|"
    assert result.stderr == b""


def test_options_may_follow_the_endpoints():
    with listening_socket() as server:
        port = server.getsockname()[1]
        result = run("wait", f"127.0.0.1:{port}", "-w", "5s", "--interval", "50ms", "--", "true")
    assert result.returncode == 0, result.stderr.decode()


def test_command_is_not_run_when_the_wait_times_out():
    result = run("wait", f"127.0.0.1:{free_port()}", "-w", "300ms", "--", "sh", "-c", "echo ran")
    assert result.returncode == 1
    assert result.stdout == b""


def test_a_missing_command_is_a_usage_error_before_any_waiting():
    started = time.monotonic()
    result = run("wait", f"127.0.0.1:{free_port()}", "-w", "30s", "--", "no-such-command-here")
    assert result.returncode == 2
    assert "command not found: no-such-command-here" in one_line_error(result.stderr)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("args", [["--"], ["bad-endpoint"], ["127.0.0.1:99999"], ["127.0.0.1:80", "--interval", "0"]])
def test_usage_errors_are_exit_2(args):
    result = run("wait", *args)
    assert result.returncode == 2
    one_line_error(result.stderr)


def test_waits_for_every_endpoint_with_a_line_for_each():
    with listening_socket() as early, LateListener(0.8) as late:
        endpoints = [f"127.0.0.1:{early.getsockname()[1]}", f"127.0.0.1:{late.port}"]
        result = run("wait", *endpoints, "-w", "10s")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    assert [line.split()[1] for line in lines] == endpoints  # in the order they came up
    assert all(line.startswith("socktool: ") and "is up" in line for line in lines)


def test_one_endpoint_down_means_timeout_for_all():
    with listening_socket() as server:
        up, down = server.getsockname()[1], free_port()
        result = run("wait", f"127.0.0.1:{up}", f"127.0.0.1:{down}", "-w", "500ms")
    assert result.returncode == 1
    up_line, error = result.stderr.decode().splitlines()
    assert up_line.startswith(f"socktool: 127.0.0.1:{up} is up")
    line = one_line_error(error)
    assert f"127.0.0.1:{down} (connection refused)" in line
    assert f"127.0.0.1:{up} (" not in line


def test_quiet_prints_nothing():
    with listening_socket() as server:
        result = run("wait", "-q", f"127.0.0.1:{server.getsockname()[1]}")
    assert result.returncode == 0
    assert result.stderr == b"" and result.stdout == b""


def test_invert_waits_until_the_port_refuses():
    server = listening_socket()
    port = server.getsockname()[1]
    with Proc("wait", "--invert", f"127.0.0.1:{port}", "-w", "10s", "--interval", "100ms") as proc:
        time.sleep(0.5)  # the scenario: the service stops a moment later
        assert proc.popen.poll() is None
        server.close()
        assert proc.wait(timeout=10) == 0
        assert f"127.0.0.1:{port} is down (connection refused" in proc.stderr


def test_invert_times_out_while_the_port_still_accepts():
    with listening_socket() as server:
        port = server.getsockname()[1]
        result = run("wait", "--invert", f"127.0.0.1:{port}", "-w", "400ms")
    assert result.returncode == 1
    assert f"waiting for 127.0.0.1:{port} (accepting connections) to stop accepting" in one_line_error(result.stderr)


def test_waits_for_a_unix_socket(tmp_sock_dir):
    path = tmp_sock_dir / "app.sock"

    def serve() -> None:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.listen(1)
        holder.append(server)

    holder: list[socket.socket] = []
    timer = threading.Timer(0.5, serve)
    timer.start()
    try:
        result = run("wait", f"unix:{path}", "-w", "10s", "--", "true")
    finally:
        timer.cancel()
        for server in holder:
            server.close()
    assert result.returncode == 0, result.stderr.decode()


def test_ipv6_endpoint():
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 here")
    with server:
        server.listen(4)
        result = run("wait", f"[::1]:{server.getsockname()[1]}", "-w", "5s")
    assert result.returncode == 0, result.stderr.decode()


def test_terminal_shows_a_spinner_and_the_up_line():
    with LateListener(0.6) as late:
        status, screen = run_in_pty("wait", f"127.0.0.1:{late.port}", "-w", "10s")
    assert status == 0, screen
    assert f"waiting for 127.0.0.1:{late.port}" in screen, screen
    assert f"127.0.0.1:{late.port} is up" in screen, screen


# -- the schedule of tries: an endpoint that comes up is seen within one interval ----------


def test_a_try_started_late_does_not_push_back_the_next_one():
    from socktool.net.wait import next_due

    # Due at 10.0, started (and refused) only at 10.05: the next is still due at 10.24.
    assert next_due(10.0, 0.24, now=10.05) == pytest.approx(10.24)
    # A try that outlasted its step (a connect that timed out) is followed at once.
    assert next_due(10.0, 0.24, now=11.5) == 11.5


@pytest.mark.parametrize("interval", [0.01, 0.1, 0.25, 1.0, 30.0])
def test_tries_of_an_endpoint_are_due_a_little_under_one_interval_apart(interval):
    from socktool.net.wait import HEADROOM_MAX, try_period

    period = try_period(interval)
    assert interval - HEADROOM_MAX <= period < interval
    assert period >= interval * 0.9


def test_many_endpoints_are_retried_spread_over_one_step_not_all_at_once():
    from socktool.net.wait import first_due, next_due, try_period

    began, period, count = 100.0, try_period(0.25), 500
    retries = sorted(next_due(first_due(began, period, index, count), period, now=began) for index in range(count))
    # Each endpoint is tried at `began`, and again within one step of it ...
    assert began < retries[0] and retries[-1] == pytest.approx(began + period)
    # ... the second tries evenly spread over that step.
    gaps = [later - sooner for sooner, later in itertools.pairwise(retries)]
    assert min(gaps) == pytest.approx(period / count) == pytest.approx(max(gaps))
