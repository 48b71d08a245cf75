"""`python -m socktool` runs the same entry point as the console script."""

import sys

from socktool.cli import main

sys.exit(main())
