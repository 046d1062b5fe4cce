"""Fuzzed journals and checkpoints: resume finishes the budget keeping every surviving valid trial exactly once,
or refuses with one line — never a traceback, never a lost valid record."""
import contextlib
import io
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cli
from sparsenas.journal import TrialResult

BUDGET, MORE = 6, 8
ARCH = {"mode": ["ok"], "x": range(20)}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("fuzz") / "runs"
    assert cli("--allow-import", "faulty_plugin", "search", "--space", "faulty", "--strategy", "evolution",
               "--set", "space.modes=[ok]", "--budget", BUDGET, "--seed", 1, "--name", "base", "--runs-dir", runs,
               "--quiet") == 0
    return runs / "base"


def valid_records(data: bytes) -> dict[int, bytes]:
    """What a correct resume must keep: the first valid record of each trial among the complete lines."""
    kept = {}
    for line in data.split(b"\n")[:-1]:
        try:
            result = TrialResult.from_record(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue
        in_space = all(k in ARCH and v in ARCH[k] for k, v in result.arch.items()) and len(result.arch) == 2
        if in_space and result.trial not in kept:
            kept[result.trial] = result
    return {t: r.to_record() for t, r in kept.items()}


damage = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("duplicate"), st.integers(0, BUDGET - 1)),
    st.tuples(st.just("swap"), st.integers(0, BUDGET - 1), st.integers(0, BUDGET - 1)),
)


def apply(data: bytes, op) -> bytes:
    if op[0] == "flip":
        if not data:
            return data
        i = op[1] % len(data)
        return data[:i] + bytes([data[i] ^ op[2]]) + data[i + 1:]
    if op[0] == "truncate":
        return data[:op[1] % (len(data) + 1)]
    lines = data.split(b"\n")
    n = max(len(lines) - 1, 1)  # a checkpoint is one line without a newline
    if op[0] == "duplicate":
        lines.insert(op[1] % n, lines[op[1] % n])
    else:
        i, j = op[1] % n, op[2] % n
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(["trials.jsonl", "state/checkpoint.json"]), ops=st.lists(damage, min_size=1, max_size=3))
def test_resume_after_random_corruption_keeps_valid_trials_or_refuses_with_one_line(base_run, tmp_path, target, ops):
    runs = tmp_path / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    shutil.copytree(base_run, runs / "r")
    path = runs / "r" / target
    data = path.read_bytes()
    for op in ops:
        data = apply(data, op)
    path.write_bytes(data)
    survivors = valid_records((runs / "r" / "trials.jsonl").read_bytes())
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli("--allow-import", "faulty_plugin", "search", "--resume", "--name", "r", "--runs-dir", runs,
                   "--budget", MORE, "--quiet")
    assert "Traceback" not in err.getvalue()
    final = [json.loads(line) for line in (runs / "r" / "trials.jsonl").read_text().splitlines()]
    by_trial = {r["trial"]: r for r in final}
    assert len(by_trial) == len(final)  # no trial twice
    for trial, record in survivors.items():  # no valid record lost, refused or not
        assert trial in by_trial and TrialResult.from_record(by_trial[trial]).to_record() == record
    if code == 0:
        assert len(final) == MORE
    else:
        assert code == 2
        assert err.getvalue().splitlines()[-1].startswith("sparsenas: error:")
