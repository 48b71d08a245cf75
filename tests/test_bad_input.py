"""Bad input to every command, table-driven: the documented exit code and one
clear line on stderr naming what was wrong, never a traceback.

Exit 2 is a usage error (a bad option, address, port, duration, input); exit 1
a failure met at run time (refused, unresolvable, port in use, timed out).
Cases already pinned down elsewhere (tests/test_tcp_errors.py and the
per-command files) are not repeated here; this table adds the rest, for
every command.

Unresolvable names are ones glibc rejects without asking DNS
('nonexistent!.invalid'), so no query leaves the machine.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import free_port, one_line_error, run, run_here

NO_DNS = "nonexistent!.invalid"
TOO_LONG = "99999999999999999999"  # seconds: more than any wait can take


@pytest.fixture(scope="module")
def held():
    """Ports held by this process: a TCP listener that accepts nothing (clients
    queue up in its backlog) and bound UDP sockets, on IPv4 and IPv6 loopback."""
    tcp4 = socket.create_server(("127.0.0.1", 0), backlog=64)
    tcp6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    udp4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp4.bind(("127.0.0.1", 0))
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp6.bind(("::1", 0))
    sockets = (tcp4, tcp6, udp4, udp6)
    yield {
        "tcp": tcp4.getsockname()[1],
        "tcp6": tcp6.getsockname()[1],
        "udp": udp4.getsockname()[1],
        "udp6": udp6.getsockname()[1],
        "free": free_port(),
    }
    for sock in sockets:
        sock.close()


def case(args: str | list[str], code: int, complaint: str, *, stdin: bytes | None = None, id: str | None = None):
    argv = args.split() if isinstance(args, str) else args
    return pytest.param(argv, stdin, code, complaint, id=id or " ".join(argv)[:60])


CASES = [
    # -- tcp-connect ---------------------------------------------------------
    case("tcp-connect 127.0.0.1:-1", 2, "port '-1'"),
    case("tcp-connect 127.0.0.1:htpp", 2, "port 'htpp' is not a number or a known service name"),
    case("tcp-connect 127.0.0.1:", 2, "missing port"),
    case("tcp-connect [::1", 2, "missing ']'"),
    case("tcp-connect [::1]", 2, "expected [IPV6]:PORT"),
    case("tcp-connect []:80", 2, "empty IPv6 address"),
    case("tcp-connect fe80::1:80", 2, "put an IPv6 address in brackets"),
    case("tcp-connect :80", 2, "missing host"),
    case("tcp-connect unix:", 2, "needs a path"),
    case("tcp-connect -w -1s 127.0.0.1:80", 2, "duration must not be negative"),
    case("tcp-connect -w 5x 127.0.0.1:80", 2, "not a duration: '5x'"),
    case(["tcp-connect", "-w", TOO_LONG, "127.0.0.1:80"], 2, "duration is too long"),
    case("tcp-connect -i 0 127.0.0.1:80", 2, "'--idle-timeout': duration must be more than zero"),
    case("tcp-connect --interval -1 127.0.0.1:80", 2, "'--interval': duration must not be negative"),
    case("tcp-connect --repeat -3 127.0.0.1:80", 2, "'--repeat': must be at least 1, got -3"),
    case("tcp-connect --repeat many 127.0.0.1:80", 2, "'many' is not a whole number"),
    case("tcp-connect -p 0 127.0.0.1:80", 2, "'--source-port': port 0 is out of range"),
    case("tcp-connect -p 65536 127.0.0.1:80", 2, "port 65536 is out of range"),
    case("tcp-connect --hex-input --send 4g 127.0.0.1:80", 2, "'g' at offset 1 is not a hex digit"),
    case("tcp-connect --zero=yes 127.0.0.1:80", 2, "'--zero' does not take a value"),
    case("tcp-connect 127.0.0.1:80 -w", 2, "'-w' requires an argument"),
    case("tcp-connect 127.0.0.1:80 extra", 2, "unexpected extra argument"),
    case("tcp-connect --hex-input 127.0.0.1:{tcp}", 2, "invalid stdin: hex input: odd number", stdin=b"414"),
    case("tcp-connect --hex-input 127.0.0.1:{tcp}", 2, "'z' at offset 3 is not a hex digit", stdin=b"41 z1"),
    case("tcp-connect -z 127.0.0.1:{free}", 1, "connection refused"),
    case("tcp-connect unix:/nonexistent-dir/x.sock", 1, "no such file or directory"),
    case(
        f"tcp-connect -s {NO_DNS} 127.0.0.1:{{tcp}}",
        1,
        f"cannot use source address '{NO_DNS}': name or service not known",
    ),
    case("tcp-connect -6 127.0.0.1:80", 1, "no IPv6 address"),
    # -- tcp-listen ------------------------------------------------------------
    case("tcp-listen -- -1", 2, "'-1': expected [HOST:]PORT"),
    case("tcp-listen abc", 2, "'abc': expected [HOST:]PORT"),
    case("tcp-listen 127.0.0.1:65536", 2, "port 65536 is out of range (0-65535)"),
    case("tcp-listen", 2, "Missing argument '[HOST:]PORT'"),
    case("tcp-listen -k --max-clients 0 0", 2, "'--max-clients': must be at least 1, got 0"),
    case("tcp-listen --deny bogus 0", 2, "'bogus' is not an IP address or CIDR block"),
    case("tcp-listen --allow ::1/129 0", 2, "'::1/129' is not an IP address"),
    case("tcp-listen --allow 10.0.0.0/33 0", 2, "'10.0.0.0/33' is not an IP address"),
    case("tcp-listen -w 0 0", 2, "'--timeout': duration must be more than zero"),
    case(["tcp-listen", "--exec", "", "0"], 2, "'--exec': empty command"),
    case(["tcp-listen", "--exec", "cat 'unclosed", "0"], 2, "'--exec': no closing quotation"),
    case("tcp-listen --exec cat --broker 0", 2, "--exec and --broker cannot be used together"),
    case("tcp-listen unix:/etc/passwd", 1, "unix:/etc/passwd: the path exists and is not a socket"),
    case("tcp-listen unix:/nonexistent-dir/x.sock", 1, "no such file or directory"),
    case("tcp-listen [::1]:{tcp6}", 1, "address already in use (another process holds tcp port"),
    case("tcp-listen 192.0.2.1:0", 1, "not an address of this host"),
    case(f"tcp-listen {NO_DNS}:0", 1, f"cannot resolve '{NO_DNS}'"),
    case("tcp-listen -q -w 200ms 127.0.0.1:0", 1, "no client connected to 127.0.0.1:"),
    # -- udp-send --------------------------------------------------------------
    case("udp-send 127.0.0.1:0 x", 2, "port 0 is out of range (1-65535)"),
    case("udp-send [::1] x", 2, "expected [IPV6]:PORT"),
    case("udp-send --count 0 127.0.0.1:9 x", 2, "'--count' / '--repeat': must be at least 1, got 0"),
    case("udp-send --count -1 127.0.0.1:9 x", 2, "'--count' / '--repeat': must be at least 1, got -1"),
    case("udp-send --ttl 256 127.0.0.1:9 x", 2, "'--ttl': must be at most 255"),
    case("udp-send --ttl 0 127.0.0.1:9 x", 2, "'--ttl': must be at least 1"),
    case("udp-send --timeout 0 127.0.0.1:9 x", 2, "'--timeout' / '-w': duration must be more than zero"),
    case(["udp-send", "--interval", TOO_LONG, "--count", "2", "127.0.0.1:9", "x"], 2, "duration is too long"),
    case("udp-send --lines 127.0.0.1:9 x", 2, "--lines splits stdin"),
    case("udp-send --hex-input --lines 127.0.0.1:{udp}", 2, "hex", stdin=b"41\n4\n"),
    case("udp-send --lines 127.0.0.1:{udp}", 2, "65,507", stdin=b"short\n" + b"x" * 70_000 + b"\n"),
    case(f"udp-send {NO_DNS}:9 x", 1, f"cannot resolve '{NO_DNS}'"),
    case("udp-send 127.0.0.1:9 x -s ::1", 1, "cannot use source address '::1'"),
    # -- udp-listen ------------------------------------------------------------
    case("udp-listen [::1]", 2, "expected [IPV6]:PORT"),
    case("udp-listen --count 0 0", 2, "'--count': must be at least 1, got 0"),
    case("udp-listen --timeout -1s 0", 2, "'--timeout' / '-w': duration must not be negative"),
    case("udp-listen --reply a --echo 0", 2, "--reply and --echo cannot be used together"),
    case("udp-listen --group 239.1.1.1 --interface nosuchif0 0", 2, "no network interface 'nosuchif0'"),
    case("udp-listen [::1]:{udp6}", 1, "address already in use (another process holds udp port"),
    case("udp-listen -4 [::1]:0", 1, "no IPv4 address"),
    # -- echo ----------------------------------------------------------------------
    case("echo 65536", 2, "port 65536 is out of range"),
    case("echo 127.0.0.1:abc", 2, "port 'abc' is not a number"),
    case("echo --max-clients 0", 2, "'--max-clients': must be at least 1, got 0"),
    case("echo -i 0", 2, "'--idle-timeout': duration must be more than zero"),
    case("echo --udp 0", 2, "No such option: --udp"),
    case("echo --tcp-only unix:/nonexistent-dir/e.sock", 1, "no such file or directory"),
    case("echo --udp-only 127.0.0.1:{udp}", 1, "address already in use (another process holds udp port"),
    # -- time-server ---------------------------------------------------------
    case("time-server [::1]:99999", 2, "port 99999 is out of range"),
    case("time-server -4 -6 0", 2, "-4 and -6 exclude each other"),
    case("time-server --rfc869", 2, "No such option: --rfc869"),
    case("time-server --tcp-only unix:/etc/passwd", 1, "the path exists and is not a socket"),
    case("time-server [::1]:{tcp6}", 1, "address already in use"),
    # -- portscan --------------------------------------------------------------
    case("portscan", 2, "Missing argument 'HOST'"),
    case(["portscan", ""], 2, "empty host"),
    case("portscan -c 0 127.0.0.1", 2, "'--concurrency': must be at least 1, got 0"),
    case("portscan -w 0 127.0.0.1", 2, "'--timeout': duration must be more than zero"),
    case("portscan --retries -1 127.0.0.1", 2, "'--retries': must be 0 or more, got -1"),
    case("portscan 127.0.0.1 443-80,22", 2, "port range '443-80' is reversed"),
    case("portscan 127.0.0.1 70000", 2, "port 70000 in the port list is out of range"),
    case("portscan 127.0.0.1 a-b", 2, "'a-b' in the port list is not a port number"),
    case("portscan [::1 80", 2, "'[::1': missing ']'"),
    case("portscan -6 127.0.0.1 80", 1, "no IPv6 address"),
    # -- wait ------------------------------------------------------------------
    case("wait", 2, "Missing argument 'HOST:PORT...'"),
    case("wait unix:", 2, "unix: address needs a path"),
    case("wait 127.0.0.1:0", 2, "port 0 is out of range"),
    case("wait -w -5 127.0.0.1:80", 2, "duration must not be negative"),
    case("wait --interval abc 127.0.0.1:80", 2, "not a duration: 'abc'"),
    case(f"wait -w 300ms {NO_DNS}:80", 1, f"waiting for {NO_DNS}:80 (name or service not known)"),
    case("wait -w 300ms 127.0.0.1:{free}", 1, "(connection refused)"),
    # -- the command itself ------------------------------------------------------
    case("-x", 2, "No such option: -x"),
    case("tcp-conect 127.0.0.1:80", 2, "No such command 'tcp-conect'"),
    # -- values that are usage errors (hardening items 5, 10, 12, 13) ----------
    # --allow / --deny with a unix: listener (item 5)
    case("tcp-listen --allow 127.0.0.1 unix:/nonexistent-dir/x.sock", 2, "'--allow' / '--deny': they judge a client's"),
    case("tcp-listen -k --deny 10.0.0.0/8 unix:/nonexistent-dir/x.sock", 2, "a unix: socket's clients have none"),
    # out-of-range interface numbers, digits that are not ASCII (items 10, 12)
    case("udp-listen 0 --group 239.1.2.3 --interface 99999999999", 2, "'--interface': interface number 99999999999"),
    case("udp-listen 0 --group ff02::1234 --interface 99999999999", 2, "'--interface': interface number 99999999999"),
    case("udp-send 239.1.2.3:9 hi --interface 99999999999", 2, "'--interface': interface number 99999999999 is out"),
    case("udp-send [ff02::1234]:9 hi --interface 4294967296", 2, "'--interface': interface number 4294967296 is out"),
    case("udp-send [ff02::1234]:9 hi --interface 0", 2, "'--interface': interface number 0 is out of range"),
    case("tcp-connect 127.0.0.1:٤٠١٥٩ -z", 2, "port '٤٠١٥٩' is not a number"),
    case("tcp-listen ٤٠١٥٩", 2, "port '٤٠١٥٩' is not a number or a known service name"),
    case("portscan 127.0.0.1 ²", 2, "'²' in the port list is not a port number"),
    case("portscan 127.0.0.1 1-٤", 2, "'1-٤' in the port list is not a port number"),
    case("portscan --retries ٣ 127.0.0.1 1", 2, "'--retries': '٣' is not a whole number"),
    case("tcp-connect -w ٣s 127.0.0.1:9", 2, "'--timeout': not a duration: '٣s'"),
    case("udp-send --count ٣ 127.0.0.1:9 x", 2, "'--count' / '--repeat': '٣' is not a whole number"),
    case("udp-send --count +3 127.0.0.1:9 x", 2, "'--count' / '--repeat': '+3' is not a whole number"),
    case("udp-send --ttl ٣ 127.0.0.1:9 x", 2, "'--ttl': '٣' is not a whole number"),
    # the family's datagram limit (item 13)
    case(["udp-send", "[::1]:9", "x" * 65_528], 2, "65,528 bytes is more than one UDP datagram holds (65,527 bytes)"),
    case(["udp-send", "127.0.0.1:9", "x" * 65_508], 2, "65,508 bytes is more than one UDP datagram holds (65,507"),
]


def test_the_table_covers_every_command_with_at_least_40_cases():
    commands = {argv[0] for argv, *_ in (param.values for param in CASES) if argv and not argv[0].startswith("-")}
    assert {
        "tcp-connect",
        "tcp-listen",
        "udp-send",
        "udp-listen",
        "echo",
        "time-server",
        "portscan",
        "wait",
    } <= commands
    assert len(CASES) >= 40


def _key(argv: list[str], stdin: bytes | None) -> tuple:
    return (*argv, stdin)


def _black_box() -> set[tuple]:
    """The first case of each command: always run as a user runs it, a subprocess."""
    first: dict[str, tuple] = {}
    for param in CASES:
        argv, stdin = param.values[:2]
        first.setdefault(argv[0] if argv else "", _key(argv, stdin))
    return set(first.values())


@pytest.fixture(scope="module")
def outcomes(held):
    """Every case run up front. Those that end before any socket run in this
    process (milliseconds each); the rest, those with stdin and the first case
    of each command run as subprocesses, four at a time."""
    runs = {_key(*param.values[:2]): [arg.format(**held) for arg in param.values[0]] for param in CASES}
    stdins = {_key(*param.values[:2]): param.values[1] for param in CASES}
    black_box = _black_box()
    done = {}
    for key, args in runs.items():
        if stdins[key] is None and key not in black_box:
            result = run_here(*args)
            if result is not None:
                done[key] = result
    with ThreadPoolExecutor(4) as pool:
        futures = {
            key: pool.submit(run, *args, input=stdins[key], timeout=15) for key, args in runs.items() if key not in done
        }
        done.update({key: future.result() for key, future in futures.items()})
    return done


def test_subprocess_and_in_process_runs_agree_on_a_usage_error(tmp_path):
    argv = ["tcp-listen", "--allow", "10.0.0.0/33", "0"]
    here, there = run_here(*argv), run(*argv)
    assert here is not None
    assert (here.returncode, here.stdout, here.stderr) == (there.returncode, there.stdout, there.stderr)


@pytest.mark.parametrize(("argv", "stdin", "code", "complaint"), CASES)
def test_bad_input_is_its_exit_code_and_one_line_naming_it(outcomes, held, argv, stdin, code, complaint):
    result = outcomes[_key(argv, stdin)]
    line = one_line_error(result.stderr)
    assert result.returncode == code, line
    assert complaint.format(**held) in line
    assert result.stdout == b""
