"""``python -m study.run``: run a named grid of the study into DuckDB (resumable), or ingest result files.

Examples:
  python -m study.run --grid cpu-smoke            # run (or resume) the CPU smoke grid into data/study.duckdb
  python -m study.run --grid gpu --plan           # list the runs still to do with an estimated cost
  python -m study.run --grid cpu --datasets flowers5,elpv --methods fe_linear
  python -m study.run --grid gpu --results-dir out/   # no duckdb here: one JSON file per run
  python -m study.run ingest out/ [--db data/study.duckdb]
  python -m study.run --grid gpu --results-dir out/ --exclude-run-ids ids.txt --time-budget-s 420
  python -m study.run --grid gpu --executor ray --address HEAD:6379   # fan out over a Ray cluster
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from study.backbones import BackboneError
from study.datasets import DatasetError
from study.executors import ExecutorError, executor_names, get_executor
from study.grid import DEFAULT_GRID_FILE, GridError, grid_specs
from study.store import DEFAULT_DB, StoreError, ingest, open_store

LOG_DIR = Path(__file__).resolve().parent.parent / "logs"


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m study.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="cpu-smoke", help="name of a grid in the grid file (default: cpu-smoke)")
    parser.add_argument("--grid-file", default=str(DEFAULT_GRID_FILE), help="TOML file of named grids")
    parser.add_argument("--datasets", help="comma-separated datasets to run the grid's design on instead of its own: "
                        "registered names or folder paths (NAME/{train,test}/CLASS/ or NAME/CLASS/)")
    parser.add_argument("--backbones", help="comma-separated subset of the grid's backbones")
    parser.add_argument("--methods", help="comma-separated subset of the grid's methods")
    parser.add_argument("--seeds", help="comma-separated subset of the grid's seeds (e.g. 0: one pass first)")
    parser.add_argument("--resolution", type=int, help="override the grid's resolution (pixels)")
    parser.add_argument("--plan", action="store_true", help="list the runs still to do with estimated cost; run nothing")
    parser.add_argument("--max-runs", type=int, help="stop after this many new runs (the rest resume later)")
    parser.add_argument("--exclude-run-ids", metavar="FILE",
                        help="file of run_ids (one a line, '#' comments) to skip as done elsewhere, e.g. the "
                             "runs already in the local DuckDB when this runs on a device machine")
    parser.add_argument("--time-budget-s", type=float, metavar="S",
                        help="start no new run after S seconds (a started run finishes; the rest resume later)")
    parser.add_argument("--db", default=str(DEFAULT_DB), help=f"DuckDB file (default: {DEFAULT_DB})")
    parser.add_argument("--results-dir", help="write one JSON file per run here instead of DuckDB")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to compute")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and for numpy/scikit-learn (default: the libraries' choice)")
    parser.add_argument("--executor", default="local", choices=executor_names(),
                        help="local: one run after another here (default); ray: one task per dataset x backbone "
                             "on a Ray cluster, results stored here")
    parser.add_argument("--address", help="Ray cluster to join (HEAD:6379; default $RAY_ADDRESS, else a local "
                                          "Ray instance on 127.0.0.1); --executor ray only")
    parser.add_argument("--ray-cpus-per-task", type=int, metavar="N",
                        help="CPUs a Ray task asks for (default: --threads or 1; GPU tasks also ask for 1 GPU)")
    parser.add_argument("--ray-max-retries", type=int, metavar="N",
                        help="Ray retries of a task whose worker or node died (default 2); then its runs go to "
                             "failures")
    parser.add_argument("--log-file", help="log file (default: logs/study-<time>.log)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _setup_logging(log_file: str | None) -> Path:
    path = Path(log_file) if log_file else LOG_DIR / f"study-{time.strftime('%Y%m%d-%H%M%S')}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    root.addHandler(console)
    return path


def read_run_ids(path: str | Path) -> set[str]:
    """run_ids listed one a line; blank lines and '#' comments ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise StoreError(f"cannot read run_ids from {path}: {error.strerror}") from None
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


