"""--proxy on tcp-connect against real proxies: microsocks (SOCKS5, with and
without a password), dante (SOCKS4, SOCKS4a, SOCKS5) and ncat's HTTP CONNECT
proxy (with and without --proxy-auth). The targets are loopback servers."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import free_port, need, one_line_error, run
from tls_helpers import Pki, make_pki, python_tls_server

GREETING = b"hello through the proxy\n"


def is_listening(port: int) -> bool:
    """A listener on the port, seen in the kernel's table: a probing connect would use
    up a one-client peer."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = [line.split() for line in Path(table).read_text().splitlines()[1:]]
        except OSError:
            continue
        if any(row[1].endswith(f":{port:04X}") and row[3] == "0A" for row in rows):  # 0A: LISTEN
            return True
    return False


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 10) -> None:
    """Until the peer `process` (a proxy, ncat, socat) listens on the port."""
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else b""
            raise AssertionError(f"{process.args[0]} exited with {process.returncode}: {stderr!r}")
        assert time.monotonic() < deadline, f"nothing listening on {port}"
        time.sleep(0.02)


@contextmanager
def listening_peer(argv: list[str], port: int, stderr: int = subprocess.DEVNULL) -> Iterator[subprocess.Popen]:
    """A peer process (a proxy, ncat, socat) once it listens on 127.0.0.1:port, killed at
    the end. stderr=subprocess.PIPE shows its error if it exits first: only for a peer that
    says little, as nothing reads the pipe while it runs."""
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.kill()
        process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


def start(argv: list[str], port: int) -> Iterator[int]:
    """A fixture's body: the port of a listening_peer."""
    with listening_peer(argv, port):
        yield port


@pytest.fixture
def microsocks() -> Iterator[int]:
    need("microsocks")
    port = free_port()
    yield from start(["microsocks", "-i", "127.0.0.1", "-p", str(port)], port)


@pytest.fixture
def microsocks_auth() -> Iterator[int]:
    need("microsocks")
    port = free_port()
    yield from start(["microsocks", "-i", "127.0.0.1", "-p", str(port), "-u", "ann", "-P", "s3cret"], port)


@pytest.fixture
def dante(tmp_path: Path) -> Iterator[int]:
    need("danted")
    port = free_port()
    config = tmp_path / "danted.conf"
    config.write_text(
        f"""logoutput: stderr
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 127.0.0.0/8 }}
"""
    )
    yield from start(["danted", "-f", str(config), "-N", "1", "-p", str(tmp_path / "danted.pid")], port)


def http_proxy(*extra: str) -> Iterator[int]:
    need("ncat")
    port = free_port()
    yield from start(["ncat", "-l", "-k", "127.0.0.1", str(port), "--proxy-type", "http", *extra], port)


@pytest.fixture
def ncat_proxy() -> Iterator[int]:
    yield from http_proxy()


@pytest.fixture
def ncat_proxy_auth() -> Iterator[int]:
    yield from http_proxy("--proxy-auth", "ann:s3cret")


def greet_once(*, dual_stack: bool = False) -> int:
    """A loopback port whose one client gets GREETING, then EOF. A proxy may end
    the connection with a reset: that is not this test's business."""
    if dual_stack and socket.has_dualstack_ipv6():
        server = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    else:
        server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                try:
                    conn.sendall(GREETING)
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(65536):
                        pass
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def through(url: str, *args: str) -> subprocess.CompletedProcess:
    """The greeting of a fresh server, fetched through `url`. --recv-only: microsocks
    ends both directions at the first EOF it sees (no half-close), so the client
    must not send one before the greeting is through."""
    return run("tcp-connect", "--recv-only", "--proxy", url, *args, f"127.0.0.1:{greet_once()}")


