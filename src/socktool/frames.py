"""--frame: how a byte stream is cut into messages, and how a message is framed to be sent.

Rules (the "sticky packet" of TCP: a read holds part of a message, or several):
- `line` / `crlf`: a message ends at LF (a CR before it is dropped) / at CRLF;
  `delim:HEX` at that byte sequence. The message is what comes before the end.
- `len8`, `len16`, `len32` (big-endian, network order), `len16le`, `len32le`:
  a header with the payload's length (the header not counted), then the payload.
- `fixed:N`: every message is N bytes.
- A message that would be larger than `max_frame` (a length header that says
  so, or that many bytes without a delimiter) is a FrameTooLarge error: the
  decoder is of no more use for that stream, and nothing was buffered beyond
  max_frame plus one read.
- Encoding is the inverse: a message sent gets the header or the end added;
  `fixed:N` takes only a message of exactly N bytes.
- `--checksum`: appended to each message sent, before the framing:
  crc16-modbus (2 bytes, low byte first as Modbus sends it), crc32 (4 bytes,
  big-endian), sum8 and xor8 (1 byte).

Pure: no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Literal, NamedTuple

from socktool.values import CHECKSUMS, DEFAULT_MAX_FRAME, decode_hex
from socktool.values import FRAME_KINDS as KINDS

ByteOrder = Literal["big", "little"]
_LENGTHS: dict[str, tuple[int, ByteOrder]] = {
    "len8": (1, "big"),
    "len16": (2, "big"),
    "len32": (4, "big"),
    "len16le": (2, "little"),
    "len32le": (4, "little"),
}


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 10**6,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 10**9,
    "gib": 1 << 30,
}


def parse_size(text: str) -> int:
    """A size in bytes: 1024, 64KiB, 16MiB, 1M (K/M/G alone are binary; KB/MB/GB decimal)."""
    number = text.rstrip("BbKkMmGgIi")
    unit = text[len(number) :].lower()
    if not number.isascii() or not number.isdigit() or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 65536, 64KiB, 16MiB)")
    size = int(number) * _UNITS[unit]
    if size < 1:
        raise ValueError(f"a size of at least 1 byte, not {text!r}")
    return size


class FrameTooLarge(ValueError):
    pass


class Framing(NamedTuple):
    kind: str  # "delim", "length" or "fixed"
    delimiter: bytes = b""
    header: int = 0  # bytes of the length header
    byteorder: ByteOrder = "big"
    size: int = 0  # fixed:N
    strip_cr: bool = False  # line: a CR before the LF is not part of the message
    name: str = ""

    def encode(self, message: bytes) -> bytes:
        if self.kind == "delim":
            return message + self.delimiter
        if self.kind == "fixed":
            if len(message) != self.size:
                raise ValueError(f"--frame {self.name} sends messages of exactly {self.size} bytes, not {len(message)}")
            return message
        limit = 1 << (8 * self.header)
        if len(message) >= limit:
            raise ValueError(f"{len(message):,} bytes do not fit a {self.name} header (at most {limit - 1:,})")
        return len(message).to_bytes(self.header, self.byteorder) + message

    def decoder(self, max_frame: int = DEFAULT_MAX_FRAME) -> FrameDecoder:
        return FrameDecoder(self, max_frame)


def parse_frame(text: str) -> Framing:
    if text == "line":
        return Framing("delim", b"\n", strip_cr=True, name=text)
    if text == "crlf":
        return Framing("delim", b"\r\n", name=text)
    if text in _LENGTHS:
        header, order = _LENGTHS[text]
        return Framing("length", header=header, byteorder=order, name=text)
    kind, _, value = text.partition(":")
    if kind == "delim" and value:
        delimiter = decode_hex(value)
        if not delimiter:
            raise ValueError("delim:HEX needs at least one byte")
        return Framing("delim", delimiter, name=text)
    if kind == "fixed" and value:
        if not (value.isascii() and value.isdigit()) or int(value) < 1:
            raise ValueError(f"fixed:N needs a size of at least 1 byte, not {value!r}")
        return Framing("fixed", size=int(value), name=text)
    raise ValueError(f"{text!r} is not a framing: one of {KINDS}")


class FrameDecoder:
    """Bytes fed as they were read → whole messages (see the module's rules)."""

    def __init__(self, framing: Framing, max_frame: int = DEFAULT_MAX_FRAME):
        self.framing = framing
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._searched = 0  # delimiter search resumes here (no rescanning of a long partial message)

    @property
    def pending(self) -> int:
        """Bytes held that do not make a whole message yet."""
        return len(self._buffer)

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        self._buffer += data
        kind = self.framing.kind
        if kind == "delim":
            return self._delimited()
        if kind == "fixed":
            return self._fixed()
        return self._length_prefixed()

    def rest(self) -> bytes:
        """What is left at the end of the stream (an incomplete message), emptied."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._searched = 0
        return rest

    def _too_large(self, size: int) -> FrameTooLarge:
        return FrameTooLarge(f"a {size:,}-byte message is larger than --max-frame ({self.max_frame:,})")

    def _delimited(self) -> list[bytes]:
        buffer, delimiter = self._buffer, self.framing.delimiter
        out: list[bytes] = []
        start = 0
        search = max(0, self._searched - len(delimiter) + 1)
        while True:
            end = buffer.find(delimiter, search)
            if end < 0:
                break
            if end - start > self.max_frame:
                raise self._too_large(end - start)
            message = bytes(buffer[start:end])
            if self.framing.strip_cr and message.endswith(b"\r"):
                message = message[:-1]
            out.append(message)
            start = search = end + len(delimiter)
        del buffer[:start]
        self._searched = len(buffer)
        if len(buffer) > self.max_frame:
            raise self._too_large(len(buffer))
        return out

    def _fixed(self) -> list[bytes]:
        buffer, size = self._buffer, self.framing.size
        count = len(buffer) // size
        out = [bytes(buffer[i * size : (i + 1) * size]) for i in range(count)]
        del buffer[: count * size]
        return out

    def _length_prefixed(self) -> list[bytes]:
        buffer, header, order = self._buffer, self.framing.header, self.framing.byteorder
        out: list[bytes] = []
        start = 0
        while len(buffer) - start >= header:
            size = int.from_bytes(buffer[start : start + header], order)
            if size > self.max_frame:
                raise self._too_large(size)
            if len(buffer) - start - header < size:
                break
            out.append(bytes(buffer[start + header : start + header + size]))
            start += header + size
        del buffer[:start]
        return out


# -- checksums ----------------------------------------------------------------------------
def crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def checksum_bytes(name: str, data: bytes) -> bytes:
    """The checksum `name` of `data`, as it is appended to a message."""
    if name == "crc16-modbus":
        return crc16_modbus(data).to_bytes(2, "little")
    if name == "crc32":
        return zlib.crc32(data).to_bytes(4, "big")
    if name == "sum8":
        return bytes([sum(data) & 0xFF])
    if name == "xor8":
        value = 0
        for byte in data:
            value ^= byte
        return bytes([value])
    raise ValueError(f"{name!r} is not a checksum: one of {', '.join(CHECKSUMS)}")


def message_encoder(framing: Framing | None, checksum: str | None) -> Callable[[bytes], bytes]:
    """message -> bytes to send: checksum appended, then framed (None: as it is)."""

    def encode(message: bytes) -> bytes:
        if checksum is not None:
            message += checksum_bytes(checksum, message)
        return framing.encode(message) if framing is not None else message

    return encode


__all__ = [
    "CHECKSUMS",
    "DEFAULT_MAX_FRAME",
    "KINDS",
    "FrameDecoder",
    "FrameTooLarge",
    "Framing",
    "checksum_bytes",
    "crc16_modbus",
    "message_encoder",
    "parse_frame",
    "parse_size",
]
