"""Integrity: 256 MiB of random bytes each way through tcp-connect ⇄ tcp-listen
(TCP and unix sockets) and through echo, checked by SHA-256.

The bytes are an AES-CTR keystream from `openssl` (fast; else Python's
random generator), streamed through a pipe and hashed on the way in and on
the way out: nothing holds more than a chunk of them in memory.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import threading

import pytest

from conftest import Proc
from reliability_helpers import MB, error_lines

SIZE = 256 * MB
CHUNK = 1 * MB


class Source:
    """SIZE random bytes written into a pipe from a thread, hashed as they go."""

    def __init__(self, pipe, seed: int):
        self.pipe = pipe
        self.seed = seed
        self.digest = hashlib.sha256()
        self.sent = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _chunks(self):
        if shutil.which("openssl"):
            key = hashlib.sha256(str(self.seed).encode()).hexdigest()[:32]
            generator = subprocess.Popen(
                ["openssl", "enc", "-aes-128-ctr", "-nosalt", "-K", key, "-iv", "0" * 32, "-in", "/dev/zero"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            try:
                left = SIZE
                while left:
                    chunk = generator.stdout.read1(min(CHUNK, left))
                    assert chunk, "openssl stopped early"
                    left -= len(chunk)
                    yield chunk
            finally:
                generator.kill()
                generator.wait()
                generator.stdout.close()
        else:
            rng = random.Random(self.seed)
            for _ in range(SIZE // CHUNK):
                yield rng.randbytes(CHUNK)

    def _run(self) -> None:
        try:
            for chunk in self._chunks():
                self.digest.update(chunk)
                self.pipe.write(chunk)
                self.sent += len(chunk)
            self.pipe.close()
        except BaseException as exc:  # reported by hexdigest()
            self.error = exc

    def hexdigest(self) -> str:
        self.thread.join(60)
        assert self.error is None, self.error
        assert self.sent == SIZE
        return self.digest.hexdigest()


class Sink:
    """Hashes what comes out of a pipe, to its end."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.digest = hashlib.sha256()
        self.received = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while chunk := self.pipe.read1(CHUNK):
            self.digest.update(chunk)
            self.received += len(chunk)

    def hexdigest(self) -> str:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the output did not end"
        return self.digest.hexdigest()


def _both_ways(listen_address: str, connect_address: str | None = None) -> None:
    with Proc("tcp-listen", listen_address, stdin=subprocess.PIPE) as listener:
        port = listener.wait_listening()
        target = connect_address or f"127.0.0.1:{port}"
        with Proc("tcp-connect", target, stdin=subprocess.PIPE) as client:
            to_listener = Source(client.popen.stdin, seed=1)
            to_client = Source(listener.popen.stdin, seed=2)
            at_listener = Sink(listener.popen.stdout)
            at_client = Sink(client.popen.stdout)
            assert client.wait(timeout=90) == 0, client.stderr
            assert listener.wait(timeout=30) == 0, listener.stderr
            assert (at_listener.hexdigest(), at_listener.received) == (to_listener.hexdigest(), SIZE)
            assert (at_client.hexdigest(), at_client.received) == (to_client.hexdigest(), SIZE)
            assert error_lines(client.stderr) == error_lines(listener.stderr) == []


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_256_mib_each_way_between_tcp_connect_and_tcp_listen():
    _both_ways("127.0.0.1:0")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_256_mib_each_way_over_a_unix_socket(tmp_sock_dir):
    path = tmp_sock_dir / "bulk.sock"
    _both_ways(f"unix:{path}", f"unix:{path}")
    assert not path.exists()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_256_mib_to_echo_and_back():
    with Proc("echo", "--tcp-only", "127.0.0.1:0") as echo:
        port = echo.wait_listening()
        with Proc("tcp-connect", f"127.0.0.1:{port}", stdin=subprocess.PIPE) as client:
            out = Source(client.popen.stdin, seed=3)
            back = Sink(client.popen.stdout)
            assert client.wait(timeout=90) == 0, client.stderr
            assert (back.hexdigest(), back.received) == (out.hexdigest(), SIZE)
            assert error_lines(client.stderr) == []
        assert echo.popen.poll() is None
