"""A netcat user's muscle memory (issue 12, items 10-12): `HOST PORT`, port ranges,
nc's options and URLs get the socktool form; typo suggestions are close ones only;
one vocabulary across commands (--repeat, -w)."""

from __future__ import annotations

import socket

import pytest

from conftest import one_line_error, run, serve_once
from socktool.cli import habits

pytestmark = pytest.mark.timeout(60)


def test_tcp_connect_takes_host_and_port_as_two_arguments():
    port = serve_once(b"hello")
    result = run("tcp-connect", "127.0.0.1", str(port), "--send", "")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello"


def test_an_ipv6_literal_and_a_port_get_their_brackets():
    assert habits.join_host_port("tcp-connect", ["-z", "::1", "80"], ()) == ["-z", "[::1]:80"]
    assert habits.join_host_port("tcp-connect", ["127.0.0.1:80", "x"], ()) == ["127.0.0.1:80", "x"]
    assert habits.join_host_port("tcp-listen", ["-4", "0"], ()) == ["-4", "0"]  # -4 is an option
    assert habits.join_host_port("tcp-connect", ["--send", "a", "h", "1"], ("--send",)) == ["--send", "a", "h:1"]


def test_udp_send_host_port_message():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        result = run("udp-send", "127.0.0.1", str(server.getsockname()[1]), "hi")
        assert result.returncode == 0, result.stderr
        assert server.recv(100) == b"hi"


@pytest.mark.parametrize("args", [["127.0.0.1", "20-30"], ["127.0.0.1:20-30"]])
def test_a_port_range_in_a_connect_points_to_portscan(args):
    result = run("tcp-connect", "-z", *args)
    assert result.returncode == 2
    assert "socktool portscan 127.0.0.1 20-30" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["tcp-listen", "-p", "19084"], "socktool tcp-listen PORT"),
        (["tcp-connect", "-l", "5"], "socktool tcp-listen PORT"),
        (["tcp-connect", "http://127.0.0.1:80"], "HOST:PORT, here 127.0.0.1:80"),
        (["tcp-connect", "-q", "1", "127.0.0.1:5"], "-q is --quiet here"),
        (["tcp-listen", "-q", "1", "19084"], "-q is --quiet here"),
        (["tcp-connect", "--verbos", "127.0.0.1:5"], "did you mean --verbose?"),
        (["udp-send", "--expect", "x", "127.0.0.1:5", "hi"], "here it is --wait"),
    ],
)
def test_nc_forms_get_a_one_line_hint(args, hint):
    result = run(*args)
    assert result.returncode == 2
    assert hint in one_line_error(result.stderr)


@pytest.mark.parametrize(("command", "option"), [("tcp-connect", "--bogus"), ("udp-send", "--bogus")])
def test_no_far_fetched_suggestion(command, option):
    error = one_line_error(run(command, option, "127.0.0.1:5").stderr)
    assert "did you mean" not in error and "Possible options" not in error, error


def test_udp_send_repeat_and_w_are_the_same_words_as_tcp_connects():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        port = server.getsockname()[1]
        result = run("udp-send", f"127.0.0.1:{port}", "tick", "--repeat", "2")
        assert result.returncode == 0, result.stderr
        assert [server.recv(100), server.recv(100)] == [b"tick", b"tick"]
    result = run("udp-send", f"127.0.0.1:{port}", "x", "--wait", "-w", "100ms")
    assert result.returncode == 1  # no reply within -w
    result = run("udp-listen", "127.0.0.1:0", "-w", "100ms")
    assert result.returncode == 1  # nothing came within -w
