"""Dialling out: TCP and unix stream connections (listening is net/sockets.py).

Every OSError from connect becomes a NetworkError here, with the address it
concerns and, where it helps, a hint.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from typing import Any, NamedTuple

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.address import Endpoint, resolve, sockaddr_text
from socktool.net.errors import BindError, ConnectError, describe
from socktool.net.sockets import bind_source
from socktool.values import format_duration


class SocketOptions(NamedTuple):
    keepalive: bool = False
    nodelay: bool = False

    def apply(self, sock: socket.socket) -> None:
        if sock.family == socket.AF_UNIX:
            return
        if self.keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self.nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect(
    endpoint: Endpoint,
    *,
    family: int = socket.AF_UNSPEC,
    timeout: float | None = 10.0,
    source: str | None = None,
    source_port: int | None = None,
    options: SocketOptions = SocketOptions(),
    sink: ev.Sink = ev.ignore,
) -> socket.socket:
    """A connected blocking socket, trying each address the name resolves to."""
    if endpoint.path is not None:
        return _connect_unix(endpoint.path, timeout)
    candidates = resolve(endpoint.host, endpoint.port, family=family)
    last: OSError | None = None
    for index, (fam, sockaddr) in enumerate(candidates):
        sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            if source is not None or source_port is not None:
                bind_source(sock, fam, source, source_port)
            options.apply(sock)
            _dial(sock, sockaddr, timeout)
            return sock
        except BindError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last = exc
            if index + 1 < len(candidates):
                sink(ev.Notice(f"{sockaddr_text(sockaddr)}: {describe(exc)}; trying the next address"))
    assert last is not None
    raise _connect_error(endpoint, last, timeout) from last


def _dial(sock: socket.socket, sockaddr: Any, timeout: float | None) -> None:
    """connect(), waiting in interrupts.wait so that an interrupt is never missed; leaves it blocking."""
    sock.setblocking(False)
    code = sock.connect_ex(sockaddr)
    if code == errno.EINPROGRESS:
        if not interrupts.wait(sock.fileno(), select.POLLOUT, timeout):
            raise TimeoutError(errno.ETIMEDOUT, "timed out")
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))
    sock.setblocking(True)


def _connect_error(endpoint: Endpoint, exc: OSError, timeout: float | None) -> ConnectError:
    what = f"cannot connect to {endpoint}"
    if isinstance(exc, socket.timeout) or exc.errno == errno.ETIMEDOUT:
        detail = f"timed out after {format_duration(timeout)}" if timeout else "timed out"
        return ConnectError(what, detail, "the host did not answer; is a firewall dropping it?")
    if exc.errno == errno.ECONNREFUSED:
        return ConnectError(what, "connection refused", "nothing is listening there")
    return ConnectError(what, describe(exc))


def _connect_unix(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.settimeout(None)
        return sock
    except OSError as exc:
        sock.close()
        raise ConnectError(f"cannot connect to unix:{path}", describe(exc)) from exc
