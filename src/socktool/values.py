"""The pure module: parsers, formatters and decoders for option values and payload bytes.

Rule: no I/O and no import of the rest of socktool; every layer (cli, view,
net) may import this, and it is tested with plain values (and hypothesis).
Parsers and decoders raise ValueError with a message fit to follow "invalid value: ".
"""

from __future__ import annotations

import re

# --frame, --max-frame and --checksum: what the options take (socktool/frames.py
# implements them; the names live here so the option declarations need not import it).
FRAME_KINDS = "line|crlf|len8|len16|len32|len16le|len32le|delim:HEX|fixed:N"
CHECKSUMS = ("crc16-modbus", "crc32", "sum8", "xor8")
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

# ASCII digits only (re.ASCII): '٤' and '²' are digits to Python, not to a user typing a number.
_DURATION = re.compile(r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|m|h)?", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
# The longest duration taken: a week. poll() counts milliseconds in 32 bits
# (24 days), and longer waits overflow the timers that would serve them.
MAX_DURATION = 7 * 24 * 3600.0


def is_number(text: str) -> bool:
    """Only ASCII digits, at least one: what ports, counts and durations are written in."""
    return text.isascii() and text.isdigit()


def parse_integer(text: str) -> int:
    """'42' → 42, '-1' → -1; ASCII digits only (no '+', no '_', no spaces, no '٤٠', no '²')."""
    if not is_number(text.removeprefix("-")):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def parse_duration(text: str) -> float:
    """'250ms' → 0.25, '2s' → 2.0, '1.5' → 1.5 (seconds), '1m' → 60.0."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        if text.strip().startswith("-"):
            raise ValueError(f"duration must not be negative: {text!r}")
        raise ValueError(f"not a duration: {text!r} (use e.g. 250ms, 2s, 1.5, 1m)")
    seconds = float(match["num"]) * _UNIT_SECONDS[match["unit"]]
    if seconds > MAX_DURATION:
        raise ValueError(f"duration is too long: {text!r} (at most 168h, a week)")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s".replace(".00s", "s")
    return f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


def format_size(count: float) -> str:
    """Bytes as a person reads them: '512 B', '3.4 KiB', '12.0 MiB'."""
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            break
    return f"{count:.1f} {unit}"


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_HEX_SPACE = frozenset(b" \t\r\n\v\f")


class HexDecoder:
    """Hex text → bytes, fed in chunks that may split a byte's two digits.

    Whitespace between bytes is allowed, not inside one. A digit left without
    its partner at the end, or any other character, raises ValueError.
    """

    def __init__(self) -> None:
        self._odd = b""  # a first digit waiting for its partner
        self._offset = 0

    def feed(self, chunk: bytes) -> bytes:
        digits = bytearray(self._odd)
        for index, byte in enumerate(chunk):
            if byte in _HEX_DIGITS:
                digits.append(byte)
            elif byte not in _HEX_SPACE:
                raise ValueError(f"hex input: {chr(byte)!r} at offset {self._offset + index} is not a hex digit")
            elif len(digits) % 2:
                raise ValueError(f"hex input: odd number of hex digits before offset {self._offset + index}")
        self._offset += len(chunk)
        whole = len(digits) - len(digits) % 2
        self._odd = bytes(digits[whole:])
        return bytes.fromhex(digits[:whole].decode())

    def close(self) -> None:
        if self._odd:
            raise ValueError("hex input: odd number of hex digits")


def decode_hex(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    decoder = HexDecoder()
    out = decoder.feed(data)
    decoder.close()
    return out


class LineSplitter:
    """Bytes fed in chunks → lines without their line end (LF or CRLF).

    Linear in the input: a line's pieces are joined once, when its end comes.
    With `limit`, a line longer than that (line end not counted) raises
    ValueError as soon as its first `limit + 2` bytes are in, so a line with
    no end in sight is never held whole.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self._pieces: list[bytes] = []  # the line so far, not joined yet
        self._size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._hold(chunk)
            return []
        lines = chunk.split(b"\n")
        if self._pieces:
            self._pieces.append(lines[0])
            lines[0] = b"".join(self._pieces)
            self._pieces, self._size = [], 0
        rest = lines.pop()
        if self.limit is not None:
            for line in lines:
                self._check(len(line) - line.endswith(b"\r"))
        if rest:
            self._hold(rest)
        return [line[:-1] if line.endswith(b"\r") else line for line in lines]

    def close(self) -> list[bytes]:
        rest = b"".join(self._pieces)
        self._pieces, self._size = [], 0
        return [rest] if rest else []

    def _hold(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._size += len(piece)
        if self.limit is not None:
            self._check(self._size - 1)  # the last byte may be the CR of a CRLF

    def _check(self, size: int) -> None:
        assert self.limit is not None
        if size > self.limit:
            raise ValueError(f"a line is longer than {self.limit:,} bytes")


class CrlfEncoder:
    """Translate bare LF to CRLF in a stream fed in chunks; CRLF stays CRLF."""

    def __init__(self) -> None:
        self._after_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        head, body = b"", chunk
        if self._after_cr and body.startswith(b"\n"):
            head, body = b"\n", body[1:]
        self._after_cr = chunk.endswith(b"\r")
        return head + body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def to_crlf(data: bytes) -> bytes:
    return CrlfEncoder().feed(data)


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "\0": "\\0"}


def escape_char(char: str) -> str:
    """One character as people may safely see it: itself if printable, else an escape."""
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{{{code:04x}}}"


def printable(text: str) -> str:
    """Text as given, with any control or undecodable character escaped (\\x1b, \\n):
    a name or path that came from a peer or a command line cannot drive a terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else escape_char(char) for char in text)
