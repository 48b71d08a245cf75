"""The console's language: typed lines and JSON control objects, parsed into commands.

Rules:
- a line that does not start with '/' is text for the current target (every
  client, unless `/to N` chose one); '//' at the start sends one literal '/';
- a line that starts with '/' is a command; a bad one is a ValueError whose
  text is the whole answer (the caller shows it; the server goes on);
- a target is a client's number, or (udp-listen) HOST:PORT of a peer seen;
  which targets exist is the controller's business, not the parser's;
- `--control json` objects map onto the same commands, so a script and a
  person drive the server alike.

Pure: no I/O.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from socktool.values import decode_hex

Target = int | str  # a client's number, or a peer's HOST:PORT (udp-listen)


class Say(NamedTuple):
    """Text to the current target (a plain line)."""

    text: str


class SendTo(NamedTuple):
    """`/to N TEXT` (text) or `/hex N ...` (data: exact bytes)."""

    target: Target
    text: str | None = None
    data: bytes | None = None


class Focus(NamedTuple):
    """`/to N`: plain lines go to N from now on; `/all` (target None): to everyone again."""

    target: Target | None


class SendFile(NamedTuple):
    target: Target
    path: str


class Kick(NamedTuple):
    target: Target


class Simple(NamedTuple):
    """A command without arguments: list, pause, resume, quit, help."""

    name: str


class Answer(NamedTuple):
    """The console's reply to one command. `fields` is what JSON control gets besides the text."""

    kind: str  # "ok", "error", "list", "progress", "help"
    text: str
    fields: dict[str, object] | None = None


Command = Say | SendTo | Focus | SendFile | Kick | Simple

SIMPLE = ("list", "pause", "resume", "quit", "help")

HELP = """\
text          send the line (with its line end) to every client, or to the /to target
//text        send '/text' (a line that starts with a slash)
/list         clients: number, peer, connected for, bytes in/out (udp: peers seen)
/to N TEXT    send TEXT to client N only (udp: N or HOST:PORT)
/to N         send plain lines to client N from now on; /all: to every client again
/hex N HEX    send these bytes to client N (whitespace between bytes allowed)
/file N PATH  send a file's bytes to client N, with progress
/kick N       close client N (udp: forget peer N)
/pause        stop accepting new clients (they are refused); /resume starts again
/quit         close every client and exit
/help         this list
text may hold {seq} {time} {hex:de ad} {rand:N}, filled for each message"""


def text_encoder(*, hex_input: bool = False, crlf: bool = False, line_end: bool = True) -> Callable[[bytes], bytes]:
    """How typed text becomes bytes: with its line end (LF, or CRLF with --crlf), as nc sends
    a line (a datagram, line_end=False: without one); with --hex-input the text is hex and
    exactly its bytes are sent."""
    if hex_input:
        return decode_hex
    if not line_end:
        return bytes
    end = b"\r\n" if crlf else b"\n"
    return lambda data: data + end


# Only these exact forms are placeholders; any other brace (JSON, say) is sent as typed.
_PLACEHOLDER = re.compile(r"\{(seq|time|hex:[0-9A-Fa-f\s]*|rand:[0-9]+)\}")
MAX_RAND = 65_536


def has_placeholders(text: str) -> bool:
    return _PLACEHOLDER.search(text) is not None


def fill_template(text: str, seq: int, now: float | None = None, rng: random.Random | None = None) -> bytes:
    """Typed text with its placeholders filled: {seq} the message's number (from 1), {time}
    the local time (HH:MM:SS.mmm), {hex:de ad} those bytes, {rand:N} N random bytes."""
    out = bytearray()
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        out += text[position : match.start()].encode("utf-8", "surrogateescape")
        position = match.end()
        name, _, value = match[1].partition(":")
        if name == "seq":
            out += str(seq).encode()
        elif name == "time":
            stamp = time.time() if now is None else now
            out += (time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}").encode()
        elif name == "hex":
            out += decode_hex(value)
        else:
            count = int(value)
            if count > MAX_RAND:
                raise ValueError(f"{{rand:{count}}}: at most {MAX_RAND:,} random bytes")
            out += (rng or random).randbytes(count)
    out += text[position:].encode("utf-8", "surrogateescape")
    return bytes(out)


