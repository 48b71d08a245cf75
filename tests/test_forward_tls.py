"""forward with TLS on either side (--tls-listen, --tls-target), against real peers on
loopback: openssl s_client and s_server, socktool's own tcp-connect --tls."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from conftest import command, need, one_line_error, run
from test_forward import CLIENT_IP, connect, echo_server, forwarding, read_to_end
from tls_helpers import SServer, make_pki

GET = b"GET / HTTP/1.0\r\n\r\n"


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path)


def _get_through(port: int) -> bytes:
    with connect(port) as client:
        client.sendall(GET)
        return read_to_end(client)


def test_s_client_to_tls_listen_and_tls_target_to_s_server(pki):
    """Both sides TLS: openssl s_client (checking our --cert against the CA) -> forward -> s_server -www."""
    need("openssl")
    with (
        SServer(pki.cert, pki.key) as server,
        forwarding(
            f"127.0.0.1:{server.port}",
            "--tls-listen", "--cert", str(pki.cert), "--key", str(pki.key),
            "--tls-target", "--ca", str(pki.ca_file),
        ) as (proc, port),
    ):  # fmt: skip
        client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-bind", f"{CLIENT_IP}:0",
             "-CAfile", str(pki.ca_file), "-verify_return_error", "-servername", "localhost", "-quiet"],
            input=GET, capture_output=True, timeout=30,
        )  # fmt: skip
        proc.wait_for(r"#1 .*closed")
    assert client.returncode == 0, client.stderr
    assert client.stdout.startswith(b"HTTP/1.0 200 ok"), client.stdout[:200]
    assert "TLSv1.3" in proc.stderr  # the target's session is reported (-v)


def test_tcp_connect_pins_the_ephemeral_certificate_and_every_byte_comes_back(tmp_path):
    """--tls-listen without --cert: the fingerprint it prints pins for tcp-connect --tls; half-close
    (close_notify, then FIN) goes through to the echo server and the whole echo comes back."""
    data = os.urandom(2 * 1024 * 1024 + 11)
    (tmp_path / "in.bin").write_bytes(data)
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}", "--tls-listen") as (proc, port):
        fingerprint = proc.wait_for(r"tls (sha256:[0-9a-f]{64})")[1]
        with open(tmp_path / "in.bin", "rb") as stdin:
            client = subprocess.run(
                command("tcp-connect", "--tls", "--pin", fingerprint, "-s", CLIENT_IP, f"127.0.0.1:{port}"),
                stdin=stdin, capture_output=True, timeout=60,
            )  # fmt: skip
    assert client.returncode == 0, client.stderr
    assert hashlib.sha256(client.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_tls_target_checks_the_ca_and_the_sni_name(pki):
    """--ca trusts the server's CA; --sni names what the certificate must hold."""
    with (
        SServer(pki.cert, pki.key) as server,
        forwarding(f"127.0.0.1:{server.port}", "--tls-target", "--ca", str(pki.ca_file), "--sni", "localhost") as (
            proc,
            port,
        ),
    ):
        assert _get_through(port).startswith(b"HTTP/1.0 200 ok")
        proc.wait_for(r"#1 .*closed")
    with (
        SServer(pki.cert, pki.key) as server,
        forwarding(f"127.0.0.1:{server.port}", "--tls-target", "--ca", str(pki.ca_file), "--sni", "other.test") as (
            proc,
            port,
        ),
    ):
        assert _get_through(port) == b""
        proc.wait_for(r"#1 .*name mismatch")


def test_tls_target_without_trust_closes_that_client_and_pin_or_insecure_connect(pki):
    with SServer(pki.cert, pki.key) as server:
        target = f"127.0.0.1:{server.port}"
        with forwarding(target, "--tls-target") as (proc, port):  # the CA is not trusted
            assert _get_through(port) == b""
            proc.wait_for(r"#1 .*cannot connect to .*certificate check failed: unknown ca")
            assert _get_through(port) == b""  # the relay goes on
            proc.wait_for(r"#2 .*unknown ca")
        with forwarding(target, "--tls-target", "--pin", pki.fingerprint) as (proc, port):
            assert _get_through(port).startswith(b"HTTP/1.0 200 ok")
        with forwarding(target, "--tls-target", "--pin", "sha256:" + "ab" * 32) as (proc, port):
            assert _get_through(port) == b""
            proc.wait_for(r"#1 .*pin mismatch \(the server's certificate is " + pki.fingerprint)
        with forwarding(target, "--tls-target", "--insecure") as (proc, port):
            proc.wait_for(r"warning: certificate verification is off \(--insecure\)")
            assert _get_through(port).startswith(b"HTTP/1.0 200 ok")


def test_a_plaintext_client_on_a_tls_listener_is_closed_and_the_relay_goes_on():
    with echo_server() as echo, forwarding(f"127.0.0.1:{echo}", "--tls-listen") as (proc, port):
        for conn in (1, 2):  # the relay goes on after each
            with connect(port) as client:
                client.sendall(GET)
                assert read_to_end(client) == b""
            proc.wait_for(rf"closed #{conn} .*client: tls handshake failed: the peer does not speak tls")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--udp", "--tls-listen"], "--udp listens on UDP"),
        (["--udp-to-tcp", "--tls-listen"], "--udp-to-tcp listens on UDP"),
        (["--tcp-to-udp", "--tls-listen"], "--tcp-to-udp has no TLS on its TCP side yet"),
        (["--udp", "--tls-target"], "--udp sends to UDP"),
        (["--tcp-to-udp", "--tls-target"], "--tcp-to-udp sends to UDP"),
        (["--udp-to-tcp", "--tls-target"], "--udp-to-tcp has no TLS on its TCP side yet"),
        (["--cert", "x.pem"], "--cert needs --tls-listen"),
        (["--pin", "sha256:" + "0" * 64], "--pin needs --tls-target"),
        (["--insecure"], "--insecure needs --tls-target"),
        (["--tls-target", "--insecure", "--pin", "sha256:" + "0" * 64], "--insecure"),
        (["--tls-listen", "--cert", "/nonexistent.pem"], "cannot"),
    ],
)
def test_tls_options_that_cannot_apply_are_usage_errors(args, message):
    result = run("forward", "127.0.0.1:0", "127.0.0.1:9", *args)
    assert result.returncode == 2, result.stderr
    assert message in one_line_error(result.stderr)
