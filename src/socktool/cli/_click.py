"""Typer's exception classes, wherever this Typer keeps them (click is vendored since 0.2x)."""

from typer import Abort, Exit

try:
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - Typer releases that depend on click
    from click.exceptions import ClickException, UsageError  # type: ignore[no-redef]

__all__ = ["Abort", "ClickException", "Exit", "UsageError"]
