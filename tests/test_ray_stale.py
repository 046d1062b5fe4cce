"""A search killed with SIGKILL leaves its local Ray's temp dir (auth token, session files): the next local Ray
removes the dirs whose search is gone, and only those."""
import os
import subprocess
import sys

from sparsenas.execution.ray_cluster import STALE_PREFIX, remove_stale_dirs


def test_the_dirs_of_dead_searches_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"{STALE_PREFIX}{dead}-abc123"
    live = tmp_path / f"{STALE_PREFIX}{os.getpid()}-def456"
    other = tmp_path / f"{STALE_PREFIX}d5jvypd6"  # not ours to judge: no pid in the name
    for d in (stale, live, other):
        (d / "ray").mkdir(parents=True)
        (d / "auth_token").write_text("secret")
    assert remove_stale_dirs(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()
