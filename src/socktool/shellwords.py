"""Splitting a command line into words as a POSIX shell does, without running one.

Rules (POSIX 2.2 Quoting, 2.6.5 Field Splitting, with no expansions):
- words are separated by unquoted blanks (space, tab, newline);
- outside quotes a backslash keeps the next character as it is, and a
  backslash before a newline is removed with it (a continued line);
- inside single quotes every character is itself, up to the next quote;
- inside double quotes a backslash escapes only `$`, `` ` ``, `"`, `\\` and
  a newline (which it removes); before any other character it stays;
- nothing is expanded: `$HOME`, `*`, `~` and `;` are plain characters.
ValueError for an unclosed quote or a trailing backslash.
"""

from __future__ import annotations

_BLANKS = frozenset(" \t\n")
_ESCAPED_IN_DOUBLE_QUOTES = frozenset('$`"\\\n')


def split_command(text: str) -> list[str]:
    """'printf "a\\$b" x' → ['printf', 'a$b', 'x']."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in _BLANKS:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
        elif char == "\\":
            if i + 1 >= n:
                raise ValueError("the command ends with a backslash")
            if text[i + 1] != "\n":
                word.append(text[i + 1])
                in_word = True
            i += 2
        elif char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError("no closing quotation (')")
            word.append(text[i + 1 : end])
            in_word = True
            i = end + 1
        elif char == '"':
            i = _double_quoted(text, i + 1, word)
            in_word = True
        else:
            word.append(char)
            in_word = True
            i += 1
    if in_word:
        words.append("".join(word))
    return words


def _double_quoted(text: str, i: int, word: list[str]) -> int:
    """Append the inside of a double-quoted part starting at `i`; the index after its closing quote."""
    n = len(text)
    while i < n:
        char = text[i]
        if char == '"':
            return i + 1
        if char == "\\" and i + 1 < n and text[i + 1] in _ESCAPED_IN_DOUBLE_QUOTES:
            if text[i + 1] != "\n":
                word.append(text[i + 1])
            i += 2
            continue
        word.append(char)
        i += 1
    raise ValueError('no closing quotation (")')
