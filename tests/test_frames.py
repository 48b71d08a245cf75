"""--frame, --max-frame, --checksum: the decoders (hypothesis), the checksums (published
vectors), and the commands as a user runs them."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Proc, command, one_line_error, run, serve_one
from socktool import frames
from socktool.frames import FrameTooLarge, checksum_bytes, crc16_modbus, parse_frame
from test_engine import read_exactly, read_to_eof

MODES = ["line", "crlf", "len8", "len16", "len32", "len16le", "len32le", "delim:7e7e", "fixed:4"]


def message_strategy(mode: str) -> st.SearchStrategy[bytes]:
    if mode == "fixed:4":
        return st.binary(min_size=4, max_size=4)
    if mode in ("line", "crlf"):
        return st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
    if mode.startswith("delim"):
        return st.binary(max_size=40).filter(lambda b: b"~" not in b)
    return st.binary(max_size=300 if mode != "len8" else 255)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *marks, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("mode", MODES)
@settings(deadline=None)  # a loaded machine is slow, not wrong
@given(data=st.data())
def test_any_split_of_framed_messages_decodes_to_the_same_messages(mode, data):
    framing = parse_frame(mode)
    messages = data.draw(st.lists(message_strategy(mode), max_size=8))
    stream = b"".join(framing.encode(m) for m in messages)
    points = data.draw(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
    decoder = framing.decoder()
    got: list[bytes] = []
    for chunk in cut(stream, points):
        got += decoder.feed(chunk)
    assert got == messages
    assert decoder.rest() == b""


@settings(deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=16))
def test_a_delimited_message_over_max_frame_is_an_error_not_a_growing_buffer(payload, limit):
    decoder = parse_frame("line").decoder(max_frame=limit)
    data = payload.replace(b"\n", b"") + b"x" * (limit + 1)
    with pytest.raises(FrameTooLarge):
        for byte in range(0, len(data), 7):
            decoder.feed(data[byte : byte + 7])
    assert decoder.pending <= limit + 7


def test_a_length_header_over_max_frame_is_an_error_at_once():
    decoder = parse_frame("len32").decoder(max_frame=1024)
    with pytest.raises(FrameTooLarge, match="1,025-byte message"):
        decoder.feed((1025).to_bytes(4, "big"))


@pytest.mark.parametrize("bad", ["len64", "delim:", "delim:zz", "fixed:0", "fixed:x", "lines", ""])
def test_bad_framings_are_refused(bad):
    with pytest.raises(ValueError):
        parse_frame(bad)


def test_encoding_adds_the_header_or_the_end():
    assert parse_frame("len16").encode(b"abc") == b"\x00\x03abc"
    assert parse_frame("len16le").encode(b"abc") == b"\x03\x00abc"
    assert parse_frame("len32").encode(b"") == b"\x00\x00\x00\x00"
    assert parse_frame("crlf").encode(b"hi") == b"hi\r\n"
    assert parse_frame("delim:00").encode(b"hi") == b"hi\x00"
    with pytest.raises(ValueError):
        parse_frame("len8").encode(b"x" * 256)
    with pytest.raises(ValueError):
        parse_frame("fixed:4").encode(b"abc")


# -- checksums: published check values ("123456789") and a textbook Modbus frame -------------
def test_crc16_modbus_matches_published_vectors():
    assert crc16_modbus(b"123456789") == 0x4B37  # the CRC catalogue's check value for CRC-16/MODBUS
    # Modbus RTU "read 10 holding registers of slave 1", as every Modbus guide prints it: ... C5 CD
    assert checksum_bytes("crc16-modbus", bytes.fromhex("01030000000a")) == bytes.fromhex("c5cd")
    assert checksum_bytes("crc16-modbus", bytes.fromhex("0103006b0003")) == bytes.fromhex("7417")


def test_other_checksums_match_their_check_values():
    assert checksum_bytes("crc32", b"123456789") == bytes.fromhex("cbf43926")
    assert checksum_bytes("sum8", b"123456789") == bytes([0xDD])
    assert checksum_bytes("xor8", b"123456789") == bytes([0x31])
    with pytest.raises(ValueError):
        checksum_bytes("md5", b"")


def test_sizes_parse_with_units():
    assert frames.parse_size("16MiB") == 16 * 1024 * 1024
    assert frames.parse_size("64k") == 65536
    assert frames.parse_size("1000") == 1000
    for bad in ("", "0", "1.5M", "12 MB", "x"):
        with pytest.raises(ValueError):
            frames.parse_size(bad)


# -- as a user runs it ---------------------------------------------------------------------------
def three_and_one(mode: str) -> tuple[list[bytes], list[bytes]]:
    """Three messages in one write, then one message split across three writes."""
    framing = parse_frame(mode)
    sizes = ["aaaa", "bbbb", "cccc", "dddd"] if mode == "fixed:4" else ["one", "two!", "three", "four4"]
    messages = [s.encode() for s in sizes]
    first = b"".join(framing.encode(m) for m in messages[:3])
    last = framing.encode(messages[3])
    third = max(1, len(last) // 3)
    return messages, [first, last[:third], last[third : 2 * third], last[2 * third :]]


def serve_one_and_send(args: list[str], writes: list[bytes]) -> Proc:
    proc = Proc("tcp-listen", "127.0.0.1:0", *args)
    port = proc.wait_listening()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write its own segment
        for write in writes:
            client.sendall(write)
        client.shutdown(socket.SHUT_WR)
        read_to_eof(client)
    assert proc.wait(20) == 0, proc.stderr
    return proc


@pytest.mark.parametrize("mode", MODES)
def test_three_messages_in_one_write_and_one_in_three_writes_are_four_records_in_json(mode):
    messages, writes = three_and_one(mode)
    with serve_one_and_send(["--frame", mode, "--json"], writes) as proc:
        assert proc.popen.stdout is not None
        records = [json.loads(line) for line in proc.popen.stdout.read().splitlines()]
    data = [r for r in records if r.get("event") == "data" and r["direction"] == "received"]
    assert [bytes.fromhex(r["hex"]) for r in data] == messages


@pytest.mark.parametrize("mode", ["len16", "line", "fixed:4"])
def test_the_view_shows_one_record_per_message(mode):
    messages, writes = three_and_one(mode)
    with serve_one_and_send(["--frame", mode, "--view", "--no-color"], writes) as proc:
        assert proc.popen.stdout is not None
        view = proc.popen.stdout.read().decode()
    rows = [line for line in view.splitlines() if "←" in line]
    assert len(rows) == 4, view
    for row, message in zip(rows, messages, strict=True):
        assert row.rstrip().endswith(message.decode()), view


def test_send_and_checksum_are_framed_on_the_way_out():
    proc = Proc("tcp-listen", "127.0.0.1:0", "--frame", "len16", "--checksum", "crc16-modbus", "--send", "123456789")
    with proc:
        port = proc.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
            assert read_to_eof(client) == b"\x00\x0b123456789\x37\x4b"
        proc.wait(20)


def test_a_message_over_max_frame_closes_only_that_client():
    proc = Proc("tcp-listen", "-k", "127.0.0.1:0", "--frame", "len16", "--max-frame", "8", "--json", "-v")
    with proc:
        port = proc.wait_listening()
        good = socket.create_connection(("127.0.0.1", port), timeout=15)
        bad = socket.create_connection(("127.0.0.1", port), timeout=15)
        bad.sendall(b"\x00\x20" + b"x" * 32)
        assert read_to_eof(bad) == b""
        proc.wait_for(r"larger than --max-frame")
        good.sendall(b"\x00\x02ok")
        good.close()
        bad.close()


def test_a_message_over_max_frame_on_the_pipe_is_one_error_line():
    proc = Proc("tcp-listen", "127.0.0.1:0", "--frame", "line", "--max-frame", "4", "--json")
    with proc:
        port = proc.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
            client.sendall(b"much too long\n")
        assert proc.wait(20) == 1
        lines = [line for line in proc.stderr.splitlines() if "error" in line]
        one_line_error(lines[0])
        assert "larger than --max-frame" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--max-frame", "10"],
        ["--frame", "len64"],
        ["--frame", "line", "--crlf"],
        ["--checksum", "md5"],
        ["--frame", "len8", "--send", "x" * 300],
        ["--frame", "fixed:4", "--send", "abc"],
    ],
)
def test_bad_frame_options_are_usage_errors(args):
    result = run("tcp-connect", "127.0.0.1:9", *args)
    assert result.returncode == 2, result.stderr


def test_console_messages_get_the_frame():
    server = subprocess.Popen(
        command("tcp-listen", "-k", "127.0.0.1:0", "--control", "json", "--json", "--frame", "len16"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        port = int(json.loads(server.stdout.readline())["address"].rsplit(":", 1)[1])
        client = socket.create_connection(("127.0.0.1", port), timeout=15)
        json.loads(server.stdout.readline())  # connected
        server.stdin.write(b'{"to": 1, "text": "hi"}\n{"to": 1, "hex": "00ff"}\n{"quit": true}\n')
        server.stdin.flush()
        assert read_exactly(client, 8) == b"\x00\x02hi\x00\x02\x00\xff"
        assert server.wait(15) == 0
        client.close()
    finally:
        server.kill()
        server.wait(10)
        server.stdin.close()
        server.stdout.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def test_forward_shows_one_record_per_message_both_ways():
    target = serve_one(echo)
    messages, writes = three_and_one("len16")
    proc = Proc("forward", "127.0.0.1:0", f"127.0.0.1:{target}", "--frame", "len16", "--json")
    with proc:
        port = proc.wait_listening()
        stream = b"".join(writes)
        with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for write in writes:
                client.sendall(write)
            assert read_exactly(client, len(stream)) == stream
        assert proc.popen.stdout is not None
        records = []
        while len([r for r in records if r.get("event") == "closed"]) < 1:
            line = proc.popen.stdout.readline()
            assert line, proc.stderr
            records.append(json.loads(line))
    for direction in ("upstream", "downstream"):
        data = [bytes.fromhex(r["hex"]) for r in records if r.get("direction") == direction]
        assert data == messages, records


def test_forward_frame_is_for_streams_only():
    result = run("forward", "127.0.0.1:0", "127.0.0.1:9", "--udp", "--frame", "line")
    assert result.returncode == 2


# -- --send templates --------------------------------------------------------------------------
@pytest.mark.parametrize("many", [[], ["-k", "--control", "none"]])
def test_send_templates_are_filled_for_each_message_sent(many):
    proc = Proc(
        "tcp-listen", "127.0.0.1:0", *many, "--send", "n={seq} {hex:41};", "--send", '{"x": 1}', "--repeat", "2"
    )
    with proc:
        port = proc.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
            expected = b'n=1 A;{"x": 1}n=3 A;{"x": 1}'
            assert read_exactly(client, len(expected)) == expected


def test_send_template_then_checksum_then_frame():
    proc = Proc(
        "tcp-listen", "127.0.0.1:0", "--send", "{seq}", "--repeat", "2", "--checksum", "sum8", "--frame", "len8"
    )
    with proc:
        port = proc.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
            assert read_to_eof(client) == b"\x021\x31\x022\x32"
        proc.wait(20)


def test_a_bad_send_template_is_a_usage_error():
    result = run("tcp-connect", "127.0.0.1:9", "--send", "{rand:999999}")
    assert result.returncode == 2
    assert b"random bytes" in result.stderr


def test_forward_max_frame_warns_and_shows_that_connection_per_read():
    target = serve_one(echo)
    args = ("forward", "127.0.0.1:0", f"127.0.0.1:{target}", "--frame", "len8", "--max-frame", "4")
    with Proc(*args, "--json") as proc:
        port = proc.wait_listening()
        small, big = b"\x03abc", b"\x0a0123456789"  # 3 bytes: a message; 10 > --max-frame 4
        with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
            client.sendall(small)
            assert read_exactly(client, 4) == small
            client.sendall(big)
            assert read_exactly(client, 11) == big
        records = []
        while not any(r.get("event") == "closed" for r in records):
            line = proc.popen.stdout.readline()
            assert line, proc.stderr
            records.append(json.loads(line))
    assert any("larger than --max-frame" in json.dumps(r) and "shown per read" in json.dumps(r) for r in records)
    upstream = [bytes.fromhex(r["hex"]) for r in records if r.get("direction") == "upstream"]
    assert upstream[0] == b"abc"  # a message within the limit: its payload
    assert b"".join(upstream[1:]) == big, records  # the oversized one: the bytes as they came, per read
