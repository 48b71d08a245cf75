"""tcp-listen's engine: one client, or many at once with --keep-open.

Each client gets a thread running a Relay (or a process with --exec). With
several clients, stdin is read by one thread and each line goes to every
client; --broker forwards each client's data to all the others. Clients
turned away (--allow/--deny, --max-clients) are closed before any byte is
read.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from typing import NamedTuple

from socktool.net import events as ev
from socktool.net import interrupts
from socktool.net.access import AccessPolicy
from socktool.net.address import sockaddr_text
from socktool.net.errors import NetworkError, OutputClosed, SocktoolError, TimedOut, describe
from socktool.net.relay import Connection, Payload, Relay, RelayOptions
from socktool.net.serving import CLIENT_GONE, OUT_OF_DESCRIPTORS, RETRY_PAUSED
from socktool.net.tcp import Listener, SocketOptions
from socktool.values import format_duration

EXEC_GRACE = 1.0  # seconds an --exec command has to end after SIGTERM when the server stops


class ServeOptions(NamedTuple):
    keep_open: bool = False
    max_clients: int | None = None
    access: AccessPolicy = AccessPolicy()
    exec_argv: tuple[str, ...] | None = None
    broker: bool = False
    socket_options: SocketOptions = SocketOptions()
    accept_timeout: float | None = None  # one client: give up if none comes in time


def _peer_host(peer_addr: object) -> str | None:
    return peer_addr[0] if isinstance(peer_addr, tuple) else None


class Server:
    def __init__(
        self,
        listener: Listener,
        payload: Payload,
        relay_options: RelayOptions,
        options: ServeOptions,
        sink: ev.Sink = ev.ignore,
    ):
        self.listener = listener
        self.payload = payload
        self.relay_options = relay_options
        self.options = options
        self.sink = sink
        self._clients: dict[int, Connection] = {}
        self._send_locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self._client_left = threading.Condition(self._lock)
        self._processes: set[subprocess.Popen] = set()  # --exec commands running
        self._warned_descriptors = False
        self._output_lock = threading.Lock()
        self._next_id = 0
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self.started = time.monotonic()
        self.total_sent = 0
        self.total_received = 0

    # -- accepting --------------------------------------------------------
    def _accept(self) -> Connection | None:
        """Accept one client; None if it was turned away."""
        if not interrupts.wait(self.listener.sock.fileno(), timeout=self.options.accept_timeout):
            raise TimedOut(
                f"no client connected to {self.listener.address}",
                f"within {format_duration(self.options.accept_timeout or 0)}",
            )
        try:
            sock, addr = self.listener.sock.accept()
        except OSError as exc:
            if self._stop.is_set():
                raise _Stopped from None
            if exc.errno in OUT_OF_DESCRIPTORS:
                self._wait_for_descriptor(exc)
                return None
            if exc.errno in CLIENT_GONE:
                return None
            raise NetworkError(f"accept on {self.listener.address} failed", describe(exc)) from exc
        peer = sockaddr_text(addr) if self.listener.path is None else "unix:(client)"
        reason = self.options.access.refusal(_peer_host(addr))
        if reason is None and self.options.keep_open and self.options.max_clients is not None:
            with self._lock:
                if len(self._clients) >= self.options.max_clients:
                    reason = f"--max-clients {self.options.max_clients} reached"
        if reason is not None:
            _close_now(sock)
            self.sink(ev.Rejected(peer, reason))
            return None
        self.options.socket_options.apply(sock)
        self._next_id += 1
        local = sockaddr_text(sock.getsockname()) if self.listener.path is None else self.listener.address
        return Connection(sock, self._next_id, peer, local, inbound=True)

    def _wait_for_descriptor(self, exc: OSError) -> None:
        """Out of descriptors: say so once, then wait for a client to leave.

        The clients that connect meanwhile wait in the kernel's accept queue
        and are served as descriptors come free; the server never dies of it.
        """
        if not self._warned_descriptors:
            self._warned_descriptors = True
            self.sink(
                ev.Notice(
                    f"cannot accept more clients on {self.listener.address}: {describe(exc)}; "
                    "new clients wait until one leaves (raise 'ulimit -n' to serve more)",
                    warning=True,
                )
            )
        with self._client_left:
            self._client_left.wait(RETRY_PAUSED)  # in case a descriptor came free some other way

    def totals(self) -> tuple[int, int]:
        """Bytes sent and received over all clients so far."""
        with self._lock:
            active = list(self._clients.values())
            sent, received = self.total_sent, self.total_received
        return sent + sum(c.sent for c in active), received + sum(c.received for c in active)

    def serve(self) -> str:
        """Serve until done (one client) or interrupted (--keep-open)."""
        try:
            if self.options.keep_open:
                return self._serve_many()
            return self._serve_one()
        finally:
            self.close()

    def _serve_one(self) -> str:
        while True:
            conn = self._accept()
            if conn is not None:
                break
        self.listener.sock.close()  # like nc: one client, no one else queues up
        with self._lock:
            self._clients[conn.conn] = conn
        self.sink(conn.connected_event())
        reason = "error"
        try:
            if self.options.exec_argv is not None:
                reason = self._run_exec(conn)
            else:
                reason = Relay(conn, self.payload, self.relay_options, self.sink).run()
            return reason
        finally:
            conn.sock.close()
            self.sink(conn.closed_event(reason))
            self.sink(
                ev.Stats(
                    sent=conn.sent, received=conn.received, duration=time.monotonic() - conn.started, connections=1
                )
            )

    def _serve_many(self) -> str:
        if self.payload.stdin_fd is not None and self.relay_options.send and self.options.exec_argv is None:
            threading.Thread(target=self._broadcast_stdin, name="stdin", daemon=True).start()
        while True:
            if self._failure is not None:
                raise self._failure
            try:
                conn = self._accept()
            except _Stopped:
                if self._failure is not None:
                    raise self._failure from None
                return "stopped"
            if conn is None:
                continue
            with self._lock:
                self._clients[conn.conn] = conn
                self._send_locks[conn.conn] = threading.Lock()
            self.sink(conn.connected_event())
            threading.Thread(target=self._client, args=(conn,), name=f"client-{conn.conn}", daemon=True).start()

    def _client(self, conn: Connection) -> None:
        reason = "error"
        try:
            if self.options.exec_argv is not None:
                reason = self._run_exec(conn)
            else:
                options = RelayOptions(
                    send=False,
                    receive=True,
                    half_close=False,
                    output_fd=self.relay_options.output_fd,
                    emit_data=self.relay_options.emit_data or self.options.broker,
                    idle_timeout=self.relay_options.idle_timeout,
                )
                relay = Relay(conn, Payload(stdin_fd=None), options, self._client_sink(conn), self._output_lock)
                reason = relay.run()
        except OutputClosed as exc:
            self._fail(exc)
        except SocktoolError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = describe(exc)
        finally:
            with self._lock:
                self._clients.pop(conn.conn, None)
                self._send_locks.pop(conn.conn, None)
                self.total_sent += conn.sent
                self.total_received += conn.received
            conn.sock.close()
            with self._client_left:  # its descriptor is free: a waiting client may come in
                self._client_left.notify_all()
            self.sink(conn.closed_event(reason))

    def _client_sink(self, conn: Connection) -> ev.Sink:
        if not self.options.broker:
            return self.sink
        show_data = self.relay_options.emit_data

        def forward(event: ev.Event) -> None:
            if isinstance(event, ev.Data):
                self._send_to_all(event.data, exclude=conn.conn)
                if not show_data:
                    return
            self.sink(event)

        return forward

    def _fail(self, exc: BaseException) -> None:
        """A failure that ends the whole server (stdout closed): wake the accept loop."""
        if self._failure is None:
            self._failure = exc
        self._stop.set()
        try:
            self.listener.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- stdin to every client ------------------------------------------
    def _broadcast_stdin(self) -> None:
        fd = self.payload.stdin_fd
        assert fd is not None
        pending = b""
        try:
            for chunk in self.payload.chunks():
                data = pending + chunk
                cut = data.rfind(b"\n") + 1
                pending = data[cut:]
                if cut:
                    self._send_to_all(data[:cut])
        except (OSError, ValueError) as exc:
            self.sink(ev.Notice(f"stopped reading stdin: {exc}", warning=True))
            return
        if pending:
            self._send_to_all(pending)

    def _send_to_all(self, data: bytes, exclude: int | None = None) -> None:
        with self._lock:
            targets = [(c, self._send_locks[c.conn]) for c in self._clients.values() if c.conn != exclude]
        for conn, lock in targets:
            try:
                with lock:
                    conn.sock.sendall(data)
                conn.count_sent(len(data))
            except OSError:
                continue  # that client is going away; its own thread reports it
            if self.relay_options.emit_data:
                self.sink(ev.Data(conn.conn, conn.peer, ev.SENT, data))

    # -- --exec -------------------------------------------------------------
    def _run_exec(self, conn: Connection) -> str:
        assert self.options.exec_argv is not None
        fd = conn.sock.fileno()
        try:
            with interrupts.held():  # started means listed: close() ends every process it started
                process = self._spawn(fd)
                with self._lock:
                    self._processes.add(process)
        except OSError as exc:
            return f"cannot run {self.options.exec_argv[0]}: {describe(exc)}"
        conn.sock.close()  # the process holds the socket now
        if self._stop.is_set():  # close() ran meanwhile (from the main thread) and may not have seen it
            _end_process(process)
        status = _wait_for_exit(process)  # interrupted, it stays listed: close() ends it
        with self._lock:
            self._processes.discard(process)
        return f"command exited with status {status}"

    def _spawn(self, fd: int) -> subprocess.Popen:
        """The --exec process on the connection's socket, with the signal mask a
        program expects: a client thread may run with SIGINT/SIGTERM blocked, and
        a child would inherit that and ignore Ctrl-C and the server's SIGTERM."""
        assert self.options.exec_argv is not None
        if not hasattr(signal, "pthread_sigmask"):  # no per-thread masks here: nothing to undo
            return subprocess.Popen(self.options.exec_argv, stdin=fd, stdout=fd, close_fds=True)
        previous = signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))
        try:
            return subprocess.Popen(self.options.exec_argv, stdin=fd, stdout=fd, close_fds=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            clients = list(self._clients.values())
            processes = list(self._processes)
        for conn in clients:
            _close_now(conn.sock)
        # An --exec process holds its client's socket: it ends with the server.
        for process in processes:
            _end_process(process)


class _Stopped(Exception):
    pass


def _end_process(process: subprocess.Popen) -> None:
    try:
        process.terminate()
        process.wait(EXEC_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except OSError:
        pass


def _wait_for_exit(process: subprocess.Popen) -> int:
    """Its exit status; in the main thread an interrupt ends the wait (see interrupts)."""
    if interrupts.wakeup_fd() is not None and hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(process.pid)
        except OSError:  # an old kernel
            pass
        else:
            try:
                interrupts.wait(pidfd)  # readable once the process has exited
            finally:
                os.close(pidfd)
    return process.wait()


def _close_now(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


__all__ = ["ServeOptions", "Server"]
