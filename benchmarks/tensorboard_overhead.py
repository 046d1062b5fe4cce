"""Cost of TensorBoard logging per finished trial (search curves, hypervolume, HParams session, Pareto figure),
on synthetic two-objective trials with 30 categorical dims — what a table space (NB201) pays per trial.

    python benchmarks/tensorboard_overhead.py [--trials 200]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from sparsenas.journal import TrialResult
from sparsenas.objective import Objective
from sparsenas.space import Arch
from sparsenas.tracking import TensorBoardLogger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(0)
    objective = Objective(["val_acc"], ["flops"])
    results = [TrialResult(i, Arch({f"d{k}": rng.choice("abc") for k in range(30)}), f"arch{i}", "ok",
                           {"val_acc": rng.random(), "flops": rng.random() * 1e6, "params": 1e5})
               for i in range(args.trials)]
    rows = {}
    for figures in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            tb = TensorBoardLogger(Path(tmp), objective, figures=figures)
            start = time.perf_counter()
            for n, r in enumerate(results):
                tb.log(r, results[:n + 1])
            tb.close()
            rows[figures] = (time.perf_counter() - start) / args.trials * 1000
    print(f"{'Pareto figure':<16}{'ms per trial':>14}")
    for figures, ms in rows.items():
        print(f"{'on change' if figures else 'off':<16}{ms:>14.1f}")
    print(f"RESULT trials={args.trials} ms_per_trial={rows[True]:.1f} ms_per_trial_no_figure={rows[False]:.1f}")


if __name__ == "__main__":
    main()