def _plan(specs, store, device_type: str, exclude: set[str] = frozenset()) -> None:
    """The runs still to do, each with its expected wall time: the median of the stored runs of the same kind where
    there are some (a seed more of a measured run), else a model from stated throughputs."""
    from study.datasets import load_images
    from study.grid import estimate_seconds, timing_key

    stored = store.stored_run_ids() | set(exclude)
    pending = [spec for spec in specs if spec.run_id not in stored]
    history = store.measured_seconds()
    shapes = {}
    total, measured = 0.0, 0
    print(f"{'run_id':20} {'dataset':18} {'backbone':28} {'method':10} {'k':>4} {'seed':>4} {'res':>4} {'est_s':>8}")
    for spec in pending:
        if (spec.dataset, spec.resolution) not in shapes:
            data = load_images(spec.dataset, spec.resolution)
            counts = data.train_labels.size // data.info.n_classes
            shapes[(spec.dataset, spec.resolution)] = (data.info.n_classes, counts, len(data.test_labels))
        key = timing_key(spec, device_type)
        measured += key in history
        seconds = history[key] if key in history else estimate_seconds(
            spec, *shapes[(spec.dataset, spec.resolution)], device_type)
        total += seconds
        print(f"{spec.run_id:20} {spec.dataset[:18]:18} {spec.backbone:28} {spec.method:10} {spec.k_label:>4} "
              f"{spec.seed:>4} {spec.resolution:>4} {seconds:8.1f}")
    print(f"\n{len(pending)} runs to do ({len(specs) - len(pending)} of {len(specs)} already stored); "
          f"estimated {total / 60:.1f} min on {device_type} ({measured} from the median of stored runs of the same "
          f"kind, {len(pending) - measured} from stated throughputs: an estimate, not a measurement)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ingest"]:
        parser = argparse.ArgumentParser(prog="python -m study.run ingest",
                                         description="Load JSON result files (or folders of them) into DuckDB; "
                                                     "already stored runs are skipped, malformed files named.")
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--db", default=str(DEFAULT_DB))
        args = parser.parse_args(argv[1:])
        try:
            report = ingest(args.paths, args.db)
        except StoreError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(report, indent=2))
        return 1 if report["rejected"] else 0
    args = build_parser().parse_args(argv)
    try:
        seeds = _names(args.seeds)
        if seeds is not None and not all(seed.isdigit() for seed in seeds):
            raise GridError(f"--seeds takes whole numbers separated by commas, got {args.seeds!r}")
        specs = grid_specs(args.grid, args.grid_file, _names(args.datasets), _names(args.backbones),
                           _names(args.methods), args.resolution, seeds and [int(seed) for seed in seeds])
        if not specs:
            print("error: the grid and filters select no runs", file=sys.stderr)
            return 2
        store = open_store(args.db, args.results_dir)
        exclude = read_run_ids(args.exclude_run_ids) if args.exclude_run_ids else set()
        import torch

        from study.runner import resolve_device

        if args.threads:
            from threadpoolctl import threadpool_limits

            torch.set_num_threads(args.threads)
            threadpool_limits(args.threads)  # numpy/scikit-learn's BLAS and OpenMP pools too
        if args.plan:
            _plan(specs, store, resolve_device(args.device).type, exclude)
            return 0
        executor = get_executor(args.executor)
        log_path = _setup_logging(args.log_file)
        print(f"log: {log_path}", file=sys.stderr)
        summary = executor(specs, store, args.grid, device=args.device, threads=args.threads,
                           progress=not args.no_progress, max_runs=args.max_runs, exclude=exclude,
                           time_budget_s=args.time_budget_s, address=args.address,
                           cpus_per_task=args.ray_cpus_per_task, max_retries=args.ray_max_retries)
    except (GridError, DatasetError, BackboneError, StoreError, ExecutorError, RuntimeError, ConnectionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
