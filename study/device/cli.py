"""``python -m study.device``: carry a slice of a grid to a lent GPU machine and bring its results back.

The device machine gets a copy of the working tree plus up to 8 ignored "carry" folders, 64 MiB in all; it has
torch, timm, scikit-learn, pandas, pyarrow and nvidia-ml-py, but no duckdb, no weight or dataset packages, no
Debian Fashion-MNIST and no ../shared/datasets. ``pack`` builds one ignored folder (``.device/``) holding exactly
what the selected runs need, and ``ingest`` loads the archive the call brings back into DuckDB:

  python -m study.device pack --grid gpu --datasets flowers5,mnist5k --backbones mobilenetv2_100
  # device tool: run(command="bash .device/run.sh", carry=[".device"], timeout_s=600)
  python -m study.device ingest /path/to/results.tar.gz [--db data/study.duckdb]

The pack folder holds:
  weights/           fp16 copies of the verified weights + SHA256SUMS (checked again before loading there)
  datasets/          package datasets (elpv, fashion_mnist, mnist5k) as packed NAME.npz (see study.datasets)
  shared_datasets/   the ImageFolder datasets' JPEG files, SOURCE.md and the README.md table (metadata)
  grids.toml         the grid file the runs come from (run_ids depend on the specs, not on this path)
  commit.txt         the local commit (runs record it through EOT_GIT_COMMIT: there is no .git there)
  exclude_run_ids.txt  runs already in the local DuckDB, so each call resumes where the last stopped
  env.sh, run.sh     environment, and the command: runs with a time budget, then bundles every result file and
                     the logs into ONE archive, $OUT/results.tar.gz (a call brings back at most 8 files)
  manifest.json      what is packed, encodings, sizes, date
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from study.backbones import BackboneError
from study.datasets import DatasetError
from study.device.common import DEFAULT_CALL_TIMEOUT_S, DEVICE_LIMIT_MIB, PROJECT_ROOT, DeviceError
from study.device.ingest import ingest_archive
from study.device.pack import describe_pack, pack
from study.grid import DEFAULT_GRID_FILE, GridError
from study.store import DEFAULT_DB, StoreError


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.device", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="build the carry folder for a selection of a grid")
    p.add_argument("--grid", default="gpu")
    p.add_argument("--grid-file", default=str(DEFAULT_GRID_FILE), help="TOML file of named grids (copied along)")
    p.add_argument("--datasets", help="comma-separated subset of the grid's datasets")
    p.add_argument("--backbones", help="comma-separated subset of the grid's backbones")
    p.add_argument("--methods", help="comma-separated subset of the grid's methods")
    p.add_argument("--resolution", type=int, help="override the grid's resolution (pixels)")
    p.add_argument("--out", default=str(PROJECT_ROOT / ".device"), help="pack folder (default .device, ignored)")
    p.add_argument("--db", default=str(DEFAULT_DB), help="local DuckDB whose runs are excluded (read only)")
    p.add_argument("--limit-mib", type=float, default=DEVICE_LIMIT_MIB, help="what one call may carry")
    p.add_argument("--margin-mib", type=float, default=1.0, help="kept free for the tree growing before the call")
    p.add_argument("--allow-lossy", action="store_true",
                   help="where no lossless encoding fits, store decoded images as JPEG (recorded in the manifest)")
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--call-timeout-s", type=int, default=DEFAULT_CALL_TIMEOUT_S,
                   help="the timeout_s the device call will be given (<= 600)")
    p.add_argument("--time-budget-s", type=int, help="start no run after this (default: call timeout - 150 s)")
    i = sub.add_parser("ingest", help="load a results.tar.gz from a device call into DuckDB")
    i.add_argument("archive")
    i.add_argument("--db", default=str(DEFAULT_DB))
    i.add_argument("--keep-logs", help="folder for the archive's logs (default logs/device/<time>-<name>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "pack":
            manifest = pack(args.grid, args.grid_file, _names(args.datasets), _names(args.backbones),
                            _names(args.methods), args.resolution, args.out, args.db, args.limit_mib, args.margin_mib,
                            args.allow_lossy, args.jpeg_quality, args.time_budget_s, args.call_timeout_s)
            print(describe_pack(manifest))
            return 0
        report = ingest_archive(args.archive, args.db, args.keep_logs)
    except (DeviceError, GridError, DatasetError, BackboneError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 1 if report["rejected"] else 0
