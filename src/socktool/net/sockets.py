"""Sockets bound here: listening and datagram sockets, a source address for
outgoing ones, and closing without a fuss. The one place that binds.

Every OSError from bind/listen becomes a BindError here, with the address
it concerns and, where it helps, a hint (who holds the port).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any

from socktool.net.address import Endpoint, format_hostport, resolve, sockaddr_text
from socktool.net.errors import BindError, ResolveError, describe


def close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def bind_source(sock: socket.socket, family: int, source: str | None, port: int | None) -> None:
    """Bind an outgoing socket to -s/--source and -p/--source-port before it connects or sends.

    A stream socket gets SO_REUSEADDR (a source port in TIME_WAIT is taken
    again); a datagram socket does not (it could share a port held by another).
    """
    stream = sock.type == socket.SOCK_STREAM
    host = source if source is not None else ("::" if family == socket.AF_INET6 else "0.0.0.0")
    try:
        addrs = resolve(host, port or 0, family=family, kind=sock.type, passive=True)
    except ResolveError as exc:  # a name that does not resolve, or not to this family
        raise BindError(
            f"cannot use source address {source!r}", exc.detail or "not an address of the target's family"
        ) from None
    if stream:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addrs[0][1])
    except OSError as exc:
        what = f"cannot bind source {format_hostport(host, port or 0)}"
        if exc.errno == errno.EADDRINUSE:
            proto = "tcp" if stream else "udp"
            raise BindError(what, "address already in use", f"another process holds {proto} port {port}") from exc
        raise BindError(what, describe(exc)) from exc


# Congestion controls that do not pace, tried in this order. cubic is the usual
# default; reno is built into every kernel and allowed to unprivileged users.
UNPACED = (b"cubic", b"reno")


def unpace(sock: socket.socket) -> None:
    """Leave a pacing congestion control (BBR) for one that does not pace.

    For a TCP connection within this host, where there is no path to share:
    BBR paces, spreading each burst over a timer and sending the pieces from
    softirq context, and a relay pays for that in rate (forwarding 2 GiB
    between two nc on loopback: about 0.6x of a direct nc -> nc connection
    with BBR, about 0.9x without; bench/results/forward.md). Called before
    the handshake (on a socket about to connect, or on a listener for the
    connections it will accept): a connection that started with BBR keeps
    BBR's pacing switched on whatever it changes to later. Other congestion
    controls are left as the system set them; a failure changes nothing.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return
    try:
        if not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).startswith(b"bbr"):
            return
    except OSError:
        return
    for name in UNPACED:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name)
            return
        except OSError:  # not built, or not allowed to this user
            continue


def unpace_local(sock: socket.socket) -> None:
    """`unpace` a connected TCP socket whose peer is on this host (late: see `unpace`)."""
    try:
        local, peer = sock.getsockname()[0], sock.getpeername()[0]
    except (OSError, IndexError, TypeError):  # not connected any more; a unix socket
        return
    if peer == local or is_loopback(peer):
        unpace(sock)


def is_loopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1, and 127/8 mapped into IPv6)."""
    return host.startswith(("127.", "::ffff:127.")) or host == "::1"


class BoundSocket:
    """A socket bound to a local address: a stream listener or a datagram socket.

    It knows its printable address and port, and removes its unix file when closed.
    """

    def __init__(self, sock: socket.socket, path: str | None = None):
        self.sock = sock
        self.path = path
        self.address = sockaddr_text(sock.getsockname()) if path is None else f"unix:{path}"
        self.port = sock.getsockname()[1] if path is None else 0
        self._closed = False

    def close(self) -> None:
        """Idempotent: a second close never removes a file someone else has made since."""
        if self._closed:
            return
        self._closed = True
        self.sock.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> BoundSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def bind(
    endpoint: Endpoint,
    *,
    family: int = socket.AF_UNSPEC,
    kind: int = socket.SOCK_STREAM,
    backlog: int = 128,
    reuse_addr: bool = True,
) -> BoundSocket:
    """Bind (and for streams listen). No host: dual-stack `::` when IPv6 is there."""
    if endpoint.path is not None:
        return _bind_unix(endpoint.path, kind, backlog)
    candidates: list[tuple[int, tuple[Any, ...]]]
    if endpoint.host is None:
        if family in (socket.AF_UNSPEC, socket.AF_INET6) and socket.has_ipv6:
            candidates = [(socket.AF_INET6, ("::", endpoint.port, 0, 0))]
            if family == socket.AF_UNSPEC:
                candidates.append((socket.AF_INET, ("0.0.0.0", endpoint.port)))
        else:
            candidates = [(socket.AF_INET, ("0.0.0.0", endpoint.port))]
    else:
        candidates = resolve(endpoint.host, endpoint.port, family=family, kind=kind, passive=True)
    last: OSError | None = None
    for fam, sockaddr in candidates:
        sock = socket.socket(fam, kind)
        try:
            if reuse_addr:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6 and endpoint.host is None:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(family == socket.AF_INET6))
            sock.bind(sockaddr)
            if kind == socket.SOCK_STREAM:
                sock.listen(backlog)
            return BoundSocket(sock)
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                break  # the next family would hit the same port
    assert last is not None
    raise _bind_error(endpoint, last, kind) from last


def _bind_error(endpoint: Endpoint, exc: OSError, kind: int) -> BindError:
    proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
    what = f"cannot listen on {endpoint}" if endpoint.host else f"cannot listen on port {endpoint.port}"
    if exc.errno == errno.EADDRINUSE:
        return BindError(what, "address already in use", f"another process holds {proto} port {endpoint.port}")
    if exc.errno == errno.EACCES:
        return BindError(what, "permission denied", "ports below 1024 need root")
    if exc.errno == errno.EADDRNOTAVAIL:
        return BindError(what, "not an address of this host")
    return BindError(what, describe(exc))


def _bind_unix(path: str, kind: int, backlog: int) -> BoundSocket:
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        sock.bind(path)
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"cannot listen on unix:{path}", "the file already exists") from exc
        raise BindError(f"cannot listen on unix:{path}", describe(exc)) from exc
    return BoundSocket(sock, path)


def remove_stale_socket(path: str) -> None:
    """Remove a unix socket file nobody serves (left by a crash); anything else is a BindError.

    Rule: only a file that is a socket, and that refuses both a stream and a
    datagram connect with ECONNREFUSED, is removed. Those probes do not
    block (a live listener with a full backlog answers EAGAIN: in use), and
    one that cannot reach the socket (EACCES) removes nothing: the socket
    may be another user's live one. Whatever else is there stays.
    """
    what = f"cannot listen on unix:{path}"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BindError(what, describe(exc)) from exc
    if not stat.S_ISSOCK(mode):
        raise BindError(what, "the path exists and is not a socket")
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        code = _probe_unix(path, kind)
        if code == errno.ECONNREFUSED:
            continue
        if code in (errno.EACCES, errno.EPERM):
            raise BindError(what, "permission denied", "the socket file is another user's; it may be in use")
        raise BindError(what, "the socket is in use", "another process serves it")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BindError(what, f"cannot remove the stale socket file: {describe(exc)}") from exc


def _probe_unix(path: str, kind: int) -> int:
    """connect()'s errno for a non-blocking socket of `kind` (0: it connected)."""
    probe = socket.socket(socket.AF_UNIX, kind)
    try:
        probe.setblocking(False)
        return probe.connect_ex(path)
    finally:
        probe.close()
