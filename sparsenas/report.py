"""`sparsenas report`: the top trials, the best architecture and the Pareto front of a run, as text."""
from __future__ import annotations

from pathlib import Path

import yaml

from .errors import ConfigError
from .journal import Journal
from .objective import Objective


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def report(run_dir: Path, top: int = 10) -> str:
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "trials.jsonl").is_file():
        raise ConfigError(f"{run_dir} is not a sparsenas run (no config.yaml and trials.jsonl)")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    objective = Objective.from_config(config["objective"])
    results = Journal(run_dir / "trials.jsonl").load()
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "infeasible")}
    extra = [m for m in ("sparsity", "flops_sparse", "params") if m not in objective.names]
    ranked = sorted((r for r in results if objective.scalar(r) is not None), key=lambda r: -objective.scalar(r))
    rows = [["trial", *objective.names, *extra, "arch_id"]]
    rows += [[str(r.trial), *(f"{r.metrics.get(m, float('nan')):.4g}" for m in objective.names + extra), r.arch_id]
             for r in ranked[:top]]
    lines = [f"run {run_dir}: space {config['space']['name']}, strategy {config['strategy']['name']}, "
             f"{len(results)} trials ({counts['ok']} ok, {counts['failed']} failed, {counts['infeasible']} infeasible)",
             "", _table(rows) if ranked else "no successful trial yet"]
    if ranked:
        best = ranked[0]
        lines += ["", f"best: trial {best.trial} ({best.arch_id})", f"  {best.label}"]
    if objective.multi and ranked:
        front = objective.pareto_front(results)
        lines += ["", f"Pareto front ({len(front)}):",
                  _table([["trial", *objective.names]] + [[str(r.trial), *(f"{r.metrics[m]:.4g}" for m in objective.names)]
                                                        for r in front])]
    return "\n".join(lines)
