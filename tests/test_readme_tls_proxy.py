"""Every `sh` example of the README's TLS and Proxies sections runs, as written but for
where it points (the runner for the other sections is test_readme_examples.py):

- a host name becomes 127.0.0.1, and the peer there is of the kind the example talks
  to: a TLS responder with a certificate for the example's host name from a test CA
  (trustme), a socktool listener when the example pins or shows its certificate, a
  plain listener or greeter behind a proxy;
- where the example relies on the system's CAs and DNS, the test CA is given with
  --ca and the example's host name with --sni (the target is 127.0.0.1 now);
- a proxy URL's host and port become a local proxy of its kind and credentials:
  microsocks (SOCKS5, with -u/-P when the example has a user), ncat's HTTP proxy
  (--proxy-auth when the URL has one);
- the files an example names (ca.pem, srv.pem, srv.key, me.pem, me.key) are written
  from the test CA into its working directory, and ./migrate is a script that exits 0;
- a listener gets port 0, must say "listening on", serves one socktool client (pinned
  by the fingerprint it printed, or by the CA), and ends by itself or with SIGTERM.

Every example line must have a way to run here: a new one fails until it has.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Proc, free_port, need, readme_commands, run, serve_each
from test_proxy import listening_peer
from tls_helpers import Pki, make_pki, tls_server, write_leaf

ROOT = Path(__file__).resolve().parent.parent
HEADINGS = ("### TLS: `--tls`", "### Proxies: `--proxy`")
BIN = str(Path(sys.executable).parent)
HTTP_REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"

pytestmark = pytest.mark.timeout(60)


def examples() -> list[str]:
    return [command for heading in HEADINGS for command in readme_commands(heading) if command.startswith("socktool ")]


# -- peers ----------------------------------------------------------------------------------
def respond(tls: ssl.SSLSocket) -> None:
    """A client's request (up to a blank line, or its end) gets HTTP_REPLY, then close_notify."""
    request = b""
    while b"\r\n\r\n" not in request and (data := tls.recv(65536)):
        request += data
    tls.sendall(HTTP_REPLY)
    tls.unwrap()


def tls_responder(cert: Path, key: Path, client_ca: Path | None = None) -> contextlib.AbstractContextManager[int]:
    """A TLS server on loopback that answers each client with respond()."""
    return tls_server(cert, key, respond, client_ca)


@contextlib.contextmanager
def greeter(greeting: bytes = b"SSH-2.0-test\r\n") -> Iterator[tuple[int, threading.Event]]:
    """A plain TCP service that speaks first; (port, set once a connection was accepted).

    The proxy's success reply can reach the client before the server's accept() returns,
    so a test waits on the event rather than looking at it once.
    """
    seen = threading.Event()

    def greet(conn: socket.socket) -> None:
        seen.set()
        conn.sendall(greeting)

    with serve_each(greet) as port:
        yield port, seen


@contextlib.contextmanager
def proxy(kind: str, user: str | None = None, password: str | None = None) -> Iterator[int]:
    port = free_port()
    if kind == "socks5":
        need("microsocks")
        argv = ["microsocks", "-i", "127.0.0.1", "-p", str(port)]
        argv += ["-u", user, "-P", password or ""] if user else []
    else:
        need("ncat")
        argv = ["ncat", "-l", "-k", "127.0.0.1", str(port), "--proxy-type", "http"]
        argv += ["--proxy-auth", f"{user}:{password}"] if user else []
    with listening_peer(argv, port):
        yield port


