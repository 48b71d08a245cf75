"""Port lists and service names: pure values, no sockets.

Port lists are what `portscan` takes: `22`, `22,80,443`, `8000-8100`, `-`
(every port), open-ended `60000-` / `-1024` (the latter after `--` on a
command line, where it looks like an option), or any mix, comma-separated.
The parser names the part it cannot use, so a bad list is one clear line.

Service names come from the system services database (/etc/services, read
once), then a built-in table for the common ports a minimal system may not
list, else nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import NamedTuple

from socktool.net.address import MAX_PORT

ALL_PORTS = f"1-{MAX_PORT}"

# Names as the IANA registry (and so /etc/services) spells them, so output
# does not depend on whether the system table is there.
BUILTIN_SERVICES: dict[int, str] = {
    20: "ftp-data",
    21: "ftp",
    22: "ssh",
    23: "telnet",
    25: "smtp",
    53: "domain",
    69: "tftp",
    80: "http",
    88: "kerberos",
    110: "pop3",
    111: "sunrpc",
    119: "nntp",
    123: "ntp",
    135: "msrpc",
    139: "netbios-ssn",
    143: "imap",
    161: "snmp",
    179: "bgp",
    389: "ldap",
    443: "https",
    445: "microsoft-ds",
    465: "submissions",
    514: "shell",
    515: "printer",
    587: "submission",
    631: "ipp",
    636: "ldaps",
    873: "rsync",
    993: "imaps",
    995: "pop3s",
    1080: "socks",
    1433: "ms-sql-s",
    1521: "oracle",
    1883: "mqtt",
    2049: "nfs",
    2181: "zookeeper",
    2375: "docker",
    2376: "docker-s",
    3000: "ppp",
    3128: "squid",
    3306: "mysql",
    3389: "ms-wbt-server",
    5000: "upnp",
    5432: "postgresql",
    5672: "amqp",
    5900: "vnc",
    5984: "couchdb",
    6379: "redis",
    6443: "kubernetes",
    8000: "http-alt",
    8080: "http-alt",
    8443: "https-alt",
    8883: "secure-mqtt",
    9000: "cslistener",
    9092: "kafka",
    9200: "elasticsearch",
    9418: "git",
    11211: "memcache",
    27017: "mongodb",
}


# UDP where it differs from the TCP table, and the small services the UDP scan probes.
BUILTIN_UDP_SERVICES: dict[int, str] = {
    **BUILTIN_SERVICES,
    7: "echo",
    13: "daytime",
    19: "chargen",
    37: "time",
    67: "bootps",
    68: "bootpc",
    137: "netbios-ns",
    138: "netbios-dgm",
    162: "snmp-trap",
    500: "isakmp",
    514: "syslog",
    1900: "ssdp",
    5353: "mdns",
}


def _parse_one(text: str, part: str) -> int:
    if not (text.isascii() and text.isdigit()):
        port = service_port(text)
        if port is None:
            raise ValueError(
                f"{part!r} in the port list is not a port number or a known service name ({SERVICE_NAME_HINT})"
            )
        return port
    port = int(text)
    if not 1 <= port <= MAX_PORT:
        raise ValueError(f"port {port} in the port list is out of range (1-{MAX_PORT})")
    return port


def _parse_part(part: str) -> range:
    if part == "-":
        return range(1, MAX_PORT + 1)
    named = service_port(part) if not part[:1].isdigit() and part[:1] != "-" else None
    if named is not None:  # a name, dashes and all: http-alt
        return range(named, named + 1)
    low, dash, high = part.partition("-")
    if not dash:
        port = _parse_one(low, part)
        return range(port, port + 1)
    first = _parse_one(low, part) if low else 1
    last = _parse_one(high, part) if high else MAX_PORT
    if first > last:
        raise ValueError(f"port range {part!r} is reversed (did you mean {last}-{first}?)")
    return range(first, last + 1)


def parse_port_list(text: str) -> list[int]:
    """'22,80,8000-8100' → the ports, ascending, each once. ValueError names the bad part."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip():
        raise ValueError("empty port list")
    if "" in parts:
        raise ValueError(f"empty item in the port list {text!r}")
    ranges = [_parse_part(part) for part in parts]
    if len(ranges) == 1:
        return list(ranges[0])
    ports: set[int] = set()
    for span in ranges:
        ports.update(span)
    return sorted(ports)


