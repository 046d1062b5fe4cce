"""Matplotlib figures of a search: the Pareto front and the best-so-far trajectories (one or several runs).

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg canvas, never through pyplot, so
nothing depends on a display or on a global backend setting.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .journal import TrialResult
from .objective import Objective, dominates

COST_METRICS = ("flops_sparse", "latency_ms", "nnz", "params", "flops")  # x of a single-objective front


@dataclass
class Series:
    """One run's trials under a name (the legend entry)."""

    name: str
    results: Sequence[TrialResult]


def front_axes(objective: Objective, results: Sequence[TrialResult]) -> tuple[tuple[str, float], tuple[str, float]] | None:
    """(x metric, sign), (y metric, sign) of the front figure: y the first objective; x the second objective,
    or for a single objective the first cost metric in COST_METRICS that the trials have (minimised)."""
    y = (objective.names[0], objective.signs[0])
    if objective.multi:
        return (objective.names[1], objective.signs[1]), y
    have = set().union(*(r.metrics for r in results if r.ok)) if results else set()
    cost = next((m for m in COST_METRICS if m in have), None)
    return None if cost is None else ((cost, -1.0), y)


def _front_2d(points: list[tuple[float, float, int]], sx: float, sy: float) -> list[tuple[float, float, int]]:
    """Non-dominated points of (x, y) under the signs sx, sy, sorted by x."""
    front = [p for p in points if not any(dominates((sx * q[0], sy * q[1]), (sx * p[0], sy * p[1])) for q in points)]
    return sorted(set(front))


def front_points(objective: Objective, results: Sequence[TrialResult], axes=None) -> list[tuple[float, float, int]]:
    """The (x, y, trial) points of the 2-D front that `pareto_figure` draws for `results` (on `axes`, default
    `front_axes(objective, results)`)."""
    axes = axes or front_axes(objective, results)
    if axes is None:
        return []
    (xn, sx), (yn, sy) = axes
    return _front_2d([(float(r.metrics[xn]), float(r.metrics[yn]), r.trial) for r in results
                      if r.ok and xn in r.metrics and yn in r.metrics], sx, sy)


def pareto_figure(objective: Objective, series: Sequence[Series], title: str = "") -> Figure | None:
    """All ok trials of each series as dots, each series' 2-D front as a staircase; None without axes."""
    axes = front_axes(objective, [r for s in series for r in s.results])
    if axes is None:
        return None
    (xn, sx), (yn, sy) = axes
    fig = Figure(figsize=(6.4, 4.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        color = f"C{i}"
        pts = [(float(r.metrics[xn]), float(r.metrics[yn])) for r in s.results
               if r.ok and xn in r.metrics and yn in r.metrics]
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, color=color, alpha=0.35)
        front = front_points(objective, s.results, axes)
        ax.step([p[0] for p in front], [p[1] for p in front], where="post" if sx < 0 else "pre",
                color=color, lw=1.5)
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=36, color=color, edgecolor="black",
                   zorder=3, label=f"{s.name} (front {len(front)} of {len(pts)})")
    if xn in ("flops", "flops_sparse", "params", "nnz") and ax.has_data():
        xs = [x for line in ax.collections for x, _ in line.get_offsets()]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
    ax.set_xlabel(f"{xn} ({'higher' if sx > 0 else 'lower'} is better)")
    ax.set_ylabel(f"{yn} ({'higher' if sy > 0 else 'lower'} is better)")
    ax.set_title(title or f"Pareto front: {yn} vs {xn}")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8)
    return fig


def best_so_far(objective: Objective, results: Sequence[TrialResult], name: str) -> list[tuple[int, float, float]]:
    """(trials done, cumulative trial seconds, best value of `name` so far) after each trial, in trial order,
    from the first ok trial on."""
    i, sign = objective.names.index(name), objective.signs[objective.names.index(name)]
    out, best, seconds = [], None, 0.0
    for n, r in enumerate(sorted(results, key=lambda r: r.trial), start=1):
        seconds += r.duration_s
        v = objective.values(r)
        if v is not None and (best is None or v[i] > best):
            best = v[i]
        if best is not None:
            out.append((n, seconds, sign * best))
    return out


def hypervolume_curve(objective: Objective, results: Sequence[TrialResult],
                      reference: Sequence[float]) -> list[tuple[int, float]]:
    """(trials done, hypervolume of the trials so far w.r.t. the fixed `reference`), in trial order."""
    ordered = sorted(results, key=lambda r: r.trial)
    return [(n, objective.hypervolume(ordered[:n], reference)) for n in range(1, len(ordered) + 1)]


def trajectory_figure(objective: Objective, series: Sequence[Series], reference: Sequence[float] | None) -> Figure:
    """Best so far of every objective vs trial index, of the first objective vs cumulative trial time, and
    (several objectives) the hypervolume w.r.t. `reference` vs trial index; one line per series."""
    panels = len(objective.names) + 1 + (objective.multi and reference is not None)
    fig = Figure(figsize=(4.2 * panels, 3.8), dpi=100, layout="constrained")
    axs = fig.subplots(1, panels, squeeze=False)[0]
    for i, s in enumerate(series):
        kw = {"color": f"C{i}", "label": s.name, "where": "post"}
        for ax, name in zip(axs, objective.names):
            pts = best_so_far(objective, s.results, name)
            ax.step([p[0] for p in pts], [p[2] for p in pts], **kw)
        pts = best_so_far(objective, s.results, objective.names[0])
        axs[len(objective.names)].step([p[1] for p in pts], [p[2] for p in pts], **kw)
        if panels > len(objective.names) + 1:
            hv = hypervolume_curve(objective, s.results, reference)
            axs[-1].step([p[0] for p in hv], [p[1] for p in hv], **kw)
    for ax, name, sign in zip(axs, objective.names, objective.signs):
        ax.set(xlabel="trials", ylabel=f"best {name} so far", title=f"{name} ({'max' if sign > 0 else 'min'})")
    axs[len(objective.names)].set(xlabel="cumulative trial time (s)", ylabel=f"best {objective.names[0]} so far",
                                  title=f"{objective.names[0]} vs time")
    if panels > len(objective.names) + 1:
        ref = ", ".join(f"{n}={s * r:.4g}" for n, s, r in zip(objective.names, objective.signs, reference))
        axs[-1].set(xlabel="trials", ylabel="hypervolume", title=f"hypervolume (ref {ref})")
        axs[-1].title.set_fontsize(8)
    for ax in axs:
        ax.grid(alpha=0.3)
        if ax.has_data() and len(series) > 1:
            ax.legend(fontsize=8)
    return fig


def render_rgb(fig: Figure):
    """The figure as an H×W×3 uint8 array (Agg)."""
    import numpy as np

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png")
    return path
