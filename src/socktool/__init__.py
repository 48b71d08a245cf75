"""socktool: a command-line socket toolkit."""

__version__ = "0.1.0"
