"""benchmarks/run_all.py: every experiment script exists and writes a `--json` record, and RESULTS.md is
assembled only from the records (a failed experiment shows its log, a missing one says so)."""
import json
import subprocess
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import run_all


@pytest.mark.parametrize("experiment", run_all.EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_is_a_script_with_a_json_record(experiment):
    script = ROOT / "benchmarks" / experiment.script
    assert script.exists()
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                               cwd=ROOT / "benchmarks", check=True).stdout
    assert "--json" in help_text
    for flag in experiment.args[::2]:
        assert flag in help_text


def test_results_md_comes_from_the_records(tmp_path, monkeypatch):
    """With the machine of each record (records of several machines are not comparable in time). Also when a
    record names its figure by another checkout's absolute path (as older records do)."""
    out = tmp_path / "docs" / "results"
    out.mkdir(parents=True)
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    monkeypatch.setattr(run_all, "OUT", out)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "RESULTS.md")
    figure = out / "dass_curve.png"
    figure.write_bytes(b"png")
    (out / "dass.json").write_text(json.dumps({"summary": {"dass_90": 0.8123}, "markdown": "| a |\n|---|\n| 1 |",
                                               "figures": ["/elsewhere/checkout/docs/results/dass_curve.png"]}))
    (out / "nb201.json").write_text(json.dumps({"summary": {}, "markdown": "see ![curve](nb201_c10.png)",
                                                "figures": [str(out / "nb201_c10.png")]}))
    (out / "nb201.status.json").write_text(json.dumps({"rc": 0, "seconds": 1.0, "command": "x", "finished": "now"}))
    status = {"rc": 0, "seconds": 90.0, "command": "python benchmarks/dass_vs_baselines.py", "finished": "now",
              "machine": "CPU A"}
    (out / "dass.status.json").write_text(json.dumps(status))
    (out / "tas.status.json").write_text(json.dumps(status | {"rc": 1}))
    (out / "tas.log").write_text("Traceback\nValueError: broken\n")
    run_all.render()
    text = (tmp_path / "RESULTS.md").read_text()
    dass = text.split("DASS vs DARTS")[1].split("\n## ")[0]
    assert "| a |" in dass and "RESULT dass_90=0.8123" in dass and "(docs/results/dass_curve.png)" in dass
    tas = text.split("TAS:")[1].split("\n## ")[0]
    assert "**Failed** (exit code 1)" in tas and "ValueError: broken" in tas
    nb201 = text.split("NAS-Bench-201")[1]
    assert nb201.count("nb201_c10.png") == 1 and "![curve](docs/results/nb201_c10.png)" in nb201
    assert "Not run yet" in text.split("Latency predictor")[1] and "failed: tas" in text
    assert "finished now on CPU A;" in dass and "finished now;" in nb201  # each record's machine, where recorded
    assert "- Machines: CPU A: 2 records; not recorded" in text
    numbers = [line.split(".")[0] for line in text.splitlines() if line.startswith("## ")]
    assert numbers == [f"## {i}" for i in range(1, len(run_all.EXPERIMENTS) + 1)]  # one number per section


def test_arguments_after_a_double_dash_reach_the_one_script_and_its_status(tmp_path, monkeypatch, capsys):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "echo.py").write_text(
        "import json, sys\n"
        "record = {'summary': {}, 'markdown': ' '.join(sys.argv[1:])}\n"
        "json.dump(record, open(sys.argv[-1], 'w'))\n")
    echo = run_all.Experiment("echo", "Echo", "echo.py", ("--jobs", "2"))
    for name, value in {"ROOT": tmp_path, "OUT": tmp_path / "docs" / "results", "RESULTS": tmp_path / "RESULTS.md",
                        "EXPERIMENTS": (echo,), "BY_NAME": {"echo": echo}}.items():
        monkeypatch.setattr(run_all, name, value)
    assert run_all.main(["--only", "echo", "--", "--minutes", "120"]) == 0
    status = json.loads((tmp_path / "docs" / "results" / "echo.status.json").read_text())
    assert status["command"] == "python benchmarks/echo.py --jobs 2 --minutes 120"
    assert "--jobs 2 --minutes 120 --json" in (tmp_path / "RESULTS.md").read_text()
    with pytest.raises(SystemExit) as bad:
        run_all.main(["--", "--minutes", "120"])  # every experiment: whose arguments?
    assert bad.value.code == 2 and "name it alone with --only" in capsys.readouterr().err


def test_layerwise_search_runs_with_tiny_settings(tmp_path):
    """benchmarks/layerwise_search.py end to end on tiny settings: a record with the RESULT keys, numbers or an
    explicit nan for the equal-latency part (never missing)."""
    import math
    import os

    root = ROOT
    mnist = root.parent / "shared" / "data" / "mnist" / "mnist.pkl.gz"
    if not mnist.exists():
        pytest.skip(f"no MNIST at {mnist}")
    out = tmp_path / "layerwise.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "layerwise_search.py"), "--quick", "--json",
                           str(out)], capture_output=True, text=True, cwd=root / "benchmarks", timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    summary = record["summary"]
    for key in ("gain_90_pts", "p_90", "gain_latency_pts", "p_latency", "primary_delta_pts", "primary_p"):
        assert key in summary
    assert "**Primary comparison** (pre-registered): tpe − ERK" in record["markdown"]
    assert all(r["measured_sparsity"] == pytest.approx(0.9, abs=0.01) for r in record["rows"] if "table" not in r)
    assert "RESULT gain_90_pts=" in proc.stdout
    assert ("not measured" in record["markdown"]) == math.isnan(summary["gain_latency_pts"])


