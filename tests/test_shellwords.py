"""--exec's word splitting: what a POSIX shell would make of the command line, nothing expanded."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socktool.shellwords import split_command


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("cat", ["cat"]),
        ("  tr  a-z   A-Z ", ["tr", "a-z", "A-Z"]),
        (r'printf "a\$b"', ["printf", "a$b"]),
        (r'echo "a\b"', ["echo", r"a\b"]),
        (r'echo "\"quoted\" \\ \`"', ["echo", '"quoted" \\ `']),
        (r"echo 'a\$b'", ["echo", r"a\$b"]),
        (r"echo a\ b", ["echo", "a b"]),
        ("echo a\\\nb", ["echo", "ab"]),
        ('echo "a\\\nb"', ["echo", "ab"]),
        ("echo ''", ["echo", ""]),
        ('echo ""x', ["echo", "x"]),
        ("echo $HOME ~ * ;", ["echo", "$HOME", "~", "*", ";"]),
    ],
)
def test_words_are_split_as_a_shell_splits_them(line, words):
    assert split_command(line) == words


@pytest.mark.parametrize("line", ["echo 'open", 'echo "open', "echo \\"])
def test_unfinished_quoting_is_an_error(line):
    with pytest.raises(ValueError):
        split_command(line)


# Characters that matter to quoting, and plain ones; nothing sh would expand or act on ($ ` * ; ...),
# and no newline (sh ends a command at one outside quotes; --exec takes it as a blank).
_PIECES = st.sampled_from([*"ab \t'\"\\"])


@settings(max_examples=150, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_agrees_with_sh_on_quotes_and_backslashes(line):
    result = subprocess.run(["sh", "-c", "printf '%s\\0' " + line], capture_output=True, timeout=10)
    try:
        words = split_command(line)
    except ValueError:
        return  # an unclosed quote (sh fails too) or a trailing backslash (sh keeps it; we refuse)
    assert result.returncode == 0, result.stderr
    shell_words = result.stdout.decode().split("\0")[:-1] if words else []
    assert words == shell_words
