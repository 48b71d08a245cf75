"""A newcomer follows the README: a fresh clone, the two set-up commands in a
fresh virtualenv, then the quick start's tcp-listen and tcp-connect with a
line typed into each end.

The clone holds what is committed, so this checks the README as it is
published. The set-up's test command is run as `--collect-only` (the suite
is already running); the quick start's port is swapped for a free one.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def quick_start(readme: str) -> tuple[list[str], str, str]:
    """(set-up commands, listen command, connect command) from the README's Quick start."""
    section = readme.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    setup = [line for line in blocks[0].splitlines() if line.strip()]
    commands = [line.split("#")[0].strip() for block in blocks[1:] for line in block.splitlines() if line.strip()]
    listen = next(command for command in commands if command.startswith("socktool tcp-listen"))
    connect = next(command for command in commands if command.startswith("socktool tcp-connect"))
    return setup, listen, connect


def read_line(stream: IO[bytes], timeout: float = 15) -> bytes:
    """One line from a pipe, or what came before the timeout ran out."""
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        byte = os.read(stream.fileno(), 1)
        if not byte:
            break
        line += byte
    return line


def shell(command: str, cwd: Path, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, **kwargs)


def test_a_newcomer_can_follow_the_readme(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    clone = tmp_path / "socktool"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
    setup, listen, connect = quick_start((clone / "README.md").read_text())
    assert len(setup) == 2, setup

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    try:
        for line in setup:
            command = line.split("#")[0].strip()
            if " pytest" in command:
                command += " --collect-only -q"  # the whole suite is what is running this test
            done = subprocess.run(
                ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=240
            )
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            if " pytest" in command:
                assert re.search(r"\d+ tests? collected", done.stdout), done.stdout[-2000:]
        where = subprocess.run(["bash", "-c", "command -v socktool"], env=env, capture_output=True, text=True)
        assert where.stdout.strip() == str(venv / "bin" / "socktool")

        port = re.search(r"(\d+)$", listen)
        assert port is not None and connect.endswith(f":{port[1]}"), (listen, connect)
        mine = str(free_port())
        listen, connect = listen[: port.start()] + mine, connect[: -len(port[1])] + mine

        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        listener = shell(f"exec {listen}", clone, env, **pipes)
        client = None
        try:
            assert b"listening on" in read_line(listener.stderr)
            client = shell(f"exec {connect}", clone, env, **pipes)
            client.stdin.write(b"hello from the README\n")
            client.stdin.flush()
            assert read_line(listener.stdout) == b"hello from the README\n"
            listener.stdin.write(b"hello back\n")
            listener.stdin.close()
            assert read_line(client.stdout) == b"hello back\n"
            client.stdin.close()
            assert client.wait(timeout=15) == 0, client.stderr.read()
            assert listener.wait(timeout=15) == 0, listener.stderr.read()
        finally:
            for proc in (client, listener):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=5)
                if proc is not None:
                    for stream in (proc.stdin, proc.stdout, proc.stderr):
                        if stream is not None and not stream.closed:
                            stream.close()
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # a few hundred MB; the clone is small
