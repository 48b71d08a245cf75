"""Service names as ports (`HOST:http`, `portscan host ssh,https`): the system's
services database, with the built-in table as fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import one_line_error, run


def test_tcp_connect_resolves_a_service_name():
    result = run("tcp-connect", "-z", "-w", "1s", "127.0.0.1:http")
    # Whatever listens on port 80 here, the connect went to port 80.
    if result.returncode != 0:
        assert "cannot connect to 127.0.0.1:80" in one_line_error(result.stderr)


def test_an_unknown_name_is_a_usage_error_with_a_hint():
    result = run("tcp-connect", "127.0.0.1:no-such-service")
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert "port 'no-such-service' is not a number or a known service name" in line
    assert "/etc/services" in line


@pytest.mark.parametrize("port", ["٤٠١٥٩", "²", "\uff18\uff10"])
def test_non_ascii_digits_are_neither_ports_nor_names(port):
    result = run("tcp-connect", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert "is not a number or a known service name" in one_line_error(result.stderr)


def test_portscan_takes_names_in_the_port_list():
    result = run("portscan", "127.0.0.1", "ssh,https,http-alt", "--all", "--json", "-w", "300ms")
    assert result.returncode == 0, result.stderr.decode()
    ports = [json.loads(line)["port"] for line in result.stdout.decode().splitlines()[:-1]]
    assert ports == [22, 443, 8080]


def test_names_in_the_system_file_and_its_aliases(tmp_path: Path):
    from socktool.net.ports import read_service_names

    services = tmp_path / "services"
    services.write_text("# test\nwebthing 45678/tcp web-thing # comment\nudponly 45679/udp\nbad\n")
    assert read_service_names(str(services)) == {"webthing": 45678, "web-thing": 45678, "udponly": 45679}
    assert read_service_names(str(tmp_path / "missing")) is None


def test_the_built_in_table_backs_up_the_system_file():
    from socktool.net.ports import service_port

    assert service_port("HTTP") == 80
    assert service_port("postgresql") == 5432
    assert service_port("8080") is None and service_port("") is None
