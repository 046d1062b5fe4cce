"""Reading a user's CSV table (a benchmark table, latency measurements) with one-line errors."""
from __future__ import annotations

import csv

from .errors import ConfigError


def read_table(path: str, columns: list[str], hints: dict[str, str] | None = None) -> tuple[list[str], list[dict]]:
    """The header and rows of a CSV file that must have `columns` and at least one row; a one-line ConfigError
    otherwise. `hints` name the option behind a column (e.g. "space.signal") in the missing-column error."""
    hints = hints or {}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            for col in columns:
                if col not in header:
                    hint = f" ({hints[col]})" if col in hints else ""
                    raise ConfigError(f"{path} has no column {col!r}{hint} (columns: {', '.join(header) or 'none'})")
            rows = list(reader)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path} is not a readable CSV file: {e}") from None
    if not rows:
        raise ConfigError(f"{path} has no rows")
    return header, rows
