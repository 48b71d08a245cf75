"""netcat habits: what a nc user types, read as the socktool form it means, or answered
with a one-line hint that names that form.

Rules:
- `HOST PORT` (two arguments) is `HOST:PORT` where a command takes an address to
  connect to or listen on, when HOST has no port of its own and PORT is a number
  (an IPv6 literal gets its brackets). With udp-send the message is then the
  third argument: `udp-send localhost 9999 hi`.
- a port range where one port is taken (`tcp-connect -z host 20-30`) is a scan:
  the hint names `socktool portscan`.
- an unknown option suggests only a close match (or the real equivalent), and
  nc's own options (`-l`, `-p` on a listener, `-u`, `-e`, `-N`, ...) get a hint.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

JOINS_HOST_PORT = ("tcp-connect", "tcp-listen", "udp-send", "udp-listen")
_PORT = re.compile(r"[0-9]{1,5}")
_RANGE = re.compile(r"[0-9]{1,5}-[0-9]{1,5}")

# nc's options, per socktool command ("*": any), and what to type instead.
NC_OPTIONS: dict[str, dict[str, str]] = {
    "*": {
        "-l": "listening is a command of its own: socktool tcp-listen PORT (udp-listen PORT for UDP)",
        "-u": "UDP has commands of its own: socktool udp-send HOST:PORT MESSAGE, socktool udp-listen PORT",
        "-e": "run a program per connection with: socktool tcp-listen -k --exec CMD PORT",
        "-c": "run a program per connection with: socktool tcp-listen -k --exec CMD PORT",
        "-N": "socktool half-closes at the end of stdin already (--no-shutdown turns it off)",
        "-n": "numeric addresses are never looked up; there is nothing to turn off",
        "-x": "connect through a proxy with --proxy URL",
        "-X": "connect through a proxy with --proxy socks5://HOST:PORT or http://HOST:PORT",
    },
    "tcp-listen": {"-p": "the port is an argument: socktool tcp-listen PORT (nc -l -p PORT)"},
    "udp-listen": {"-p": "the port is an argument: socktool udp-listen PORT (nc -u -l -p PORT)"},
}

# Options with another name here (the same meaning), per command.
EQUIVALENTS: dict[str, dict[str, str]] = {
    "udp-send": {"--send": "MESSAGE (the argument after HOST:PORT)", "--expect": "--wait"},
    "udp-listen": {"--keep-open": "(nothing: udp-listen serves every sender until it is stopped)"},
    "tcp-connect": {"--count": "--repeat", "--wait": "--expect REGEX or -w DUR"},
    "tcp-listen": {"--count": "--repeat"},
}


def join_host_port(command: str, args: list[str], takes_value: Iterable[str]) -> list[str]:
    """`HOST PORT` → `HOST:PORT` for the commands that take one address (see the rules)."""
    if command not in JOINS_HOST_PORT:
        return args
    valued = set(takes_value)
    positions = _positionals(args, valued)
    if len(positions) < 2:
        return args
    first, second = positions[0], positions[1]
    host, port = args[first], args[second]
    if _RANGE.fullmatch(port) and not _has_port(host):
        raise RangeGiven(f"{host} {port}")
    if _has_port(host) or host.startswith("unix:") or _PORT.fullmatch(host) or not _PORT.fullmatch(port):
        return args
    joined = f"[{host}]:{port}" if _is_ipv6(host) else f"{host}:{port}"
    return [*args[:first], joined, *args[first + 1 : second], *args[second + 1 :]]


class RangeGiven(Exception):
    """A port range where one port is taken."""


def range_hint(text: str) -> str:
    host, _, ports = text.replace(":", " ").rpartition(" ")
    return f"a port range is a scan: socktool portscan {host} {ports}"


def _positionals(args: list[str], valued: set[str]) -> list[int]:
    found: list[int] = []
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "--":
            found += range(index + 1, len(args))
            break
        elif arg.startswith("-") and arg != "-":  # (-4 and -6 are options here, not numbers)
            skip = "=" not in arg and arg in valued
        else:
            found.append(index)
    return found


def _has_port(host: str) -> bool:
    if host.startswith("["):
        return "]:" in host
    return ":" in host and not _is_ipv6(host)


def _is_ipv6(text: str) -> bool:
    if ":" not in text:
        return False
    import ipaddress

    try:
        return isinstance(ipaddress.ip_address(text.split("%", 1)[0]), ipaddress.IPv6Address)
    except ValueError:
        return False


def no_such_option(command: str, option: str, known: Iterable[str]) -> str:
    """The message for an unknown option: a hint for nc's options, the real equivalent,
    or a close match; never a far-fetched guess."""
    hint = NC_OPTIONS.get(command, {}).get(option) or NC_OPTIONS["*"].get(option)
    if hint is not None:
        return f"No such option: {option}; {hint}"
    equivalent = EQUIVALENTS.get(command, {}).get(option)
    if equivalent is not None:
        return f"No such option: {option}; here it is {equivalent}"
    import difflib

    close = difflib.get_close_matches(option, [name for name in known if name.startswith("--")], n=1, cutoff=0.8)
    return f"No such option: {option}" + (f"; did you mean {close[0]}?" if close else "")


def endpoint_hint(text: str) -> str | None:
    """A URL or a port range where one HOST:PORT is taken: the form meant (url_hint, range_hint)."""
    hint = url_hint(text)
    if hint is None:
        host, _, port = text.rpartition(":")
        if host and _RANGE.fullmatch(port):
            hint = range_hint(text)
    return hint


def url_hint(text: str) -> str | None:
    """A URL where an address is taken: the HOST:PORT it names."""
    match = re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*://([^/:]+|\[[^]]+\])(?::([0-9]+))?(/.*)?", text)
    if match is None:
        return None
    scheme = text.split("://", 1)[0].lower()
    port = match.group(2) or {"http": "80", "https": "443"}.get(scheme, "PORT")
    return f"a URL: socktool takes HOST:PORT, here {match.group(1)}:{port}"


def quiet_hint(args: list[str]) -> str:
    """nc's `-q SECS` given to a command that failed to parse: what socktool's -q is."""
    for option, value in itertools.pairwise(args):
        if option == "-q" and _PORT.fullmatch(value):
            return "-q is --quiet here; nc's -q SECS (quit SECS after the end of stdin) is --quit-after SECS"
    return ""