def test_socks5_through_microsocks(microsocks: int):
    result = through(f"socks5://127.0.0.1:{microsocks}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == GREETING


@pytest.mark.parametrize("where", ["url", "option"])
def test_socks5_password_in_the_url_or_in_proxy_auth(microsocks_auth: int, where: str):
    if where == "url":
        result = through(f"socks5://ann:s3cret@127.0.0.1:{microsocks_auth}")
    else:
        result = through(f"socks5://127.0.0.1:{microsocks_auth}", "--proxy-auth", "ann:s3cret")
    assert result.returncode == 0, result.stderr
    assert result.stdout == GREETING


def test_socks5_wrong_password_is_the_proxys_word(microsocks_auth: int):
    result = through(f"socks5://ann:wrong@127.0.0.1:{microsocks_auth}")
    assert result.returncode == 1
    assert "the proxy says" in one_line_error(result.stderr)


@pytest.mark.parametrize("scheme", ["socks4", "socks4a", "socks5", "socks5h"])
def test_every_socks_version_through_dante(dante: int, scheme: str):
    result = through(f"{scheme}://127.0.0.1:{dante}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == GREETING


def test_socks5h_lets_the_proxy_resolve_the_name(dante: int):
    target = greet_once(dual_stack=True)  # the proxy may resolve localhost to ::1 or 127.0.0.1
    result = run("tcp-connect", "--proxy", f"socks5h://127.0.0.1:{dante}", f"127.0.0.1:{target}", "-4")
    assert result.returncode == 2  # -4 means nothing when the proxy dials
    result = run("tcp-connect", "--recv-only", "--proxy", f"socks5h://127.0.0.1:{dante}", f"127.0.0.1:{target}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == GREETING


def test_target_refused_is_reported_in_the_proxys_words(dante: int):
    result = run("tcp-connect", "--proxy", f"socks5://127.0.0.1:{dante}", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "the proxy says: Connection refused" in one_line_error(result.stderr)


def test_http_connect_through_ncat(ncat_proxy: int):
    result = through(f"http://127.0.0.1:{ncat_proxy}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == GREETING


def test_http_connect_with_and_without_credentials(ncat_proxy_auth: int):
    ok = through(f"http://ann:s3cret@127.0.0.1:{ncat_proxy_auth}")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == GREETING
    refused = through(f"http://127.0.0.1:{ncat_proxy_auth}")
    assert refused.returncode == 1
    assert "the proxy says: 407" in one_line_error(refused.stderr)


def test_a_proxy_that_is_not_there_is_one_line():
    result = run("tcp-connect", "--proxy", f"socks5://127.0.0.1:{free_port()}", "127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot reach the proxy" in one_line_error(result.stderr)


def test_tls_through_a_proxy_verifies_the_target(microsocks: int, tmp_path):
    pki: Pki = make_pki(tmp_path)
    port = python_tls_server(pki, GREETING, close_notify=True)
    result = run(
        "tcp-connect", "--recv-only", "--tls", "--ca", pki.ca_file, "--strict-close",
        "--sni", "localhost", "--proxy", f"socks5h://127.0.0.1:{microsocks}", f"127.0.0.1:{port}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == GREETING


@pytest.mark.parametrize(
    "args, message",
    [
        (("--proxy", "ftp://127.0.0.1:21"), "unknown proxy scheme"),
        (("--proxy", "socks5://127.0.0.1"), "needs a host and a port"),
        (("--proxy-auth", "a:b"), "--proxy-auth needs --proxy"),
        (
            ("--proxy", "socks5://127.0.0.1:1080", "--source", "127.0.0.1"),
            "--proxy and --source cannot be used together",
        ),
        (("--proxy", "socks4://u:p@127.0.0.1:1080"), "SOCKS4 has a user id but no password"),
    ],
)
def test_bad_proxy_options_are_usage_errors(args, message):
    result = run("tcp-connect", *args, "127.0.0.1:9")
    assert result.returncode == 2
    assert message in one_line_error(result.stderr)


# -- wait and portscan through a proxy ---------------------------------------------------------------
PROXIES = {  # fixture → URL scheme
    "microsocks": "socks5",
    "dante": "socks4",
    "ncat_proxy": "http",
}


def proxy_url(request: pytest.FixtureRequest, fixture: str) -> str:
    return f"{PROXIES[fixture]}://127.0.0.1:{request.getfixturevalue(fixture)}"


def listening(count: int) -> list[socket.socket]:
    """Loopback listeners that accept and keep quiet (closed by the test)."""
    return [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]


@pytest.mark.parametrize("fixture", list(PROXIES))
def test_wait_through_a_proxy_is_up_when_the_target_listens_and_says_the_proxys_words_when_not(
    request: pytest.FixtureRequest, fixture: str
):
    url = proxy_url(request, fixture)
    (server,) = listening(1)
    with server:
        up = run("wait", "-w", "10s", "--proxy", url, f"127.0.0.1:{server.getsockname()[1]}")
        assert up.returncode == 0, up.stderr
    down = run("wait", "-w", "500ms", "--proxy", url, f"127.0.0.1:{free_port()}")
    assert down.returncode == 1
    line = one_line_error(down.stderr)
    assert "timed out after 500ms" in line
    assert "the proxy says" in line  # why it is down: the proxy's reply, not a local connect's


def test_wait_http_and_tls_checks_run_over_the_proxys_connection(microsocks: int, tmp_path):
    url = f"socks5h://127.0.0.1:{microsocks}"
    pki: Pki = make_pki(tmp_path)
    port = python_tls_server(pki, GREETING, close_notify=True)
    tls = run(
        "wait", "-w", "10s", "--proxy", url, "--tls", "--ca", pki.ca_file, "--sni", "localhost", f"127.0.0.1:{port}"
    )
    assert tls.returncode == 0, tls.stderr
    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def answer() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:  # the prober left early: the test fails on what it printed
                        return
                    request += chunk
                requests.append(request)
                conn.sendall(b"HTTP/1.0 204 No Content\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    http = run("wait", "-w", "10s", "--proxy", url, f"http://127.0.0.1:{server.getsockname()[1]}/health")
    assert http.returncode == 0, http.stderr
    assert requests and requests[0].startswith(b"GET /health HTTP/1.1\r\n")


def test_wait_with_a_proxy_that_is_not_there_names_it():
    result = run("wait", "-w", "300ms", "--proxy", f"socks5://127.0.0.1:{free_port()}", "127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot reach the proxy" in one_line_error(result.stderr)


def scan_states(*args: str) -> dict[int, str]:
    result = run("portscan", "--all", *args)
    assert result.returncode == 0, result.stderr
    states = {}
    for line in result.stdout.decode().splitlines():
        port, state = line.split()[:2]
        states[int(port.split("/")[0])] = state
    return states


@pytest.mark.parametrize("fixture", list(PROXIES))
def test_portscan_through_a_proxy_finds_what_a_direct_scan_finds(request: pytest.FixtureRequest, fixture: str):
    url = proxy_url(request, fixture)
    servers = listening(3)
    try:
        ports = [server.getsockname()[1] for server in servers] + [free_port(), free_port()]
        wanted = ",".join(map(str, ports))
        direct = scan_states("127.0.0.1", wanted)
        proxied = scan_states("--proxy", url, "127.0.0.1", wanted)
    finally:
        for server in servers:
            server.close()
    assert proxied == direct
    assert sorted(state for state in proxied.values()) == ["closed", "closed", "open", "open", "open"]


def test_portscan_banner_through_a_proxy_is_what_the_service_says(microsocks: int):
    server = socket.create_server(("127.0.0.1", 0))

    def greet_each() -> None:  # the scan connects, then the banner grab connects again
        with server:
            for _client in range(2):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(GREETING)

    threading.Thread(target=greet_each, daemon=True).start()
    port = server.getsockname()[1]
    result = run("portscan", "--banner", "--proxy", f"socks5://127.0.0.1:{microsocks}", "127.0.0.1", str(port))
    assert result.returncode == 0, result.stderr
    assert GREETING.strip().decode() in result.stdout.decode()


def test_portscan_with_proxy_auth_scans_and_wrong_credentials_stop_it(microsocks_auth: int):
    url = f"socks5://127.0.0.1:{microsocks_auth}"
    (server,) = listening(1)
    with server:
        port = server.getsockname()[1]
        states = scan_states("--proxy", url, "--proxy-auth", "ann:s3cret", "127.0.0.1", str(port))
    assert states == {port: "open"}
    result = run("portscan", "--proxy", url, "--proxy-auth", "ann:wrong", "127.0.0.1", "1-50")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert f"cannot scan 127.0.0.1 through {url}" in line
    assert "the proxy says" in line
    assert result.stdout == b""


def test_wait_with_proxy_auth_through_ncats_http_proxy(ncat_proxy_auth: int):
    url = f"http://127.0.0.1:{ncat_proxy_auth}"
    (server,) = listening(1)
    with server:
        target = f"127.0.0.1:{server.getsockname()[1]}"
        up = run("wait", "-w", "10s", "--proxy", url, "--proxy-auth", "ann:s3cret", target)
        assert up.returncode == 0, up.stderr
        refused = run("wait", "-w", "500ms", "--proxy", url, target)
    assert refused.returncode == 1
    assert "the proxy says: 407" in one_line_error(refused.stderr)


@pytest.mark.parametrize(
    "args, message",
    [
        (("portscan", "--proxy", "socks5://127.0.0.1:1080", "--udp", "127.0.0.1", "53"), "--proxy and --udp"),
        (("portscan", "--proxy", "socks5://127.0.0.1:1080", "-6", "::1", "53"), "--proxy and -6"),
        (("portscan", "--proxy-auth", "a:b", "127.0.0.1", "53"), "--proxy-auth needs --proxy"),
        (("wait", "--proxy", "socks5://127.0.0.1:1080", "--udp", "127.0.0.1:53"), "--proxy and --udp"),
        (("wait", "--proxy", "socks5://127.0.0.1:1080", "unix:/tmp/socktool-none"), "not a unix: socket"),
        (("wait", "--proxy-auth", "a:b", "127.0.0.1:9"), "--proxy-auth needs --proxy"),
    ],
)
def test_proxy_options_on_wait_and_portscan_that_cannot_apply_are_usage_errors(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in one_line_error(result.stderr)
