"""forward --proxy: the target side through real proxies on loopback (microsocks for
SOCKS5, ncat --proxy-type http for CONNECT), and a proxy that never answers, which
must not hold up the other clients (the proxy's handshake runs off the loop)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from conftest import one_line_error, run
from reliability_helpers import recv_exactly
from test_forward import connect, echo_server, forwarding, read_to_end
from test_proxy import microsocks, ncat_proxy_auth  # noqa: F401 - the fixtures
from tls_helpers import SServer, make_pki


def _echoes(port: int, size: int) -> None:
    data = os.urandom(size)
    with connect(port) as client:
        client.sendall(data)
        assert recv_exactly(client, size) == data  # before any half-close: a proxy may end both ways on EOF


def test_twenty_clients_at_once_through_socks5_each_get_their_own_bytes(microsocks):  # noqa: F811
    with (
        echo_server() as echo,
        forwarding(f"127.0.0.1:{echo}", "--proxy", f"socks5://127.0.0.1:{microsocks}") as (
            proc,
            port,
        ),
    ):
        errors: list[BaseException] = []

        def one() -> None:
            try:
                _echoes(port, 64 * 1024)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        proc.wait_for(r"closed #20 ")


def test_http_connect_with_proxy_auth_through_ncat(ncat_proxy_auth):  # noqa: F811
    with echo_server() as echo:
        url = f"http://127.0.0.1:{ncat_proxy_auth}"
        with forwarding(f"127.0.0.1:{echo}", "--proxy", url, "--proxy-auth", "ann:s3cret") as (proc, port):
            _echoes(port, 10_000)
        with forwarding(f"127.0.0.1:{echo}", "--proxy", url, "--proxy-auth", "ann:wrong") as (proc, port):
            with connect(port) as client:
                assert read_to_end(client) == b""
            proc.wait_for(r"#1 .*cannot connect to .*: the proxy says: 407")


def test_a_proxy_that_never_answers_holds_up_no_one_else():
    """The proxy takes the connection and says nothing: while the first client's proxy handshake
    hangs, the loop accepts a second one (its handshake pending too), and -w ends each on its own."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never speaks SOCKS
    try:
        proxy = f"socks5://127.0.0.1:{silent.getsockname()[1]}"
        with forwarding("127.0.0.1:9", "--proxy", proxy, "-w", "1500ms") as (proc, port):
            first = connect(port)
            proc.wait_for(r"connection from #1 ")
            with connect(port) as second:
                proc.wait_for(r"connection from #2 ")  # accepted while #1's proxy handshake hangs
                assert read_to_end(second) == b""
            assert read_to_end(first) == b""
            first.close()
            proc.wait_for(r"#1 .*the proxy did not answer in time")
            proc.wait_for(r"#2 .*the proxy did not answer in time")
    finally:
        silent.close()


def test_tls_target_through_a_socks5_proxy(microsocks, tmp_path):  # noqa: F811
    pki = make_pki(tmp_path)
    with (
        SServer(pki.cert, pki.key) as server,
        forwarding(
            f"127.0.0.1:{server.port}", "--proxy", f"socks5://127.0.0.1:{microsocks}",
            "--tls-target", "--ca", str(pki.ca_file),
        ) as (_proc, port),
        connect(port) as client,
    ):  # fmt: skip
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_to_end(client).startswith(b"HTTP/1.0 200 ok")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--proxy", "socks5://127.0.0.1:1080", "-s", "127.0.0.1"], "--proxy and -s cannot be used together"),
        (["--proxy", "socks5://127.0.0.1:1080", "-4"], "--proxy and -4 cannot be used together"),
        (["--proxy", "socks5://127.0.0.1:1080", "--udp"], "this target is UDP"),
        (["--proxy", "socks5://127.0.0.1:1080", "--tcp-to-udp"], "this target is UDP"),
        (["--proxy", "socks5://127.0.0.1:1080", "--udp-to-tcp"], "no proxy on its TCP side yet"),
        (["--proxy-auth", "a:b"], "--proxy-auth needs --proxy"),
        (["--proxy", "ftp://127.0.0.1:1"], "unknown proxy scheme"),
    ],
)
def test_proxy_options_that_cannot_apply_are_usage_errors(args, message):
    result = run("forward", "127.0.0.1:0", "127.0.0.1:9", *args)
    assert result.returncode == 2, result.stderr
    assert message in one_line_error(result.stderr)


def test_a_proxy_to_a_unix_target_is_a_usage_error(tmp_path):
    result = run("forward", "127.0.0.1:0", f"unix:{tmp_path}/s", "--proxy", "socks5://127.0.0.1:1080")
    assert result.returncode == 2
    assert "this target is a unix socket" in one_line_error(result.stderr)