# -- running an example -----------------------------------------------------------------------
class Scene:
    """An example's working directory, its test CA's files, and the command as it runs here."""

    def __init__(self, example: str, tmp: Path):
        self.example, self.tmp = example, tmp
        self.pki: Pki = make_pki(tmp)
        for name, source in (("ca.pem", self.pki.ca_file), ("srv.pem", self.pki.cert), ("srv.key", self.pki.key)):
            (tmp / name).write_bytes(source.read_bytes())
        (tmp / "me.pem").write_bytes(self.pki.client_cert.read_bytes())
        (tmp / "me.key").write_bytes(self.pki.client_key.read_bytes())
        migrate = tmp / "migrate"
        migrate.write_text("#!/bin/sh\necho migrated\n")
        migrate.chmod(0o755)
        self.command = example

    def site(self, host: str) -> tuple[Path, Path]:
        """The certificate the example's server would show for `host`, by the test CA."""
        cert, key = self.tmp / f"{host}.pem", self.tmp / f"{host}-key.pem"
        write_leaf(self.pki.ca.issue_cert(host), cert, key)
        return cert, key

    def point(self, address: str, port: int, host: str = "127.0.0.1") -> None:
        assert address in self.command, (address, self.command)
        self.command = self.command.replace(address, f"{host}:{port}")

    def add(self, *options: str) -> None:
        """Options put right after the subcommand (before a `--` and its command)."""
        head, sub, rest = self.command.split(" ", 2)
        self.command = " ".join([head, sub, *map(shlex.quote, options), rest])

    def trust(self, host: str) -> None:
        """The system's CAs and DNS stand-ins: the test CA, and the host name to check."""
        self.add("--ca", str(self.pki.ca_file), "--sni", host)

    def run(self) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
        return subprocess.run(
            ["bash", "-c", self.command],
            cwd=self.tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=45,
        )


def runs(scene: Scene) -> subprocess.CompletedProcess:
    result = scene.run()
    assert result.returncode == 0, (scene.command, result.stdout[-500:], result.stderr[-2000:])
    return result


def tls_client_to_a_site(scene: Scene) -> None:
    """tcp-connect --tls to a named HTTPS server (the system's CAs would know it)."""
    match = re.search(r"([a-z][\w.-]*\.test):(\d+)", scene.command)
    assert match is not None
    host = match.group(1)
    with tls_responder(*scene.site(host)) as port:
        scene.point(match.group(0), port)
        scene.trust(host)
        result = runs(scene)
    if "-z" not in scene.command.split():
        assert result.stdout == HTTP_REPLY


def tls_client_with_ca_file(scene: Scene) -> None:
    with tls_responder(scene.pki.cert, scene.pki.key) as port:
        scene.point("localhost:8443", port)
        scene.add("--sni", "localhost")
        assert runs(scene).stdout == HTTP_REPLY


def tls_client_pinning_a_listener(scene: Scene) -> None:
    """--pin with the fingerprint a `socktool tcp-listen --tls` printed (the line above it)."""
    with Proc("tcp-listen", "--tls", "127.0.0.1:0", "--send", "pinned\n") as listener:
        port = listener.wait_listening()
        printed = listener.wait_for(r"tls (sha256:[0-9a-f]{64})").group(1)
        scene.command = re.sub(r"sha256:[0-9a-f]+…", printed, scene.command)
        scene.point("127.0.0.1:8443", port)
        assert runs(scene).stdout == b"pinned\n"


def tls_client_with_its_certificate(scene: Scene) -> None:
    """Mutual TLS: the listener of the line above (--client-ca ca.pem) lets this client in."""
    args = ("tcp-listen", "--tls", "--cert", "srv.pem", "--key", "srv.key", "--client-ca", "ca.pem", "127.0.0.1:0")
    with Proc(*args, "--send", "welcome\n", cwd=scene.tmp) as listener:
        scene.point("localhost:8443", listener.wait_listening())
        scene.add("--sni", "localhost")
        assert runs(scene).stdout == b"welcome\n"
        assert listener.wait() == 0, listener.stderr


def listener(scene: Scene) -> None:
    """A tcp-listen example on port 0: it says where, and a socktool client gets through."""
    words = shlex.split(scene.command)[1:]
    words[-1] = "127.0.0.1:0"
    with Proc(*words, cwd=scene.tmp) as server:
        port = server.wait_listening()
        if "--cert" in words:
            trust = [
                "--ca",
                str(scene.pki.ca_file),
                "--cert",
                str(scene.pki.client_cert),
                "--key",
                str(scene.pki.client_key),
            ]
        else:
            trust = ["--pin", server.wait_for(r"tls (sha256:[0-9a-f]{64})").group(1)]
        client = run("tcp-connect", "--tls", *trust, f"127.0.0.1:{port}", "--send", "hello tls\n")
        assert client.returncode == 0, client.stderr
        if "--exec" in words:
            assert client.stdout == b"HELLO TLS\n"
        if "-k" in words:  # serves until interrupted
            server.popen.send_signal(signal.SIGTERM)
            assert server.wait() == 143, server.stderr
        else:  # one client, then exit
            assert server.wait() == 0, server.stderr
        assert server.popen.stdout is not None
        if "--exec" not in words:
            assert server.popen.stdout.read() == b"hello tls\n"


