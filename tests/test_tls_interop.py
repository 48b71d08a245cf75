"""TLS interop with the tools people use: socktool's client against `ncat --ssl -l`,
`socat OPENSSL-LISTEN` and a TLS-wrapped `http.server`; socktool's listener against
`ncat --ssl`, `socat OPENSSL`, `curl --cacert` and `curl -k`. Mutual TLS both ways
(socat's listener asks for our certificate; socat and curl present theirs to us).
Certificates from trustme (tests/tls_helpers.py); openssl s_server / s_client are in
test_tls.py."""

from __future__ import annotations

import functools
import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import Proc, free_port, need, one_line_error, run
from test_proxy import listening_peer
from tls_helpers import Pki, make_pki

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pki(tmp_path) -> Pki:
    return make_pki(tmp_path)


# A listening ncat or socat; its stderr is kept to say why, should it exit before listening.
peer = functools.partial(listening_peer, stderr=subprocess.PIPE)


# -- socktool's client ----------------------------------------------------------------
def ncat_listener(pki: Pki, port: int, *extra: str) -> list[str]:
    need("ncat")
    return [
        "ncat",
        "--ssl",
        "--ssl-cert",
        str(pki.cert),
        "--ssl-key",
        str(pki.key),
        "-l",
        "127.0.0.1",
        str(port),
        *extra,
    ]


def test_client_to_ncat_ssl_listener_verifies_it_and_both_directions_arrive(pki: Pki, tmp_path):
    """ncat closes the whole connection at the first EOF (TLS has no half-close for it),
    so each direction is its own connection."""
    port = free_port()
    with peer(ncat_listener(pki, port, "--sh-exec", "echo from ncat"), port):
        down = run("tcp-connect", "--tls", "--ca", pki.ca_file, "--recv-only", f"127.0.0.1:{port}")
    assert down.returncode == 0, down.stderr
    assert down.stdout == b"from ncat\n"
    port = free_port()
    received = tmp_path / "received"
    # (not --recv-only: ncat -l then may end the connection before reading a byte)
    with peer(ncat_listener(pki, port, "--sh-exec", f"cat > {received}"), port) as ncat:
        up = run("tcp-connect", "--tls", "--ca", pki.ca_file, f"127.0.0.1:{port}", "--send", "to ncat\n")
        assert up.returncode == 0, up.stderr
        assert ncat.wait(timeout=20) == 0
    assert received.read_bytes() == b"to ncat\n"


def test_client_to_ncat_ssl_listener_refuses_its_certificate_without_trust(pki: Pki):
    port = free_port()
    with peer(ncat_listener(pki, port), port):
        result = run("tcp-connect", "--tls", f"127.0.0.1:{port}", "--send", "x")
    assert result.returncode == 1
    assert "unknown CA" in one_line_error(result.stderr)


def socat_listener(pki: Pki, port: int, *, verify: bool) -> list[str]:
    need("socat")
    options = f"bind=127.0.0.1,reuseaddr,cert={pki.cert},key={pki.key}"
    options += f",cafile={pki.ca_file},verify=1" if verify else ",verify=0"
    return ["socat", f"OPENSSL-LISTEN:{port},{options}", "EXEC:cat"]


def test_client_to_socat_openssl_listener_with_mutual_tls(pki: Pki):
    """socat asks for a client certificate by our CA: given, the echo comes back (and every
    byte, close_notify both ways: --strict-close); not given, the handshake fails, one line."""
    port = free_port()
    with peer(socat_listener(pki, port, verify=True), port):
        ok = run(
            "tcp-connect", "--tls", "--ca", pki.ca_file, "--cert", pki.client_cert, "--key", pki.client_key,
            "--strict-close", f"127.0.0.1:{port}", "--send", "through socat\n",
        )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == b"through socat\n"
    port = free_port()
    with peer(socat_listener(pki, port, verify=True), port):
        refused = run("tcp-connect", "--tls", "--ca", pki.ca_file, f"127.0.0.1:{port}", "--send", "no cert\n")
    assert refused.returncode == 1
    assert refused.stdout == b""
    assert one_line_error(refused.stderr)


