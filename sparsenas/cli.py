"""`sparsenas` command line. Exit codes: 0 done, 2 bad usage or config (one line, no traceback), 1 failure."""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
from pathlib import Path

from .errors import ConfigError
from .export import export_run, format_plan
from .hardware.commands import COMMANDS
from .paths import output_dir
from .report import run_report
from .rundir import RunDir
from .search import SearchAborted
from .study import Study, section_fragment
from .tensorboard_server import serve


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 — instead of argparse's usage block
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def _add_search(sub) -> None:
    p = sub.add_parser("search", help="run an architecture search", description=(
        "Run a search and write runs/<name>/ (config.yaml, trials.jsonl, best.json, pareto.csv, tb/, state/)."))
    p.add_argument("--space", help="search space: a preset name (e.g. dass) or a YAML file")
    p.add_argument("--strategy", help="search strategy: a preset name (e.g. random) or a YAML file")
    p.add_argument("--budget", type=int, help="number of trials (search.budget)")
    p.add_argument("--seed", type=int, help="run seed; each trial's seed derives from it (search.seed)")
    p.add_argument("--name", help="run name: the directory under --runs-dir (default: <space>-<strategy>-<time>)")
    p.add_argument("--runs-dir", default="runs", help="root of the run directories (default: runs)")
    p.add_argument("--executor", help="where trials run: local (this process), ray (a pool of Ray actors), "
                                      "tune (Ray Tune) (execution.executor)")
    p.add_argument("--address", help="HOST:PORT of an existing Ray cluster (execution.address)")
    p.add_argument("--workers", type=int, help="trials run at once (execution.workers; default: local 1, ray/tune "
                                                "every CPU of the cluster // execution.cpus_per_trial)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (execution.device)")
    p.add_argument("--max-failures", type=int, help="stop after N failed trials in a row (search.max_failures)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.epochs=2 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run --name: keeps its journal, restores the strategy, finishes the budget")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_search)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="summarise and plot one or several searches", description=(
        "Print the best trials, the best architecture and the Pareto front of each run (and, for several "
        "runs, a comparison with one common hypervolume reference); write pareto.png and trajectory.png with "
        "all the runs in each figure."))
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (runs/<name>); same objectives")
    p.add_argument("--top", type=int, default=10, help="how many trials to list per run (default 10)")
    p.add_argument("--out", help="directory for pareto.png and trajectory.png (default: the first RUN_DIR)")
    p.set_defaults(func=cmd_report)


def _add_tensorboard(sub) -> None:
    p = sub.add_parser("tensorboard", help="serve a run's TensorBoard logs on 127.0.0.1", description=(
        "Start TensorBoard on RUN_DIR/tb, bound to 127.0.0.1 only, print its URL and serve until Ctrl-C."))
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (runs/<name>)")
    p.add_argument("--port", type=int, default=6006, help="TCP port (default 6006; 0 picks a free one)")
    p.set_defaults(func=cmd_tensorboard)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="retrain the best (or a chosen) architecture and save it for sparse execution",
                       description=(
        "Retrain a trial's architecture with the run's config and save a deployable module: channels that masks "
        "silence removed from their layers and from the layers that consume them, then per layer the kernel timed "
        "fastest on this machine (dense, CSR for linear and 1x1 conv, BSR, N:M on CUDA compute capability >= 8.0). "
        "Writes OUT/model.pt, OUT/export.json and, with --format, a TorchScript or ONNX file."))
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (runs/<name>)")
    p.add_argument("--trial", type=int, help="trial number to export (default: the best trial, the one in best.json)")
    p.add_argument("--out", help="output directory (default: RUN_DIR/export-trial<N>)")
    p.add_argument("--epochs", type=int, help="retraining epochs (default: the run's train.epochs)")
    p.add_argument("--csr", choices=("auto", "always", "never"), default="auto",
                   help="CSR for linear and 1x1 conv layers: when timed faster (auto), always or never")
    p.add_argument("--format", choices=("pt", "torchscript", "onnx"), default="pt",
                   help="also write model.torchscript.pt (runs with torch alone, CSR kept) or model.onnx (sparse "
                        "layers dense; needs the onnx extra); default pt: the state dict only")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="device to retrain and export on")
    p.add_argument("--batch-size", type=int, default=1,
                   help="samples per forward pass the kernels are timed for (default 1, as `latency`)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads the kernels are timed with (default 1)")
    p.set_defaults(func=cmd_export)


