"""Pure renderings of payload bytes for people: escaped text and hex dumps.

Rule: whatever bytes arrive, the strings returned here contain no control
characters, so nothing a peer sends can reach the terminal raw.
"""

from __future__ import annotations

import re

from socktool.values import escape_char, printable

__all__ = [
    "escape_text",
    "escaped_lines",
    "escaped_preview",
    "hex_row_width",
    "hexdump_lines",
    "printable",
    "text_or_none",
]

_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # anything but printable ASCII less '\'


def escape_text(data: bytes) -> str:
    """UTF-8 text with every control or undecodable byte written as an escape."""
    return _UNSAFE.sub(lambda match: escape_char(match.group()), data.decode("utf-8", "surrogateescape"))


def escaped_lines(data: bytes) -> list[str]:
    """escape_text of each line (its newline shown as \\n at its end), so a view can show
    one line per line. The bytes are split, not the escaped text: `C:\\new` stays one line."""
    return [escape_text(line) for line in _raw_lines(data)]


def _raw_lines(data: bytes) -> list[bytes]:
    """data split after each b"\\n" only (bytes.splitlines also splits at \\r and others)."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def escaped_preview(data: bytes, *, rows: int, columns: int) -> tuple[list[str], int]:
    """The start of `data` as escaped lines that fill at most `rows` rows of `columns`
    characters (a long line takes several rows), and how many bytes of `data` they show.

    Cheap whatever the size of `data`: only the bytes that can be shown are looked at.
    """
    columns = max(columns, 8)
    out: list[str] = []
    shown = 0
    for line in _raw_lines(data[: rows * columns]):
        text = escape_text(line)
        need = max(1, -(-len(text) // columns))
        if need > rows:
            cut, taken = _escaped_prefix(line, rows * columns)
            out.append(cut)
            return out, shown + taken
        out.append(text)
        rows -= need
        shown += len(line)
        if not rows:
            break
    return out, shown


def _escaped_prefix(line: bytes, limit: int) -> tuple[str, int]:
    """The escaped text of the start of `line`, at most `limit` characters, never cutting an
    escape in two; and the number of bytes it shows."""
    pieces: list[str] = []
    length = taken = 0
    for char in line.decode("utf-8", "surrogateescape"):
        piece = escape_text(char.encode("utf-8", "surrogateescape"))
        if length + len(piece) > limit:
            break
        pieces.append(piece)
        length += len(piece)
        taken += len(char.encode("utf-8", "surrogateescape"))
    return "".join(pieces), taken


def text_or_none(data: bytes) -> str | None:
    """The payload as str when it is valid UTF-8 (for JSON), else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


_PRINTABLE_ASCII = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


def hex_row_width(columns: int, indent: int = 0) -> int:
    """Bytes per hex dump row that fit `columns` (16 at 80 columns with an indent of 2,
    then 8, then 4): a row never wraps in the middle."""
    for width in (16, 8):
        if indent + hexdump_row_length(width) <= columns:
            return width
    return 4


def hexdump_row_length(width: int) -> int:
    """The characters of one full hexdump_lines row: offset, hex in two groups, |ascii|."""
    return 8 + 2 + (3 * width - 1 + 1) + 2 + width + 2


def hexdump_lines(data: bytes, *, width: int = 16, offset: int = 0) -> list[str]:
    """Classic hex dump: offset, hex bytes in two groups of width/2, ASCII column."""
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
