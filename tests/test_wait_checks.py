"""wait that checks content: --expect, --send, --http / http:// with --status, --udp;
and wait at a low descriptor limit. Real peers on loopback only."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from pathlib import Path

import pytest

from conftest import Proc, command, free_port, one_line_error, run
from reliability_helpers import filtered_listener, limit_descriptors, wait_until
from tls_helpers import make_pki, tls_server


class BannerServer:
    """A TCP peer that sends `banner` to every client, but only from `delay` seconds
    after it started (a service that accepts before it can answer), then closes."""

    def __init__(self, banner: bytes, delay: float = 0.0, per_client: float = 0.0):
        self.banner = banner
        self.ready_at = time.monotonic() + delay
        self.per_client = per_client  # and each client waits this long after it connected (a slow service)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.served = 0
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
            time.sleep(max(0.0, self.ready_at - time.monotonic()))  # the service's own start-up delay
            time.sleep(self.per_client)
            try:
                conn.sendall(self.banner)
                self.served += 1
            except OSError:
                pass  # the prober gave up on this connection

    def __enter__(self) -> BannerServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()


def test_expect_waits_for_a_banner_that_comes_late():
    with BannerServer(b"SSH-2.0-OpenSSH_9.6\r\n", delay=2.0) as server:
        result = run("wait", "--expect", "^SSH", f"127.0.0.1:{server.port}", "-w", "15s")
        assert result.returncode == 0, result.stderr.decode()
        # The banner reached wait before its server thread counted it: wait for the count.
        wait_until(lambda: server.served >= 1, 5, what="the server to count the banner it sent")
        assert f"127.0.0.1:{server.port} is up" in result.stderr.decode()


def test_expect_finds_a_service_that_answers_each_client_slower_than_a_try():
    # An sshd that looks the client's name up before its banner: 1.5 s after every
    # connect, more than a try's 1 s. The next try gets twice as long and sees it.
    with BannerServer(b"SSH-2.0-OpenSSH_9.6\r\n", per_client=1.5) as server:
        result = run("wait", "-v", "--expect", "^SSH", f"127.0.0.1:{server.port}", "-w", "20s")
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert f"127.0.0.1:{server.port}: nothing within 1s; trying again" in stderr
    assert f"127.0.0.1:{server.port} is up" in stderr


def test_expect_times_out_on_garbage_with_the_last_reason():
    with BannerServer(b"garbage\r\n") as server:
        result = run("wait", "--expect", "^SSH", f"127.0.0.1:{server.port}", "-w", "700ms")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert f"waiting for 127.0.0.1:{server.port} (no match for '^SSH' in 'garbage\\\\r\\\\n' (peer closed))" in line


def test_send_then_expect_against_the_echo_server():
    with Proc("echo", "-v", "--tcp-only", "127.0.0.1:0") as echo:
        port = echo.wait_listening()
        result = run("wait", "--send", "PING\r\n", "--expect", "^PING", f"127.0.0.1:{port}", "-w", "5s")
    assert result.returncode == 0, result.stderr.decode()


def test_a_connect_that_only_accepts_is_not_enough_for_expect():
    silent = socket.create_server(("127.0.0.1", 0))
    with silent:
        port = silent.getsockname()[1]
        result = run("wait", "--expect", "ready", f"127.0.0.1:{port}", "-w", "1500ms", "--interval", "1s")
    assert result.returncode == 1
    assert f"127.0.0.1:{port} (nothing within 1s)" in one_line_error(result.stderr)


@pytest.fixture
def http_server(tmp_path: Path):
    """`python -m http.server` in a temp dir; yields (port, its log lines, the dir)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    log: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.append(raw.decode(errors="replace"))
            started.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert started.wait(10), "http.server did not start"
        yield port, log, tmp_path
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_http_endpoint_waits_for_status_200_after_404s(http_server):
    port, log, root = http_server
    with Proc("wait", f"http://127.0.0.1:{port}/health", "--status", "200", "-w", "15s", "-v") as waiting:
        deadline = time.monotonic() + 10
        while not any('"GET /health HTTP/1.1" 404' in line for line in log):
            assert time.monotonic() < deadline, "".join(log)
            time.sleep(0.02)
        assert waiting.popen.poll() is None  # a 404 is not up
        (root / "health").write_text("ok\n")
        assert waiting.wait(timeout=15) == 0, waiting.stderr
    assert f"http://127.0.0.1:{port}/health is up" in waiting.stderr
    assert any('"GET /health HTTP/1.1" 200' in line for line in log)


