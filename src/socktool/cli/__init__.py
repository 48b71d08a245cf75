"""The command line: Typer commands over the engines. No socket code here.

Rule: `import socktool.cli` must not import rich (start-up time); views
import it when they are about to draw.
"""

from socktool.cli.app import build_app
from socktool.cli.boundary import main, run

__all__ = ["build_app", "main", "run"]
