"""Pure renderings of payload bytes for people: escaped text and hex dumps.

Rule: whatever bytes arrive, the strings returned here contain no control
characters, so nothing a peer sends can reach the terminal raw.
"""

from __future__ import annotations

import re

from socktool.values import escape_char, printable

__all__ = ["escape_text", "escaped_lines", "hexdump_lines", "printable", "text_or_none"]

_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # anything but printable ASCII less '\'


def escape_text(data: bytes) -> str:
    """UTF-8 text with every control or undecodable byte written as an escape."""
    return _UNSAFE.sub(lambda match: escape_char(match.group()), data.decode("utf-8", "surrogateescape"))


def escaped_lines(data: bytes) -> list[str]:
    """escape_text split after each newline, so a view can show one line per line."""
    lines = escape_text(data).split("\\n")
    out = [line + "\\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def text_or_none(data: bytes) -> str | None:
    """The payload as str when it is valid UTF-8 (for JSON), else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


_PRINTABLE_ASCII = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


def hexdump_lines(data: bytes, *, width: int = 16, offset: int = 0) -> list[str]:
    """Classic hex dump: offset, hex bytes in two groups of eight, ASCII column."""
    lines = []
    half = width // 2
    for start in range(0, len(data), width):
        row = data[start : start + width]
        left = row[:half].hex(" ")
        right = row[half:].hex(" ")
        hex_part = f"{left:<{half * 3 - 1}}  {right:<{half * 3 - 1}}"
        ascii_part = row.translate(_PRINTABLE_ASCII).decode("ascii")
        lines.append(f"{offset + start:08x}  {hex_part}  |{ascii_part}|")
    return lines
