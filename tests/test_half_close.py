"""After the peer's EOF, and after ours: --keep-sending and --quit-after (nc's -q),
against nc and ncat as the peers.

The peers listen on 127.0.0.7, an address of the loopback that the port scans
of other tests do not visit, so the one connection they take is ours.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import Proc, command, free_port, need, one_line_error, run
from reliability_helpers import wait_listening

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.7"

# Listeners that half-close at once (their stdin is empty) and read until we close.
HALF_CLOSING = {
    "nc": ["nc", "-l", "-N", HOST],
    "ncat": ["ncat", "-l", HOST],
}
# Listeners that neither close nor half-close while their stdin stays open.
STAYING = {
    "nc": ["nc", "-l", HOST],
    "ncat": ["ncat", "-l", HOST],
}


def read_until(pipe, wanted: bytes) -> bytes:
    data = b""
    while not data.endswith(wanted):
        chunk = pipe.read1(4096)
        assert chunk, f"the peer's output ended at {data!r}"
        data += chunk
    return data


@pytest.fixture(params=sorted(HALF_CLOSING))
def half_closing_peer(request):
    need(request.param)
    port = free_port()
    peer = subprocess.Popen([*HALF_CLOSING[request.param], str(port)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        wait_listening(port, HOST)
        yield peer, port
    finally:
        peer.kill()
        peer.wait(timeout=5)
        peer.stdout.close()


def test_keep_sending_delivers_stdin_after_the_peers_eof(half_closing_peer):
    peer, port = half_closing_peer
    with Proc("tcp-connect", "-v", "--keep-sending", f"{HOST}:{port}", stdin=subprocess.PIPE) as client:
        client.popen.stdin.write(b"first\n")
        client.popen.stdin.flush()
        assert read_until(peer.stdout, b"first\n") == b"first\n"
        client.wait_for("has finished sending; sending until stdin ends")
        client.popen.stdin.write(b"second\n")  # long after the default 0.5s of idle stdin
        client.popen.stdin.close()
        assert client.wait() == 0
        assert read_until(peer.stdout, b"second\n") == b"second\n"
    assert peer.wait(timeout=10) == 0


@pytest.mark.parametrize("tool", sorted(STAYING))
def test_quit_after_ends_that_long_after_stdin_even_if_the_peer_stays(tool):
    need(tool)
    port = free_port()
    peer = subprocess.Popen([*STAYING[tool], str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        wait_listening(port, HOST)
        client = run("tcp-connect", "--no-shutdown", "--quit-after", "300ms", "-v", f"{HOST}:{port}", input=b"hi\n")
        assert client.returncode == 0, client.stderr
        assert b"(stdin ended 300ms ago (--quit-after))" in client.stderr
        assert read_until(peer.stdout, b"hi\n") == b"hi\n"
    finally:
        peer.kill()
        peer.wait(timeout=5)
        peer.stdin.close()
        peer.stdout.close()


def test_quit_after_minus_one_waits_for_the_peer(half_closing_peer):
    peer, port = half_closing_peer
    client = subprocess.Popen(
        command("tcp-connect", "--quit-after", "-1", f"{HOST}:{port}"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _out, err = client.communicate(b"data\n", timeout=20)
    assert client.returncode == 0, err
    assert read_until(peer.stdout, b"data\n") == b"data\n"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (
            ["tcp-connect", "--keep-sending", "--recv-only", "127.0.0.1:9"],
            "'--keep-sending': cannot be used with --recv-only",
        ),
        (
            ["tcp-connect", "--quit-after", "1s", "--send-only", "127.0.0.1:9"],
            "'--quit-after': cannot be used with --send-only",
        ),
        (["tcp-listen", "-k", "--keep-sending", "127.0.0.1:0"], "'--keep-sending': only for one connection"),
        (
            ["tcp-listen", "--quit-after", "1s", "--exec", "cat", "127.0.0.1:0"],
            "'--quit-after': only for one connection",
        ),
        (["tcp-connect", "--quit-after", "soon", "127.0.0.1:9"], "'--quit-after': not a duration"),
    ],
)
def test_options_that_cannot_apply_are_usage_errors(args, complaint):
    result = run(*args)
    assert result.returncode == 2
    assert complaint in one_line_error(result.stderr)
