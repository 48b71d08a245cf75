"""Property tests (hypothesis) for the pure parsers and encoders that
tests/test_values.py does not already cover: port numbers and port lists, the
portscan host, CIDR blocks and the access policy, JSON event records, the
time-server's replies, datagram lines, and the text that reaches a terminal.

Each states an invariant (a round trip, a bound, an order) and that bad
input only ever raises the one documented exception type.
"""

from __future__ import annotations

import ipaddress
import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socktool.net import events as ev
from socktool.net.access import AccessPolicy, parse_cidr
from socktool.net.address import MAX_PORT, Endpoint, format_hostport, parse_endpoint, parse_port, sockaddr_text
from socktool.net.errors import UsageError
from socktool.net.ports import parse_port_list, parse_scan_host
from socktool.net.timeserver import MAX_REPLY, RFC868_OFFSET, decode_rfc868, format_reply, rfc868_time
from socktool.net.udp import MAX_DATAGRAM
from socktool.net.udpguard import reply_limit
from socktool.net.udpsend import decode_hex_line, line_datagram
from socktool.values import (
    MAX_DURATION,
    HexDecoder,
    LineSplitter,
    format_duration,
    format_size,
    parse_duration,
    printable,
)
from socktool.view.jsonl import JsonLines, event_record
from socktool.view.render import escape_text
from socktool.view.status import served_line

ports = st.integers(1, MAX_PORT)
port_sets = st.sets(ports, min_size=1, max_size=60)


def _as_ranges(values: set[int]) -> list[str]:
    """The shortest port-list items for a set: runs become 'a-b'."""
    items: list[str] = []
    ordered = sorted(values)
    start = prev = ordered[0]
    for port in [*ordered[1:], None]:
        if port is not None and port == prev + 1:
            prev = port
            continue
        items.append(str(start) if start == prev else f"{start}-{prev}")
        if port is not None:
            start = prev = port
    return items


# -- ports and port lists --------------------------------------------------------
@given(st.integers(-100_000, 200_000), st.booleans())
def test_a_port_number_parses_exactly_when_it_is_in_range(number, allow_zero):
    low = 0 if allow_zero else 1
    if low <= number <= MAX_PORT:
        assert parse_port(str(number), allow_zero=allow_zero) == number
    else:
        with pytest.raises(ValueError):
            parse_port(str(number), allow_zero=allow_zero)


@given(port_sets, st.randoms(use_true_random=False))
def test_port_list_round_trips_whatever_the_order_and_repeats(values, rng):
    items = _as_ranges(values)
    items += rng.sample(items, k=min(3, len(items)))  # repeats change nothing
    rng.shuffle(items)
    spaced = [f" {item} " if rng.random() < 0.3 else item for item in items]
    assert parse_port_list(",".join(spaced)) == sorted(values)


@given(ports, ports)
def test_a_range_is_every_port_between_or_a_named_reversal(a, b):
    text = f"{a}-{b}"
    if a <= b:
        assert parse_port_list(text) == list(range(a, b + 1))
    else:
        with pytest.raises(ValueError, match="reversed"):
            parse_port_list(text)


@given(ports)
def test_open_ended_ranges_reach_the_end_of_the_port_space(port):
    assert parse_port_list(f"{port}-") == list(range(port, MAX_PORT + 1))
    assert parse_port_list(f"-{port}") == list(range(1, port + 1))