def test_http_timeout_names_the_status_it_got(http_server):
    port, _log, _root = http_server
    result = run("wait", "--http", "/nope", f"127.0.0.1:{port}", "-w", "600ms")
    assert result.returncode == 1
    assert f"127.0.0.1:{port} (HTTP 404 File not found, want 200-299)" in one_line_error(result.stderr)


def test_http_with_status_takes_the_statuses_given_as_up(http_server):
    port, _log, _root = http_server
    result = run("wait", "--http", "/nope", "--status", "404", f"127.0.0.1:{port}", "-w", "5s")
    assert result.returncode == 0, result.stderr  # without --status a 404 is not up


def test_http_expect_matches_the_body(http_server):
    port, _log, root = http_server
    (root / "health").write_text('{"status": "ok"}\n')
    result = run("wait", "--http", "/health", "--expect", '"status": "ok"', f"127.0.0.1:{port}", "-w", "5s")
    assert result.returncode == 0, result.stderr.decode()
    result = run("wait", "--http", "/health", "--expect", "degraded", f"127.0.0.1:{port}", "-w", "600ms")
    assert result.returncode == 1
    assert "but no match for 'degraded' in the body" in one_line_error(result.stderr)


def test_each_endpoint_carries_its_own_check(http_server):
    port, _log, root = http_server
    (root / "health").write_text("ok\n")
    with BannerServer(b"+OK ready\r\n") as pop:
        result = run(
            "wait", "--expect", r"^\+OK", f"127.0.0.1:{pop.port}", f"http://127.0.0.1:{port}/health", "-w", "5s"
        )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode()
    assert f"127.0.0.1:{pop.port} is up" in lines and f"http://127.0.0.1:{port}/health is up" in lines


def test_udp_probe_against_echo_and_time_server():
    with (
        Proc("echo", "-v", "--udp-only", "127.0.0.1:0") as echo,
        Proc("time-server", "-v", "--udp-only", "127.0.0.1:0") as clock,
    ):
        echo_port, clock_port = echo.wait_listening(), clock.wait_listening()
        result = run("wait", "--udp", "--send", "hello", "--expect", "^hello$", f"127.0.0.1:{echo_port}", "-w", "5s")
        assert result.returncode == 0, result.stderr.decode()
        result = run("wait", "--udp", "--send", "%Y", "--expect", r"^\d{4}$", f"127.0.0.1:{clock_port}", "-w", "5s")
        assert result.returncode == 0, result.stderr.decode()


def test_udp_probe_of_a_closed_port_says_port_unreachable():
    port = free_port(socket.SOCK_DGRAM)
    result = run("wait", "--udp", "--send", "x", f"127.0.0.1:{port}", "-w", "500ms")
    assert result.returncode == 1
    assert f"127.0.0.1:{port} (port unreachable)" in one_line_error(result.stderr)


def test_udp_probe_of_a_silent_port_says_no_reply():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        result = run("wait", "--udp", "--send", "x", f"127.0.0.1:{port}", "-w", "1500ms")
    assert result.returncode == 1
    assert f"127.0.0.1:{port} (no reply within 1s)" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["--status", "200", "127.0.0.1:80"],  # --status without any HTTP check
        ["--status", "600", "http://127.0.0.1:80/"],
        ["--status", "abc", "http://127.0.0.1:80/"],
        ["--http", "--send", "x", "127.0.0.1:80"],
        ["--http", "--udp", "127.0.0.1:80"],
        ["--udp", "unix:/tmp/nothing-here.sock"],
        ["--expect", "(", "127.0.0.1:80"],
        ["--tls", "--udp", "127.0.0.1:80"],
        ["--tls", "--insecure", "http://127.0.0.1/"],  # --tls is for HOST:PORT and https://
        ["ftp://127.0.0.1/"],
        ["tcp://127.0.0.1"],
    ],
)
def test_checks_that_cannot_apply_are_usage_errors(args):
    result = run("wait", "-w", "100ms", *args)
    assert result.returncode == 2, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


