"""Moving bytes between file descriptors and sockets, fast.

Rule: these loops touch no Python objects per chunk beyond a counter, so a
raw transfer costs little more than the system calls. `os.splice` moves
pipe ⇄ socket data inside the kernel; anything else is `recv_into` a reused
buffer and `os.write`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import stat
from collections.abc import Callable, Iterator

from socktool.net import interrupts
from socktool.net.errors import OutputClosed, output_error

CHUNK = 256 * 1024
SPLICE_CHUNK = 1024 * 1024
SPLICE_F_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1024 * 1024


def is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def is_regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def file_size(fd: int) -> int | None:
    """Bytes left to read in a regular file, or None for pipes and terminals."""
    if not is_regular_file(fd):
        return None
    try:
        return max(0, os.fstat(fd).st_size - os.lseek(fd, 0, os.SEEK_CUR))
    except OSError:
        return None


def widen_pipe(fd: int, size: int = _PIPE_SIZE) -> int | None:
    """Ask for a larger pipe buffer: fewer wake-ups per megabyte. Best effort: the size
    now in force, or None if the kernel refused (over /proc/sys/fs/pipe-max-size, or
    the user's pipe-user-pages limits)."""
    try:
        import fcntl

        return int(fcntl.fcntl(fd, _F_SETPIPE_SZ, size))
    except OSError:
        return None


def raise_open_file_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard one; the soft limit now in force (None: unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def defer_to_producer() -> None:
    """Let the process writing into our pipe keep the CPU when its write wakes us (Linux).

    The calling thread becomes SCHED_BATCH: a woken batch thread does not
    preempt the running one. Otherwise every write of the producer (`head`
    writes 8 KiB at a time) wakes the splice loop at once, and the two take
    turns, ~32 KiB a turn; deferred, the producer fills the pipe and one
    splice moves much more. Only bulk data goes this way, never a terminal.
    Best effort: the nice value stays; elsewhere nothing changes.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:  # EPIPE: OutputClosed; ENOSPC, EIO, EFBIG, ...: OutputFailed
        raise output_error(exc) from exc


Counter = Callable[[int], None]


def splice_loop(src: int, dst: int, count: Counter, *, src_is_socket: bool = False) -> bool:
    """Copy src → dst with splice until EOF. False if splice can't serve these fds.

    A blocking splice from a socket holds the output pipe's lock while it
    waits for data, which would stall the reader of that pipe on bytes
    already in it; so with a socket source we wait for readability first
    and the splice then returns with what is there. In the main thread
    every source is waited for first, and a full destination too (see
    `room_to_write`), so that an interrupt is never missed.
    """
    waiter = interrupts.Waiter(src)
    wait = waiter.wait if src_is_socket else waiter.wait_ready
    first = True
    with room_to_write(dst, dst_is_pipe=src_is_socket) as (full, flags):
        while True:
            wait()
            try:
                moved = os.splice(src, dst, SPLICE_CHUNK, flags=flags)
            except BlockingIOError:
                if full is None:
                    raise
                full.wait()  # the destination cannot take more yet
                continue
            except OSError as exc:
                if first and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EBADF):
                    return False
                if exc.errno == errno.EPIPE and not _is_socket(dst):
                    raise OutputClosed from exc
                raise
            first = False
            if not moved:
                return True
            count(moved)


def sendfile_loop(src: int, sock_fd: int, count: Counter) -> bool:
    """Copy a regular file to a socket with sendfile. False if not supported."""
    first = True
    with room_to_write(sock_fd) as (full, _flags):
        while True:
            try:
                moved = os.sendfile(sock_fd, src, None, CHUNK)
            except BlockingIOError:
                if full is None:
                    raise
                full.wait()
                continue
            except OSError as exc:
                if first and exc.errno in (errno.EINVAL, errno.ENOSYS):
                    return False
                raise
            first = False
            if not moved:
                return True
            count(moved)


def send_all(sock: socket.socket, data: bytes, room: interrupts.Waiter | None) -> None:
    """sock.sendall, where the socket may be non-blocking inside `room_to_write`."""
    if room is None:
        sock.sendall(data)
        return
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            room.wait()


@contextlib.contextmanager
def room_to_write(dst: int, *, dst_is_pipe: bool = False) -> Iterator[tuple[interrupts.Waiter | None, int]]:
    """For a loop writing to `dst`, in the main thread: a Waiter for room in it, and the
    splice flags. A socket becomes non-blocking for the loop's time; a pipe (stdout,
    shared with others) keeps its mode and each splice is asked not to block on it.
    So a signal that lands just before a write to a full destination is not held
    until the peer or the reader takes more. In any other thread nothing changes:
    a write there simply blocks, and no signal is delivered there."""
    if interrupts.wakeup_fd() is None:
        yield None, 0
    elif dst_is_pipe:
        yield interrupts.Waiter(dst, select.POLLOUT), SPLICE_F_NONBLOCK
    else:
        os.set_blocking(dst, False)
        try:
            yield interrupts.Waiter(dst, select.POLLOUT), 0
        finally:
            os.set_blocking(dst, True)


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
