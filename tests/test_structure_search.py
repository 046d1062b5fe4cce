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
        row.update(export_ms=export, within10=abs(export - predicted) <= 0.1 * predicted, csr_layers=2,
                   trimmed_layers=1)
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


def test_every_trial_is_timed_in_passes_of_alternating_order_and_keeps_its_lowest(monkeypatch):
    """`time_all`: each pass times every trial (untrained arch) and every front arch's export; the order alternates,
    the lowest pass is kept and judged against the prediction; `repeatable` reads the passes' median."""
    order, times = [], {("a", "m"): [5.0, 4.0, 6.0], ("b", "m"): [3.0, 3.3, 2.9], ("b", "e"): [2.1, 2.0, 2.4]}

    class Predictor:
        def timing(self, arch):
            order.append(arch["id"])
            return type("T", (), {"ms": times[(arch["id"], "m")].pop(0)})

    monkeypatch.setattr(structure_search, "measured_predictor", lambda args, run: Predictor())
    monkeypatch.setattr(structure_search, "time_exported", lambda args, folder: times[(folder, "e")].pop(0))
    rows = [{"run": "unstructured", "arch": {"id": "a"}, "front": False},
            {"run": "structures", "arch": {"id": "b"}, "front": True, "export_dir": "b", "predicted_ms": 2.1}]
    structure_search.time_all(type("Args", (), {"passes": 3}), rows)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert (rows[0]["measured_ms"], rows[1]["measured_ms"], rows[1]["export_ms"]) == (4.0, 2.9, 2.0)
    assert rows[1]["within10"] and structure_search.repeatable(rows[1])
    rows[1]["export_passes_ms"] = [2.0, 2.3, 2.4]
    assert not structure_search.repeatable(rows[1])
