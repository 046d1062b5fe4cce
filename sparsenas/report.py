"""`sparsenas report`: the top trials, the best architecture and the Pareto front of one or several runs, as
text, and the figures pareto.png and trajectory.png (several runs — e.g. strategies on one space — are
drawn together in each figure)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .assemble import build_space, resolve
from .data import load_data
from .errors import ConfigError
from .journal import TrialResult
from .objective import Objective
from .paths import output_dir
from .rundir import RunDir
from .space import SPACES


@dataclass
class Run:
    """A run directory read back: its resolved config, objective and journal."""

    path: Path
    config: dict
    objective: Objective
    results: list[TrialResult]

    @property
    def title(self) -> str:
        return f"{self.path.name} ({self.config['strategy']['name']})"


def load_run(run_dir: Path) -> Run:
    run = RunDir(run_dir)
    if not run.config_path.is_file() or not run.journal.path.is_file():
        raise ConfigError(f"{run_dir} is not a sparsenas run (no config.yaml and trials.jsonl)")
    config = run.read_config()
    try:
        names = [config[section]["name"] for section in ("space", "strategy")]
        objective = Objective.from_config(config["objective"])
    except (KeyError, TypeError, ConfigError):
        names = None
    if names is None or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{run_dir}/config.yaml is not a sparsenas run config")
    return Run(run.path, config, objective, run.results())


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _counts(results: Sequence[TrialResult]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in ("ok", "failed", "infeasible")}


def _reference_text(objective: Objective, reference: Sequence[float]) -> str:
    return ", ".join(f"{n}={s * r:.4g}" for n, s, r in zip(objective.names, objective.signs, reference))


def _run_text(run: Run, top: int) -> str:
    run_dir, objective, results, config = run.path, run.objective, run.results, run.config
    counts = _counts(results)
    extra = [m for m in ("sparsity", "flops_sparse", "params")
             if m not in objective.names and any(m in r.metrics for r in results)]
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
        layers = _layer_table(config, best)
        if layers:
            lines += ["", "best arch, layer by layer:", layers]
    if objective.multi and ranked:
        front = objective.pareto_front(results)
        reference = objective.reference_point(results)
        lines += ["", f"Pareto front ({len(front)}), hypervolume {objective.hypervolume(results, reference):.6g} "
                      f"(reference {_reference_text(objective, reference)}):",
                  _table([["trial", *objective.names]] + [[str(r.trial), *(f"{r.metrics[m]:.4g}" for m in objective.names)]
                                                        for r in front])]
    return "\n".join(lines)


def _layer_table(config: dict, best: TrialResult) -> str | None:
    """The best arch layer by layer (density, mask, weights), for spaces that describe one (the model space)."""
    name = config["space"]["name"]
    if name not in SPACES.names() or not hasattr(SPACES.get(name), "layer_table"):
        return None  # a plug-in space not imported for this report, or one without a layer view
    try:
        config = resolve([config])
        data = load_data(config["data"])
        rows = build_space(config).layer_table(best.arch, data.input_shape, data.num_classes)
    except ConfigError as e:  # e.g. the factory's module not allowed: the rest of the report still stands
        return f"  (not shown: {e})"
    return _table([["layer", "group", "mask", "density", "weights"]] +
                  [[r["layer"], r["group"], r["mask"], f"{r['density']:.3f}", str(r["weights"])] for r in rows])


def compare(runs: Sequence[Run]) -> str:
    """One line per run: trials, best value of each objective and, with several objectives, the Pareto-front
    size and the hypervolume w.r.t. one reference point common to all runs."""
    objective = runs[0].objective
    all_results = [r for run in runs for r in run.results]
    reference = objective.reference_point(all_results) if objective.multi else None
    head = ["run", "trials", "ok", *(f"best {n}" for n in objective.names)]
    if reference is not None:
        head += ["front", "hypervolume"]
    rows = [head]
    for run in runs:
        row = [run.title, str(len(run.results)), str(_counts(run.results)["ok"])]
        for i, (name, sign) in enumerate(zip(objective.names, objective.signs)):
            vals = [v[i] for r in run.results if (v := objective.values(r)) is not None]
            row.append(f"{sign * max(vals):.4g}" if vals else "-")
        if reference is not None:
            row += [str(len(objective.pareto_front(run.results))),
                    f"{objective.hypervolume(run.results, reference):.6g}"]
        rows.append(row)
    lines = [_table(rows)]
    if reference is not None:
        lines.append(f"(hypervolume reference, common to all runs: {_reference_text(objective, reference)})")
    return "\n".join(lines)


def _check_comparable(runs: Sequence[Run]) -> None:
    first = runs[0].objective
    for run in runs[1:]:
        if (run.objective.names, run.objective.signs) != (first.names, first.signs):
            raise ConfigError(f"cannot compare {run.path} with {runs[0].path}: different objectives "
                              f"({', '.join(run.objective.names)} vs {', '.join(first.names)})")


def write_plots(runs: Sequence[Run], out_dir: Path) -> list[Path]:
    """pareto.png (when the runs have two objectives, or one and a cost metric) and trajectory.png."""
    from .plots import Series, pareto_figure, save_png, trajectory_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    objective = runs[0].objective
    series = [Series(run.title if len(runs) > 1 else run.path.name, run.results) for run in runs]
    all_results = [r for run in runs for r in run.results]
    written = []
    fig = pareto_figure(objective, series)
    if fig is not None:
        written.append(save_png(fig, out_dir / "pareto.png"))
    reference = objective.reference_point(all_results) if objective.multi else None
    written.append(save_png(trajectory_figure(objective, series, reference), out_dir / "trajectory.png"))
    return written


def run_report(run_dirs: Sequence[Path], top: int = 10, out: Path | None = None) -> str:
    """What `sparsenas report` prints: each run's report, a comparison of several runs, the figures written
    (to `out`, default the first run directory)."""
    if top < 0:
        raise ConfigError(f"--top must be >= 0, got {top}")
    runs = [load_run(d) for d in run_dirs]
    _check_comparable(runs)
    out = output_dir(out if out is not None else runs[0].path, "--out")
    parts = [_run_text(run, top) for run in runs]
    if len(runs) > 1:
        parts.append("comparison:\n" + compare(runs))
    if not any(r.ok for run in runs for r in run.results):
        parts.append("no figures written: no successful trial yet")
    else:
        written = write_plots(runs, out)
        parts.append("wrote " + ", ".join(str(p) for p in written))
    return "\n\n".join(parts)