@settings(max_examples=300)
@given(st.text(alphabet=string.digits + ",- x\t" + "٣", max_size=25))
def test_port_list_gives_sorted_unique_ports_or_a_value_error(text):
    try:
        result = parse_port_list(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert result == sorted(set(result))
    assert all(1 <= port <= MAX_PORT for port in result)


@given(st.text(max_size=40))
def test_scan_host_is_a_value_error_or_a_bare_host(text):
    try:
        host = parse_scan_host(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert host and host == host.strip()


@given(st.ip_addresses(v=6))
def test_scan_host_takes_ipv6_with_and_without_brackets(address):
    assert parse_scan_host(str(address)) == parse_scan_host(f"[{address}]") == str(address)


# -- addresses in and out -----------------------------------------------------------
@given(st.ip_addresses(), ports)
def test_a_printed_peer_address_parses_back_to_the_same_endpoint(address, port):
    text = sockaddr_text((str(address), port))
    assert parse_endpoint(text) == Endpoint(str(address), port)
    assert text == format_hostport(str(address), port)


@given(st.ip_addresses(v=4), ports)
def test_ipv4_mapped_peers_print_as_plain_ipv4(address, port):
    assert sockaddr_text((f"::ffff:{address}", port, 0, 0)) == f"{address}:{port}"


@given(st.integers(0, MAX_PORT), st.booleans())
def test_listener_port_forms_round_trip(port, colon):
    assert parse_endpoint(f"{':' if colon else ''}{port}", listener=True) == Endpoint(None, port)


@given(st.text(min_size=1, max_size=60))
def test_unix_paths_are_taken_as_given(path):
    assert parse_endpoint(f"unix:{path}") == Endpoint(path=path)


@given(st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_a_unix_peer_path_always_prints_without_control_characters(path):
    assert sockaddr_text(path).isprintable()
    assert sockaddr_text(path.encode("utf-8", "surrogateescape")).isprintable()


# -- CIDR blocks and who may connect ---------------------------------------------------
networks = st.one_of(
    st.builds(lambda a, n: ipaddress.ip_network(f"{a}/{n}", strict=False), st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda a, n: ipaddress.ip_network(f"{a}/{n}", strict=False), st.ip_addresses(v=6), st.integers(0, 128)),
)


@given(networks)
def test_cidr_round_trips(network):
    assert parse_cidr(str(network)) == network
    assert parse_cidr(f" {network} ") == network


@given(st.ip_addresses())
def test_a_bare_address_is_a_single_host_block(address):
    assert parse_cidr(str(address)).num_addresses == 1


@given(st.text(max_size=45))
def test_cidr_parser_only_ever_raises_value_error(text):
    try:
        parse_cidr(text)
    except ValueError as exc:
        assert "CIDR" in str(exc)


MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _as_ipv4(item):
    """The IPv4 meaning of an IPv4-mapped address or block (::ffff:a.b.c.d), else the item."""
    if isinstance(item, ipaddress.IPv6Address) and item in MAPPED:
        return item.ipv4_mapped
    if isinstance(item, ipaddress.IPv6Network) and item.subnet_of(MAPPED):
        return ipaddress.ip_network(f"{item.network_address.ipv4_mapped}/{item.prefixlen - 96}")
    return item


def _matches(address, networks) -> bool:
    address = _as_ipv4(address)
    return any(address in net for net in map(_as_ipv4, networks) if net.version == address.version)


mapped_networks = st.builds(
    lambda a, n: ipaddress.ip_network(f"::ffff:{a}/{n}", strict=False), st.ip_addresses(v=4), st.integers(96, 128)
)
rules = st.lists(networks | mapped_networks, max_size=3)
clients = st.ip_addresses() | st.ip_addresses(v=4).map(lambda a: ipaddress.ip_address(f"::ffff:{a}"))


@settings(max_examples=300)
@given(clients, rules, rules)
def test_deny_wins_then_allow_lists_who_may_connect(address, allow, deny):
    policy = AccessPolicy(tuple(allow), tuple(deny))
    expected = None
    if _matches(address, deny):
        expected = "denied by --deny"
    elif allow and not _matches(address, allow):
        expected = "not in --allow"
    assert policy.refusal(str(address)) == expected


@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_a_rule_in_ipv4_mapped_form_is_the_ipv4_rule(address, prefix):
    mapped = parse_cidr(f"::ffff:{address}/{96 + prefix}")
    plain = parse_cidr(f"{address}/{prefix}")
    for client in (str(address), f"::ffff:{address}"):
        assert AccessPolicy(deny=(mapped,)).refusal(client) == AccessPolicy(deny=(plain,)).refusal(client)
        assert AccessPolicy(deny=(mapped,)).refusal(client) == "denied by --deny"


@given(st.ip_addresses(v=4), st.lists(networks, max_size=3), st.lists(networks, max_size=3))
def test_an_ipv4_client_on_a_dual_stack_socket_meets_the_ipv4_rules(address, allow, deny):
    policy = AccessPolicy(tuple(allow), tuple(deny))
    assert policy.refusal(f"::ffff:{address}") == policy.refusal(str(address))


@given(st.ip_addresses(v=6), st.sampled_from(["lo", "eth0", "1"]))
def test_a_scoped_ipv6_client_is_judged_by_its_address(address, scope):
    policy = AccessPolicy(deny=(ipaddress.ip_network(f"{address}/128"),))
    assert policy.refusal(f"{address}%{scope}") == "denied by --deny"


# -- JSON event records -----------------------------------------------------------------
peers = st.sampled_from(["127.0.0.1:5000", "[::1]:80", "unix:(client)"])
texts = st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))
events = st.one_of(
    st.builds(ev.Data, st.integers(1, 10**6), peers, st.sampled_from([ev.SENT, ev.RECEIVED]), st.binary(max_size=300)),
    st.builds(ev.Datagram, peers, st.sampled_from([ev.SENT, ev.RECEIVED]), st.binary(max_size=300)),
    st.builds(ev.Closed, st.integers(1, 10**6), peers, texts, st.integers(0), st.integers(0), st.floats(0, 1e6)),
    st.builds(ev.Listening, texts, st.sampled_from(["tcp", "udp", "unix datagram"])),
    st.builds(ev.Rejected, peers, texts),
    st.builds(ev.Notice, texts, st.booleans()),
    st.builds(
        ev.Served,
        st.sampled_from(["tcp", "udp"]),
        peers,
        st.integers(0),
        st.integers(0),
        st.integers(1),
        st.none() | st.binary(max_size=100),
        st.text(max_size=30),
    ),
    st.builds(ev.Stats, st.integers(0), st.integers(0), st.floats(0, 1e6), st.integers(0), st.integers(0)),
)


def _written_lines(event: ev.Event) -> list[bytes]:
    written: list[bytes] = []
    JsonLines(written.append)(event)
    return b"".join(written).splitlines(keepends=True)


@settings(max_examples=300)
@given(events)
def test_every_event_is_one_json_object_on_one_line(event):
    lines = _written_lines(event)
    assert len(lines) == 1 and lines[0].endswith(b"\n")
    record = json.loads(lines[0])
    expected = json.loads(json.dumps(event_record(event), ensure_ascii=True))
    assert isinstance(record.pop("ts"), float)
    expected.pop("ts")
    assert record == expected


@given(
    st.sampled_from([ev.Data(3, "127.0.0.1:1", ev.RECEIVED, b""), ev.Datagram("[::1]:9", ev.SENT, b"")]),
    st.binary(max_size=500),
)
def test_payload_records_carry_the_bytes_exactly(template, data):
    record = json.loads(_written_lines(template._replace(data=data))[0])
    assert bytes.fromhex(record["hex"]) == data
    assert record["size"] == len(data)
    if record["text"] is None:
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
    else:
        assert record["text"].encode("utf-8") == data


@given(texts)
def test_a_name_with_undecodable_bytes_is_written_as_json_escapes(name):
    record = json.loads(_written_lines(ev.Listening(name))[0])
    assert record["address"] == name


# -- the time-server's replies ------------------------------------------------------------
moments = st.floats(0, 4_000_000_000, allow_nan=False)


@settings(max_examples=300)
@given(st.binary(max_size=2000), moments, st.booleans())
def test_time_reply_is_bounded_and_keeps_the_request_line_end(request, now, utc):
    reply = format_reply(request, now, utc=utc)
    assert 0 < len(reply.data) <= min(MAX_REPLY, reply_limit(len(request)))
    for end in (b"\r\n", b"\n"):
        if request.endswith(end):
            assert reply.data.endswith(end)
            break
    if reply.error:
        assert reply.data.startswith(b"error: ") and len(reply.data) <= 200


@given(st.integers(0, (1 << 32) - 1 - RFC868_OFFSET))
def test_rfc868_round_trips_over_its_era(unix_seconds):
    data = rfc868_time(unix_seconds + 0.75)
    assert len(data) == 4
    assert decode_rfc868(data) == unix_seconds


@given(st.binary(max_size=200))
def test_served_status_line_shows_any_request_escaped_and_cut(request):
    line = served_line(ev.Served("udp", "127.0.0.1:9", 5, 5, 1, request, "the format is not UTF-8 text"))
    assert line.isprintable()
    shown = request if len(request) <= 60 else request[:57] + b"..."
    assert f"format '{escape_text(shown)}'" in line


# -- datagram lines ---------------------------------------------------------------------------
@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=10), st.booleans(), st.integers(1, 9))
def test_lines_split_alike_in_any_chunking(lines, crlf, step):
    end = b"\r\n" if crlf else b"\n"
    data = b"".join(line + end for line in lines)
    splitter = LineSplitter()
    got = []
    for start in range(0, len(data), step):
        got += splitter.feed(data[start : start + step])
    got += splitter.close()
    expected = [line[:-1] if crlf is False and line.endswith(b"\r") else line for line in lines]
    assert got == expected


