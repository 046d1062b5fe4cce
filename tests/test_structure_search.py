"""benchmarks/structure_search.py's scoring: one reference point per seed for both searches (the largest measured
latency of any of their trials, an exported front arch's included), and fronts scored with the exported models'
measured latency, not with the prediction the search saw."""
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import structure_search  # noqa: E402

CHANNEL = {"normal.structure": "channel", "reduce.structure": "unstructured"}


def trial(run, seed, val, predicted, measured, export=None, arch=None):
    row = {"run": run, "seed": seed, "val_acc": val, "predicted_ms": predicted, "measured_ms": measured,
           "front": export is not None, "arch": arch or {}}
    if export is not None:
        row.update(export_ms=export, within10=abs(export - predicted) <= 0.1 * predicted, csr_layers=2, trimmed_layers=1)
    return row


def test_fronts_are_scored_by_measured_latency_against_one_reference_per_seed():
    rows = [trial("unstructured", 0, 0.9, 4.0, 7.0, export=8.0),
            trial("unstructured", 0, 0.5, 9.0, 10.0),  # off the front, the slowest measured: the reference
            trial("structures", 0, 0.8, 2.0, 3.0, export=2.0, arch=CHANNEL),
            trial("unstructured", 1, 0.9, 5.0, 4.0, export=5.0),
            trial("structures", 1, 0.7, 6.0, 3.0, export=12.0),  # exported front arch slower than any measured
            trial("structures", 1, 0.6, 1.0, 1.0, export=1.0, arch=CHANNEL)]
    table = {(s["seed"], s["run"]): s for s in structure_search.scores(rows, 2)}
    u0, s0, u1, s1 = (table[k] for k in ((0, "unstructured"), (0, "structures"), (1, "unstructured"),
                                         (1, "structures")))
    assert u0["reference_ms"] == s0["reference_ms"] == 10.0 and u1["reference_ms"] == s1["reference_ms"] == 12.0
    assert u0["hv"] == pytest.approx(0.9 * (10 - 8)) and s0["hv"] == pytest.approx(0.8 * (10 - 2))
    assert u0["hv_predicted"] == pytest.approx(0.9 * (9 - 4))  # the predictions' own reference: 9 ms
    assert s1["hv"] == pytest.approx(0.6 * 11 + 0.1 * 0) and u1["hv"] == pytest.approx(0.9 * 7)
    assert (s0["front"], s0["within10"], s0["channel_cells"], s1["within10"]) == (1, 1, 1, 1)
    assert structure_search.ratios(table.values()) == [pytest.approx(6.4 / 1.8), pytest.approx(6.6 / 6.3)]
