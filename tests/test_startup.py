"""The way out of the process: `run()` leaves by os._exit (no interpreter teardown, a
start-up saving), so it must first do what the teardown would have done for a user."""

from __future__ import annotations

import subprocess
import sys

from conftest import run

PREAMBLE = "import atexit, os, sys, threading\nfrom socktool.cli.boundary import leave\n"


def run_python(code: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", PREAMBLE + code], input=stdin, capture_output=True, timeout=20, check=False
    )


def test_leaving_flushes_what_python_buffered_and_keeps_the_exit_code():
    result = run_python("sys.stdout.write('to stdout'); sys.stderr.write('to stderr'); leave(3)")
    assert (result.returncode, result.stdout, result.stderr) == (3, b"to stdout", b"to stderr")


def test_leaving_runs_the_atexit_handlers():
    result = run_python("atexit.register(lambda: os.write(1, b'handler ran'))\nleave(0)")
    assert (result.returncode, result.stdout) == (0, b"handler ran")


def test_leaving_waits_for_a_thread_that_is_not_a_daemon():
    """The thread finishes only once it has read stdin, which the test writes after the start."""
    code = (
        "def finish():\n"
        "    os.write(1, b'read ' + sys.stdin.buffer.read())\n"
        "threading.Thread(target=finish).start()\n"
        "leave(4)\n"
    )
    result = run_python(code, stdin=b"the end")
    assert (result.returncode, result.stdout) == (4, b"read the end")


def test_leaving_when_the_reader_of_stdout_is_gone_is_quiet():
    """stdout a pipe whose reader left: the flush fails, and that is not a traceback."""
    code = "sys.stdout.write('lost'); r, w = os.pipe(); os.dup2(w, 1); os.close(r); leave(0)"
    result = run_python(code)
    assert (result.returncode, result.stderr) == (0, b"")


def test_version_reaches_a_pipe_from_the_script_and_from_python_m():
    """A --version (Typer prints it with a buffered echo) still reaches a pipe both ways."""
    script = run("--version")
    module = subprocess.run(
        [sys.executable, "-m", "socktool", "--version"], capture_output=True, timeout=20, check=False
    )
    for result in (script, module):
        assert result.returncode == 0 and result.stdout.startswith(b"socktool "), result
