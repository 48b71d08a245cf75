"""--help teaches: a one-line summary, options in panels, real examples shown
exactly as written (rich markup must not eat `[::1]` or `[default: …]`)."""

from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import os
import re

import pytest
import typer

from conftest import run
from socktool.cli.app import COMMANDS, EXAMPLES, build_app

PANELS = ["Connection", "TLS", "Proxy", "Faults", "Input and output", "Output"]


@functools.cache
def help_text(*args: str, columns: int = 250) -> str:
    """The help as a user sees it (a subprocess), once per command and width: two tests read each."""
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    result = run(*args, "--help", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def flat(text: str) -> str:
    """Help without its box drawing, whitespace collapsed: wrapped cells read as one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def docstring(name: str) -> str:
    module, function = COMMANDS[name]
    return inspect.getdoc(getattr(importlib.import_module(module), function)) or ""


def examples(doc: str) -> list[str]:
    _, _, tail = doc.partition("Examples:\n")
    return [line.strip() for line in tail.splitlines() if line.strip()]


def test_root_help_lists_every_command_in_order_with_its_summary() -> None:
    text = help_text()
    rows = [line for line in text.splitlines() if re.match(r"│ [a-z][a-z-]* ", line)]
    listed = [row.split()[1] for row in rows]
    assert listed == list(COMMANDS)
    for row, name in zip(rows, COMMANDS, strict=True):
        summary = docstring(name).splitlines()[0]
        assert summary in row, (name, row)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_help_has_a_summary_grouped_options_and_examples_as_written(name: str) -> None:
    text = help_text(name)
    doc = docstring(name)
    summary = doc.splitlines()[0]
    assert len(summary) <= 80 and summary.endswith("."), summary
    assert summary in text

    # The usage line names the arguments as the README does: HOST:PORT, not {HOST:PORT}.
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert f"socktool {name} [OPTIONS]" in usage
    assert "{" not in usage and "}" not in usage, usage
    for noise in ("<convert>", "<str>", "<Endpoint>", "<PortList>"):
        assert noise not in text

    # Two or three examples, each one shown exactly as written in the docstring.
    shown = examples(doc)
    assert 2 <= len(shown) <= 3, shown
    for example in shown:
        assert "socktool " in example
        assert example in text, f"example rendered differently: {example!r}"

    # Every option sits in a named panel, the panels in the same order everywhere.
    titles = re.findall(r"╭─ (.+?) ─", text)
    assert "Options" not in titles
    panels = [title for title in titles if title != "Arguments"]
    assert panels == [panel for panel in PANELS if panel in panels], panels
    assert {"Connection", "Output"} <= set(panels)
    assert "[default: 0.0]" not in text


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_parameter_help_survives_rendering(name: str) -> None:
    """Rich markup would drop `[lower-case…]` text; every help string must show whole."""
    text = flat(help_text(name))
    group = typer.main.get_command(build_app([name]))
    command = group.commands[name]
    for param in command.params:
        help_ = getattr(param, "help", None)
        if help_:
            assert " ".join(help_.split()) in text, (param.name, help_)


def description_widths(text: str) -> dict[str, int]:
    """Per option panel, the narrowest description column (measured on the rows that only continue one)."""
    widths: dict[str, int] = {}
    panel = None
    for line in text.splitlines():
        if line.startswith("╭─"):
            panel = line.strip("╭─╮ ").split(" ─")[0]
        elif line.startswith("╰"):
            panel = None
        elif panel and line.startswith("│") and line.endswith("│"):
            inner = line[1:-1]
            body = inner.lstrip()
            if body and not body.startswith(("-", "*", "[")):
                widths[panel] = min(widths.get(panel, len(inner)), len(inner) - (len(inner) - len(body)))
    return widths


@pytest.mark.parametrize("name", ["tcp-listen", "tcp-connect", "udp-send", "udp-listen", "forward"])
def test_help_is_readable_at_60_columns(name):
    """tcp-listen's descriptions were 13 characters wide: the --no-reuse-addr column and a long
    metavar (crc16-modbus|crc32|sum8|xor8) took the rest."""
    text = help_text(name, columns=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    widths = description_widths(text)
    assert "Connection" in widths and "Input and output" in widths, widths
    assert min(widths.values()) >= 20, widths


def description(text: str) -> list[list[str]]:
    """The paragraphs above the option panels, each a list of lines without the one-column margin."""
    paragraphs: list[list[str]] = [[]]
    for line in text.split("╭", 1)[0].splitlines():
        if line.strip():
            paragraphs[-1].append(line[1:].rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [lines for lines in paragraphs if lines]


def joined_examples(lines: list[str]) -> list[str]:
    """Examples as a shell reads them: a line ending in ` \\` goes on in the next one."""
    commands: list[str] = []
    going_on = False
    for line in lines[1:]:
        text = line.strip()
        if going_on:
            commands[-1] += " " + text.removesuffix(" \\")
        else:
            commands.append(text.removesuffix(" \\"))
        going_on = text.endswith(" \\")
    return commands


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_descriptions_are_laid_out_for_60_columns(name):
    """Typer kept the docstrings' 80-column line breaks and wrapped them again at 60, so every
    other line was a stub ("thread (their data"), and a long example's tail fell to the margin,
    where it read as a command of its own."""
    width = 60
    text = help_text(*([name] if name else []), columns=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text, "a cell was cut short"
    paragraphs = description(text)
    assert paragraphs[0][0].startswith("Usage:"), paragraphs[0]
    doc = docstring(name) if name else EXAMPLES.partition("\n\n")[0]  # (the root's last paragraph is prose)
    for lines in paragraphs[1:]:
        if lines[0] == "Examples:":
            assert joined_examples(lines) == examples(doc), lines
            for line in lines[1:]:
                assert line.startswith("  ") and len(line) <= width - 2, line
        elif not any(line[:1].isspace() for line in lines):  # prose: each line as full as the next word allows
            for line, after in itertools.pairwise(lines):
                assert len(line) + 1 + len(after.split()[0]) > width - 2, (line, after)
        else:  # a hand-made list: an entry's continuation sits under its description
            for line in lines[1:]:
                assert line.startswith("  "), line
    if name:
        widths = description_widths(text)
        assert min(widths.values()) >= 20, widths