@given(st.binary(max_size=100))
def test_hex_lines_decode_or_are_a_usage_error(line):
    try:
        data = decode_hex_line(line)
    except UsageError as exc:
        assert exc.exit_code == 2 and "hex input" in str(exc)
        return
    assert len(data) * 2 <= len(line)


@given(st.integers(0, 200))
def test_a_line_over_the_datagram_limit_is_refused_not_cut(extra):
    line = b"x" * (MAX_DATAGRAM - 100 + extra)
    if len(line) <= MAX_DATAGRAM:
        assert line_datagram(line, False) == line
    else:
        with pytest.raises(UsageError, match="too large"):
            line_datagram(line, False)


@given(st.binary(max_size=300))
def test_hex_decoder_only_ever_raises_value_error(data):
    decoder = HexDecoder()
    try:
        decoder.feed(data)
        decoder.close()
    except ValueError as exc:
        assert str(exc).startswith("hex input")


# -- durations and sizes as people read them ------------------------------------------------
@given(st.text(max_size=20))
def test_duration_parser_gives_a_bounded_number_or_a_value_error(text):
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert text.strip() == "" or repr(text) in str(exc)
        return
    assert 0 <= seconds <= MAX_DURATION


@given(st.floats(0, MAX_DURATION))
def test_formatted_durations_are_short_and_plain(seconds):
    text = format_duration(seconds)
    assert text.isprintable() and len(text) <= 12


@given(st.integers(0, 1 << 50), st.integers(0, 1 << 50))
def test_formatted_sizes_keep_their_order(a, b):
    units = ["B", "KiB", "MiB", "GiB", "TiB"]

    def value(text: str) -> float:
        number, unit = text.split()
        return float(number) * 1024 ** units.index(unit)

    low, high = sorted((a, b))
    assert value(format_size(low)) <= value(format_size(high)) * 1.001 + 1


# -- what reaches a terminal -------------------------------------------------------------------
@given(texts)
def test_printable_text_has_no_control_characters_and_leaves_plain_text_alone(text):
    shown = printable(text)
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text
