"""Every `socktool forward` example of the README runs: LISTEN becomes a free loopback
port, TARGET a local peer of the kind the example names (a unix stream server
for docker.sock, a UDP echo for --udp, a TCP echo otherwise), FILE a temporary
file; then one message goes through and comes back."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import Proc
from test_forward import connect, forwarding
from test_forward_udp import client, udp_server

ROOT = Path(__file__).resolve().parent.parent
TAKES_VALUE = {"--delay", "--jitter", "--rate", "--chunk", "--chunk-delay", "--drop", "--seed", "--record", "-i", "-w"}


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
    for needle in ("unix:/var/run/docker.sock", "--record", "--udp-to-tcp", "--delay", "--rate", "--drop"):
        assert needle in text


@pytest.mark.parametrize("example", examples())
def test_readme_forward_example_relays_a_message(example, tmp_path, tmp_sock_dir):
    (_listen, target), options = split(example)
    options = [str(tmp_path / word) if word.endswith(".jsonl") else word for word in options]
    if target.startswith("unix:"):
        path = str(tmp_sock_dir / "docker.sock")
        with Proc("echo", f"unix:{path}", "--tcp-only") as echo:
            echo.wait_listening()
            _stream_round_trip(f"unix:{path}", options)
    elif "--udp" in options:
        with udp_server() as server:
            with forwarding(f"127.0.0.1:{server.port}", *options) as (_proc, port), client() as sock:
                sock.sendto(b"a datagram", ("127.0.0.1", port))
                assert sock.recv(100) == b"a datagram"
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


def _stream_round_trip(target: str, options: list[str]) -> None:
    with forwarding(target, *options) as (_proc, port), connect(port) as sock:
        sock.sendall(b"hello through forward\n")
        got = b""
        while len(got) < 22:
            chunk = sock.recv(100)
            assert chunk, f"closed after {got!r}"
            got += chunk
        assert got == b"hello through forward\n"