def _add_latency(sub) -> None:
    p = sub.add_parser("latency", help="latency predictors: profile a lookup table, fit or apply a learned one",
                       description="Hardware latency predictors (in a search: --set latency.predictor=...).")
    cmds = p.add_subparsers(dest="latency_command", required=True, parser_class=_Parser)
    prof = cmds.add_parser("profile", help="measure the kernels of a space on this machine (lookup table)",
                           description="Time every kernel the space's networks run (op, shapes, sparsity as it "
                                       "really runs) and store the table in the cache directory.")
    prof.add_argument("--space", required=True, help="search space: a preset name or a YAML file")
    prof.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    prof.add_argument("--batch-size", type=int, default=1, help="samples per forward pass (default 1)")
    prof.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    prof.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (cuda)")
    prof.add_argument("--mode", default="exported", help="exported (what `sparsenas export` deploys) or masked")
    prof.add_argument("--archs", type=int, default=64, help="sampled architectures whose kernels are timed")
    prof.add_argument("--calibration", type=int, default=24, help="architectures timed whole to calibrate (0: none)")
    prof.add_argument("--passes", type=int, default=2, help="timing passes over the kernels, each keeping its lowest")
    prof.add_argument("--seed", type=int, default=0, help="sampling seed")
    prof.add_argument("--cache-dir", help="cache directory (default $SPARSENAS_CACHE_DIR or ~/.cache/sparsenas)")
    prof.add_argument("--out", help="table file (default: found by search runs in the cache directory)")
    prof.add_argument("--quiet", action="store_true", help="no progress lines")
    fit = cmds.add_parser("fit", help="train a latency regressor on measured (arch, latency) pairs",
                          description="Fit a learned latency predictor from a CSV of archs and measured latencies.")
    fit.add_argument("--space", required=True, help="search space: a preset name or a YAML file")
    fit.add_argument("--table", required=True, metavar="FILE.csv", help="CSV with an arch and a latency column")
    fit.add_argument("--arch-column", required=True, help="column of archs (JSON objects; nb201: arch strings)")
    fit.add_argument("--latency-column", required=True, help="column of measured latencies in ms")
    fit.add_argument("--model", default="auto", choices=("auto", "ridge", "gbm", "forest", "scale"),
                     help="regressor (default auto: chosen by cross-validation; scale needs --prior)")
    fit.add_argument("--prior", metavar="PREDICTOR", help="a reference predictor (a learned P.json or a lut table) "
                                                          "whose prediction the fit corrects: few-shot transfer")
    fit.add_argument("--out", required=True, metavar="P.json", help="predictor file to write")
    pred = cmds.add_parser("predict", help="predict latencies of the archs of a CSV with a learned predictor",
                           description="Write OUT.csv: the input columns plus predicted_ms.")
    pred.add_argument("--predictor", required=True, metavar="P.json", help="made by 'sparsenas latency fit'")
    pred.add_argument("--table", required=True, metavar="FILE.csv", help="CSV with an arch column")
    pred.add_argument("--arch-column", required=True, help="column of archs")
    pred.add_argument("--out", required=True, metavar="OUT.csv", help="CSV to write")
    for q in (prof, fit):
        q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override space.* or data.* keys of the space preset (repeatable)")
    p.set_defaults(func=cmd_latency)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sparsenas", description="Neural architecture search for sparse networks.")
    parser.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, e.g. to register your own spaces or strategies (repeatable); "
                             "nothing else ever imports code named by a config")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_search(sub)
    _add_report(sub)
    _add_tensorboard(sub)
    _add_export(sub)
    _add_latency(sub)
    return parser


FLAG_KEYS = {"budget": "search.budget", "seed": "search.seed", "max_failures": "search.max_failures",
             "executor": "execution.executor", "address": "execution.address", "workers": "execution.workers",
             "device": "execution.device"}


