"""A run directory is input: nothing in it runs code, no finished trial is lost or counted twice, one writer."""
import errno
import gzip
import json
import os
import pickle
import subprocess
import time
from pathlib import Path

import pytest

from conftest import cli, cli_subprocess_cmd
from sparsenas.data import load_arrays_pickle
from sparsenas.errors import ConfigError
from sparsenas.journal import Journal

PLUGIN = ["--allow-import", "faulty_plugin"]
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}


def search(runs, name, *extra, budget=6, strategy="random"):
    return cli(*PLUGIN, "search", "--space", "faulty", "--strategy", strategy, "--set", "space.modes=[ok]",
               "--budget", budget, "--seed", 3, "--name", name, "--runs-dir", runs, "--quiet", *extra)


def resume(runs, name, *extra):
    return cli(*PLUGIN, "search", "--resume", "--name", name, "--runs-dir", runs, "--quiet", *extra)


def lines(run):
    return (run / "trials.jsonl").read_text().splitlines()


def trials(run):
    return [json.loads(line)["trial"] for line in lines(run)]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


class RunsCode:
    """What an attacker puts in a pickle: unpickling it creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# -- 1. no code from a run directory -------------------------------------------------------------------------
def test_a_crafted_pickle_checkpoint_is_refused_and_never_loaded(runs, tmp_path, capsys):
    assert search(runs, "r", budget=2) == 0
    state = runs / "r" / "state"
    (state / "checkpoint.json").unlink()
    marker = tmp_path / "pwned"
    (state / "checkpoint.pkl").write_bytes(pickle.dumps({"strategy": RunsCode(marker)}))
    capsys.readouterr()
    assert resume(runs, "r", "--budget", 4) == 2
    assert "older sparsenas" in one_line(capsys)
    assert not marker.exists() and len(lines(runs / "r")) == 2


@pytest.mark.parametrize("damage", ["not json", "flipped byte", "other strategy", "other format", "bad tensor"])
def test_a_damaged_checkpoint_is_one_line_and_exit_2(damage, runs, capsys):
    assert search(runs, "r", budget=2, strategy="opgfn") == 0
    path = runs / "r" / "state" / "checkpoint.json"
    doc = json.loads(path.read_text())
    if damage == "not json":
        path.write_text(path.read_text()[:-40])
    elif damage == "flipped byte":
        text = path.read_text()
        i = text.index('"next_trial": ') + len('"next_trial": ')
        path.write_text(text[:i] + "7" + text[i + 1:])
    elif damage == "other strategy":
        doc["strategy"] = "evolution"
        path.write_text(json.dumps(doc))
    elif damage == "other format":
        doc["format"] = 1
        path.write_text(json.dumps(doc))
    else:
        from sparsenas.checkpoint import save
        save(path, {"strategy": {"net": "not a state dict"}}, space="faulty", strategy="opgfn")
    capsys.readouterr()
    assert resume(runs, "r", "--budget", 3) == 2
    one_line(capsys)
    assert len(lines(runs / "r")) == 2


def test_checkpoint_round_trips_tensors_tuples_and_int_keys_exactly():
    import numpy as np
    import torch

    from sparsenas.checkpoint import decode, encode

    state = {"w": torch.randn(3, 4), "b": torch.tensor(True), "g": torch.Generator().manual_seed(1).get_state(),
             "opt": {0: {"step": torch.tensor(3.0)}}, "t": (1, [2, (3.5, None)]), "rng": ("MT", np.arange(4))}
    back = decode(json.loads(json.dumps(encode(state))))
    assert torch.equal(back["w"], state["w"]) and torch.equal(back["g"], state["g"]) and back["b"].item() is True
    assert back["opt"][0]["step"].item() == 3.0 and back["t"] == (1, [2, (3.5, None)])
    assert isinstance(back["rng"], tuple) and back["rng"][1].tolist() == [0, 1, 2, 3]


def test_a_dataset_pickle_may_hold_only_numpy_arrays(tmp_path):
    import numpy as np

    good = tmp_path / "mnist.pkl.gz"
    x, y = np.zeros((2, 784), np.float32), np.arange(2)
    with gzip.open(good, "wb") as f:
        pickle.dump(((x, y), (x, y), (x, y)), f)
    with gzip.open(good) as f:
        (train, _, _) = load_arrays_pickle(f, "mnist")
    assert train[0].shape == (2, 784)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as f:
        pickle.dump(((x, RunsCode(marker)), (x, y), (x, y)), f)
    with gzip.open(evil) as f, pytest.raises(ConfigError, match="not a pickle of NumPy arrays"):
        load_arrays_pickle(f, "mnist")
    assert not marker.exists()


# -- 2. no finished trial lost or counted twice --------------------------------------------------------------
@pytest.mark.parametrize("damage", ["corrupt middle", "blank line", "duplicate", "hand edit"])
def test_resume_keeps_every_valid_record_and_quarantines_the_rest(damage, runs, caplog):
    assert search(runs, "r", budget=5) == 0
    journal = runs / "r" / "trials.jsonl"
    before = lines(runs / "r")
    edited = list(before)
    if damage == "corrupt middle":
        edited[1] = edited[1][:30] + "#" + edited[1][31:]
    elif damage == "blank line":
        edited.insert(2, "")
    elif damage == "duplicate":
        edited.insert(3, edited[1])
    else:
        edited[2] = edited[2].replace('"status": "ok"', '"status": "okay"')
    journal.write_text("\n".join(edited) + "\n")
    assert resume(runs, "r", "--budget", 7) == 0
    after = lines(runs / "r")
    numbers = [json.loads(line)["trial"] for line in after]
    assert len(after) == 7 and len(set(numbers)) == 7
    kept = [line for i, line in enumerate(before) if not (damage in ("corrupt middle",) and i == 1)
            and not (damage == "hand edit" and i == 2)]
    assert all(line in after for line in kept)  # every valid record survives
    corrupt = runs / "r" / "trials.corrupt.jsonl"
    if damage == "blank line":
        assert not corrupt.exists()
    else:
        assert len(corrupt.read_text().splitlines()) == 1
        assert "moved 1" in caplog.text


def test_a_torn_valid_last_line_is_completed_not_joined_to_the_next(tmp_path):
    run = tmp_path / "j"
    run.mkdir()
    journal = run / "trials.jsonl"
    record = {"trial": 0, "arch": {"x": 1}, "label": "x", "status": "ok", "metrics": {"val_acc": 0.5}, "seed": 1,
              "duration_s": 0.1, "worker": "local", "error": None}
    journal.write_text(json.dumps(record))  # no newline: written whole, newline lost
    assert [r.trial for r in Journal(journal).load()] == [0]
    assert journal.read_text() == json.dumps(record) + "\n"
    journal.write_text(json.dumps(record) + "\n" + json.dumps({**record, "trial": 1})[:20])
    assert [r.trial for r in Journal(journal).load()] == [0]
    assert journal.read_text() == json.dumps(record) + "\n"


@pytest.mark.parametrize("value", ['"3"', "1.5", "true", "-1"])
def test_a_trial_number_of_the_wrong_type_is_one_line(value, runs, capsys):
    assert search(runs, "r", budget=3) == 0
    journal = runs / "r" / "trials.jsonl"
    text = journal.read_text().replace('"trial": 1,', f'"trial": {value},')
    journal.write_text(text)
    capsys.readouterr()
    assert resume(runs, "r", "--budget", 4) == 2
    assert "'trial' must be a trial number" in one_line(capsys)
    assert journal.read_text() == text


def test_a_full_disk_stops_with_one_line_and_resume_runs_every_trial_once(runs, capsys, monkeypatch):
    import sparsenas.journal as journal_module

    real_write, calls = os.write, {"n": 0}

    def full_disk(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("trials.jsonl"):
            calls["n"] += 1
            if calls["n"] == 4:
                real_write(fd, bytes(data)[:17])  # a partial write, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal_module.os, "write", full_disk)
    assert search(runs, "r", budget=6) == 1
    assert "No space left on device" in one_line(capsys)
    monkeypatch.setattr(journal_module.os, "write", real_write)
    assert lines(runs / "r") and all(line.endswith("}") for line in lines(runs / "r"))
    assert resume(runs, "r") == 0
    assert sorted(trials(runs / "r")) == list(range(6))
    assert search(runs, "clean", budget=6) == 0
    arch_ids = lambda run: [json.loads(line)["arch_id"] for line in lines(run)]  # noqa: E731
    assert arch_ids(runs / "r") == arch_ids(runs / "clean")


# -- 3. one writer per run -----------------------------------------------------------------------------------
def test_a_second_process_on_a_running_run_is_refused_and_writes_nothing(runs):
    first = subprocess.Popen(cli_subprocess_cmd(*PLUGIN, "search", "--space", "faulty", "--strategy", "random",
                                                "--set", "space.modes=[ok]", "--set", "space.delay_s=0.3",
                                                "--budget", 8, "--name", "r", "--runs-dir", runs, "--quiet"),
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = runs / "r" / "trials.jsonl"
    deadline = time.time() + 60
    while not journal.exists() and time.time() < deadline:
        time.sleep(0.05)
    config = (runs / "r" / "config.yaml").read_text()
    for args in (["--resume", "--name", "r", "--budget", 20],
                 ["--space", "faulty", "--strategy", "evolution", "--name", "r"]):
        second = subprocess.run(cli_subprocess_cmd(*PLUGIN, "search", *args, "--runs-dir", runs, "--quiet"),
                                env=ENV, capture_output=True, text=True, timeout=600)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert (runs / "r" / "config.yaml").read_text() == config
    assert sorted(trials(runs / "r")) == list(range(8))


def test_a_lock_left_by_a_killed_search_does_not_block_resume(runs):
    proc = subprocess.Popen(cli_subprocess_cmd(*PLUGIN, "search", "--space", "faulty", "--strategy", "random",
                                               "--set", "space.modes=[ok]", "--set", "space.delay_s=0.3",
                                               "--budget", 6, "--name", "r", "--runs-dir", runs, "--quiet"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (runs / "r" / "trials.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert (runs / "r" / ".lock").exists()
    assert resume(runs, "r") == 0
    assert sorted(trials(runs / "r")) == list(range(6))


# -- 4. no symlinks followed ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["trials.jsonl", "state/checkpoint.json", "best.json", ".lock"])
def test_symlinked_run_files_are_refused_and_their_targets_untouched(name, runs, tmp_path, capsys):
    assert search(runs, "r", budget=2) == 0
    target = tmp_path / "precious.txt"
    path = runs / "r" / name
    target.write_bytes(path.read_bytes() if path.exists() else b"precious\n")
    before = target.read_bytes()
    path.unlink(missing_ok=True)
    path.symlink_to(target)
    capsys.readouterr()
    assert resume(runs, "r", "--budget", 4) == 2
    assert "symbolic link" in one_line(capsys)
    assert target.read_bytes() == before


def test_journal_writes_never_follow_a_symlink(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("precious\n")
    (tmp_path / "trials.jsonl").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        Journal(tmp_path / "trials.jsonl").load()
    assert target.read_text() == "precious\n"
