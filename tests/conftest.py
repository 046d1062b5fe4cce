import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Tiny, fast settings for end-to-end runs of the trained spaces.
FAST = ["--set", "train.epochs=1", "--set", "data.limit=128", "--set", "space.C=4", "--quiet"]


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


def cli(*argv):
    """Run the CLI in-process; returns the exit code."""
    from sparsenas.cli import main

    return main([str(a) for a in argv])


def cli_subprocess_cmd(*argv):
    return [sys.executable, "-m", "sparsenas", *map(str, argv)]
