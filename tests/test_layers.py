"""The layer contract of DESIGN.md, read from the source's import statements.

Dependencies point one way: cli -> ui, view, net; ui -> view, net;
view -> net.events (and net.errors), the pure module; net -> the pure module.
- net/ imports no view, ui, cli, rich, typer, click or textual;
- view/ imports, of socktool, only net.events, net.errors, the pure module
  and itself; rich only where it draws (inside a function, or for types);
- cli/ imports no `socket` (engines own the session);
- the pure modules (socktool/*.py below the package: values, ...) import
  nothing of socktool and do no I/O.

Nothing is imported or run: the files are parsed, so the test is quick and
sees every import, the lazy ones inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

import socktool

PACKAGE = Path(socktool.__file__).parent
ENTRY = {"socktool", "socktool.__main__"}  # the package and `python -m socktool`: the CLI's way in

# Imports that break the contract in code the engine rewrite (issue 10) is replacing.
# Each entry must still be a violation (test_known_violations_are_still_there), so the
# list can only shrink; empty it as the engine work lands.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()

PURE_FORBIDDEN = {"socket", "select", "selectors", "os", "subprocess", "ssl", "threading", "asyncio", "signal"}
UI_TOOLKITS = {"rich", "typer", "click", "textual"}
VIEW_MAY_IMPORT = {"socktool.net.events", "socktool.net.errors"}


class Import(NamedTuple):
    module: str  # the importing module, dotted
    name: str  # what it imports, dotted (resolved to a module where it names one)
    lazy: bool  # inside a function, or only for type checking
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    base = PACKAGE / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[Import]:
    return imports_in(module_name(path), path.read_text(), is_package=path.stem == "__init__")


def imports_in(module: str, source: str, *, is_package: bool = False) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(module, alias.name, lazy, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the importing module's package
                    package = module.split(".")[: len(module.split(".")) - child.level + is_package]
                    base = ".".join([*package, base] if base else package)
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    name = full if base.startswith("socktool") and _is_module(full) else base
                    found.append(Import(module, name, lazy, child.lineno))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
            elif isinstance(child, ast.If) and _type_checking(child):
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), True)
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), lazy)
            else:
                visit(child, lazy)

    visit(ast.parse(source), False)
    return found


def layer(module: str) -> str:
    """cli, net, view, ui, pure or entry."""
    if module in ENTRY:
        return "entry"
    parts = module.split(".")
    if parts[1] in ("cli", "net", "view", "ui"):
        return parts[1]
    return "pure"


class Imported(NamedTuple):
    top: str  # the first part of the imported name: "socktool", "rich", "socket", ...
    layer: str | None  # the imported module's layer, when it is socktool's


def _pure(imp: Import, to: Imported) -> str | None:
    if to.layer not in (None, "pure", "entry"):
        return "the pure module imports nothing of socktool's layers"
    if to.top in PURE_FORBIDDEN | UI_TOOLKITS:
        return "the pure module does no I/O"
    return None


def _net(imp: Import, to: Imported) -> str | None:
    if to.layer in ("cli", "view", "ui"):
        return f"net/ never imports {to.layer}/"
    if to.top in UI_TOOLKITS:
        return f"net/ never imports {to.top}"
    return None


def _view(imp: Import, to: Imported) -> str | None:
    if to.layer not in (None, "view", "pure") and imp.name not in VIEW_MAY_IMPORT:
        return "view/ imports of socktool only net.events, net.errors and the pure module"
    if to.top in ("typer", "click", "textual"):
        return f"view/ never imports {to.top}"
    if to.top == "rich" and not imp.lazy:
        return "view/ imports rich only where it draws (inside a function)"
    return None


def _ui(imp: Import, to: Imported) -> str | None:
    return "ui/ never imports cli/" if to.layer == "cli" else None


def _cli(imp: Import, to: Imported) -> str | None:
    if to.top == "socket":
        return "cli/ makes no socket calls: engines in net/ own the session"
    if to.top in ("rich", "textual") and not imp.lazy:
        return f"`import socktool.cli` must not import {to.top}"
    return None


RULES = {"pure": _pure, "net": _net, "view": _view, "ui": _ui, "cli": _cli}


def rule_broken(imp: Import) -> str | None:
    """Why this import breaks the layer contract, or None when it keeps it."""
    top = imp.name.split(".")[0]
    ours = top == "socktool" and imp.name != "socktool"
    to = Imported(top, layer(imp.name) if ours else None)
    here = layer(imp.module)
    if here in RULES and (reason := RULES[here](imp, to)):
        return reason
    if here not in ("entry", "cli") and to.layer == "cli":
        return "nothing below cli/ imports it"
    return None


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def violations() -> dict[tuple[str, str], str]:
    found = {}
    for imp in all_imports():
        reason = rule_broken(imp)
        if reason is not None:
            found[(imp.module, imp.name)] = f"{imp.module}:{imp.line} imports {imp.name}: {reason}"
    return found


def test_imports_keep_the_layer_contract():
    broken = {key: text for key, text in violations().items() if key not in KNOWN_VIOLATIONS}
    assert not broken, "\n".join(sorted(broken.values()))


def test_known_violations_are_still_there():
    """An entry whose import is gone must leave KNOWN_VIOLATIONS too: the list only shrinks."""
    fixed = KNOWN_VIOLATIONS - violations().keys()
    assert not fixed, f"no longer violations, remove them from KNOWN_VIOLATIONS: {sorted(fixed)}"


# -- the checker itself: each rule catches what it is for ----------------------------------------
def _check(module: str, source: str) -> list[str]:
    return [reason for imp in imports_in(module, source) if (reason := rule_broken(imp)) is not None]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("socktool.net.relay", "from socktool.view.render import printable"),
        ("socktool.net.relay", "def f():\n    import rich"),
        ("socktool.net.relay", "import typer"),
        ("socktool.net.relay", "from socktool.cli import options"),
        ("socktool.view.status", "from socktool.net.fdio import write_all"),
        ("socktool.view.status", "from socktool.net import relay"),
        ("socktool.view.status", "from rich.text import Text"),
        ("socktool.view.status", "import typer"),
        ("socktool.cli.udp", "def f():\n    import socket"),
        ("socktool.cli.udp", "import rich.console"),
        ("socktool.values", "import socket"),
        ("socktool.values", "from socktool.net import events"),
        ("socktool.ui.app", "from socktool.cli import options"),
    ],
)
def test_checker_catches(module, source):
    assert _check(module, source)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("socktool.net.relay", "from socktool import values\nfrom socktool.net import events as ev"),
        ("socktool.view.status", "from socktool.net import events as ev\nfrom socktool.net.errors import OutputClosed"),
        ("socktool.view.status", "from socktool.values import format_size\nfrom socktool.view import render"),
        ("socktool.view.status", "def f():\n    from rich.text import Text"),
        ("socktool.view.status", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rich.text import Text"),
        ("socktool.cli.udp", "import typer\nfrom socktool.net import udp\nfrom socktool.view.output import build_sink"),
        ("socktool.ui.app", "from socktool.view import status\nfrom socktool.net import events"),
    ],
)
def test_checker_allows(module, source):
    assert _check(module, source) == []
