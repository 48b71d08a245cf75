"""socktool time-server: strftime over UDP, daytime over TCP, RFC 868, bounded replies."""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Proc, need, one_line_error, run
from socktool.net.timeserver import (
    DEFAULT_FORMAT,
    MAX_REPLY,
    daytime_line,
    decode_rfc868,
    format_reply,
    rfc868_time,
)
from socktool.net.udpguard import reply_limit

# 2009-02-13 23:31:30 UTC, a Friday
MOMENT = 1_234_567_890


# -- the replies, without sockets ------------------------------------------------
def test_empty_request_gets_the_default_format():
    assert format_reply(b"", MOMENT, utc=True).data == b"2009-02-13 23:31:30"
    assert DEFAULT_FORMAT == "%Y-%m-%d %X"


def test_request_is_a_strftime_format():
    assert format_reply(b"%Y", MOMENT, utc=True).data == b"2009"
    assert format_reply(b"%H:%M", MOMENT, utc=True).data == b"23:31"
    assert format_reply(b"day %j of %Y", MOMENT, utc=True).data == b"day 044 of 2009"


def test_a_trailing_newline_is_kept_and_a_blank_line_gets_the_default():
    assert format_reply(b"%Y\n", MOMENT, utc=True).data == b"2009\n"
    assert format_reply(b"%Y\r\n", MOMENT, utc=True).data == b"2009\r\n"
    assert format_reply(b"\n", MOMENT, utc=True).data == b"2009-02-13 23:31:30\n"


def test_local_time_unless_utc():
    local = time.strftime("%H", time.localtime(MOMENT)).encode()
    assert format_reply(b"%H", MOMENT).data == local


def test_unrenderable_format_gets_an_error_reply():
    reply = format_reply(b"a\x00b", MOMENT)
    assert reply.data == b"error: cannot render format"
    assert reply.error.startswith("cannot render the format")


def test_format_that_is_not_utf8_gets_an_error_reply():
    reply = format_reply(b"\xff%Y", MOMENT)
    assert reply.data == b"error: format not UTF-8"


@pytest.mark.parametrize("request_", [b"%1024Y", b"%1022c", b"%01023s", b"%1000%", b"%c" * 100])
def test_a_format_that_renders_larger_than_the_request_gets_a_short_error(request_):
    reply = format_reply(request_, MOMENT)
    assert reply.data == b"error: reply too long"
    assert len(reply.data) <= reply_limit(len(request_))
    assert "bytes, more than" in reply.error


def test_a_short_request_may_get_up_to_32_bytes():
    assert format_reply(b"%c", MOMENT, utc=True).data == b"Fri Feb 13 23:31:30 2009"  # 24 from 2
    assert format_reply(b"%c%c", MOMENT, utc=True).data == b"error: reply too long"  # 48 > 32


def test_a_format_glibc_cannot_render_gets_an_error_not_an_empty_datagram():
    assert format_reply(b"%9999999Y", MOMENT).data == b"error: cannot render format"


def test_format_longer_than_1kib_is_refused_unread():
    reply = format_reply(b"%%" * 600, MOMENT)
    assert reply.data == b"error: format too long"
    assert reply.error == "the format is longer than 1024 bytes"


def test_a_reply_as_large_as_its_request_is_allowed_up_to_1kib():
    assert format_reply(b"x" * MAX_REPLY, MOMENT).data == b"x" * MAX_REPLY
    assert format_reply(b"%y" + b"x" * 40, MOMENT, utc=True).data == b"09" + b"x" * 40


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_no_request_gets_a_reply_larger_than_itself_or_32_bytes(request):
    reply = format_reply(request, MOMENT).data
    assert 0 < len(reply) <= min(MAX_REPLY, reply_limit(len(request)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["%c", "%A", "%B", "%Y", "%%", "x", "%x%X", "%1000Y", "%0500c"]), max_size=200))
def test_expanding_formats_never_amplify(parts):
    request = "".join(parts).encode()
    assert len(format_reply(request, MOMENT).data) <= min(MAX_REPLY, reply_limit(len(request)))


def test_daytime_is_one_rfc867_line():
    assert daytime_line(MOMENT, utc=True) == b"Friday, February 13, 2009 23:31:30-UTC\r\n"


def test_rfc868_is_seconds_since_1900_big_endian():
    assert rfc868_time(0) == struct.pack("!I", 2_208_988_800)
    assert decode_rfc868(rfc868_time(MOMENT)) == MOMENT


def test_rfc868_wraps_in_2036_and_still_decodes():
    after_wrap = 2_085_978_496 + 10  # 2036-02-07 06:28:16 UTC + 10s
    assert rfc868_time(after_wrap) == struct.pack("!I", 10)
    assert decode_rfc868(rfc868_time(after_wrap)) == after_wrap


