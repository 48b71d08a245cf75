"""Engines: sockets and bytes. No typer, no rich, no printing.

Engines report what happens as events (see `events`) to a sink callable and
raise the errors of `errors`; they never let a raw OSError reach the CLI.
"""