class Composer:
    """Typed text -> the bytes sent: placeholders filled ({seq} counts the messages), then
    `encode` (line end, checksum, frame). With --hex-input the text is hex: nothing is filled."""

    def __init__(self, encode: Callable[[bytes], bytes] | None = None, *, templates: bool = True):
        self.encode = encode or text_encoder()
        self.templates = templates
        self.seq = 0

    def __call__(self, text: str) -> bytes:
        self.seq += 1
        raw = fill_template(text, self.seq) if self.templates else text.encode("utf-8", "surrogateescape")
        return self.encode(raw)


def parse_target(word: str) -> Target:
    if word.startswith("#"):
        word = word[1:]
    if word.isascii() and word.isdigit():
        return int(word)
    if ":" in word:
        return word
    raise ValueError(f"not a client number: {word!r}")


def parse_line(line: str) -> Command:
    """A line typed at the console (without its line end)."""
    if not line.startswith("/"):
        return Say(line)
    if line.startswith("//"):
        return Say(line[1:])
    name, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    if name in SIMPLE:
        if rest:
            raise ValueError(f"/{name} takes no arguments")
        return Simple(name)
    if name == "all":
        if rest:
            raise ValueError("/all takes no arguments")
        return Focus(None)
    word, _, tail = rest.partition(" ")
    if not word:
        raise ValueError(f"/{name} needs a client number" if name in ("to", "hex", "file", "kick") else _unknown(name))
    if name == "to":
        target = parse_target(word)
        return SendTo(target, text=tail) if tail else Focus(target)
    if name == "hex":
        if not tail.strip():
            raise ValueError("/hex needs the bytes: /hex N de ad be ef")
        return SendTo(parse_target(word), data=decode_hex(tail.encode()))
    if name == "file":
        if not tail.strip():
            raise ValueError("/file needs a path: /file N PATH")
        return SendFile(parse_target(word), tail.strip())
    if name == "kick":
        if tail:
            raise ValueError("/kick takes one client number")
        return Kick(parse_target(word))
    raise ValueError(_unknown(name))


def _unknown(name: str) -> str:
    return f"unknown command /{name} (/help lists them; // sends a line that starts with /)"


def parse_json(line: str) -> Command:
    """One `--control json` line: {"text": ..} {"to": N, "text"|"hex"|"file": ..} {"kick": N} {"list": true} ..."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("a control line is a JSON object")
    to = obj.get("to")
    target = None if to is None else _json_target(to)
    payloads = [key for key in ("text", "hex", "file") if key in obj]
    if len(payloads) > 1:
        raise ValueError(f"one of text, hex, file per object, not {', '.join(payloads)}")
    if payloads:
        key = payloads[0]
        value = obj[key]
        if not isinstance(value, str):
            raise ValueError(f'"{key}" must be a string')
        if key == "text":
            return Say(value) if target is None else SendTo(target, text=value)
        if target is None:
            raise ValueError(f'"{key}" needs "to"')
        if key == "hex":
            return SendTo(target, data=decode_hex(value.encode()))
        return SendFile(target, value)
    if "kick" in obj:
        return Kick(_json_target(obj["kick"]))
    for name in SIMPLE:
        if obj.get(name) is True:
            return Simple(name)
    if "to" in obj:
        return Focus(target)
    if obj.get("all") is True:
        return Focus(None)
    raise ValueError("unknown control object (keys: text, hex, file, to, kick, list, pause, resume, quit, all)")


def _json_target(value: object) -> Target:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not a client number: {value!r}")
    return value if isinstance(value, int) else parse_target(value)


__all__ = [
    "HELP",
    "Answer",
    "Command",
    "Composer",
    "Focus",
    "Kick",
    "Say",
    "SendFile",
    "SendTo",
    "Simple",
    "Target",
    "fill_template",
    "has_placeholders",
    "parse_json",
    "parse_line",
    "parse_target",
    "text_encoder",
]
