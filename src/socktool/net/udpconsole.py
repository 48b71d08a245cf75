"""udp-listen with a console: the socket on the loop, answering peers by hand.

Rules:
- a peer is numbered (#1, #2, ...) the first time a datagram comes from it,
  and stays in the list until /kick forgets it; it is shown as udp-listen
  shows it (HOST:PORT, [V6]:PORT, unix:PATH), and `/to` takes either form;
- only peers that have sent to us can be answered: the console never sends
  to an address nobody gave it;
- a plain line is one datagram, without a line end (as udp-send --lines
  sends a line): to the last sender with --reply-last (the QQ chat), else
  to the peer /to chose, else to every peer seen;
- everything else is udp-listen's: events per datagram, raw payload to
  stdout in a pipe, --count, --timeout, the totals at the end.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from socktool import console as cmd
from socktool.console import Answer
from socktool.net import events as ev
from socktool.net.address import sockaddr_text
from socktool.net.console import Commanded
from socktool.net.errors import NetworkError, describe
from socktool.net.fdio import write_all
from socktool.net.loop import Loop, Timer
from socktool.net.sockets import BoundSocket
from socktool.net.udp import ListenOptions, Receiver, max_datagram
from socktool.values import format_duration, format_size

BATCH = 64  # datagrams read per wake-up


class Peer:
    __slots__ = ("addr", "bytes_in", "bytes_out", "datagrams_in", "first_seen", "last_seen", "number", "text")

    def __init__(self, number: int, addr: object, text: str, now: float):
        self.number = number
        self.addr = addr
        self.text = text
        self.first_seen = self.last_seen = now
        self.datagrams_in = self.bytes_in = self.bytes_out = 0


class UdpConsole(Commanded, Receiver):
    """Receives as udp-listen does, and sends what the console asks to the peers seen."""

    def __init__(
        self,
        listener: BoundSocket,
        options: ListenOptions,
        sink: ev.Sink = ev.ignore,
        *,
        answer: Callable[[Answer], None],
        encode: Callable[[str], bytes] | None = None,
        reply_last: bool = False,
    ):
        super().__init__(listener, options, sink)
        self.answer = answer
        self.encode = encode or cmd.Composer(cmd.text_encoder(line_end=False))
        self.reply_last = reply_last
        self.loop = Loop(sink)
        self.peers: dict[int, Peer] = {}
        self._by_addr: dict[object, Peer] = {}
        self._numbers = 0
        self.last: Peer | None = None
        self.focus: Peer | None = None
        self._idle: Timer | None = None
        self._failure: BaseException | None = None

    # -- running ---------------------------------------------------------------------
    def run(self) -> None:
        self.serve()

    def serve(self) -> None:
        self.sock.setblocking(False)
        self.loop.watch(self.sock.fileno(), self._readable)
        self._arm_timeout()
        try:
            self.loop.run()
            if self._failure is not None:
                raise self._failure
        finally:
            self.loop.close()
            self.sink(self.stats())

    def _arm_timeout(self) -> None:
        if self.options.timeout is None:
            return
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.loop.call_later(self.options.timeout, self._timeout_passed)

    def _timeout_passed(self) -> None:
        try:
            self._timed_out()
        except BaseException as exc:  # TimedOut: raised from serve(), after the loop is closed
            self._failure = exc
        self.loop.stop()

    def _readable(self) -> None:
        opts, inbox = self.options, self._inbox
        for _ in range(BATCH):
            try:
                n, addr = inbox.recvfrom(socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                raise NetworkError(f"receiving on {self.listener.address} failed", describe(exc)) from exc
            view = inbox.view  # a unix socket's buffer grows for a large datagram
            self.datagrams_in += 1
            self.bytes_in += n
            peer = self._seen(addr, n)
            self._arm_timeout()
            if opts.output_fd is not None and n:
                write_all(opts.output_fd, view[:n])
            if opts.emit:
                self.sink(ev.Datagram(peer.text, ev.RECEIVED, bytes(view[:n])))
            if opts.count is not None and self.datagrams_in >= opts.count:
                self.loop.stop()
                return

    def _seen(self, addr: object, size: int) -> Peer:
        key = addr if addr else None
        peer = self._by_addr.get(key)
        now = time.monotonic()
        if peer is None:
            self._numbers += 1
            peer = Peer(self._numbers, addr, sockaddr_text(addr), now)
            self._by_addr[key] = peer
            self.peers[peer.number] = peer
        peer.last_seen = now
        peer.datagrams_in += 1
        peer.bytes_in += size
        self.last = peer
        return peer

    def input_ended(self) -> None:
        """Nothing more will be typed; datagrams are still shown until interrupted."""

    # -- in the loop's thread ----------------------------------------------------------
    def _execute(self, command: cmd.Command) -> None:
        if isinstance(command, cmd.Say):
            targets = self._say_targets()
            data = self.encode(command.text)
            for peer in targets:
                self._send(peer, data)
        elif isinstance(command, cmd.SendTo):
            peer = self._peer(command.target)
            self._send(peer, self.encode(command.text or "") if command.data is None else command.data)
        elif isinstance(command, cmd.Focus):
            self.focus = None if command.target is None else self._peer(command.target)
            where = "every peer" if self.focus is None else f"#{self.focus.number} {self.focus.text}"
            self.answer(Answer("ok", f"plain lines go to {where}", {"focus": self.focus and self.focus.number}))
        elif isinstance(command, cmd.Kick):
            peer = self._peer(command.target)
            self._forget(peer)
            self.answer(Answer("ok", f"forgot #{peer.number} {peer.text}", {"kicked": peer.number}))
        elif isinstance(command, cmd.SendFile):
            raise ValueError("/file sends to a TCP client; a UDP peer gets datagrams: /to or /hex")
        elif command.name in ("pause", "resume"):
            raise ValueError(f"/{command.name} is for tcp-listen: udp-listen accepts no connections")
        elif command.name == "list":
            self._list()
        elif command.name == "help":
            self.answer(Answer("help", cmd.HELP))
        else:  # quit
            self.answer(Answer("ok", "quitting", {"quit": True}))
            self.loop.stop()

    def _say_targets(self) -> list[Peer]:
        if self.reply_last and self.focus is None:
            if self.last is None or self.last.number not in self.peers:
                raise ValueError("nobody has sent a datagram yet: nothing to answer")
            return [self.last]
        if self.focus is not None:
            if self.focus.number not in self.peers:
                raise ValueError(f"peer #{self.focus.number} was forgotten; /all sends to every peer")
            return [self.focus]
        if not self.peers:
            raise ValueError("no peer has sent a datagram yet: nothing sent (UDP answers only who spoke)")
        return list(self.peers.values())

    def _peer(self, target: cmd.Target) -> Peer:
        if isinstance(target, int):
            peer = self.peers.get(target)
        else:
            peer = next((p for p in self.peers.values() if p.text == target), None)
        if peer is None:
            raise ValueError(
                f"no peer {target if isinstance(target, str) else '#' + str(target)} has sent to us (/list)"
            )
        return peer

    def _forget(self, peer: Peer) -> None:
        self.peers.pop(peer.number, None)
        self._by_addr.pop(peer.addr if peer.addr else None, None)
        if self.focus is peer:
            self.focus = None

    def _send(self, peer: Peer, data: bytes) -> None:
        limit = max_datagram(self.sock.family)
        if len(data) > limit and self.sock.family != socket.AF_UNIX:
            raise ValueError(f"{len(data):,} bytes do not fit in one datagram (at most {limit:,})")
        before = self.bytes_out
        self._answer(peer.addr, peer.text, data)
        peer.bytes_out += self.bytes_out - before

    def _list(self) -> None:
        now = time.monotonic()
        rows: list[dict[str, object]] = []
        lines: list[str] = []
        for peer in self.peers.values():
            rows.append(
                {
                    "peer_id": peer.number,
                    "peer": peer.text,
                    "last_seen": round(now - peer.last_seen, 3),
                    "datagrams": peer.datagrams_in,
                    "received": peer.bytes_in,
                    "sent": peer.bytes_out,
                }
            )
            mark = "*" if peer is self.focus else ("<" if peer is self.last and self.reply_last else " ")
            lines.append(
                f"{mark}#{peer.number:<4} {peer.text:<28} last seen {format_duration(now - peer.last_seen):>7} ago  "
                f"{peer.datagrams_in} in ({format_size(peer.bytes_in)})  out {format_size(peer.bytes_out)}"
            )
        head = f"{len(rows)} peer{'s' if len(rows) != 1 else ''} seen"
        self.answer(Answer("list", "\n".join([head, *lines]), {"peers": rows}))


__all__ = ["Peer", "UdpConsole"]
