"""Layer-wise sparsity search on the user path: does a searched per-layer allocation (tpe, opgfn) of a
pretrained model beat uniform, ERK and the best of equally many random allocations at the same global
sparsity (AMC's claim; the Random-Pruning paper's ERK finding), and at the same measured latency?

Protocol. Two user models (benchmarks/layerwise_models.py: `small_cnn`, three 3×3 convs with BN + two linear
layers, ≈34k weights; `mlp`, 196-256-128-10, ≈84k weights) on MNIST (../shared/data/mnist/mnist.pkl.gz)
average-pooled to 14×14. The script first trains each dense model (`--pretrain-epochs` on the first `--limit`
training images) and saves its state dict (torch.save) to a temporary directory; every trial then goes through
`sparsenas.Study` with `space.name: model`, `space.factory: layerwise_models:<model>` (imported by this script, so
the factory resolves without --allow-import), `space.weights` = the checkpoint, `space.skip: []` (every Conv2d /
Linear searched, first layer and classifier included) and `space.target_sparsity` = 0.90 or 0.95, so every arch
is magnitude-pruned from the checkpoint to the global sparsity exactly and fine-tuned with the same budget
(`--epochs` of static-mask SGD on the same `--limit` images; val = MNIST's 10k validation split, test = its 10k
test split). Per model, sparsity and seed s (the study seed):
  - tpe and opgfn search the per-layer sparsity dims (relative densities, rescaled to the target) for
    `--trials` trials each (tpe: `--trials`//2 startup trials; opgfn: `--trials`//2 initial samples, batches
    of 2); the searched arch is the trial with the best val_acc;
  - uniform and ERK (`space.allocation`): one trial each;
  - random (`space.allocation: random`, random strategy): `--trials` random allocations, the best by val_acc.
All methods of a seed use the same checkpoint, data and study seed: comparisons are paired by seed.
Primary comparison (pre-registered, report.primary): tpe − ERK test accuracy, pooled over both models and both
sparsities (n = 4 × seeds pairs), claim "better" with a smallest effect of interest of 0.5 points — tpe is the
default strategy of the user path and ERK the strongest rule of the Random-Pruning paper, so this is AMC's claim
against the best rule. Secondary, chosen after the fact: "searched" is the better of tpe / opgfn by mean test
accuracy, "best baseline" the better of uniform / ERK / random (the same selection on both sides); gain_S_pts =
100 · mean paired difference, pooled over the two models (n = 2 × seeds pairs), p_S its paired t-test p-value.

Equal latency (second table, `--no-latency` skips it). Per model, a `lut` latency table (sparsenas.hardware.lut,
cpu, batch 1, 1 thread, `exported` mode: an unstructured linear layer runs as CSR where that is faster, convs run
dense) is profiled once for the model space without a sparsity target (`--lut-archs` archs, `--lut-calibration`
calibration nets). The budget L is the median lut-predicted latency of
the best 90% baseline's archs (the same table prices both sides; a budget taken from a measurement instead left
no feasible arch, because the lut and the whole-network timing differ by a few percent); tpe then searches the
per-layer sparsities freely (no global target) for `--trials` trials with
`objective.constraints.latency_ms=[null, L]` (lut-predicted, so over-budget archs are never trained). Its best feasible arch and the baseline arch are both timed with MeasuredLatency and shown with
their accuracies; gain_latency_pts / p_latency = searched − best 90% baseline test accuracy, paired, pooled over
the models. If the latency part fails (no profile possible), the table says why and the RESULT has
gain_latency_pts=nan p_latency=nan — never a made-up number.

Scale and time. Defaults: --limit 10000, --epochs 1, --pretrain-epochs 5, --trials 16, --seeds 8. Trials per
(model, sparsity, seed) = 3·16 + 2 = 50, plus 16 latency-constrained trials per (model, seed): 2·2·8·50 + 2·8·16
= 1856 trials. Measured on this 2-core machine (1 torch thread, shared with other jobs; 2 seeds × 4 trials at
10,000 images): ≈0.9 s per trial of the cnn, ≈0.2 s of the mlp (search overhead included), pretraining ≈10 s, a
lut profile < 1 s; so ≈ 800·0.9 + 800·0.2 + 128·0.9 + 128·0.2 s ≈ 17 min, ≤ 30 min on a busy machine — within
the 60-minute budget. Power: n = 16 pairs per sparsity (2 models × 8 seeds); at the seed-to-seed spread seen
in the pilot (std of a paired difference ≈0.5–1 point) a paired t-test detects gains of roughly ≥ 0.4–0.6
points at α = 0.05; smaller true gains read as "not significant".

    python benchmarks/layerwise_search.py                      # defaults (≈17 min measured estimate, 1 thread)
    python benchmarks/layerwise_search.py --quick              # a few seconds: tiny settings (tests)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import layerwise_models
import torch
from report import (
    MNIST,
    add_json_argument,
    finish,
    markdown_table,
    mean_std,
    paired_test,
    primary,
    primary_text,
)

SEARCHED = ("tpe", "opgfn")
BASELINES = ("uniform", "erk", "random")
PRIMARY = ("tpe", "erk", 0.005)  # a − b test accuracy pooled over models and sparsities; smallest effect: 0.5 points
DIM_SPARSITIES = [0.0, 0.5, 0.75, 0.9, 0.95]


def data_cfg(args) -> dict:
    return {"data.name": "mnist", "data.path": str(args.mnist), "data.limit": args.limit,
            "data.downsample": args.downsample}


def train_overrides(args) -> dict:
    return {"train.epochs": args.epochs, "train.sparse_training": "static", "execution.device": "cpu"}


def pretrain(model_name: str, args, out_dir: Path) -> tuple[Path, float]:
    """Train the dense model and save its state dict; returns (path, dense test accuracy)."""
    from sparsenas.config import CORE, validate_section
    from sparsenas.data import load_data
    from sparsenas.training import train_and_evaluate

    data = load_data(validate_section("data", {k.split(".", 1)[1]: v for k, v in data_cfg(args).items()},
                                      CORE["data"]))
    torch.manual_seed(1234)
    model = layerwise_models.MODELS[model_name](input_shape=tuple(data.input_shape), num_classes=data.num_classes)
    cfg = validate_section("train", {"epochs": args.pretrain_epochs}, CORE["train"])
    metrics = train_and_evaluate(model, data, cfg, 1234, "cpu")
    path = out_dir / f"{model_name}_dense.pt"
    torch.save(model.state_dict(), path)
    return path, metrics["test_acc"]


def space(model_name: str, weights: Path, target: float | None, allocation: str = "search") -> dict:
    s = {"name": "model", "factory": f"layerwise_models:{layerwise_models.MODELS[model_name].__name__}",
         "weights": str(weights), "skip": [], "sparsities": DIM_SPARSITIES, "allocation": allocation,
         "input_shape": [1, 28 // ARGS.downsample, 28 // ARGS.downsample], "num_classes": 10}
    if target is not None:
        s["target_sparsity"] = target
    return s


def strategy(name: str, trials: int) -> dict:
    if name == "tpe":
        return {"name": "tpe", "n_startup_trials": max(1, trials // 2)}
    if name == "opgfn":
        return {"name": "opgfn", "init_samples": max(1, trials // 2), "batch_size": 2, "train_steps_init": 100}
    return {"name": name}


def best_trial(study):
    ok = [t for t in study.trials if t.status == "ok"]
    if not ok:
        return None
    return max(ok, key=lambda t: (t.metrics["val_acc"], -t.trial))


def run_method(method: str, model_name: str, weights: Path, target: float | None, seed: int, args,
               extra: dict | None = None, objective: dict | None = None):
    """One seeded study of `method` (a searched strategy or a baseline allocation); its best trial and the study."""
    import sparsenas

    if method in SEARCHED:
        sp, st, n = space(model_name, weights, target), strategy(method, args.trials), args.trials
    elif method == "random":
        sp, st, n = space(model_name, weights, target, "random"), {"name": "random"}, args.trials
    else:
        sp, st, n = space(model_name, weights, target, method), {"name": "random"}, 1
    overrides = {**data_cfg(args), **train_overrides(args), **(extra or {})}
    study = sparsenas.Study(space=sp, strategy=st, seed=seed, overrides=overrides,
                            objective=objective or {"maximize": ["val_acc"]})
    study.optimize(n_trials=n)
    return best_trial(study), study


def measured_ms(study, arch, repeats: int) -> float:
    """The arch timed whole, as `sparsenas export` converts it (cpu, batch 1, 1 thread)."""
    from sparsenas.hardware.base import ModelIO, Target
    from sparsenas.hardware.measured import MeasuredLatency

    shape = (1, 28 // ARGS.downsample, 28 // ARGS.downsample)
    return MeasuredLatency(study.search.space, Target(), ModelIO(shape, 10), warmup=5, repeats=repeats).predict(arch)


def predicted_ms(lut_path: Path, study, arch) -> float:
    """The lut table's prediction for `arch` of `study`'s space (any space: the table prices the built module)."""
    from sparsenas.hardware.base import ModelIO, Target
    from sparsenas.hardware.lut import LatencyTable, LutLatency

    shape = (1, 28 // ARGS.downsample, 28 // ARGS.downsample)
    io = ModelIO(shape, 10)
    lut = LutLatency(study.search.space, Target(), io, LatencyTable.load(lut_path))
    return lut.module_breakdown(study.search.space.build(arch, shape, 10), shape).total


def profile_lut(model_name: str, weights: Path, args, out_dir: Path) -> Path:
    """A lut table for the free (no target) model space of `model_name`, saved in `out_dir`."""
    from sparsenas.config import CORE, validate_section
    from sparsenas.hardware.base import Target, model_io
    from sparsenas.hardware.lut import profile
    from sparsenas.schema import schema_of
    from sparsenas.space import SPACES

    values = space(model_name, weights, None)
    cls = SPACES.get(values.pop("name"))
    sp = cls(**validate_section("space", values, schema_of(cls)))
    data = validate_section("data", {k.split(".", 1)[1]: v for k, v in data_cfg(args).items()}, CORE["data"])
    table = profile(sp, Target(), model_io(sp, data), archs=args.lut_archs, calibration=args.lut_calibration,
                    log=lambda m: None)
    path = out_dir / f"{model_name}_lut.json"
    table.save(path)
    return path


ARGS = None


def _pm(values, scale=100.0) -> str:
    m, s = mean_std([scale * v for v in values])
    return f"{m:.2f} ± {s:.2f}"


def _p(t: dict) -> str:
    return f"{100 * t['mean_diff']:+.2f} ± {100 * t['ci95']:.2f} (p={t['p_ttest']:.3g})"


def _acc(rows, model, sparsity, method) -> list[float]:
    sel = [r for r in rows if r["model"] == model and r["sparsity"] == sparsity and r["method"] == method]
    return [r["test_acc"] for r in sorted(sel, key=lambda r: r["seed"])]


def main() -> None:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,mlp")
    p.add_argument("--sparsities", default="0.9,0.95")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--trials", type=int, default=16, help="trials of each search and random allocations")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs of every trial")
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--limit", type=int, default=10000, help="training images (the first N of MNIST's train split)")
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--lut-archs", type=int, default=16)
    p.add_argument("--lut-calibration", type=int, default=8)
    p.add_argument("--latency-repeats", type=int, default=30)
    p.add_argument("--no-latency", action="store_true", help="skip the equal-latency table")
    p.add_argument("--mnist", type=Path, default=MNIST)
    p.add_argument("--quick", action="store_true",
                   help="tiny settings for tests: mlp only, 2 seeds, 2 trials, 200 images, 0.9 only")
    p.add_argument("--threads", type=int, default=1)
    add_json_argument(p)
    args = p.parse_args()
    if args.quick:
        args.models, args.sparsities, args.seeds, args.trials, args.limit = "mlp", "0.9", 2, 2, 200
        args.pretrain_epochs, args.lut_archs, args.lut_calibration, args.latency_repeats = 1, 2, 2, 3
    ARGS = args
    if args.seeds < 2:
        raise SystemExit("--seeds must be >= 2 (paired tests)")
    if not args.mnist.exists():
        raise SystemExit(f"MNIST not found at {args.mnist}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = args.models.split(",")
    sparsities = [float(s) for s in args.sparsities.split(",")]
    methods = SEARCHED + BASELINES
    rows, dense_acc, times = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="layerwise_") as tmp:
        tmp = Path(tmp)
        weights = {}
        for m in models:
            weights[m], dense_acc[m] = pretrain(m, args, tmp)
            print(f"pretrained {m}: dense test_acc {dense_acc[m]:.4f}", flush=True)
        print(f"{'model':>5} {'sparsity':>8} {'method':>8} {'seed':>4} {'test_acc':>8} {'val_acc':>8} "
              f"{'sparsity':>8} {'s':>6}  layer densities")
        for m in models:
            for s in sparsities:
                for seed in range(args.seeds):
                    for method in methods:
                        t0 = time.perf_counter()
                        best, study = run_method(method, m, weights[m], s, seed, args)
                        dt = time.perf_counter() - t0
                        times.setdefault(m, []).append(dt / len(study.trials))
                        r = {"model": m, "sparsity": s, "method": method, "seed": seed,
                             "test_acc": best.metrics["test_acc"], "val_acc": best.metrics["val_acc"],
                             "measured_sparsity": best.metrics.get("sparsity"), "label": best.label,
                             "arch": best.arch.to_json(),
                             "trials": len(study.trials), "seconds": round(dt, 1)}
                        rows.append(r)
                        print(f"{m:>5} {s:8.2f} {method:>8} {seed:4d} {r['test_acc']:8.4f} {r['val_acc']:8.4f} "
                              f"{r['measured_sparsity']:8.4f} {dt:6.1f}  {best.label}", flush=True)
                        if method in BASELINES:  # for the equal-latency table
                            r["_study"], r["_arch"] = study, best.arch
        latency_rows, latency_note = [], ""
        if not args.no_latency:
            try:
                latency_rows = equal_latency(args, models, weights, rows, sparsities, tmp)
            except Exception as e:  # noqa: BLE001 — reported in the table and the RESULT, never faked
                latency_note = f"{type(e).__name__}: {e}"
                print(f"equal-latency part failed: {latency_note}", flush=True)
        else:
            latency_note = "skipped (--no-latency)"
    for r in rows:
        r.pop("_study", None)
        r.pop("_arch", None)
    summary, markdown = summarise(args, models, sparsities, rows, dense_acc, latency_rows, latency_note, times)
    summary["seconds"] = round(time.perf_counter() - start)
    print("\n" + markdown)
    finish(args, "layerwise_search", rows + latency_rows, summary, markdown=markdown,
           extra={"models": models, "sparsities": sparsities, "dense_test_acc": dense_acc,
                  "seconds_per_trial": {m: statistics.mean(v) for m, v in times.items()}})


def best_method(rows, models, sparsity, candidates) -> str:
    """The candidate with the highest mean test accuracy over the models and seeds at `sparsity`."""
    return max(candidates, key=lambda c: statistics.mean(
        [a for m in models for a in _acc(rows, m, sparsity, c)]))


def equal_latency(args, models, weights, rows, sparsities, tmp: Path) -> list[dict]:
    s90 = 0.9 if 0.9 in sparsities else sparsities[0]
    base = best_method(rows, models, s90, BASELINES)
    out = []
    for m in models:
        t0 = time.perf_counter()
        lut = profile_lut(m, weights[m], args, tmp)
        print(f"lut table of {m}: {time.perf_counter() - t0:.1f} s", flush=True)
        brows = sorted([r for r in rows if r["model"] == m and r["sparsity"] == s90 and r["method"] == base],
                       key=lambda r: r["seed"])
        base_ms = [measured_ms(r["_study"], r["_arch"], args.latency_repeats) for r in brows]
        # the search's constraint is on the lut's prediction: the budget is the baseline archs' median
        # lut-predicted latency (equal predicted latency); both sides are then timed whole (measured)
        budget = statistics.median(predicted_ms(lut, r["_study"], r["_arch"]) for r in brows)
        for r, ms in zip(brows, base_ms):
            out.append({"table": "latency", "model": m, "method": f"{base}@{s90:g}", "seed": r["seed"],
                        "test_acc": r["test_acc"], "latency_ms": ms, "budget_ms": budget,
                        "predicted_ms": predicted_ms(lut, r["_study"], r["_arch"]), "measured_sparsity": r["measured_sparsity"]})
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            extra = {"latency.predictor": "lut", "latency.file": str(lut)}
            best, study = run_method("tpe", m, weights[m], None, seed, args, extra=extra,
                                     objective={"maximize": ["val_acc"], "constraints": {"latency_ms": [None, budget]}})
            if best is None:
                raise RuntimeError(f"no feasible arch under {budget:.3f} ms for {m}, seed {seed}")
            ms = measured_ms(study, best.arch, args.latency_repeats)
            r = {"table": "latency", "model": m, "method": "tpe@latency", "seed": seed,
                 "test_acc": best.metrics["test_acc"], "latency_ms": ms, "budget_ms": budget,
                 "predicted_ms": best.metrics.get("latency_ms"), "measured_sparsity": best.metrics.get("sparsity"),
                 "label": best.label, "feasible_trials": sum(t.status == "ok" for t in study.trials),
                 "seconds": round(time.perf_counter() - t0, 1)}
            out.append(r)
            print(f"{m:>5} latency≤{budget:.3f} ms seed {seed}: test_acc {r['test_acc']:.4f}, measured "
                  f"{ms:.3f} ms (predicted {r['predicted_ms']:.3f}), sparsity {r['measured_sparsity']:.3f}, "
                  f"{r['feasible_trials']}/{len(study.trials)} feasible  {best.label}", flush=True)
    return out


def summarise(args, models, sparsities, rows, dense_acc, latency_rows, latency_note, times):
    alpha = 0.05
    summary, text = {}, []
    headers = ["model", "sparsity", *methods_names(), "searched − best baseline (pts, 95% CI, p)"]
    table, verdicts = [], []
    for s in sparsities:
        searched = best_method(rows, models, s, SEARCHED)
        base = best_method(rows, models, s, BASELINES)
        for m in models:
            t = paired_test(_acc(rows, m, s, searched), _acc(rows, m, s, base))
            table.append([m, f"{100 * s:g}%", *(_pm(_acc(rows, m, s, k)) for k in SEARCHED + BASELINES),
                          f"{searched} − {base}: {_p(t)}"])
        pooled = paired_test([a for m in models for a in _acc(rows, m, s, searched)],
                             [a for m in models for a in _acc(rows, m, s, base)])
        key = f"{round(100 * s)}"
        summary[f"gain_{key}_pts"] = 100 * pooled["mean_diff"]
        summary[f"p_{key}"] = pooled["p_ttest"]
        n = f"n={len(models)}×{args.seeds} pairs"
        word = ("no significant difference" if pooled["p_ttest"] >= alpha else
                "the searched allocation is better" if pooled["mean_diff"] > 0 else "the best baseline is better")
        verdicts.append(f"- {100 * s:g}% sparsity: {word} ({searched} − {base} {_p(pooled)}, {n}; uncorrected).")
        erk_u = paired_test([a for m in models for a in _acc(rows, m, s, "erk")],
                            [a for m in models for a in _acc(rows, m, s, "uniform")])
        verdicts.append(f"  ERK − uniform at {100 * s:g}%: {_p(erk_u)}"
                        + (" — ERK better, as the Random-Pruning paper finds" if erk_u["p_ttest"] < alpha and
                           erk_u["mean_diff"] > 0 else " — uniform better" if erk_u["p_ttest"] < alpha else
                           " — not significant") + ".")
    searched_k, rule, effect = PRIMARY
    result = primary(*([x for s in sparsities for m in models for x in _acc(rows, m, s, k)] for k in PRIMARY[:2]),
                     effect)
    summary.update(primary_delta_pts=100 * result["mean_diff"], primary_p=result["p_ttest"],
                   primary_power=result["power"], primary_seeds_for_80=result["seeds_for_80"],
                   primary_reproduced=int(result["verdict"] == "reproduced"))
    head = primary_text(f"{searched_k} − {rule.upper()} test accuracy, pooled over the models ({', '.join(models)}) and "
                        f"sparsities ({', '.join(f'{100 * s:g}%' for s in sparsities)}); AMC's claim that a searched "
                        f"allocation beats the best rule", result)
    dense = ", ".join(f"{m} {100 * a:.2f}%" for m, a in dense_acc.items())
    per_trial = ", ".join(f"{m} {statistics.mean(v):.1f} s" for m, v in times.items())
    text += [
        (f"Per-layer sparsity of a pretrained model, searched (tpe, opgfn: {args.trials} trials each, best by "
        f"val_acc) vs uniform, ERK and the best of {args.trials} random allocations (by val_acc), at the same global "
        f"sparsity (`space.target_sparsity`), every arch magnitude-pruned from the dense checkpoint and fine-tuned "
        f"{args.epochs} epoch(s) on the first {args.limit} MNIST images ({28 // args.downsample}×"
        f"{28 // args.downsample}), {args.seeds} paired seeds, every Conv2d/Linear searched. Dense checkpoints "
        f"({args.pretrain_epochs} epochs): test acc {dense}. Cells: test accuracy (%) mean ± std over seeds; "
        f"differences: mean paired difference in points ± 95% CI, paired t-test p. Mean time per trial: "
        f"{per_trial}."),
        "",
        markdown_table(headers, table),
        "",
        head,
        "",
        "Secondary (searched and best baseline chosen after the fact by mean test accuracy):",
        "",
        *verdicts,
    ]
    # equal latency
    text += ["", ("Equal measured latency (cpu, batch 1, 1 thread, exported): tpe searches the per-layer sparsities "
             "freely under `objective.constraints.latency_ms` ≤ the lut-predicted latency of the best 90% baseline "
             "(median over seeds; the same lut table prices both), then both archs are timed whole (measured ms "
             "below, median of repeats)."), ""]
    if latency_rows:
        lt, sa, sb = [], [], []
        for m in models:
            b = sorted([r for r in latency_rows if r["model"] == m and r["method"] != "tpe@latency"],
                       key=lambda r: r["seed"])
            a = sorted([r for r in latency_rows if r["model"] == m and r["method"] == "tpe@latency"],
                       key=lambda r: r["seed"])
            t = paired_test([r["test_acc"] for r in a], [r["test_acc"] for r in b])
            lt.append([m, f"{b[0]['budget_ms']:.3f}", b[0]["method"], _pm([r["test_acc"] for r in b]),
                       f"{statistics.mean(r['latency_ms'] for r in b):.3f}",
                       _pm([r["test_acc"] for r in a]), f"{statistics.mean(r['latency_ms'] for r in a):.3f}",
                       f"{100 * statistics.mean(r['measured_sparsity'] for r in a):.1f}%", _p(t)])
            sa += [r["test_acc"] for r in a]
            sb += [r["test_acc"] for r in b]
        pooled = paired_test(sa, sb)
        summary["gain_latency_pts"] = 100 * pooled["mean_diff"]
        summary["p_latency"] = pooled["p_ttest"]
        text += [markdown_table(["model", "budget (ms)", "baseline", "baseline acc", "baseline ms",
                                 "tpe@latency acc", "tpe ms", "tpe sparsity", "tpe − baseline (pts, CI, p)"], lt), ""]
        if pooled["p_ttest"] < alpha:
            word = ("**the latency-constrained search beats the best baseline**" if pooled["mean_diff"] > 0
                    else "**the best baseline beats the latency-constrained search**")
        else:
            word = "**no significant difference at equal latency**"
        over = [r for r in latency_rows if r["method"] == "tpe@latency" and r["latency_ms"] > 1.05 * r["budget_ms"]]
        sp_tpe = statistics.mean(r["measured_sparsity"] for r in latency_rows if r["method"] == "tpe@latency")
        text.append(f"- Equal latency: {word} ({_p(pooled)}, n={len(sa)} pairs)"
                    + (f"; {len(over)} searched archs measured more than 5% over the budget (lut error)"
                       if over else "") + ".")
        if sp_tpe < 0.9 - 0.01:
            text.append(f"  At equal latency the search keeps more weights (mean sparsity {100 * sp_tpe:.1f}% vs "
                        "90%): at batch 1 on this CPU unstructured sparsity of a conv runs dense and a linear "
                        "layer gains little from CSR, so the latency budget barely limits the density.")
    else:
        summary["gain_latency_pts"] = float("nan")
        summary["p_latency"] = float("nan")
        text.append(f"- Equal latency: **not measured** — {latency_note}; gain_latency_pts and p_latency are nan.")
    return summary, "\n".join(text)


def methods_names():
    return [*SEARCHED, "uniform", "ERK", "random (best of n)"]


if __name__ == "__main__":
    main()
