"""--frame in the view and JSON: Data events cut into one event per message.

A sink in front of the view: each connection and direction has its own
decoder (socktool.frames); a Data event becomes as many Data events as it
completes messages (none, while a message is still arriving). When a
connection closes, bytes that did not make a whole message are shown as one
last record, with a warning. A message larger than --max-frame is an error
for that connection only: a warning, its stream is shown per read from then
on, and `on_error(conn)` is called (tcp-listen -k closes it); without
on_error (the one-connection pipe) it is the command's error.
"""

from __future__ import annotations

from collections.abc import Callable

from socktool.frames import FrameDecoder, FrameTooLarge, Framing
from socktool.net import events as ev
from socktool.net.errors import NetworkError


class FramedSink:
    def __init__(
        self,
        framing: Framing,
        sink: ev.Sink,
        *,
        max_frame: int,
        on_error: Callable[[int], None] | None = None,
        keeps_going: bool = False,
    ):
        self.framing = framing
        self.keeps_going = keeps_going  # forward: a connection that broke the framing goes on, shown per read
        self.sink = sink
        self.max_frame = max_frame
        self.on_error = on_error
        self._decoders: dict[tuple[int, str], FrameDecoder | None] = {}  # None: broken by an oversize message
        self._peers: dict[int, str] = {}

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Data):
            self._data(event)
            return
        if isinstance(event, ev.Closed):
            self._flush(event.conn)
        elif isinstance(event, ev.Stats):
            for conn in {key[0] for key in self._decoders}:
                self._flush(conn)
        self.sink(event)

    def _data(self, event: ev.Data) -> None:
        key = (event.conn, event.direction)
        if key not in self._decoders:
            self._decoders[key] = self.framing.decoder(self.max_frame)
            self._peers[event.conn] = event.peer
        decoder = self._decoders[key]
        if decoder is None:  # this stream broke the framing: shown per read from now on
            self.sink(event)
            return
        try:
            messages = decoder.feed(event.data)
        except FrameTooLarge as exc:
            self._decoders[key] = None
            what = f"#{event.conn} {event.peer} ({event.direction}): {exc}"
            if self.keeps_going:
                self.sink(ev.Notice(f"{what}; shown per read from now on", warning=True))
                self.sink(event)  # this read too: nothing goes unshown or unrecorded
                return
            if self.on_error is None:
                raise NetworkError("framing broken", what) from None
            self.sink(ev.Notice(f"{what}; closing the connection", warning=True))
            self.on_error(event.conn)
            return
        for message in messages:
            self.sink(event._replace(data=message))

    def _flush(self, conn: int) -> None:
        peer = self._peers.pop(conn, "")
        for key in [key for key in self._decoders if key[0] == conn]:
            decoder = self._decoders.pop(key)
            rest = decoder.rest() if decoder is not None else b""
            if not rest:
                continue
            if self.framing.kind != "delim":  # a last line without its end is common; a cut header is not
                self.sink(
                    ev.Notice(
                        f"#{conn} {peer}: {len(rest):,} bytes at the end ({key[1]}) did not make a whole "
                        f"--frame {self.framing.name} message",
                        warning=True,
                    )
                )
            self.sink(ev.Data(conn, peer, key[1], rest))


__all__ = ["FramedSink"]
