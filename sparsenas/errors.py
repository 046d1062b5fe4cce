"""Exceptions that the CLI turns into one-line messages (exit code 2)."""


class ConfigError(ValueError):
    """Bad user input: a config value, a CLI flag, a missing file. Message is one line."""