def test_power_tost_and_verdicts_of_the_primary_comparison():
    """benchmarks/report.py: the textbook power (d = 1, n = 10, two-sided 5%: 0.80), TOST and the three verdicts."""
    import report

    assert report.paired_power(1.0, 1.0, 10) == pytest.approx(0.8031, abs=0.002)
    assert report.paired_power(0.0022958, 0.01, 15) == pytest.approx(1.0)  # scipy's nct.cdf gave nan here (TAS)
    assert report.paired_power(0.0022958, 0.01, 15, equivalence=True) == pytest.approx(1.0)
    assert report.seeds_for_power(1.0, 1.0) == 10 and report.seeds_for_power(1.0, 0.5) == 34
    assert report.paired_power(1.0, 1.0, 30, equivalence=True) < report.paired_power(1.0, 1.0, 60, equivalence=True)
    base = [0.90 + 0.01 * i for i in range(12)]
    noise = [0.001 * (-1) ** i for i in range(12)]
    close = [x + e for x, e in zip(base, noise)]
    tost = report.tost_paired(close, base, margin=0.01)
    assert tost["equivalent"] and tost["ci90"][0] > -0.01 and tost["ci90"][1] < 0.01
    assert not report.tost_paired(close, base, margin=0.0005)["equivalent"]
    assert report.primary(close, base, 0.01, claim="equivalent")["verdict"] == "reproduced"
    better = [x + 0.02 + e for x, e in zip(base, noise)]
    assert report.primary(better, base, 0.01)["verdict"] == "reproduced"
    assert report.primary(base, better, 0.01)["verdict"] == "not reproduced"
    assert report.primary(better, base, 0.001, claim="equivalent")["verdict"] == "not reproduced"
    assert report.primary(close, base, 0.01)["verdict"] == "not reproduced"  # powered, not significant
    wild = [x + 0.05 * (-1) ** i for i, x in enumerate(base[:4])]
    result = report.primary(wild, base[:4], 0.01)
    assert result["verdict"] == "inconclusive" and result["seeds_for_80"] > 4
    assert "Verdict: inconclusive" in report.primary_text("wild − base", result)
    summary = report.robust_summary([0.9, 0.91, 0.92, 0.93, 0.1])
    assert summary["median"] == 0.91 and summary["trimmed_mean"] == pytest.approx(0.91) and summary["mean"] < 0.8


def _tiny(script: str, args: list[str], tmp_path) -> dict:
    """Run benchmarks/<script> with `args` and --json; its record (the last stdout line must be RESULT)."""
    import os

    out = tmp_path / "record.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT / "benchmarks", timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("RESULT ")
    return json.loads(out.read_text())


def test_sparse_ift_members_tiny_has_the_primary_and_the_capacity_arm(tmp_path):
    record = _tiny("sparse_ift_members.py", ["--dataset", "digits", "--seeds", "2", "--epochs", "1",
                                             "--members", "wide", "--methods", "rigl", "--workers", "1"], tmp_path)
    summary = record["summary"]
    assert {"primary_delta", "primary_p", "primary_power", "primary_seeds_for_80", "dense_x2_delta"} <= set(summary)
    assert {r["member"] for r in record["rows"]} == {"dense", "wide", "dense×2"} and len(record["rows"]) == 6
    assert "**Primary comparison**" in record["markdown"] and "**Verdict: " in record["markdown"]


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "mnist" / "mnist.pkl.gz").exists(), reason="no MNIST")
def test_random_pruning_erk_tiny_reports_the_primary_and_dense_convergence(tmp_path):
    record = _tiny("random_pruning_erk.py", ["--seeds", "2", "--epochs", "3", "--limit", "300", "--width", "4",
                                             "--wide", "2", "--sparsities", "0.9"], tmp_path)
    dense = [r for r in record["rows"] if r["allocation"] == "dense"]
    assert dense and all(len(r["curve"]) == 3 for r in dense)
    assert "dense_last2_gain_c4" in record["summary"] and "primary_power" in record["summary"]
    assert "Dense convergence" in record["markdown"] and "**Verdict: " in record["markdown"]


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "nb201" / "nb201_cifar.csv").exists(), reason="no NB201")
def test_nb201_strategies_tiny_reports_the_pre_registered_primary(tmp_path):
    record = _tiny("nb201_strategies.py", ["--datasets", "cifar10", "--strategies", "random,evolution,opgfn",
                                           "--seeds", "3", "--budgets", "100", "--workers", "1", "--option",
                                           "opgfn.train_steps_init=20", "--option", "opgfn.train_steps=5"], tmp_path)
    assert {"primary_delta", "primary_p", "primary_power", "primary_reproduced"} <= set(record["summary"])
    assert "**Primary comparison** (pre-registered): opgfn − evolution" in record["markdown"]


def test_dass_default_tiny_compares_the_two_default_commands_at_one_sparsity(tmp_path):
    record = _tiny("dass_default.py", ["--quick", "--seeds", "2"], tmp_path)
    rows = record["rows"]
    assert sorted((r["seed"], r["method"]) for r in rows) == [(s, m) for s in (0, 1) for m in ("differentiable",
                                                                                                 "random")]
    assert all(r["sparsity"] == pytest.approx(0.9, abs=0.01) for r in rows)  # both at the derived net's sparsity
    assert [r["trials"] for r in rows if r["method"] == "differentiable"] == [1, 1]
    assert {"gap_val_pts", "gap_val_lower95_pts", "within_2_pts", "differentiable_s"} <= set(record["summary"])