class HttpsHealth:
    """An HTTPS server (tls_helpers.tls_server, a certificate for localhost and 127.0.0.1
    by a test CA) whose /health answers `status`, which the test changes."""

    def __init__(self, directory: Path):
        self.pki = make_pki(directory)
        self.status = 404
        self.asked: list[int] = []  # the status of each answer
        self._serving = contextlib.ExitStack()

    def _answer(self, tls: ssl.SSLSocket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = tls.recv(4096)
            if not data:
                return
            request += data
        status = self.status if request.split(b" ", 2)[1] == b"/health" else 404
        self.asked.append(status)
        body = b"ok\n" if status == 200 else b"not yet\n"
        head = f"HTTP/1.0 {status} {HTTPStatus(status).phrase}\r\nContent-Length: {len(body)}\r\n\r\n"
        tls.sendall(head.encode() + body)

    def __enter__(self) -> HttpsHealth:
        self.port = self._serving.enter_context(tls_server(self.pki.cert, self.pki.key, self._answer))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._serving.close()


def test_http_through_tls_is_up_only_after_the_status_turns_200(tmp_path: Path):
    with HttpsHealth(tmp_path) as server:
        argv = ["wait", "-v", "--tls", "--ca", str(server.pki.ca_file), "--http", "/health", "--status", "200"]
        with Proc(*argv, f"127.0.0.1:{server.port}", "-w", "20s") as waiting:
            waiting.wait_for(f"127.0.0.1:{server.port}: HTTP 404 Not Found, want 200; trying again")
            assert waiting.popen.poll() is None  # a 404, through TLS, is not up
            server.status = 200
            assert waiting.wait(timeout=20) == 0, waiting.stderr
        assert f"127.0.0.1:{server.port} is up" in waiting.stderr
    assert server.asked[-1] == 200


def test_an_https_url_is_verified_and_asked_for_its_path(tmp_path: Path):
    with HttpsHealth(tmp_path) as server:
        server.status = 200
        url = f"https://localhost:{server.port}/health"
        verified = run("wait", "--tls", "--ca", str(server.pki.ca_file), url, "-w", "10s")
        unknown_ca = run("wait", url, "-w", "700ms")  # the system's CAs: the test CA is not one of them
    assert verified.returncode == 0, verified.stderr.decode()
    assert f"{url} is up" in verified.stderr.decode()
    assert unknown_ca.returncode == 1
    assert "certificate check failed: unknown CA" in one_line_error(unknown_ca.stderr)


def test_send_and_expect_through_tls(tmp_path: Path):
    with HttpsHealth(tmp_path) as server:
        server.status = 200
        request = "GET /health HTTP/1.0\r\n\r\n"
        ca = str(server.pki.ca_file)
        found = run(
            "wait", "--tls", "--ca", ca, "--send", request, "--expect", "^HTTP/1.0 200", f"127.0.0.1:{server.port}"
        )
        missed = run(
            "wait",
            "--tls",
            "--ca",
            ca,
            "--send",
            request,
            "--expect",
            "^SSH",
            f"127.0.0.1:{server.port}",
            "-w",
            "700ms",
        )
    assert found.returncode == 0, found.stderr.decode()
    assert missed.returncode == 1
    assert "no match for '^SSH' in 'HTTP/1.0 200 OK" in one_line_error(missed.stderr)


def test_http_takes_an_optional_path(http_server):
    port, log, _root = http_server
    result = run("wait", "--http", f"127.0.0.1:{port}", "-w", "5s")  # GET / lists the directory: 200
    assert result.returncode == 0, result.stderr.decode()
    assert any('"GET / HTTP/1.1" 200' in line for line in log)


def test_tcp_url_is_a_bare_connect_whatever_the_options():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        result = run("wait", "--expect", "never", f"tcp://127.0.0.1:{port}", "-w", "5s")
    assert result.returncode == 0, result.stderr.decode()


def test_low_descriptor_limit_waits_without_tracebacks():
    """ulimit -n 32: 40 endpoints that hang in connect and 5 that are up (issue 11 item 8)."""
    hanging = [filtered_listener() for _ in range(40)]
    up = [socket.create_server(("127.0.0.1", 0)) for _ in range(5)]
    try:
        endpoints = [f"127.0.0.1:{listener.getsockname()[1]}" for listener, _filler in hanging]
        endpoints += [f"127.0.0.1:{server.getsockname()[1]}" for server in up]
        proc = subprocess.run(
            command("wait", "-w", "3s", "-v", *endpoints),
            capture_output=True,
            timeout=30,
            preexec_fn=limit_descriptors(32),
        )
        stderr = proc.stderr.decode()
        assert proc.returncode == 1, stderr
        assert "Traceback" not in stderr and "Exception" not in stderr
        for server in up:
            assert f"127.0.0.1:{server.getsockname()[1]} is up" in stderr
        error = [line for line in stderr.splitlines() if line.startswith("socktool: error:")]
        assert len(error) == 1, stderr
        assert "not tried yet" not in error[0]
        assert re.search(r"\(timed out after 1s\)|\(out of file descriptors; retrying\)", error[0])

        # With only the ones that are up, the same limit is exit 0.
        ok = subprocess.run(
            command("wait", "-w", "5s", *endpoints[40:]),
            capture_output=True,
            timeout=30,
            preexec_fn=limit_descriptors(32),
        )
        assert ok.returncode == 0, ok.stderr.decode()
    finally:
        for listener, filler in hanging:
            filler.close()
            listener.close()
        for server in up:
            server.close()


# -- the pure parts, in process --------------------------------------------------------
def test_status_lists():
    from socktool.net.probe import parse_statuses, status_text

    assert parse_statuses("200,204") == {200, 204}
    assert parse_statuses("2xx") == set(range(200, 300))
    assert parse_statuses("200-202, 404") == {200, 201, 202, 404}
    assert status_text(parse_statuses("2xx")) == "200-299"
    for bad in ("", "20", "600", "299-200", "٢٠٠", "3xy"):
        with pytest.raises(ValueError):
            parse_statuses(bad)


def test_url_endpoints():
    from socktool.net.address import Endpoint
    from socktool.net.probe import parse_url_endpoint

    url = parse_url_endpoint("http://api:8080/health?full=1#top")
    assert url is not None
    assert (url.scheme, url.endpoint, url.path, url.host_header) == (
        "http",
        Endpoint("api", 8080),
        "/health?full=1",
        "api:8080",
    )
    url = parse_url_endpoint("http://[::1]")
    assert url is not None and url.endpoint == Endpoint("::1", 80) and url.path == "/"
    assert parse_url_endpoint("db:5432") is None
    secure = parse_url_endpoint("https://api.test/health")
    assert secure is not None and (secure.scheme, secure.endpoint) == ("https", Endpoint("api.test", 443))
    for bad in ("tcp://x", "gopher://x:70", "http:///path"):
        with pytest.raises(ValueError):
            parse_url_endpoint(bad)


def test_http_response_parsing():
    from socktool.net.probe import http_response

    assert http_response(b"HTTP/1.") is None
    assert http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n") is None
    assert http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") == (200, "OK", b"ok")
    assert http_response(b"HTTP/1.0 503\n\n") == (503, "", b"")
    with pytest.raises(ValueError):
        http_response(b"SSH-2.0-OpenSSH\r\n")


def test_a_name_is_resolved_off_the_probe_loop_and_each_address_tried():
    """localhost (from /etc/hosts; no DNS traffic) may come first as ::1, where nothing
    listens: the next address is tried within the same probe."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = run("wait", "-v", f"localhost:{port}", "-w", "5s")
    assert result.returncode == 0, result.stderr.decode()
    assert f"localhost:{port} is up" in result.stderr.decode()


def test_a_chunked_body_is_matched_as_its_data():
    from socktool.net.probe import http_response

    response = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{"statu\r\n9;ext=1\r\ns": "ok"}\r\n0\r\n\r\n'
    assert http_response(response) == (200, "OK", b'{"status": "ok"}')
    assert http_response(response[:-12]) == (200, "OK", b'{"status": ')  # as far as it has come
