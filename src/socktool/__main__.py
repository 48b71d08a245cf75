"""`python -m socktool` runs the same entry point as the console script."""

from socktool.cli import run

run()