def through_socks5h_to_a_greeter(scene: Scene) -> None:
    with proxy("socks5") as proxy_port, greeter() as (port, seen):
        scene.point("127.0.0.1:1080", proxy_port)
        scene.point("example.test:22", port)
        runs(scene)
        assert seen.wait(10), "the target was never reached"


def through_an_http_proxy_with_tls(scene: Scene) -> None:
    url = re.search(r"http://(\w+):(\w+)@(proxy\.test:3128)", scene.command)
    assert url is not None
    with proxy("http", url.group(1), url.group(2)) as proxy_port, tls_responder(*scene.site("example.test")) as port:
        scene.point(url.group(3), proxy_port)
        scene.point("example.test:443", port)
        scene.trust("example.test")
        # The handshake verified the site's certificate through the tunnel. (Its reply may not
        # come back: ncat's proxy ends the tunnel both ways at our end of stdin, /dev/null here.)
        runs(scene)


def through_socks5_with_proxy_auth(scene: Scene) -> None:
    user, password = re.search(r"--proxy-auth (\w+):(\w+)", scene.command).groups()  # type: ignore[union-attr]
    with proxy("socks5", user, password) as proxy_port, greeter(b"") as (port, seen):
        scene.point("proxy.test:1080", proxy_port)
        scene.point("db.test:5432", port)
        runs(scene)
        assert seen.wait(10), "the target was never reached"


def wait_through_a_proxy(scene: Scene) -> None:
    with proxy("socks5") as proxy_port, greeter(b"") as (port, seen):
        scene.point("127.0.0.1:1080", proxy_port)
        scene.point("db.internal:5432", port)
        assert runs(scene).stdout == b"migrated\n"
        assert seen.wait(10), "the target was never reached"


def portscan_through_a_proxy(scene: Scene) -> None:
    """The scanned host becomes 127.0.0.1 with its ports as written: whatever listens there
    (an sshd, say), the scan goes through and lists the three."""
    with proxy("socks5") as proxy_port:
        scene.point("127.0.0.1:1080", proxy_port)
        scene.command = scene.command.replace("intranet.test", "127.0.0.1")
        lines = runs(scene).stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["22/tcp", "80/tcp", "443/tcp"]


RUNNERS: list[tuple[str, Callable[[Scene], None]]] = [
    (r"^socktool tcp-listen ", listener),
    (r"^socktool tcp-connect --tls (-z )?example\.test:443", tls_client_to_a_site),
    (r"^socktool tcp-connect --tls --ca \./ca\.pem localhost:8443$", tls_client_with_ca_file),
    (r"^socktool tcp-connect --tls --pin sha256:", tls_client_pinning_a_listener),
    (
        r"^socktool tcp-connect --tls --ca ca\.pem --cert me\.pem --key me\.key localhost:8443$",
        tls_client_with_its_certificate,
    ),
    (r"^socktool tcp-connect --proxy socks5h://127\.0\.0\.1:1080 example\.test:22$", through_socks5h_to_a_greeter),
    (
        r"^socktool tcp-connect --proxy http://\w+:\w+@proxy\.test:3128 example\.test:443 --tls$",
        through_an_http_proxy_with_tls,
    ),
    (
        r"^socktool tcp-connect --proxy socks5://proxy\.test:1080 --proxy-auth \w+:\w+ db\.test:5432 -z$",
        through_socks5_with_proxy_auth,
    ),
    (r"^socktool wait --proxy socks5h://127\.0\.0\.1:1080 db\.internal:5432 -- \./migrate$", wait_through_a_proxy),
    (
        r"^socktool portscan --proxy socks5h://127\.0\.0\.1:1080 intranet\.test 22,80,443 --all$",
        portscan_through_a_proxy,
    ),
]


def test_both_sections_have_their_examples():
    found = examples()
    assert sum("--tls" in example for example in found) >= 8
    assert sum("--proxy" in example for example in found) >= 5


@pytest.mark.parametrize("example", examples())
def test_readme_tls_or_proxy_example_runs(example: str, tmp_path: Path):
    matching = [runner for pattern, runner in RUNNERS if re.search(pattern, example)]
    assert len(matching) == 1, f"no way (or more than one) to run this README example here: {example}"
    matching[0](Scene(example, tmp_path))
