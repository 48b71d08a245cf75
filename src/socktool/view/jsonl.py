"""JSON Lines on stdout: one object per event, flushed as it happens.

Rule (the schema, version SCHEMA): every record of every command begins with
`"event"` (what happened: listening, connected, data, datagram, closed, stats,
served, notice, port, summary, probe, error, ...) and `"v"` (this schema's
version), then `"ts"` where it has a time. A record names the other end as
`"peer"`; datagram records keep `"from"` / `"to"` too, as they always had.
Engines need not know: the records are shaped here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from socktool.net import events as ev
from socktool.view.render import text_or_none


def event_record(event: ev.Event) -> dict[str, object] | None:
    """The JSON object for an event, in the schema's shape, or None for events JSON does not carry."""
    record = _record(event)
    return None if record is None else shaped(record)


def _record(event: ev.Event) -> dict[str, object] | None:
    ts = round(time.time(), 6)
    if isinstance(event, ev.Listening):
        record: dict[str, object] = {"event": "listening", "ts": ts, "address": event.address, "kind": event.kind}
        if event.tls_fingerprint:
            record["tls_fingerprint"] = event.tls_fingerprint
        return record
    if isinstance(event, ev.Tls):
        return {"event": "tls", "ts": ts, **event._asdict(), "sans": list(event.sans)}
    if isinstance(event, ev.Connected):
        return {"event": "connected", "ts": ts, "conn": event.conn, "peer": event.peer, "local": event.local}
    if isinstance(event, ev.Rejected):
        return {"event": "rejected", "ts": ts, "peer": event.peer, "reason": event.reason}
    if isinstance(event, ev.Data):
        return {
            "event": "data",
            "ts": ts,
            "conn": event.conn,
            "peer": event.peer,
            "direction": event.direction,
            **_payload(event.data),
        }
    if isinstance(event, ev.Moved):
        return {"event": "moved", "ts": ts, **event._asdict()}
    if isinstance(event, ev.Datagram):
        return {
            "event": "datagram",
            "ts": ts,
            "peer": event.peer,
            "direction": event.direction,
            "from" if event.direction == ev.RECEIVED else "to": event.peer,
            **_payload(event.data),
        }
    if isinstance(event, ev.Closed):
        return {
            "event": "closed",
            "ts": ts,
            "conn": event.conn,
            "peer": event.peer,
            "reason": event.reason,
            "sent": event.sent,
            "received": event.received,
            "duration": round(event.duration, 6),
        }
    if isinstance(event, ev.Stats):
        return {
            "event": "stats",
            "ts": ts,
            "sent": event.sent,
            "received": event.received,
            "duration": round(event.duration, 6),
            "connections": event.connections,
            "datagrams_in": event.datagrams_in,
            "datagrams_out": event.datagrams_out,
            "dropped": event.dropped,
        }
    if isinstance(event, ev.Served):
        return {
            "event": "served",
            "ts": ts,
            "kind": event.kind,
            "peer": event.peer,
            "count": event.count,
            "received": event.received,
            "sent": event.sent,
            "request": None if event.request is None else text_or_none(event.request),
            "error": event.error or None,
        }
    if isinstance(event, ev.Notice):
        return {"event": "notice", "ts": ts, "message": event.message}
    return None


SCHEMA = 1


def shaped(record: dict[str, object]) -> dict[str, object]:
    """The record as the schema has it: "event" and "v" first."""
    return {"event": record.get("event"), "v": SCHEMA, **record}


def json_line(record: dict[str, object]) -> bytes:
    text = json.dumps(shaped(record), ensure_ascii=False, separators=(",", ":")) + "\n"
    # A name or path from the command line may hold undecodable bytes (surrogates):
    # written as \udcXX escapes, which are valid inside a JSON string.
    return text.encode("utf-8", "backslashreplace")


class JsonLines:
    def __init__(self, write: Callable[[bytes], None]):
        self.write_out = write  # all of the bytes, or OutputClosed
        self._lock = threading.Lock()

    def write(self, record: dict[str, object]) -> None:
        line = json_line(record)
        with self._lock:
            self.write_out(line)

    def __call__(self, event: ev.Event) -> None:
        record = _record(event)  # (not event_record: `write` puts it in the schema's shape, once)
        if record is not None:
            self.write(record)


def _payload(data: bytes) -> dict[str, object]:
    """What a data or datagram record says of its bytes: the size, the text (None when not
    UTF-8 text) and the hex."""
    return {"size": len(data), "text": text_or_none(data), "hex": data.hex()}
