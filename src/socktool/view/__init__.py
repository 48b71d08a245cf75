"""Sinks that turn engine events into output. The only layer that imports rich, lazily."""
