"""Exceptions that the CLI turns into one-line messages (exit code 2)."""


class ConfigError(ValueError):
    """Bad user input: a config value, a CLI flag, a missing file. Message is one line."""


class InfeasibleArch(ValueError):
    """An architecture its space cannot realise under the space's own options (e.g. a global sparsity that its
    fixed-density N:M layers exceed): the trial is journalled `infeasible`, like a broken constraint, not `failed`."""
