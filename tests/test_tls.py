"""TLS on tcp-connect and tcp-listen, against real peers (openssl s_server /
s_client, a Python TLS server) and socktool itself, with trustme certificates."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys

import pytest

from conftest import Proc, command, need, one_line_error, run, serve_each
from tls_helpers import Pki, SServer, expired_leaf, make_pki, python_tls_server

GET = "GET / HTTP/1.0\r\n\r\n"


@pytest.fixture
def pki(tmp_path) -> Pki:
    return make_pki(tmp_path)


def error_after_listening(stderr: str) -> str:
    """A listener's stderr: its 'listening on' line, then exactly one error line."""
    first, _, rest = stderr.partition("\n")
    assert "listening on" in first, stderr
    return one_line_error(rest)


# -- client: verification -----------------------------------------------------
def test_client_verifies_a_server_signed_by_the_given_ca_and_relays_its_reply(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        result = run("tcp-connect", "--tls", "--ca", pki.ca_file, f"127.0.0.1:{server.port}", "--send", GET)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.0 200 ok")


def test_client_refuses_an_unknown_ca_with_one_line(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        result = run("tcp-connect", "--tls", f"127.0.0.1:{server.port}", "--send", GET)
    assert result.returncode == 1
    assert "certificate check failed: unknown CA" in one_line_error(result.stderr)
    assert result.stdout == b""


def test_client_refuses_a_name_the_certificate_does_not_hold(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        result = run(
            "tcp-connect", "--tls", "--ca", pki.ca_file, "--sni", "other.test", f"127.0.0.1:{server.port}", "-z"
        )
    assert result.returncode == 1
    assert "certificate check failed: name mismatch" in one_line_error(result.stderr)


def test_no_sni_still_checks_the_name_against_the_host(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        ok = run("tcp-connect", "--tls", "--ca", pki.ca_file, "--no-sni", f"localhost:{server.port}", "-z")
    assert ok.returncode == 0, ok.stderr


def test_client_refuses_an_expired_certificate(pki: Pki, tmp_path):
    cert, key = expired_leaf(pki, tmp_path)
    with SServer(cert, key) as server:
        result = run("tcp-connect", "--tls", "--ca", pki.ca_file, f"127.0.0.1:{server.port}", "-z")
    assert result.returncode == 1
    assert "certificate check failed: expired" in one_line_error(result.stderr)


def test_pin_accepts_exactly_that_certificate_and_names_the_one_seen_otherwise(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        ok = run("tcp-connect", "--tls", "--pin", pki.fingerprint, f"127.0.0.1:{server.port}", "-z", "-v")
    assert ok.returncode == 0, ok.stderr
    assert "(pinned)" in ok.stderr.decode()
    wrong = "sha256:" + "00" * 32
    with SServer(pki.cert, pki.key) as server:
        bad = run("tcp-connect", "--tls", "--pin", wrong, f"127.0.0.1:{server.port}", "-z")
    assert bad.returncode == 1
    assert f"pin mismatch (the server's certificate is {pki.fingerprint})" in one_line_error(bad.stderr)


def test_insecure_connects_and_says_so_on_stderr(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        result = run("tcp-connect", "--tls", "--insecure", f"127.0.0.1:{server.port}", "--send", GET)
    assert result.returncode == 0
    assert "certificate verification is off (--insecure)" in result.stderr.decode()
    assert result.stdout.startswith(b"HTTP/1.0 200 ok")


def test_min_days_fails_on_a_certificate_expiring_sooner(pki: Pki):
    with SServer(pki.cert, pki.key) as server:  # trustme's certificates run to the year 3000
        result = run(
            "tcp-connect", "--tls", "--ca", pki.ca_file, "--min-days", "999999", f"127.0.0.1:{server.port}", "-z"
        )
    assert result.returncode == 1
    assert "expires too soon" in one_line_error(result.stderr)


def test_tls_event_in_json_names_version_alpn_and_peer(pki: Pki):
    with SServer(pki.cert, pki.key, "-alpn", "h2") as server:
        result = run(
            "tcp-connect",
            "--tls",
            "--ca",
            pki.ca_file,
            "--alpn",
            "h2,http/1.1",
            "--json",
            f"127.0.0.1:{server.port}",
            "-z",
        )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    tls = next(e for e in events if e["event"] == "tls")
    assert tls["alpn"] == "h2" and tls["verified"] == "ca"
    assert tls["version"].startswith("TLSv1.")
    assert "DNS:localhost" in tls["sans"] and tls["fingerprint"] == pki.fingerprint


def test_client_certificate_for_a_server_that_requires_one(pki: Pki):
    extra = ("-Verify", "1", "-CAfile", str(pki.ca_file))
    with SServer(pki.cert, pki.key, *extra) as server:
        ok = run(
            "tcp-connect", "--tls", "--ca", pki.ca_file, "--cert", pki.client_cert, "--key", pki.client_key,
            f"127.0.0.1:{server.port}", "--send", GET,
        )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(b"HTTP/1.0 200 ok")


def test_tls_min_above_what_the_server_speaks_fails_with_one_line(pki: Pki):
    with SServer(pki.cert, pki.key, "-tls1_2") as server:
        result = run("tcp-connect", "--tls", "--ca", pki.ca_file, "--tls-min", "1.3", f"127.0.0.1:{server.port}", "-z")
    assert result.returncode == 1
    assert "TLS handshake with" in one_line_error(result.stderr)


def test_tls_client_on_a_plaintext_server_fails_with_one_line():
    from conftest import serve_once

    port = serve_once(b"220 plain text here\r\n" * 4)
    result = run("tcp-connect", "--tls", "--pin", "sha256:" + "ab" * 32, f"127.0.0.1:{port}", "-z")
    assert result.returncode == 1
    assert "the peer does not speak TLS" in one_line_error(result.stderr)


# -- client: the end of the stream ----------------------------------------------
def test_a_server_that_ends_without_close_notify_is_a_warning_or_with_strict_close_a_failure(pki: Pki):
    port = python_tls_server(pki, b"cut", close_notify=False)
    warned = run("tcp-connect", "--tls", "--ca", pki.ca_file, f"127.0.0.1:{port}", "--recv-only")
    assert warned.returncode == 0 and warned.stdout == b"cut"
    assert "without TLS close_notify" in warned.stderr.decode()
    port = python_tls_server(pki, b"cut", close_notify=False)
    strict = run("tcp-connect", "--tls", "--ca", pki.ca_file, "--strict-close", f"127.0.0.1:{port}", "--recv-only")
    assert strict.returncode == 1 and strict.stdout == b"cut"
    assert "without TLS close_notify" in one_line_error(strict.stderr)


@pytest.mark.parametrize("who_closes_first", ["client", "server"])
def test_a_server_that_ends_with_close_notify_is_a_clean_end(pki: Pki, who_closes_first: str):
    port = python_tls_server(pki, b"whole", close_notify=True)
    wait = ("--recv-only",) if who_closes_first == "server" else ()  # the client sends nothing, so no close first
    result = run("tcp-connect", "--tls", "--ca", pki.ca_file, "--strict-close", *wait, f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"whole" and b"warning" not in result.stderr


# -- server ---------------------------------------------------------------------
def test_ephemeral_certificate_fingerprint_is_printed_and_pins_for_socktools_client(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    out = tmp_path / "out.bin"
    with (
        open(out, "wb") as sink,
        Proc("tcp-listen", "--tls", "--json", "127.0.0.1:0", stdout=subprocess.PIPE) as listener,
    ):
        fingerprint = listener.wait_for(r"tls (sha256:[0-9a-f]{64})")[1]
        assert listener.popen.stdout is not None
        listening = json.loads(listener.popen.stdout.readline())
        assert listening["tls_fingerprint"] == fingerprint
        port = int(listening["address"].rsplit(":", 1)[1])
        with open(source, "rb") as stdin:
            client = subprocess.run(
                command("tcp-connect", "--tls", "--pin", fingerprint, f"127.0.0.1:{port}"),
                stdin=stdin, stdout=sink, stderr=subprocess.PIPE, timeout=60,
            )  # fmt: skip
        assert client.returncode == 0, client.stderr
        received = b"".join(
            bytes.fromhex(event["hex"])
            for event in map(json.loads, listener.popen.stdout)
            if event["event"] == "data" and event["direction"] == "received"
        )
        assert listener.wait() == 0
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()


def test_every_byte_arrives_both_ways_between_socktool_client_and_server(pki: Pki, tmp_path):
    up, down = os.urandom(8 * 1024 * 1024), os.urandom(5 * 1024 * 1024 + 3)
    (tmp_path / "up").write_bytes(up)
    (tmp_path / "down").write_bytes(down)
    with (
        open(tmp_path / "down", "rb") as server_in,
        open(tmp_path / "server_out", "wb") as server_out,
        Proc("tcp-listen", "--tls", "--cert", pki.cert, "--key", pki.key, "127.0.0.1:0", stdin=server_in, stdout=server_out) as listener,
    ):  # fmt: skip
        port = listener.wait_listening()
        with open(tmp_path / "up", "rb") as client_in, open(tmp_path / "client_out", "wb") as client_out:
            client = subprocess.run(
                command("tcp-connect", "--tls", "--ca", pki.ca_file, "--strict-close", f"127.0.0.1:{port}"),
                stdin=client_in, stdout=client_out, stderr=subprocess.PIPE, timeout=60,
            )  # fmt: skip
        assert client.returncode == 0, client.stderr
        assert listener.wait() == 0, listener.stderr
    assert (tmp_path / "server_out").read_bytes() == up
    assert (tmp_path / "client_out").read_bytes() == down


def test_openssl_s_client_talks_to_a_listener_with_given_certificate(pki: Pki):
    need("openssl")
    args = ("tcp-listen", "--tls", "--cert", pki.cert, "--key", pki.key, "127.0.0.1:0", "--send", "hello tls\n")
    with Proc(*args, "--no-shutdown") as listener:
        port = listener.wait_listening()
        client = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca_file),
             "-verify_return_error", "-servername", "localhost", "-quiet", "-no_ign_eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert client.stdin is not None and client.stdout is not None
        assert client.stdout.readline() == b"hello tls\n"
        client.stdin.write(b"from s_client\n")
        client.stdin.close()  # s_client ends the session: close_notify
        assert client.wait(timeout=30) == 0
        client.stdout.close()
        assert listener.wait() == 0, listener.stderr
        assert listener.popen.stdout is not None
        assert listener.popen.stdout.read() == b"from s_client\n"


def test_client_ca_requires_a_client_certificate(pki: Pki):
    need("openssl")
    args = ("tcp-listen", "--tls", "--cert", pki.cert, "--key", pki.key, "--client-ca", pki.ca_file, "127.0.0.1:0")
    with Proc(*args, "--send", "welcome\n", "-v") as listener:
        port = listener.wait_listening()
        ok = run(
            "tcp-connect", "--tls", "--ca", pki.ca_file, "--cert", pki.client_cert, "--key", pki.client_key,
            f"127.0.0.1:{port}",
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == b"welcome\n"
        assert listener.wait() == 0
        assert "client.test" in listener.stderr
    with Proc(*args) as listener:
        port = listener.wait_listening()
        refused = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
        )  # fmt: skip
        assert listener.wait() == 1
        assert "peer did not return a certificate" in error_after_listening(listener.stderr)
        assert refused.stdout == b""


def test_plaintext_client_on_a_tls_listener_is_one_line_exit_1():
    with Proc("tcp-listen", "--tls", "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        run("tcp-connect", f"127.0.0.1:{port}", "--send", GET)
        assert listener.wait() == 1
        # One line naming the failed handshake. Usually "does not speak TLS"; another test's port
        # scanner may reach this one-client listener first and reset (the -k test checks the words).
        assert "TLS handshake with" in error_after_listening(listener.stderr)


# -- usage ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (("tcp-connect", "--ca", "x.pem", "127.0.0.1:1"), "--ca needs --tls"),
        (("tcp-connect", "--tls", "--pin", "sha256:zz", "127.0.0.1:1"), "sha256:"),
        (
            ("tcp-connect", "--tls", "--insecure", "--pin", "sha256:" + "ab" * 32, "127.0.0.1:1"),
            "cannot be used together",
        ),
        (("tcp-connect", "--tls", "--key", "k.pem", "127.0.0.1:1"), "--key needs --cert"),
        (("tcp-connect", "--tls", "--tls-min", "1.1", "127.0.0.1:1"), "1.2, 1.3"),
        (("tcp-connect", "--tls", "--ciphers", "NO-SUCH-CIPHER", "127.0.0.1:1"), "no cipher matches"),
        (("tcp-connect", "--tls", "--ca", "/nonexistent/ca.pem", "127.0.0.1:1"), "cannot read --ca"),
        (("tcp-listen", "--client-ca", "ca.pem", "127.0.0.1:0"), "--client-ca needs --tls"),
    ],
)
def test_bad_tls_options_are_usage_errors(args, message):
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert message in one_line_error(result.stderr)


def test_a_key_that_does_not_match_the_certificate_is_one_line(pki: Pki):
    result = run("tcp-listen", "--tls", "--cert", pki.cert, "--key", pki.client_key, "127.0.0.1:0")
    assert result.returncode == 2
    assert "does not match the certificate" in one_line_error(result.stderr)


def test_importing_the_cli_imports_neither_ssl_nor_cryptography():
    code = "import sys, socktool.cli; print(sorted(m for m in ('ssl', '_ssl', 'cryptography', 'python_socks') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.stdout.strip() == "[]", result.stderr


# -- the multi-client loop (tcp-listen -k / --broker / --exec) -----------------------
def test_keep_open_tls_serves_clients_one_after_another_and_a_plaintext_one_does_not_stop_it(pki: Pki):
    args = ("tcp-listen", "-k", "--tls", "--cert", pki.cert, "--key", pki.key, "127.0.0.1:0", "-v")
    with Proc(*args, stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        plain = run("tcp-connect", f"127.0.0.1:{port}", "--send", GET, "--no-shutdown", "-w", "5s", "-i", "3s")
        assert plain.returncode in (0, 1)
        listener.wait_for(r"closed #1 .*tls handshake failed: the peer does not speak tls")
        for n in (2, 3):
            client = run("tcp-connect", "--tls", "--ca", pki.ca_file, f"127.0.0.1:{port}", "--send", f"client {n}\n")
            assert client.returncode == 0, client.stderr
            listener.wait_for(rf"closed #{n} .*closed by peer")
        listener.popen.terminate()
        listener.wait()
        assert listener.popen.stdout is not None
        assert listener.popen.stdout.read() == b"client 2\nclient 3\n"


def test_exec_over_tls_talks_plaintext_to_the_command(pki: Pki):
    args = ("tcp-listen", "-k", "--tls", "--cert", pki.cert, "--key", pki.key, "--exec", "tr a-z A-Z", "127.0.0.1:0")
    with Proc(*args) as listener:
        port = listener.wait_listening()
        client = run(
            "tcp-connect", "--tls", "--ca", pki.ca_file, "--strict-close", f"127.0.0.1:{port}", "--send", "hello tls\n"
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout == b"HELLO TLS\n"


def test_clients_that_never_speak_tls_do_not_hold_up_a_real_one(pki: Pki):
    import socket

    args = ("tcp-listen", "--broker", "--tls", "--cert", pki.cert, "--key", pki.key, "127.0.0.1:0")
    with Proc(*args) as listener:
        port = listener.wait_listening()
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        try:
            with Proc(
                "tcp-connect", "--tls", "--ca", pki.ca_file, f"127.0.0.1:{port}", "-v", stdin=subprocess.PIPE
            ) as first:
                first.wait_for("tls 127.0.0.1")
                second = run(
                    "tcp-connect",
                    "--tls",
                    "--ca",
                    pki.ca_file,
                    f"127.0.0.1:{port}",
                    "--send",
                    "to the other\n",
                    "--no-shutdown",
                    "-i",
                    "1s",
                )
                assert second.returncode == 0, second.stderr
                assert first.popen.stdout is not None
                assert first.popen.stdout.readline() == b"to the other\n"
        finally:
            for sock in silent:
                sock.close()


def test_openssl_s_client_gets_the_greeting_from_a_keep_open_tls_listener(pki: Pki):
    need("openssl")
    args = (
        "tcp-listen",
        "-k",
        "--tls",
        "--cert",
        pki.cert,
        "--key",
        pki.key,
        "127.0.0.1:0",
        "--send",
        "hi\n",
        "--no-shutdown",
    )
    with Proc(*args) as listener:
        port = listener.wait_listening()
        client = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca_file),
             "-verify_return_error", "-servername", "localhost", "-quiet"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert client.stdout is not None and client.stdin is not None
        assert client.stdout.readline() == b"hi\n"
        client.kill()
        client.wait(timeout=10)
        client.stdin.close()
        client.stdout.close()


# -- wait --tls --------------------------------------------------------------------
def test_wait_tls_is_up_when_the_certificate_verifies(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        ok = run("wait", "--tls", "--ca", pki.ca_file, f"127.0.0.1:{server.port}", "-w", "10s")
        assert ok.returncode == 0, ok.stderr
        pinned = run("wait", "--tls", "--pin", pki.fingerprint, f"127.0.0.1:{server.port}", "-w", "10s")
        assert pinned.returncode == 0, pinned.stderr


def test_wait_tls_says_which_check_kept_it_down(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        result = run("wait", "--tls", f"127.0.0.1:{server.port}", "-w", "1s", "--interval", "250ms")
    assert result.returncode == 1
    assert "certificate check failed: unknown CA" in one_line_error(result.stderr)


def test_wait_tls_insecure_sni_and_min_days_each_decide_up_or_down(pki: Pki):
    with SServer(pki.cert, pki.key) as server:
        endpoint = f"127.0.0.1:{server.port}"
        insecure = run("wait", "--tls", "--insecure", endpoint, "-w", "10s")  # unknown CA, and up anyway
        other_name = run("wait", "--tls", "--ca", pki.ca_file, "--sni", "other.test", endpoint, "-w", "1s")
        too_soon = run("wait", "--tls", "--ca", pki.ca_file, "--min-days", "999999", endpoint, "-w", "1s")
    assert insecure.returncode == 0, insecure.stderr
    assert other_name.returncode == 1 and "name mismatch" in one_line_error(other_name.stderr)
    assert too_soon.returncode == 1 and "(--min-days 999999)" in one_line_error(too_soon.stderr)


def test_wait_tls_on_a_plaintext_port_is_not_up():
    def banner(conn) -> None:  # every client gets a plaintext banner; a probe may reset: fine
        conn.sendall(b"SSH-2.0-plain\r\n")

    with serve_each(banner) as port:
        result = run("wait", "--tls", "--pin", "sha256:" + "ab" * 32, f"127.0.0.1:{port}", "-w", "1s")
    assert result.returncode == 1
    assert "does not speak TLS" in one_line_error(result.stderr)


# -- --alpn, --tls-min and --ciphers on each side (tests/test_option_pairs.py) ----------------
_AES128 = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
_AES256 = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"


def _s_client(port: int, pki: Pki, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca_file),
         "-verify_return_error", "-servername", "localhost", *extra],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
    )  # fmt: skip


def _tls_event(pki: Pki, port: int, *options: object) -> dict:
    """The "tls" event of `tcp-connect --tls --ca CA OPTIONS --json localhost:PORT -z`, which must succeed."""
    result = run("tcp-connect", "--tls", "--ca", pki.ca_file, *options, "--json", f"localhost:{port}", "-z")
    assert result.returncode == 0, result.stderr
    return next(e for e in map(json.loads, result.stdout.splitlines()) if e["event"] == "tls")


def test_listener_alpn_and_tls_min_are_what_its_clients_get(pki: Pki):
    need("openssl")
    args = ("tcp-listen", "-k", "--tls", "--cert", pki.cert, "--key", pki.key, "--alpn", "h2", "--tls-min", "1.3")
    with Proc(*args, "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        tls = _tls_event(pki, port, "--alpn", "http/1.1,h2")
        assert tls["alpn"] == "h2" and tls["version"] == "TLSv1.3"
        assert _s_client(port, pki, "-tls1_2").returncode != 0  # below --tls-min: no handshake
        assert _s_client(port, pki, "-tls1_3").returncode == 0


def test_listener_ciphers_are_the_only_ones_it_agrees_to(pki: Pki):
    need("openssl")
    args = ("tcp-listen", "-k", "--tls", "--cert", pki.cert, "--key", pki.key, "--ciphers", _AES128)
    with Proc(*args, "127.0.0.1:0") as listener:
        port = listener.wait_listening()
        assert _s_client(port, pki, "-tls1_2", "-cipher", _AES256).returncode != 0
        agreed = _s_client(port, pki, "-tls1_2", "-cipher", f"{_AES256}:{_AES128}")
        assert agreed.returncode == 0 and b"AES128-GCM" in agreed.stdout


def test_client_ciphers_are_the_only_ones_it_offers(pki: Pki):
    with SServer(pki.cert, pki.key, "-tls1_2", "-cipher", _AES128) as server:
        refused = run(
            "tcp-connect", "--tls", "--ca", pki.ca_file, "--ciphers", _AES256, f"localhost:{server.port}", "-z"
        )
        tls = _tls_event(pki, server.port, "--ciphers", _AES128)
    assert refused.returncode == 1 and "TLS handshake with" in one_line_error(refused.stderr)
    assert "AES128-GCM" in tls["cipher"] and tls["version"] == "TLSv1.2"


def test_ciphers_with_tls_min_1_3_is_refused():
    for side in (["tcp-connect", "127.0.0.1:9"], ["tcp-listen", "127.0.0.1:0"]):
        result = run(
            *side, "--tls", "--insecure" if side[0] == "tcp-connect" else "-v", "--tls-min", "1.3", "--ciphers", "HIGH"
        )
        assert result.returncode == 2
        assert "--tls-min 1.3 rules out" in one_line_error(result.stderr)


def test_echo_over_tls_with_the_printed_fingerprint():
    with Proc("echo", "--tls", "--tcp-only", "127.0.0.1:0") as server:
        match = server.wait_for(r"listening on \S+:(\d+) \(tcp, tls (sha256:[0-9a-f]{64})\)")
        port, fingerprint = match[1], match[2]
        result = run(
            "tcp-connect", "--tls", "--pin", fingerprint, "--strict-close", f"127.0.0.1:{port}", "--send", "echo me\n"
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"echo me\n"


def test_echo_over_tls_keeps_concurrent_clients_apart(pki: Pki):
    """The loop's transports share one ciphertext buffer per thread: clients sending at
    the same time each get back exactly their own bytes, in order."""
    import socket
    import ssl
    import threading

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca_file)
    payloads = [os.urandom(300_000 + i) for i in range(6)]
    echoed: dict[int, bytes] = {}

    def client(index: int, port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                data, got = payloads[index], bytearray()
                for at in range(0, len(data), 50_000):
                    tls.sendall(data[at : at + 50_000])
                while len(got) < len(data) and (chunk := tls.recv(65536)):
                    got += chunk
                echoed[index] = bytes(got)

    with Proc("echo", "--tls", "--tcp-only", "--cert", pki.cert, "--key", pki.key, "127.0.0.1:0") as server:
        port = server.wait_listening()
        threads = [threading.Thread(target=client, args=(i, port)) for i in range(len(payloads))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert [echoed.get(i) == payloads[i] for i in range(len(payloads))] == [True] * len(payloads)


def test_echo_tls_is_for_the_tcp_side():
    result = run("echo", "--tls", "--udp-only", "127.0.0.1:0")
    assert result.returncode == 2
    assert "--tls is for the TCP side" in one_line_error(result.stderr)


# -- what comes with the handshake, and peers that end without close_notify on the loop --------
def client_that_ends_without_close_notify(pki: Pki, port: int, data: bytes) -> int:
    """A TLS client that sends `data` at once (it may share a segment with its Finished),
    then TCP's FIN without close_notify, and reads until the listener is done with it.
    Returns its own port."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=pki.ca_file)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost") as tls:
        own_port = tls.getsockname()[1]
        tls.sendall(data)
        tls.shutdown(socket.SHUT_WR)  # drops the TLS layer: FIN, no close_notify
        with contextlib.suppress(OSError):
            while tls.recv(65536):
                pass
    return own_port


def test_data_that_came_with_the_handshake_survives_our_close_notify(pki: Pki):
    """OpenSSL's second SSL_shutdown (inside unwrap) reads on and discards application
    data: what was fed before our close_notify must still be read, every byte."""
    import ssl

    from socktool.net.tls import TlsLayer

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(pki.cert), str(pki.key))
    server = TlsLayer(server_ctx, server_side=True)
    client = TlsLayer(ssl.create_default_context(cafile=pki.ca_file), server_side=False, server_name="localhost")
    client.handshake()
    server.feed(client.pending())
    server.handshake()
    client.feed(server.pending())
    assert client.handshake()
    client.write(b"first words\n")
    client.write(b"x" * 100_000)
    wire = client.pending()  # Finished, then the data, in one piece
    server.feed(wire[:-7])  # the last record not whole yet
    assert server.handshake()
    server.close()  # our close_notify, with the client's data waiting
    assert server.pending()  # it went out
    server.feed(wire[-7:])
    client.close()
    server.feed(client.pending())
    received = bytearray()
    buffer = bytearray(65536)
    while count := server.read_into(buffer):
        received += buffer[:count]
    assert received == b"first words\n" + b"x" * 100_000
    assert server.close_received


def test_keep_open_listener_whose_stdin_ended_gets_every_clients_data_and_warns_of_each_ragged_end(pki: Pki):
    args = ("tcp-listen", "-k", "--tls", "--cert", pki.cert, "--key", pki.key, "127.0.0.1:0")
    with Proc(*args) as listener:  # stdin is /dev/null: each client gets our close_notify at once
        port = listener.wait_listening()
        for n in range(1, 6):
            client = client_that_ends_without_close_notify(pki, port, f"client {n}\n".encode())
            listener.wait_for(rf"warning: 127\.0\.0\.1:{client} closed the connection without TLS close_notify")
        listener.popen.terminate()
        listener.wait()
        assert listener.popen.stdout is not None
        assert sorted(listener.popen.stdout.read().splitlines()) == [f"client {n}".encode() for n in range(1, 6)]


def test_one_client_listener_whose_stdin_ended_gets_the_data_that_came_with_the_handshake(pki: Pki):
    for _round in range(3):  # the data may or may not share a segment with the client's Finished
        with Proc("tcp-listen", "--tls", "--cert", pki.cert, "--key", pki.key, "127.0.0.1:0") as listener:
            client_that_ends_without_close_notify(pki, listener.wait_listening(), b"with the handshake\n")
            assert listener.wait() == 0, listener.stderr
            assert listener.popen.stdout is not None
            assert listener.popen.stdout.read() == b"with the handshake\n"
            assert "without TLS close_notify" in listener.stderr


def test_strict_close_fails_a_one_client_exec_listener_and_is_refused_where_the_listener_outlives_its_clients(
    pki: Pki,
):
    args = ("tcp-listen", "--tls", "--cert", pki.cert, "--key", pki.key, "--exec", "cat", "127.0.0.1:0")
    for strict, code in ((False, 0), (True, 1)):
        with Proc(*args, *(["--strict-close"] if strict else [])) as listener:
            port = listener.wait_listening()
            client_that_ends_without_close_notify(pki, port, b"to cat\n")
            assert listener.wait() == code, listener.stderr
            line = listener.stderr.splitlines()[-1]
            assert "closed the connection without TLS close_notify" in line
            assert line.startswith("socktool: error:" if strict else "socktool: warning:")
    for many in ("-k", "--broker"):
        refused = run("tcp-listen", many, "--tls", "--strict-close", "127.0.0.1:0")
        assert refused.returncode == 2
        assert "the listener outlives its clients" in one_line_error(refused.stderr)
