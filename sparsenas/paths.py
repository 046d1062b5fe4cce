"""Paths the user names for output (`--runs-dir`/`--name`, `--out`, `--cache-dir`), checked before any work:
a path the system will refuse (a file where a directory must be, a name too long, a symbolic-link loop, no
write permission) is one line naming it (ConfigError), not an OSError after minutes of training."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ConfigError


def _existing(path: Path, what: str) -> tuple[Path, os.stat_result]:
    """The nearest of `path` and its parents that exists, and its stat; the names still to be created must fit
    the file system there."""
    for candidate in (path, *path.parents):
        try:
            st = os.stat(candidate)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            raise ConfigError(f"{what} {path}: one of its parents is not a directory") from None
        except OSError as e:
            raise ConfigError(f"{what} {path}: {e.strerror}") from None
        limit = os.pathconf(candidate, "PC_NAME_MAX") if stat.S_ISDIR(st.st_mode) else 255
        if any(len(os.fsencode(part)) > limit for part in path.relative_to(candidate).parts):
            raise ConfigError(f"{what} {path}: a name is longer than {limit} bytes")
        return candidate, st
    raise ConfigError(f"{what} {path}: no existing parent directory")


def _writable(directory: Path, path: Path, what: str) -> None:
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: {directory} is not writable")


def _not_a_directory(found: Path, path: Path, what: str) -> ConfigError:
    return ConfigError(f"{what} {path} is not a directory" if found == path else
                       f"{what} {path}: {found} is not a directory")


def output_dir(path, what: str) -> Path:
    """`path` as a directory to create or write into."""
    path = Path(path)
    found, st = _existing(path, what)
    if not stat.S_ISDIR(st.st_mode):
        raise _not_a_directory(found, path, what)
    _writable(found, path, what)
    return path


def output_file(path, what: str) -> Path:
    """`path` as a file to create or replace."""
    path = Path(path)
    found, st = _existing(path, what)
    if found == path:
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{what} {path} is a directory; give a file name")
        found = path.parent
    elif not stat.S_ISDIR(st.st_mode):
        raise _not_a_directory(found, path, what)
    _writable(found, path, what)
    return path