class PortList(NamedTuple):
    """A parsed port list, as one value: Typer takes an option typed list[int] to be repeatable."""

    ports: list[int]


def parse_port_argument(text: str) -> PortList:
    return PortList(parse_port_list(text))


def parse_scan_host(text: str) -> str:
    """portscan's HOST: a name or an address, IPv6 with or without brackets, no port."""
    host = text.strip()
    if host.startswith("[") and "]" not in host:
        raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError("empty host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            name, _, port = text.rpartition(":")
            raise ValueError(f"{text!r}: give the host and the ports apart, e.g. portscan {name} {port}") from None
    return host


def read_services(path: str = "/etc/services", proto: str = "tcp") -> dict[int, str] | None:
    """port → name from a services(5) file; None when the file cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    names: dict[int, str] = {}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        port, _slash, kind = fields[1].partition("/")
        if kind == proto and port.isdigit():
            names.setdefault(int(port), fields[0])  # the first entry wins, as getservbyport's
    return names


class ServiceNames:
    """Service names for TCP (or UDP) ports: system database, then the built-in table.

    The services file is read once (a scan may name 65535 ports, and
    getservbyport re-reads the file on every call); where there is no file,
    each port is asked of getservbyport instead, which also covers other
    NSS sources.
    """

    def __init__(self, path: str = "/etc/services", builtin: dict[int, str] = BUILTIN_SERVICES, proto: str = "tcp"):
        self.path = path
        self.builtin = builtin
        self.proto = proto
        self._system: dict[int, str] | None = None
        self._loaded = False

    def _from_system(self, port: int) -> str | None:
        if not self._loaded:
            self._system = read_services(self.path, self.proto)
            self._loaded = True
        if self._system is not None:
            return self._system.get(port)
        try:
            return socket.getservbyport(port, self.proto)
        except (OSError, OverflowError):
            return None

    def __call__(self, port: int) -> str | None:
        return self._from_system(port) or self.builtin.get(port)


SERVICE_NAME_HINT = "use a number, or a name from /etc/services such as http or ssh"


def read_service_names(path: str = "/etc/services") -> dict[str, int] | None:
    """name (and alias) → port from a services(5) file, TCP entries first; None when unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    ports: dict[str, int] = {}
    for proto in ("tcp", "udp"):
        for line in lines:
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2:
                continue
            port, _slash, kind = fields[1].partition("/")
            if kind == proto and port.isascii() and port.isdigit():
                for name in (fields[0], *fields[2:]):
                    ports.setdefault(name.lower(), int(port))
    return ports


_service_names: dict[str, int] | None = None  # the system's names over the built-in ones, once read
_services_file = True  # whether the services file could be read


def service_port(name: str, path: str = "/etc/services") -> int | None:
    """The port a service name stands for (`http` → 80): the system's services database,
    then the built-in tables; None for a name neither knows. Read once, on first use."""
    global _service_names, _services_file
    name = name.strip().lower()
    if not name or not name.isascii() or not (name[0].isalpha() or name[0] == "_"):
        return None
    if _service_names is None:
        system = read_service_names(path)
        _services_file = system is not None
        builtin = {service: port for port, service in (*BUILTIN_UDP_SERVICES.items(), *BUILTIN_SERVICES.items())}
        _service_names = {**builtin, **(system or {})}
    if name in _service_names:
        return _service_names[name]
    if not _services_file:  # no file: NSS may know other sources
        for proto in ("tcp", "udp"):
            try:
                return socket.getservbyname(name, proto)
            except OSError:
                pass
    return None
