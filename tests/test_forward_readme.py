"""Every `socktool forward` example of the README runs: LISTEN becomes a free loopback
port, TARGET a local peer of the kind the example names (a unix stream server
for docker.sock, a UDP echo for --udp and --tcp-to-udp, a TLS echo with a certificate for the
example's host name for --tls-target, a TCP echo otherwise), FILE a temporary
file (site.pem: a certificate and its key from a test CA), a proxy URL's port a
local microsocks; then one message goes through and comes back. Where the
example relies on the system's CAs, the test CA is given with --ca (and the
example's host name with --sni, since the target is now 127.0.0.1)."""

from __future__ import annotations

import re
import shlex
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import Proc
from reliability_helpers import recv_exactly
from test_forward import connect, forwarding
from test_forward_udp import client, udp_server
from test_proxy import microsocks  # noqa: F401 - the fixture, for the --proxy example
from tls_helpers import make_pki, tls_server, write_leaf

ROOT = Path(__file__).resolve().parent.parent
TAKES_VALUE = {"--delay", "--jitter", "--rate", "--chunk", "--chunk-delay", "--drop", "--seed", "--record", "-i", "-w"}
TAKES_VALUE |= {"--cert", "--key", "--ca", "--sni", "--pin", "--proxy", "--proxy-auth"}
MESSAGE = b"hello through forward\n"


def examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### forward LISTEN TARGET", 1)[1].split("\n### ", 1)[0]
    lines = [line for block in re.findall(r"```sh\n(.*?)```", section, re.S) for line in block.splitlines()]
    return [line.split("#")[0].split(">")[0].strip() for line in lines if line.startswith("socktool forward")]


def split(example: str) -> tuple[list[str], list[str]]:
    """(positional arguments, options with their values) of an example."""
    words = shlex.split(example)[2:]
    positional, options = [], []
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            options.append(word)
            if word in TAKES_VALUE:
                options.append(words.pop(0))
        else:
            positional.append(word)
    return positional, options


def test_the_readme_shows_the_docker_http_udp_device_and_fault_examples():
    text = "\n".join(examples())
    needles = ("unix:/var/run/docker.sock", "--record", "--udp-to-tcp", "--delay", "--rate", "--drop")
    for needle in (*needles, "--tls-listen", "--tls-target", "--proxy"):
        assert needle in text


@pytest.mark.parametrize("example", examples())
def test_readme_forward_example_relays_a_message(example, tmp_path, tmp_sock_dir, request):
    (_listen, target), options = split(example)
    options = [str(tmp_path / word) if word.endswith(".jsonl") else word for word in options]
    if "--tls-listen" in options or "--tls-target" in options:
        _tls_round_trip(target, options, tmp_path, request)
    elif target.startswith("unix:"):
        path = str(tmp_sock_dir / "docker.sock")
        with Proc("echo", f"unix:{path}", "--tcp-only") as echo:
            echo.wait_listening()
            _stream_round_trip(f"unix:{path}", options)
    elif "--udp" in options:
        with udp_server() as server:
            with forwarding(f"127.0.0.1:{server.port}", *options) as (_proc, port), client() as sock:
                sock.sendto(b"a datagram", ("127.0.0.1", port))
                assert sock.recv(100) == b"a datagram"
    elif "--tcp-to-udp" in options:  # a line out is a datagram; the datagram back is one write
        with (
            udp_server() as server,
            forwarding(f"127.0.0.1:{server.port}", *options) as (_proc, port),
            connect(port) as sock,
        ):
            sock.sendall(b"a line\n")
            assert recv_exactly(sock, 6) == b"a line"
    elif "--udp-to-tcp" in options:
        with Proc("echo", "127.0.0.1:0", "--tcp-only", stdout=subprocess.DEVNULL) as echo:
            port = echo.wait_listening()
            with forwarding(f"127.0.0.1:{port}", *options) as (_proc, fport), client() as sock:
                sock.sendto(b"a line\n", ("127.0.0.1", fport))
                assert sock.recv(100) == b"a line"
    else:
        with Proc("echo", "127.0.0.1:0", "--tcp-only", stdout=subprocess.DEVNULL) as echo:
            _stream_round_trip(f"127.0.0.1:{echo.wait_listening()}", options)
    for word in options:
        if word.endswith(".jsonl"):
            assert Path(word).read_text().count('"event":"data"') >= 2


def _stream_round_trip(target: str, options: list[str], wrap=None) -> None:
    with forwarding(target, *options) as (_proc, port), connect(port) as plain:
        sock = wrap(plain) if wrap is not None else plain
        sock.sendall(MESSAGE)
        assert recv_exactly(sock, len(MESSAGE)) == MESSAGE


def _tls_round_trip(target: str, options: list[str], tmp_path: Path, request) -> None:
    pki = make_pki(tmp_path)
    host = target.rsplit(":", 1)[0]
    if "--proxy" in options:  # the example's proxy, on a port of our own
        url = options[options.index("--proxy") + 1]
        port = request.getfixturevalue("microsocks")
        options[options.index("--proxy") + 1] = url.rsplit(":", 1)[0] + f":{port}"
    if "--cert" in options:  # site.pem: a certificate and its key in one file, as the README allows
        site = tmp_path / options[options.index("--cert") + 1]
        site.write_bytes(pki.cert.read_bytes() + pki.key.read_bytes())
        options[options.index("--cert") + 1] = str(site)
    wrap = None
    if "--tls-listen" in options:
        client_ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        wrap = lambda sock: client_ctx.wrap_socket(sock, server_hostname="localhost")  # noqa: E731
    if "--tls-target" not in options:
        with Proc("echo", "127.0.0.1:0", "--tcp-only", stdout=subprocess.DEVNULL) as echo:
            _stream_round_trip(f"127.0.0.1:{echo.wait_listening()}", options, wrap)
        return
    leaf = pki.ca.issue_cert(host)  # the certificate the example's HTTPS server would show
    write_leaf(leaf, tmp_path / "site-cert.pem", tmp_path / "site-key.pem")
    with tls_server(tmp_path / "site-cert.pem", tmp_path / "site-key.pem", _echo) as port:
        verify = ["--ca", str(pki.ca_file), "--sni", host]  # the system's CAs would know the real one
        _stream_round_trip(f"127.0.0.1:{port}", [*options, *verify], wrap)


def _echo(tls: ssl.SSLSocket) -> None:
    """Each client gets back what it sends, until it ends."""
    while data := tls.recv(65536):
        tls.sendall(data)
