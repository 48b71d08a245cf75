"""The errors engines and parsers raise.

Rule: every failure a user can cause or meet is one of these, carrying the
exit code it maps to. The CLI's error boundary turns them into one line on
stderr; an OSError that escapes an engine is a bug.
"""

from __future__ import annotations

import errno
import socket


class SocktoolError(Exception):
    """A failure to report as `socktool: error: <what>: <detail>`."""

    exit_code = 1

    def __init__(self, what: str, detail: str | None = None, hint: str | None = None):
        super().__init__(what)
        self.what = what
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        text = self.what if self.detail is None else f"{self.what}: {self.detail}"
        return text if self.hint is None else f"{text} ({self.hint})"


class UsageError(SocktoolError):
    """Bad option, address, port, duration or input: exit 2."""

    exit_code = 2


class NetworkError(SocktoolError):
    """Refused, unreachable, unresolvable, timed out, reset: exit 1."""


class ResolveError(NetworkError):
    pass


class ConnectError(NetworkError):
    pass


class BindError(NetworkError):
    pass


class PeerReset(NetworkError):
    pass


class TimedOut(NetworkError):
    pass


class ExpectNotMet(NetworkError):
    pass


class OutputClosed(Exception):
    """The reader of our output went away (e.g. `| head -c 10`): a quiet end, not a failure."""


class OutputFailed(SocktoolError):
    """stdout cannot take what we write (a full disk, an I/O error): exit 1 at once,
    as ncat does; a server stops rather than go on discarding its clients' data."""


def output_error(exc: OSError) -> Exception:
    """What a failed write to stdout means: EPIPE (the reader left) is a quiet end, anything else a failure."""
    if exc.errno == errno.EPIPE:
        return OutputClosed()
    return OutputFailed("cannot write output", describe(exc))


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler (exit 143).

    A BaseException like KeyboardInterrupt, so that `except Exception`
    clean-up code does not swallow it.
    """


def describe(exc: OSError) -> str:
    """A short, lower-case description of an OSError, without the errno number."""
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return (exc.strerror or str(exc)).lower()
    if exc.errno is not None:
        known = {
            errno.ECONNREFUSED: "connection refused",
            errno.ECONNRESET: "connection reset by peer",
            errno.ETIMEDOUT: "timed out",
            errno.EHOSTUNREACH: "host unreachable",
            errno.ENETUNREACH: "network unreachable",
            errno.EADDRINUSE: "address already in use",
            errno.EADDRNOTAVAIL: "address not available on this host",
            errno.EACCES: "permission denied",
            errno.EPIPE: "broken pipe",
            errno.ENOENT: "no such file or directory",
        }
        if exc.errno in known:
            return known[exc.errno]
    return (exc.strerror or str(exc)).lower()