# -- the server, as a user meets it ----------------------------------------------
def ask_udp(port: int, request: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(request, ("127.0.0.1", port))
        return sock.recvfrom(65535)[0]


def read_tcp(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


def rendered_around(fmt: str, utc: bool = False) -> tuple[bytes, ...]:
    """The time in `fmt` now and a second from now (a request may cross a tick)."""
    clock = time.gmtime if utc else time.localtime
    now = time.time()
    return tuple(time.strftime(fmt, clock(now + d)).encode() for d in (-1, 0, 1))


@pytest.fixture
def time_server():
    with Proc("time-server", "-v", "127.0.0.1:0") as proc:
        proc.port = proc.wait_listening()
        yield proc


def test_udp_requests_get_date_time_year_and_hours_minutes(time_server):
    assert ask_udp(time_server.port, b"") in rendered_around(DEFAULT_FORMAT)
    assert ask_udp(time_server.port, b"%Y") in rendered_around("%Y")
    assert ask_udp(time_server.port, b"%H:%M") in rendered_around("%H:%M")
    assert re.fullmatch(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", ask_udp(time_server.port, b""))
    time_server.wait_for(r"udp #3 127\.0\.0\.1:\d+: 5 B in, 5 B out, format '%H:%M'")


def test_nc_on_the_tcp_port_gets_a_daytime_line(time_server):
    need("nc")
    result = subprocess.run(
        ["nc", "127.0.0.1", str(time_server.port)], stdin=subprocess.DEVNULL, capture_output=True, timeout=10
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.decode()
    assert line.endswith("\r\n") and line.count("\n") == 1
    assert re.fullmatch(r"[A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4} \d\d:\d\d:\d\d-\S+\r\n", line), line
    assert time.strftime("%Y") in line


def test_a_client_that_sends_data_still_gets_its_daytime_line(time_server):
    with socket.create_connection(("127.0.0.1", time_server.port), timeout=5) as sock:
        sock.sendall(b"hello?\n" * 100)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.endswith(b"\r\n") and b"day, " in data


def test_unrenderable_format_gets_a_reply_and_the_server_goes_on(time_server):
    assert ask_udp(time_server.port, b"%Y\x00") == b"error: cannot render format"
    assert ask_udp(time_server.port, b"%Y") in rendered_around("%Y")
    time_server.wait_for(r"udp #1 .*error reply: cannot render")


def test_amplifying_format_gets_a_short_refusal_over_the_wire(time_server):
    for request in (b"%1024Y", b"%1022c", b"%01023s", b"%1000%", b"%c" * 500):
        assert ask_udp(time_server.port, request) == b"error: reply too long"
    assert ask_udp(time_server.port, b"%9999999Y") == b"error: cannot render format"
    assert ask_udp(time_server.port, b"%%" * 20000) == b"error: format too long"
    assert ask_udp(time_server.port, b"") in rendered_around("%Y-%m-%d %X")


def test_utc_option():
    with Proc("time-server", "--utc", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        assert ask_udp(port, b"%H:%M %Z") in rendered_around("%H:%M %Z", utc=True)
        assert read_tcp(port).endswith(b"-UTC\r\n")


def test_rfc868_client_decodes_a_time_within_seconds_of_now():
    # RFC 868 time has no zone, so --utc with --rfc868 is refused (tests/test_option_pairs.py).
    with Proc("time-server", "--rfc868", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        over_tcp = read_tcp(port)
        over_udp = ask_udp(port, b"")
    for reply in (over_tcp, over_udp):
        assert len(reply) == 4
        assert abs(decode_rfc868(reply) - time.time()) < 5


def test_tcp_only_and_udp_only():
    with Proc("time-server", "--tcp-only", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        assert read_tcp(port).endswith(b"\r\n")
        assert "(udp)" not in "\n".join(proc.lines)
    with Proc("time-server", "--udp-only", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        assert ask_udp(port, b"%Y") in rendered_around("%Y")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)


def test_many_clients_at_once_each_get_a_line():
    with Proc("time-server", "--tcp-only", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(300)]
        for sock in socks:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            sock.close()
            assert data.endswith(b"\r\n")


def test_json_events():
    with Proc("time-server", "--json", "-v", "127.0.0.1:0") as proc:
        port = proc.wait_listening()
        ask_udp(port, b"%Y")
        read_tcp(port)
        proc.wait_for(r"tcp #1 ")
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait() == 143
        records = [json.loads(line) for line in proc.popen.stdout.read().splitlines()]
    served = [r for r in records if r["event"] == "served"]
    assert served[0]["kind"] == "udp" and served[0]["request"] == "%Y" and served[0]["sent"] == 4
    assert served[1]["kind"] == "tcp" and served[1]["received"] == 0
    assert records[-1]["event"] == "stats" and records[-1]["datagrams_out"] == 1


def test_sigint_exits_130_without_a_traceback(time_server):
    time_server.popen.send_signal(signal.SIGINT)
    assert time_server.wait() == 130
    assert "Traceback" not in time_server.stderr


def test_help_states_the_reply_bound():
    result = run("time-server", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.decode().split())
    assert "never larger than the request (or 32 bytes for a shorter one)" in text
    assert f"never more than {MAX_REPLY} bytes" in text
    assert "9000" in text


def test_port_in_use_is_one_error_line():
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        result = run("time-server", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "address already in use" in one_line_error(result.stderr)


def test_bad_port_is_a_usage_error():
    result = run("time-server", "70000")
    assert result.returncode == 2
    assert "out of range" in one_line_error(result.stderr)
