"""The pure parsers and encoders: addresses, durations, hex input, CRLF, rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socktool.net.address import Endpoint, parse_endpoint
from socktool.values import CrlfEncoder, HexDecoder, decode_hex, format_size, parse_duration, to_crlf
from socktool.view.render import escape_text, escaped_lines, hexdump_lines


@pytest.mark.parametrize(
    ("text", "listener", "expected"),
    [
        ("localhost:80", False, Endpoint("localhost", 80)),
        ("127.0.0.1:65535", False, Endpoint("127.0.0.1", 65535)),
        ("[::1]:8080", False, Endpoint("::1", 8080)),
        ("[fe80::1%lo]:22", False, Endpoint("fe80::1%lo", 22)),
        ("unix:/tmp/a.sock", False, Endpoint(path="/tmp/a.sock")),
        ("8898", True, Endpoint(None, 8898)),
        (":0", True, Endpoint(None, 0)),
        ("0.0.0.0:0", True, Endpoint("0.0.0.0", 0)),
        ("[::]:9000", True, Endpoint("::", 9000)),
        ("http", True, Endpoint(None, 80)),  # a listener's lone port, as a service name
        (":http", True, Endpoint(None, 80)),
    ],
)
def test_addresses_users_write_are_understood(text, listener, expected):
    assert parse_endpoint(text, listener=listener) == expected


@pytest.mark.parametrize(
    ("text", "listener", "complaint"),
    [
        ("host:0", False, "out of range"),
        ("host:65536", False, "out of range"),
        ("host:-1", False, "not a number"),
        ("host:htpp", False, "not a number or a known service name"),
        ("host", False, "expected HOST:PORT"),
        ("8898", False, "expected HOST:PORT"),
        (":80", False, "missing host"),
        ("::1:80", False, "brackets"),
        ("[::1:80", False, "missing ']'"),
        ("[]:80", False, "empty IPv6"),
        ("[nope]:80", False, "not an IPv6 address"),
        ("[::1]80", False, "expected [IPV6]:PORT"),
        ("host:", False, "missing port"),
        ("unix:", False, "needs a path"),
        ("65536", True, "out of range"),
        ("htpp", True, "'htpp': expected [HOST:]PORT .PORT: a number, or a service name such as http."),
    ],
)
def test_bad_addresses_say_what_is_wrong(text, listener, complaint):
    with pytest.raises(ValueError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        parse_endpoint(text, listener=listener)


@given(st.integers(1, 65535), st.sampled_from(["example.test", "127.0.0.1", "::1", "fe80::2"]))
def test_endpoint_text_round_trips(port, host):
    endpoint = Endpoint(host, port)
    assert parse_endpoint(str(endpoint)) == endpoint


@given(st.text(max_size=30))
def test_address_parser_only_ever_raises_value_error(text):
    for listener in (False, True):
        try:
            parse_endpoint(text, listener=listener)
        except ValueError:
            pass


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1.5", 1.5), ("1m", 60.0), ("0", 0.0), ("1h", 3600.0), (".5s", 0.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1", "-250ms", "1x", "1.2.3", "ms", "5 minutes"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.floats(0, 1e4, allow_nan=False), st.sampled_from(["ms", "s", "m", ""]))
def test_duration_scales_by_unit(number, unit):
    text = f"{number:f}{unit}"
    factor = {"ms": 0.001, "s": 1, "m": 60, "": 1}[unit]
    assert parse_duration(text) == pytest.approx(float(f"{number:f}") * factor)


def test_hex_input_allows_whitespace_between_bytes():
    assert decode_hex("de ad\nbe\tEF") == b"\xde\xad\xbe\xef"


@pytest.mark.parametrize("text", ["abc", "zz", "de a d", "0x41"])
def test_bad_hex_input(text):
    with pytest.raises(ValueError, match="hex input"):
        decode_hex(text)


@given(st.binary(max_size=200), st.integers(1, 7), st.booleans())
def test_hex_round_trips_in_any_chunking(data, step, spaced):
    text = (data.hex(" ") if spaced else data.hex()).encode()
    decoder = HexDecoder()
    out = b"".join(decoder.feed(text[i : i + step]) for i in range(0, len(text), step))
    decoder.close()
    assert out == data


@given(st.binary(max_size=200), st.integers(1, 7))
def test_crlf_translation_is_chunking_independent(data, step):
    encoder = CrlfEncoder()
    chunked = b"".join(encoder.feed(data[i : i + step]) for i in range(0, len(data), step))
    assert chunked == to_crlf(data)
    assert b"\n" not in chunked.replace(b"\r\n", b"")
    assert chunked.replace(b"\r\n", b"\n") == data.replace(b"\r\n", b"\n")


def test_crlf_keeps_existing_crlf():
    assert to_crlf(b"a\nb\r\nc") == b"a\r\nb\r\nc"


@given(st.binary(max_size=300))
def test_escaped_text_has_no_control_characters(data):
    text = escape_text(data)
    assert all(ch.isprintable() for ch in text)
    for line in escaped_lines(data):
        assert all(ch.isprintable() for ch in line)


def test_escaped_text_shows_control_bytes_as_escapes():
    assert escape_text(b"hi\x1b[31m\r\n\x00\xff caf\xc3\xa9") == "hi\\x1b[31m\\r\\n\\0\\xff café"


@given(st.binary(max_size=100))
def test_hexdump_round_trips(data):
    lines = hexdump_lines(data)
    assert len(lines) == (len(data) + 15) // 16
    recovered = b"".join(bytes.fromhex(line[10:58].replace("  ", " ")) for line in lines)
    assert recovered == data
    assert all(ch.isprintable() for line in lines for ch in line)


def test_sizes_read_like_a_person_writes_them():
    assert format_size(512) == "512 B"
    assert format_size(3500) == "3.4 KiB"
    assert format_size(5 * 1024 * 1024) == "5.0 MiB"