def _overrides(args) -> list[str]:
    """The flags and --set items, as `key=value` overrides."""
    flags = [f"{key}={json.dumps(getattr(args, attr))}" for attr, key in FLAG_KEYS.items()
             if getattr(args, attr) is not None]
    return [*flags, *args.overrides]


def _run_dir(runs_dir: Path, name: str) -> Path:
    """runs_dir/name, checked as a place a run can be written (a plain, printable name the OS accepts; a
    runs-dir that is a writable directory or can be made one)."""
    if name in ("", ".", "..") or "/" in name or not name.isprintable():
        raise ConfigError(f"--name must be a plain directory name, got {name!r}")
    return output_dir(runs_dir / name, "run directory")


def _default_name(args) -> str:
    names = [section_fragment(section, ref).get(section, {}).get("name", section)
             for section, ref in (("space", args.space), ("strategy", args.strategy))]
    return "{}-{}-{}".format(*names, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def cmd_search(args) -> int:
    if args.resume and not args.name:
        raise ConfigError("--resume needs --name RUN (the run to continue)")
    if not args.resume and (not args.space or not args.strategy):
        raise ConfigError("search needs --space and --strategy (or --resume --name RUN)")
    run_dir = _run_dir(Path(args.runs_dir), args.name if args.name is not None else _default_name(args))
    if args.resume and not RunDir(run_dir).is_run():
        raise ConfigError(f"--resume: {run_dir} is not a sparsenas run (no config.yaml and state/)")
    if not args.resume and run_dir.is_dir() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} already exists; use --resume to continue it or choose another --name")
    study = Study(args.space, args.strategy, storage=run_dir, load_if_exists=args.resume, overrides=_overrides(args),
                  progress=not args.quiet)  # validates every component before anything is written
    results = study.optimize()
    best = study.best
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "infeasible")}
    print(f"{len(results)} trials ({counts['ok']} ok, {counts['failed']} failed, {counts['infeasible']} infeasible) "
          f"in {run_dir}")
    if best is not None:
        shown = ", ".join(f"{k}={best.metrics[k]:.4g}" for k in study.objective.names)
        print(f"best: trial {best.trial} {shown}\n  {best.label}")
    if results and counts["failed"] == len(results):
        first = (results[0].error or "").splitlines()
        print(f"sparsenas: every trial failed; the first with: {first[0] if first else 'no error recorded'}",
              file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    print(run_report([Path(d) for d in args.run_dirs], top=args.top,
                     out=Path(args.out) if args.out is not None else None))
    return 0


def cmd_export(args) -> int:
    info = export_run(Path(args.run_dir), trial=args.trial, out=args.out, epochs=args.epochs, csr=args.csr,
                      device=args.device, fmt=args.format, batch_size=args.batch_size, threads=args.threads)
    print(format_plan(info["plan"]))
    shown = ", ".join(f"{k}={v:.4g}" for k, v in info["metrics"].items())
    out = args.out or Path(args.run_dir) / f"export-trial{info['trial']}"
    print(f"exported trial {info['trial']} ({shown}; max |masked - exported| = {info['max_abs_diff']:.2g}) to {out}")
    return 0


def cmd_latency(args) -> int:
    return COMMANDS[args.latency_command](args)


def cmd_tensorboard(args) -> int:
    return serve(Path(args.run_dir), args.port)


def _import_plugins(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"--allow-import {module}: {e}") from None


def _stdout_closed() -> int:
    """The reader of stdout has gone (`sparsenas report RUN | head`): stop quietly, as the Python docs advise —
    stdout goes to devnull so that the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def main(argv: list[str] | None = None) -> int:
    parser, args = build_parser(), None
    try:
        args = parser.parse_args(argv)
        _import_plugins(args.allow_import)
        code = args.func(args)
        sys.stdout.flush()  # a reader that went away (`| head`) shows here, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except ConfigError as e:
        print(f"sparsenas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsenas: interrupted (resume with --resume)", file=sys.stderr)
        return 130
    except OSError as e:  # the machine, not the input: a full disk, a lost permission (the journal stays whole)
        print(f"sparsenas: error: {e}" + (" (a search continues with --resume)" if getattr(args, "command", None) == "search" else ""),
              file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001
        if isinstance(e, SearchAborted):
            print(f"sparsenas: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
