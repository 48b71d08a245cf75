"""The ui's keys: the app binds them, the footer and `socktool ui --help` show them.

Plain data, so that help does not import Textual. Every key is a ctrl+letter
so that it works while the send box has the focus.
"""

from __future__ import annotations

KEYS: list[tuple[str, str, str]] = [
    # (key, action, what it does) — the footer and `socktool ui --help` show these
    ("ctrl+n", "new", "new session: KIND ADDRESS, as on the command line"),
    ("ctrl+s", "start_stop", "start or stop the selected session"),
    ("ctrl+w", "close", "close the selected session"),
    ("ctrl+x", "hex_view", "traffic as escaped text or a hex dump"),
    ("ctrl+e", "hex_input", "the send box takes text or hex"),
    ("ctrl+l", "line_end", "line end added to text: LF, CRLF, none"),
    ("ctrl+a", "all_clients", "send to every client (or pick one in the client list)"),
    ("ctrl+g", "pause", "server: refuse new clients, connected ones go on (again: accept)"),
    ("ctrl+k", "kick", "close the selected client (UDP: forget the peer)"),
    ("ctrl+o", "send_file", "send a file to the selected client(s)"),
    ("ctrl+t", "auto_send", "auto-send the send box every N ms, COUNT times (again: stop)"),
    ("ctrl+r", "record", "record the session to JSON Lines, as --record (again: stop)"),
    ("ctrl+f", "search", "show only the records that contain a text"),
    ("ctrl+q", "quit", "quit (every session is closed)"),
]
SHORT = {
    "new": "New",
    "start_stop": "Start/Stop",
    "close": "Close",
    "hex_view": "Hex",
    "hex_input": "Send hex",
    "line_end": "EOL",
    "all_clients": "All",
    "pause": "Pause",
    "kick": "Kick",
    "send_file": "File",
    "auto_send": "Auto",
    "record": "Rec",
    "search": "Find",
    "quit": "Quit",
}


def keys_help() -> str:
    """The keys as `socktool ui --help` lists them."""
    return "\n".join(f"  {key:<8} {what}" for key, _, what in KEYS)


__all__ = ["KEYS", "SHORT", "keys_help"]
