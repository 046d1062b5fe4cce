"""benchmarks/random_search_baseline.py: the verdict follows the paired tests, and a tiny run writes the record."""
import json
import sys

import pytest

from conftest import ROOT, SHARED_DATA

sys.path.insert(0, str(ROOT / "benchmarks"))
import random_search_baseline as rsb  # noqa: E402


def cell(parent, sparsity, diff, p, ci=0.02, early_diff=0.0, early_p=1.0):
    return {"parent": parent, "sparsity": sparsity, "test": {"mean_diff": diff, "ci95": ci, "p_ttest": p},
            "epoch1": {"mean_diff": early_diff, "p_ttest": early_p},
            "searched_kept": [10.0, 20.0], "random_kept": [14.0, 12.0]}


def test_verdict_is_reproduced_only_when_searched_is_never_significantly_better():
    cells = [cell("mlp", 0.5, 0.001, 0.6), cell("conv", 0.9, -0.01, 0.001), cell("conv", 0.95, 0.02, 0.03)]
    text, reproduced, better, raw = rsb.verdict(cells)
    # 0.03 is below 0.05 but not below the Bonferroni threshold 0.05 / 3
    assert reproduced and better == 0 and raw == 2
    assert "Claim reproduced (weakly)" in text and "random is significantly better in conv at 90%" in text
    cells.append(cell("mlp", 0.95, 0.015, 0.0001, early_diff=0.05, early_p=0.001))
    text, reproduced, better, raw = rsb.verdict(cells)
    assert not reproduced and better == 1 and raw == 3
    assert "Claim not reproduced** in mlp at 95%" in text and "10/20 vs 14/12" in text
    assert "significantly faster in mlp at 95%" in text


def test_equivalence_counts_cells_whose_ci_is_inside_the_margin():
    text, *_ = rsb.verdict([cell("mlp", 0.5, 0.002, 0.5, ci=0.005), cell("mlp", 0.8, 0.002, 0.5, ci=0.02)])
    assert "inside ±1 point in 1 of 2 cells" in text and "**Claim reproduced**" in text
    text, *_ = rsb.verdict([cell("mlp", 0.5, 0.002, 0.5, ci=0.007), cell("mlp", 0.8, 0.002, 0.5, ci=0.02),
                            cell("mlp", 0.9, 0.0, 0.9, ci=0.03)])
    assert "Claim reproduced (weakly)" in text and "below 1 point in only 1 of 3 cells" in text


@pytest.mark.skipif(not (SHARED_DATA / "mnist" / "mnist.pkl.gz").exists(), reason="needs ../shared/data MNIST")
def test_tiny_run_writes_rows_summary_and_markdown(tmp_path, capsys):
    out = tmp_path / "rsb.json"
    rsb.main(["--seeds", "2", "--candidates", "2", "--search-epochs", "1", "--epochs", "1", "--limit", "256",
              "--sparsities", "0.9", "--parents", "mlp", "--mlp-hidden", "32,32", "--json", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("RESULT ") and "mlp_s90_p=" in last and "reproduced=" in last
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert len(rows) == 2 * 3 and {r["method"] for r in rows} == {"searched", "random", "dense"}
    for r in rows:
        target = r["sparsity"]
        assert target <= r["achieved_sparsity"] < target + 0.05 and len(r["curve"]) == 1
    searched = [r for r in rows if r["method"] == "searched"]
    assert all(r["search_val_acc"] is not None for r in searched)
    assert "Claim" in record["markdown"] and "| mlp | 90% |" in record["markdown"]
    assert record["figures"] and (tmp_path / "rsb_accuracy.png").is_file()