@contextmanager
def https_server(pki: Pki, root: Path) -> Iterator[int]:
    """`python -m http.server` behind TLS: the stdlib's server on a socket wrapped by ssl."""
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.cert), str(pki.key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_client_gets_a_page_from_an_https_http_server_by_name(pki: Pki, tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "page.txt").write_bytes(b"served over TLS\n")
    with https_server(pki, tmp_path / "www") as port:
        request = "GET /page.txt HTTP/1.0\r\nHost: localhost\r\n\r\n"
        result = run(
            "tcp-connect", "--tls", "--ca", pki.ca_file, "--sni", "localhost", f"127.0.0.1:{port}", "--send", request
        )
        check = run("tcp-connect", "--tls", "-z", "--ca", pki.ca_file, "--sni", "wrong.test", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.0 200 OK\r\n")
    assert result.stdout.endswith(b"\r\n\r\nserved over TLS\n")
    assert check.returncode == 1
    assert "name mismatch" in one_line_error(check.stderr)


# -- socktool's listener --------------------------------------------------------------
def listener(pki: Pki, *extra: str) -> Proc:
    return Proc("tcp-listen", "--tls", "--cert", pki.cert, "--key", pki.key, *extra, "127.0.0.1:0")


def ncat_client(pki: Pki, port: int, *extra: str, data: bytes = b"") -> subprocess.CompletedProcess:
    need("ncat")
    argv = ["ncat", "--ssl", "--ssl-verify", "--ssl-trustfile", str(pki.ca_file), "--ssl-servername", "localhost"]
    return subprocess.run([*argv, *extra, "127.0.0.1", str(port)], input=data, capture_output=True, timeout=30)


def test_ncat_ssl_client_verifies_the_listener_and_both_directions_arrive(pki: Pki):
    with listener(pki, "--send", "from socktool\n") as server:
        client = ncat_client(pki, server.wait_listening(), "--recv-only")
        assert client.returncode == 0, client.stderr
        assert client.stdout == b"from socktool\n"
        assert server.wait() == 0, server.stderr
    with listener(pki) as server:
        # ncat --send-only ends without close_notify (the loss bench/RESULTS.md measured):
        # what came is delivered, and the listener says how it ended
        client = ncat_client(pki, server.wait_listening(), "--send-only", data=b"from ncat\n")
        assert client.returncode == 0, client.stderr
        assert server.wait() == 0, server.stderr
        assert server.popen.stdout is not None
        assert server.popen.stdout.read() == b"from ncat\n"
        assert "without TLS close_notify" in server.stderr


def test_socat_openssl_client_with_its_certificate_on_a_client_ca_listener(pki: Pki):
    """Mutual TLS the other way: socat presents a certificate by the CA --client-ca names;
    the listener reports whose it is; close_notify both ways (--strict-close)."""
    need("socat")
    with listener(pki, "--client-ca", pki.ca_file, "--strict-close", "--send", "hello socat\n", "-v") as server:
        port = server.wait_listening()
        address = f"OPENSSL:127.0.0.1:{port},cafile={pki.ca_file},cert={pki.client_cert},key={pki.client_key},verify=1"
        client = subprocess.run(["socat", "-", address], input=b"hello socktool\n", capture_output=True, timeout=30)
        assert client.returncode == 0, client.stderr
        assert client.stdout == b"hello socat\n"
        assert server.wait() == 0, server.stderr
        assert "client.test" in server.stderr  # the peer certificate's subject, in the tls line
        assert server.popen.stdout is not None
        assert server.popen.stdout.read() == b"hello socktool\n"


RESPONSE = "HTTP/1.0 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello curl!\n"


@pytest.mark.parametrize("trust", ["--cacert", "-k"])
def test_curl_gets_a_response_from_the_listener(pki: Pki, trust: str):
    need("curl")
    extra = () if trust == "-k" else ("--cert", str(pki.cert), "--key", str(pki.key))  # -k: the ephemeral one
    with Proc("tcp-listen", "--tls", *extra, "--send", RESPONSE, "127.0.0.1:0") as server:
        port = server.wait_listening()
        trusting = ["--cacert", str(pki.ca_file)] if trust == "--cacert" else ["-k"]
        curl = subprocess.run(
            ["curl", "-sS", "--max-time", "20", *trusting, f"https://localhost:{port}/ping",
             "--resolve", f"localhost:{port}:127.0.0.1"],
            capture_output=True, timeout=30,
        )  # fmt: skip
        assert curl.returncode == 0, curl.stderr
        assert curl.stdout == b"hello curl!\n"
        assert server.wait() == 0, server.stderr
        assert server.popen.stdout is not None
        assert server.popen.stdout.read().startswith(b"GET /ping HTTP/1.1\r\nHost: localhost:")


def test_curl_cacert_refuses_the_ephemeral_certificate_and_pins_by_socktools_printed_fingerprint(pki: Pki):
    """The ephemeral certificate is nobody's CA's: curl --cacert refuses it; socktool's
    client accepts exactly it with the fingerprint the listener printed."""
    need("curl")
    with Proc("tcp-listen", "--tls", "--send", RESPONSE, "127.0.0.1:0") as server:
        port = server.wait_listening()
        curl = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", str(pki.ca_file), f"https://127.0.0.1:{port}/"],
            capture_output=True, timeout=30,
        )  # fmt: skip
        assert curl.returncode == 60, curl.stderr  # "peer certificate cannot be authenticated"
        server.kill()
    with Proc("tcp-listen", "--tls", "--send", "pinned\n", "127.0.0.1:0") as server:
        port = server.wait_listening()
        fingerprint = server.wait_for(r"tls (sha256:[0-9a-f]{64})").group(1)
        pinned = run("tcp-connect", "--tls", "--pin", fingerprint, f"127.0.0.1:{port}")
        assert pinned.returncode == 0, pinned.stderr
        assert pinned.stdout == b"pinned\n"
