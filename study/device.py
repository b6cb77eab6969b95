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
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from study import datasets as ds
from study.backbones import WEIGHTS_MANIFEST, BackboneError, fp16_name, get_spec, load_verified, sha256_of, weights_file
from study.grid import DEFAULT_GRID_FILE, GridError, grid_specs
from study.store import DEFAULT_DB, StoreError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
DEVICE_LIMIT_MIB = 64  # working tree + carried folders, per call
SMALL_FILES_BYTES = 128 * 1024  # run.sh, env.sh, manifest.json, grids.toml, commit.txt (exclude ids counted apart)
ESTIMATE_SLACK = 1.04  # sampled size estimates of encoded images are scaled up by this
TINY_NATIVE_SIDE = 64  # package datasets at most this large travel as compressed native arrays
PACK_TOOL = "study.device pack"
DEFAULT_CALL_TIMEOUT_S = 600
MAX_ARCHIVE_BYTES = 2 * 2**30  # expanded size of a results archive (a call brings back at most 64 MiB packed)


class DeviceError(RuntimeError):
    """The pack or the ingest cannot be done (too large, unsafe archive, bad selection)."""


# ---------------------------------------------------------------------------------------------- sizes

def tree_files(root: Path = PROJECT_ROOT, exclude: Path | None = None) -> dict[str, int]:
    """Files that travel with every call (tracked + untracked-not-ignored, and a shared/ folder) -> bytes."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError) as error:
        raise DeviceError(f"cannot list the working tree with git ls-files in {root}: {error}") from None
    sizes = {}
    for name in filter(None, listed):
        path = root / name
        if exclude is not None and _inside(path, exclude):
            continue
        try:
            sizes[name] = path.lstat().st_size
        except FileNotFoundError:  # tracked but deleted
            continue
    shared = root / "shared"
    if shared.is_dir():
        for path in shared.rglob("*"):
            if path.is_file():
                sizes.setdefault(str(path.relative_to(root)), path.lstat().st_size)
    return sizes


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def folder_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


# ---------------------------------------------------------------------------------------------- selection

def stored_run_ids(db: str | Path, timeout_s: float = 60.0) -> set[str]:
    """run_ids in a DuckDB file, opened read-only for a moment (retried while a writer holds it)."""
    path = Path(db)
    if not path.exists():
        return set()
    try:
        import duckdb
    except ImportError:
        log.warning("duckdb is not installed: no local runs are excluded")
        return set()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                return {row[0] for row in con.execute("SELECT run_id FROM runs").fetchall()}
        except duckdb.CatalogException:
            return set()
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise DeviceError(f"cannot read {path}: {error}") from None
            time.sleep(0.2)


@dataclass
class Selection:
    grid: str
    grid_file: Path
    datasets: list[str] | None
    backbones: list[str] | None
    methods: list[str] | None
    resolution: int | None
    specs: list = field(default_factory=list)
    stored: set = field(default_factory=set)

    @property
    def pending(self) -> list:
        return [spec for spec in self.specs if spec.run_id not in self.stored]

    def needs(self, backbones: set[str] | None = None) -> dict[str, set[int]]:
        """dataset -> resolutions its pending runs use (only the runs of ``backbones``, if given)."""
        out: dict[str, set[int]] = {}
        for spec in self.pending:
            if backbones is None or spec.backbone in backbones:
                out.setdefault(spec.dataset, set()).add(spec.resolution)
        return out

    def pretrained_backbones(self, backbones: set[str] | None = None) -> list[str]:
        names = {spec.backbone for spec in self.pending if backbones is None or spec.backbone in backbones}
        return sorted(name for name in names if get_spec(name).pretrained)

    def all_backbones(self) -> list[str]:
        return sorted({spec.backbone for spec in self.pending})


def select(grid: str, grid_file: str | Path, datasets, backbones, methods, resolution, db) -> Selection:
    selection = Selection(grid, Path(grid_file), datasets, backbones, methods, resolution)
    selection.specs = grid_specs(grid, grid_file, datasets, backbones, methods, resolution)
    if not selection.specs:
        raise DeviceError("the grid and filters select no runs")
    for spec in selection.specs:
        if ds.is_path(spec.dataset):
            raise DeviceError(f"dataset {spec.dataset!r} is a folder path; only registered datasets can be packed")
    ids = stored_run_ids(db)
    selection.stored = {spec.run_id for spec in selection.specs if spec.run_id in ids}
    return selection


# ---------------------------------------------------------------------------------------------- weights

def fp16_weights(name: str, folder: Path) -> dict:
    """Write the fp16 copy of a backbone's verified weights into ``folder``; returns its manifest entry."""
    import torch

    spec = get_spec(name)
    original = weights_file(spec)
    state = load_verified(original, spec.sha256)
    half, kept_fp32, max_error = {}, [], 0.0
    for key, value in state.items():
        if value.is_floating_point():
            converted = value.half()
            if not torch.isfinite(converted).all():  # out of fp16 range: keep it exact
                kept_fp32.append(key)
                converted = value
            else:
                max_error = max(max_error, (converted.float() - value.float()).abs().max().item())
            half[key] = converted
        else:
            half[key] = value
    target = folder / fp16_name(spec)
    torch.save(half, target)
    return {"backbone": name, "file": target.name, "bytes": target.stat().st_size,
            "sha256": sha256_of(str(target)), "original_file": os.path.basename(original),
            "original_sha256": spec.sha256, "original_bytes": os.path.getsize(original),
            "max_abs_rounding_error": max_error, "tensors_kept_fp32": kept_fp32}


def weights_estimate(name: str) -> int:
    return os.path.getsize(weights_file(get_spec(name))) // 2 + 64 * 1024


# ---------------------------------------------------------------------------------------------- datasets

def is_package_dataset(name: str) -> bool:
    """Registered but not an ImageFolder under the shared root (elpv, fashion_mnist, mnist5k)."""
    root = ds.shared_datasets_root()
    return not ((root / name / "train").is_dir() and (root / name / "test").is_dir())


def folder_dataset_files(name: str) -> list[tuple[Path, str]]:
    """(source file, path relative to the shared root) of what the loader reads, plus SOURCE.md."""
    root = ds.shared_datasets_root() / name
    classes = [p.name for p in ds._class_folders(root / "train")]
    files = []
    for split in ("train", "test"):
        for cls in classes:
            folder = root / split / cls
            for path in ds._image_files(folder) if folder.is_dir() else []:
                files.append((path, f"{name}/{split}/{cls}/{path.name}"))
    if (root / "SOURCE.md").is_file():
        files.append((root / "SOURCE.md", f"{name}/SOURCE.md"))
    return files


@dataclass
class Encoding:
    scope: str  # "native" or "resolution"
    codec: str  # "npz", "webp-lossless", "png", "jpeg"
    quality: int | None = None

    @property
    def lossless(self) -> bool:
        return self.codec in ds.LOSSLESS_CODECS

    def describe(self, resolutions) -> str:
        what = {"npz": "uint8 arrays, zlib-compressed (lossless)", "webp-lossless": "WebP lossless per image",
                "png": "PNG per image (lossless)", "jpeg": f"JPEG quality {self.quality} per image (LOSSY)"}[self.codec]
        if self.scope == "native":
            return f"native size, {what}"
        return (f"decoded at {sorted(resolutions)} px exactly as load_images decodes them here, {what}; "
                "other resolutions are refused")


def _original_pool(name: str) -> tuple[list, list]:
    source = ds.original_source(name)
    return source.train, source.test


def _estimate_encoded(images: list, codec: str, quality: int | None) -> int:
    step = max(1, len(images) // 160)
    sample = images[::step]
    blob, _ = ds.encode_images(sample, codec, quality)
    return int(blob.size * len(images) / max(1, len(sample)) * ESTIMATE_SLACK) + 16 * len(images)


class PackageSizer:
    """Estimated bytes of a package dataset under each encoding (sampled, cached per process)."""

    def __init__(self):
        self._cache: dict = {}

    def native_side(self, name: str) -> int:
        key = ("side", name)
        if key not in self._cache:
            train, _ = _original_pool(name)
            self._cache[key] = max(np.asarray(train[0]).shape[:2])
        return self._cache[key]

    def estimate(self, name: str, encoding: Encoding, resolutions: set[int]) -> int:
        key = (name, encoding.scope, encoding.codec, encoding.quality, tuple(sorted(resolutions)))
        if key not in self._cache:
            if encoding.scope == "native":
                train, test = _original_pool(name)
                if encoding.codec == "npz":
                    import zlib

                    raw = np.stack(train[:500]).tobytes()
                    ratio = len(zlib.compress(raw, 6)) / max(1, len(raw))
                    total = int(sum(np.asarray(a).nbytes for a in train + test) * ratio * ESTIMATE_SLACK)
                else:
                    total = _estimate_encoded(train + test, encoding.codec, encoding.quality)
            else:
                total = 0
                for resolution in resolutions:
                    data = ds.load_images(name, resolution, original=True)
                    total += _estimate_encoded(list(data.train_images) + list(data.test_images), encoding.codec,
                                               encoding.quality)
            self._cache[key] = total + 4096
        return self._cache[key]

    def candidates(self, name: str, allow_lossy: bool, jpeg_quality: int) -> list[Encoding]:
        """Encodings in order of preference: native lossless, exact decoded arrays, then (if allowed) lossy."""
        if self.native_side(name) <= TINY_NATIVE_SIDE:
            return [Encoding("native", "npz")]
        options = [Encoding("native", "webp-lossless"), Encoding("resolution", "webp-lossless")]
        if allow_lossy:
            options.append(Encoding("resolution", "jpeg", jpeg_quality))
        return options

    def best(self, name: str, resolutions: set[int], room: int, allow_lossy: bool, jpeg_quality: int):
        """(encoding, estimated bytes) of the first candidate that fits ``room``, else (None, smallest)."""
        smallest = None
        for encoding in self.candidates(name, allow_lossy, jpeg_quality):
            size = self.estimate(name, encoding, resolutions)
            smallest = size if smallest is None else min(smallest, size)
            if size <= room:
                return encoding, size
        return None, smallest


def pack_package_dataset(name: str, encoding: Encoding, resolutions: set[int], target: Path) -> dict:
    """Write the packed ``NAME.npz`` (format of study.datasets); every lossless image is checked by decoding."""
    source = ds.original_source(name)
    info = asdict(source.info)
    channels = source.info.channels
    arrays: dict[str, np.ndarray] = {"train_labels": source.train_labels, "test_labels": source.test_labels}
    fingerprint = source.fingerprint
    error = {"max_abs": 0, "mean_abs": 0.0}
    if encoding.scope == "native":
        for split, images in (("train", source.train), ("test", source.test)):
            if encoding.codec == "npz":
                arrays[f"{split}_images"] = np.stack(images)
            else:
                blob, offsets = ds.encode_images(images, encoding.codec, encoding.quality)
                _check_roundtrip(blob, offsets, images, channels, encoding, error, f"{name} {split}")
                arrays[f"{split}_blob"], arrays[f"{split}_offsets"] = blob, offsets
    else:
        for resolution in sorted(resolutions):
            data = ds.load_images(name, resolution, original=True)
            for split, images, labels in (("train", data.train_images, data.train_labels),
                                          ("test", data.test_images, data.test_labels)):
                key = f"{split}_{resolution}px"
                blob, offsets = ds.encode_images(list(images), encoding.codec, encoding.quality)
                _check_roundtrip(blob, offsets, images, channels, encoding, error, f"{name} {key}")
                arrays[f"{key}_blob"], arrays[f"{key}_offsets"], arrays[f"{key}_labels"] = blob, offsets, labels
    error.pop("_n", None)
    if not encoding.lossless:
        fingerprint = f"{fingerprint}-{encoding.codec}{encoding.quality}"
    description = encoding.describe(resolutions)
    meta = {"format": ds.PACKED_FORMAT, "name": name, "info": info, "fingerprint": fingerprint,
            "scope": encoding.scope, "codec": encoding.codec, "quality": encoding.quality,
            "lossless": encoding.lossless, "resolutions": sorted(resolutions) if encoding.scope != "native" else None,
            "encoding": description, "error_vs_original": None if encoding.lossless else error}
    arrays["meta"] = np.array(json.dumps(meta))
    partial = target.with_name(target.name + ".partial.npz")
    (np.savez_compressed if encoding.codec == "npz" else np.savez)(partial, **arrays)
    os.replace(partial, target)
    return {"dataset": name, "kind": "package", "file": f"datasets/{target.name}", "bytes": target.stat().st_size,
            "encoding": description, "lossless": encoding.lossless, "fingerprint": fingerprint,
            "resolutions": sorted(resolutions), "error_vs_original": meta["error_vs_original"],
            "n_train_pool": int(len(source.train_labels)), "n_test": int(len(source.test_labels))}


def _check_roundtrip(blob, offsets, images, channels: int, encoding: Encoding, error: dict, what: str) -> None:
    decoded = ds.decode_images(blob, offsets, channels)
    total, count = 0.0, 0
    for got, want in zip(decoded, images):
        want = np.asarray(want)
        want = want[:, :, 0] if want.ndim == 3 and want.shape[2] == 1 else want
        if encoding.lossless:
            if got.shape != want.shape or not np.array_equal(got, want):
                raise DeviceError(f"{what}: {encoding.codec} did not round-trip exactly; refusing to pack it")
            continue
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        error["max_abs"] = max(error["max_abs"], int(diff.max()))
        total += float(diff.mean())
        count += 1
    if count:
        n_before = error.get("_n", 0)
        error["mean_abs"] = (error["mean_abs"] * n_before + total) / (n_before + count)
        error["_n"] = n_before + count


def copy_folder_dataset(name: str, target_root: Path) -> dict:
    """Copy an ImageFolder dataset byte for byte; checks the copy has the original's fingerprint."""
    files = folder_dataset_files(name)
    for source, relative in files:
        destination = target_root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    original = ds._folder_source(ds.shared_datasets_root() / name, name)
    copy = ds._folder_source(target_root / name, name)
    if copy.fingerprint != original.fingerprint or not np.array_equal(copy.train_labels, original.train_labels):
        raise DeviceError(f"the copy of {name} differs from the original")
    return {"dataset": name, "kind": "folder", "file": f"shared_datasets/{name}/",
            "bytes": sum((target_root / r).stat().st_size for _, r in files), "n_files": len(files),
            "encoding": "original JPEG files, byte for byte", "lossless": True, "fingerprint": original.fingerprint,
            "n_train_pool": int(len(original.train_labels)), "n_test": int(len(original.test_labels))}


# ---------------------------------------------------------------------------------------------- planning

@dataclass
class Plan:
    tree_bytes: int
    weights: dict[str, int]  # backbone -> estimated bytes
    datasets: dict[str, dict]  # name -> {"bytes", "encoding" (Encoding or None), "resolutions"}
    exclude_bytes: int
    limit_bytes: int
    margin_bytes: int

    @property
    def fixed_bytes(self) -> int:
        return self.tree_bytes + SMALL_FILES_BYTES + self.exclude_bytes + self.margin_bytes

    @property
    def total_bytes(self) -> int:
        return self.fixed_bytes + sum(self.weights.values()) + sum(d["bytes"] for d in self.datasets.values())


def plan_pack(selection: Selection, tree_bytes: int, limit_bytes: int, margin_bytes: int, allow_lossy: bool,
              jpeg_quality: int, sizer: PackageSizer) -> Plan:
    needs = selection.needs()
    weights = {name: weights_estimate(name) for name in selection.pretrained_backbones()}
    exclude_bytes = 21 * len(selection.stored)
    plan = Plan(tree_bytes, weights, {}, exclude_bytes, limit_bytes, margin_bytes)
    big_packages = []
    for name, resolutions in needs.items():
        if not is_package_dataset(name):
            size = sum(src.stat().st_size for src, _ in folder_dataset_files(name))
            plan.datasets[name] = {"bytes": size, "encoding": None, "resolutions": resolutions}
        elif sizer.native_side(name) <= TINY_NATIVE_SIDE:
            encoding = Encoding("native", "npz")
            plan.datasets[name] = {"bytes": sizer.estimate(name, encoding, resolutions), "encoding": encoding,
                                   "resolutions": resolutions}
        else:
            big_packages.append(name)
    for name in big_packages:  # what is left of the limit goes to the large package datasets
        room = limit_bytes - plan.total_bytes
        encoding, size = sizer.best(name, needs[name], room, allow_lossy, jpeg_quality)
        plan.datasets[name] = {"bytes": size, "encoding": encoding, "resolutions": needs[name]}
    return plan


def backbone_groups(selection: Selection) -> list[list[str]]:
    """One group per pretrained backbone, its ``_random_init`` variant with it (that one carries no weights)."""
    from study.backbones import RANDOM_INIT_SUFFIX

    names = selection.all_backbones()
    groups: dict[str, list[str]] = {}
    for name in names:
        base = name.removesuffix(RANDOM_INIT_SUFFIX)
        groups.setdefault(base if base in names else name, []).append(name)
    return [sorted(group) for _, group in sorted(groups.items())]


def split_advice(selection: Selection, plan: Plan, allow_lossy: bool, jpeg_quality: int,
                 sizer: PackageSizer) -> list[str]:
    """Pack commands for parts of the selection that each fit one call: all backbones together if the largest
    dataset fits with them, else one backbone group at a time; datasets first-fit decreasing within that."""
    base = plan.fixed_bytes
    everything = selection.all_backbones()
    largest = max(d["bytes"] for d in plan.datasets.values())
    together = base + sum(plan.weights.values()) + largest <= plan.limit_bytes
    common = _common_options(selection)
    lines = []
    for group in [everything] if together else backbone_groups(selection):
        weight = sum(plan.weights.get(name, 0) for name in group)
        room = plan.limit_bytes - base - weight
        sizes, lossy, unfit = {}, set(), []
        for name, resolutions in sorted(selection.needs(set(group)).items()):
            if is_package_dataset(name):
                encoding, size = sizer.best(name, resolutions, room, allow_lossy, jpeg_quality)
                if encoding is not None and not encoding.lossless:
                    lossy.add(name)
                fits = encoding is not None
            else:
                size = plan.datasets[name]["bytes"]
                fits = size <= room
            if fits:
                sizes[name] = size
            else:
                unfit.append((name, size))
        bins: list[list[str]] = []
        loads: list[int] = []
        for name in sorted(sizes, key=sizes.get, reverse=True):
            for index, load in enumerate(loads):
                if load + sizes[name] <= room:
                    bins[index].append(name)
                    loads[index] += sizes[name]
                    break
            else:
                bins.append([name])
                loads.append(sizes[name])
        for names, load in zip(bins, loads):
            flag = " --allow-lossy" if lossy & set(names) else ""
            lines.append(f"python -m study.device pack{common} --datasets {','.join(sorted(names))} "
                         f"--backbones {','.join(group)}{flag}   # ~{_mib(base + weight + load)}")
        for name, size in unfit:
            hint = "" if allow_lossy else "; with --allow-lossy it travels as JPEG (recorded in the manifest)"
            lines.append(f"# {name} with {','.join(group)}: ~{_mib(base + weight + size)} losslessly, over "
                         f"{plan.limit_bytes / MIB:g} MiB{hint}")
    return lines


def _common_options(selection: Selection) -> str:
    parts = [f" --grid {shlex.quote(selection.grid)}"]
    if Path(selection.grid_file).resolve() != DEFAULT_GRID_FILE.resolve():
        parts.append(f" --grid-file {shlex.quote(str(selection.grid_file))}")
    if selection.methods:
        parts.append(f" --methods {','.join(selection.methods)}")
    if selection.resolution:
        parts.append(f" --resolution {selection.resolution}")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- pack

ENV_SH = """# Generated by python -m study.device pack: the environment the packed runs need. Source it from the
# repository root (bash .device/run.sh does), e.g. before python -m study.bench on the device machine.
PACK="${PACK:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
export EOT_WEIGHTS_DIR="$PACK/weights"
export EOT_PACKED_DATASETS="$PACK/datasets"
export EOT_SHARED_DATASETS="$PACK/shared_datasets"
export EOT_GIT_COMMIT="$(cat "$PACK/commit.txt")"
export PYTHONUNBUFFERED=1
"""

RUN_SH = """#!/usr/bin/env bash
# Generated by python -m study.device pack at {created} for commit {commit}.
# From the repository root, on the device machine (or anywhere, for a test):
#   OUT=/some/folder bash {pack_rel}/run.sh [more python -m study.run options, e.g. --device cpu --threads 1]
# Runs the packed selection into JSON result files, starts no run after the time budget, and always bundles
# every result file, failure and log into ONE archive: $OUT/results.tar.gz. Ingest it here with
#   python -m study.device ingest results.tar.gz
# Environment: EOT_TIME_BUDGET_S (default {budget}) - start no run after it; EOT_HARD_LIMIT_S (default {hard}) -
# kill the grid at it so the archive is still written; EOT_BENCH=1 (or full) - run python -m study.bench
# --quick (or the full bench) first, inside the same budget.
set -uo pipefail
PACK="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
source "$PACK/env.sh"
[ -d study ] || {{ echo "run.sh: run it from the repository root (no ./study here)" >&2; exit 2; }}
: "${{OUT:?OUT must name the folder for results.tar.gz}}"
BUDGET_S="${{EOT_TIME_BUDGET_S:-{budget}}}"
HARD_S="${{EOT_HARD_LIMIT_S:-{hard}}}"
START=$SECONDS
WORK="$(mktemp -d)"
mkdir -p "$WORK/results" "$OUT"
cp "$PACK/manifest.json" "$WORK/pack-manifest.json"
{{ date -u +%FT%TZ; uname -a; nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv 2>&1;
   python -c 'import torch, timm, sklearn; print("torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__, "sklearn", sklearn.__version__, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' 2>&1; }} > "$WORK/device.txt"
limit() {{ if command -v timeout >/dev/null; then timeout -k 10 "$@"; else shift; "$@"; fi; }}
if [ "${{EOT_BENCH:-0}}" != 0 ]; then
  QUICK=--quick; [ "$EOT_BENCH" = full ] && QUICK=
  limit "${{EOT_BENCH_LIMIT_S:-180}}" python -m study.bench $QUICK --out "$WORK/bench.json" {bench_args} 2>&1 | tee "$WORK/bench.log"
fi
REMAIN=$(( BUDGET_S - (SECONDS - START) )); [ "$REMAIN" -lt 0 ] && REMAIN=0
HARD_REMAIN=$(( HARD_S - (SECONDS - START) )); [ "$HARD_REMAIN" -lt 30 ] && HARD_REMAIN=30
limit "$HARD_REMAIN" python -m study.run {run_args} \\
  --results-dir "$WORK/results" --exclude-run-ids "$PACK/exclude_run_ids.txt" --time-budget-s "$REMAIN" \\
  --no-progress --log-file "$WORK/study.log" "$@" 2>&1 | tee "$WORK/console.log"
RC=${{PIPESTATUS[0]}}
echo "$RC" > "$WORK/exit_code.txt"
tar -czf "$OUT/results.tar.gz" -C "$WORK" .
echo "run.sh: exit $RC after $((SECONDS - START)) s; $(find "$WORK/results" -name '*.json' | wc -l) result files, $(find "$WORK/results" -name '*.failed' | wc -l) failures -> $OUT/results.tar.gz"
rm -rf "$WORK"
exit "$RC"
"""


def _prepare_out(out: Path) -> None:
    if out.exists():
        manifest = out / "manifest.json"
        ours = False
        if manifest.is_file():
            try:
                ours = json.loads(manifest.read_text()).get("tool") == PACK_TOOL
            except ValueError:
                ours = False
        if not ours and any(out.iterdir()):
            raise DeviceError(f"{out} exists and is not a pack folder (no manifest.json from {PACK_TOOL}); "
                              "refusing to empty it")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _git_ignored(path: Path) -> bool | None:
    try:
        return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=PROJECT_ROOT).returncode == 0
    except OSError:
        return None


def pack(grid: str = "gpu", grid_file: str | Path = DEFAULT_GRID_FILE, datasets=None, backbones=None, methods=None,
         resolution: int | None = None, out: str | Path = PROJECT_ROOT / ".device", db: str | Path = DEFAULT_DB,
         limit_mib: float = DEVICE_LIMIT_MIB, margin_mib: float = 1.0, allow_lossy: bool = False,
         jpeg_quality: int = 95, time_budget_s: int | None = None, call_timeout_s: int = DEFAULT_CALL_TIMEOUT_S,
         say=print) -> dict:
    """Build the pack folder for the selected pending runs; returns its manifest. See the module docstring."""
    from study.measure import git_commit, utc_now

    out = Path(out).resolve()
    if ds.packed_datasets_root() is not None:
        say("note: EOT_PACKED_DATASETS is set here; packing from the original datasets regardless")
    selection = select(grid, grid_file, datasets, backbones, methods, resolution, db)
    pending = selection.pending
    if not pending:
        raise DeviceError(f"all {len(selection.specs)} selected runs are already in {db}: nothing to pack")
    tree = tree_files(exclude=out)
    tree_bytes = sum(tree.values())
    limit_bytes, margin_bytes = int(limit_mib * MIB), int(margin_mib * MIB)
    sizer = PackageSizer()
    plan = plan_pack(selection, tree_bytes, limit_bytes, margin_bytes, allow_lossy, jpeg_quality, sizer)
    too_big = plan.total_bytes > limit_bytes or any(d["bytes"] is None or (is_package_dataset(n)
                                                                          and d["encoding"] is None)
                                                    for n, d in plan.datasets.items())
    if too_big:
        advice = split_advice(selection, plan, allow_lossy, jpeg_quality, sizer)
        raise DeviceError(
            f"the selection needs about {_mib(plan.total_bytes)} with the working tree ({_mib(tree_bytes)}), "
            f"over the device call's {limit_mib:g} MiB: weights {_mib(sum(plan.weights.values()))}, datasets "
            + ", ".join(f"{n} {_mib(d['bytes'])}" for n, d in sorted(plan.datasets.items()))
            + ". Split it into calls that each fit, e.g.:\n  " + "\n  ".join(advice))

    budget = time_budget_s if time_budget_s is not None else max(60, call_timeout_s - 150)
    hard = max(budget + 30, call_timeout_s - 40)
    _prepare_out(out)
    for sub in ("weights", "datasets", "shared_datasets"):
        (out / sub).mkdir()
    weights = [fp16_weights(name, out / "weights") for name in selection.pretrained_backbones()]
    (out / "weights" / WEIGHTS_MANIFEST).write_text("".join(f"{w['sha256']}  {w['file']}\n" for w in weights))
    packed = []
    for name, entry in sorted(plan.datasets.items()):
        if entry["encoding"] is None:
            packed.append(copy_folder_dataset(name, out / "shared_datasets"))
        else:
            say(f"packing {name}: {entry['encoding'].describe(entry['resolutions'])}")
            packed.append(pack_package_dataset(name, entry["encoding"], entry["resolutions"],
                                               out / "datasets" / f"{name}.npz"))
    if any(p["kind"] == "folder" for p in packed):
        shutil.copyfile(ds.shared_datasets_root() / "README.md", out / "shared_datasets" / "README.md")
    shutil.copyfile(selection.grid_file, out / "grids.toml")
    commit = git_commit()
    (out / "commit.txt").write_text(commit + "\n")
    (out / "exclude_run_ids.txt").write_text(
        f"# {len(selection.stored)} runs of this selection already in {db} (python -m study.device pack)\n"
        + "".join(f"{run_id}\n" for run_id in sorted(selection.stored)))
    pack_rel = os.path.relpath(out, PROJECT_ROOT)
    run_args = ["--grid", grid, "--grid-file", "$PACK/grids.toml"]
    for option, values in (("--datasets", datasets), ("--backbones", backbones), ("--methods", methods)):
        if values:
            run_args += [option, ",".join(values)]
    if resolution:
        run_args += ["--resolution", str(resolution)]
    quoted = " ".join('"$PACK/grids.toml"' if a == "$PACK/grids.toml" else shlex.quote(a) for a in run_args)
    bench_datasets = [p["dataset"] for p in packed][:2]
    bench_backbones = selection.pretrained_backbones()[:2]
    bench_args = " ".join(shlex.quote(a) for a in (
        (["--datasets", ",".join(bench_datasets)] if bench_datasets else [])
        + (["--backbones", ",".join(bench_backbones)] if bench_backbones else [])))
    (out / "env.sh").write_text(ENV_SH)
    created = utc_now()
    (out / "run.sh").write_text(RUN_SH.format(created=created, commit=commit, pack_rel=pack_rel, budget=budget,
                                              hard=hard, run_args=quoted, bench_args=bench_args))
    (out / "run.sh").chmod(0o755)
    inside = _inside(out, PROJECT_ROOT)
    command = f"bash {shlex.quote(pack_rel)}/run.sh" if inside else f"bash {out}/run.sh"
    by_method: dict[str, int] = {}
    for spec in pending:
        by_method[spec.method] = by_method.get(spec.method, 0) + 1
    manifest = {
        "tool": PACK_TOOL, "created_at": created, "commit": commit,
        "selection": {"grid": grid, "grid_file": str(selection.grid_file), "datasets": datasets,
                      "backbones": backbones, "methods": methods, "resolution": resolution},
        "runs": {"selected": len(selection.specs), "already_stored": len(selection.stored), "to_run": len(pending),
                 "to_run_by_method": by_method},
        "weights": weights, "datasets": packed,
        "time_budget_s": budget, "hard_limit_s": hard, "call_timeout_s": call_timeout_s,
        "device_call": {"command": command, "carry": [pack_rel] if inside else [], "timeout_s": call_timeout_s},
        "sizes": {"tree_bytes": tree_bytes, "tree_largest": sorted(tree.items(), key=lambda kv: -kv[1])[:5],
                  "limit_bytes": limit_bytes},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    pack_bytes = folder_bytes(out)
    manifest["sizes"]["pack_bytes"] = pack_bytes
    manifest["sizes"]["total_bytes"] = pack_bytes + tree_bytes
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    total = folder_bytes(out) + tree_bytes
    if total > limit_bytes:
        raise DeviceError(f"the pack came out at {_mib(total)} with the tree, over {limit_mib:g} MiB (the estimate "
                          f"was {_mib(plan.total_bytes)}); split the selection with --datasets/--backbones")
    if inside and _git_ignored(out) is False:
        say(f"warning: {pack_rel} is not ignored by git: it would travel twice; add it to .gitignore")
    if commit.endswith("+dirty"):
        say("warning: study/ has uncommitted changes; the runs will record " + commit)
    return manifest


def describe_pack(manifest: dict) -> str:
    sizes = manifest["sizes"]
    lines = [f"packed {manifest['runs']['to_run']} runs to do ({manifest['runs']['already_stored']} of "
             f"{manifest['runs']['selected']} already stored) for commit {manifest['commit']}"]
    for w in manifest["weights"]:
        lines.append(f"  weights  {w['backbone']:22} {_mib(w['bytes']):>9}  fp16 of {w['original_file']}")
    for d in manifest["datasets"]:
        lines.append(f"  dataset  {d['dataset']:22} {_mib(d['bytes']):>9}  {d['encoding']}")
    lines.append(f"  pack {_mib(sizes['pack_bytes'])} + working tree {_mib(sizes['tree_bytes'])} = "
                 f"{_mib(sizes['total_bytes'])} of {sizes['limit_bytes'] / MIB:g} MiB")
    call = manifest["device_call"]
    lines.append("Device call (the device tool's run; command <= 2000 characters):")
    lines.append(f"  run(command={json.dumps(call['command'])}, carry={json.dumps(call['carry'])}, "
                 f"timeout_s={call['timeout_s']})")
    lines.append(f"  (optional: prefix the command with EOT_BENCH=1 to run python -m study.bench first, "
                 f"within the same time budget of {manifest['time_budget_s']} s)")
    lines.append("Then here, with the folder the reply names as files_at:")
    lines.append("  python -m study.device ingest FILES_AT/results.tar.gz")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- ingest

def _safe_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        name = member.name
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts or "\\" in name:
            raise DeviceError(f"unsafe path {name!r} in the archive (absolute or with '..'); nothing extracted")
        if member.issym() or member.islnk():
            raise DeviceError(f"link {name!r} in the archive; nothing extracted")
        if not (member.isfile() or member.isdir()):
            raise DeviceError(f"special file {name!r} in the archive; nothing extracted")
        members.append(member)
    if sum(m.size for m in members if m.isfile()) > MAX_ARCHIVE_BYTES:
        raise DeviceError(f"the archive expands to over {MAX_ARCHIVE_BYTES / 2**30:g} GiB; nothing extracted")
    return members


def extract_archive(path: str | Path, target: Path) -> list[Path]:
    """Regular files of a .tar.gz into ``target``, after refusing absolute paths, '..', links, devices."""
    try:
        with tarfile.open(path, "r:*") as archive:
            members = _safe_members(archive)
            written = []
            for member in members:
                relative = PurePosixPath(*[p for p in PurePosixPath(member.name).parts if p not in (".", "")])
                if not relative.parts:
                    continue
                destination = target.joinpath(*relative.parts)
                if not _inside(destination, target):
                    raise DeviceError(f"unsafe path {member.name!r} in the archive")
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.extractfile(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                written.append(destination)
            return written
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DeviceError(f"cannot read {path}: {error}") from None


def ingest_archive(path: str | Path, db: str | Path = DEFAULT_DB, keep_logs: str | Path | None = None) -> dict:
    """Extract a results.tar.gz safely and ingest its result files into DuckDB (idempotent)."""
    from study.store import ingest

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="eot-ingest-") as folder:
        root = Path(folder)
        files = extract_archive(path, root)
        results = sorted(f for f in files if f.suffix == ".json" and f.parent.name == "results")
        failed = {}
        for f in files:
            if f.suffix == ".failed":
                try:
                    record = json.loads(f.read_text())
                    failed[str(record.get("run_id", f.stem))] = str(record.get("error", ""))[:300]
                except ValueError:
                    failed[f.stem] = "unreadable failure record"
        report = ingest(results, db) if results else {"ingested": 0, "already_stored": 0, "rejected": {}}
        report["rejected"] = {Path(name).name: why for name, why in report["rejected"].items()}
        report.update(archive=str(path), result_files=len(results), failed_on_device=failed)
        exit_code = root / "exit_code.txt"
        report["device_exit_code"] = exit_code.read_text().strip() if exit_code.exists() else None
        logs_target = Path(keep_logs) if keep_logs else (
            PROJECT_ROOT / "logs" / "device" / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.name.split('.')[0]}")
        extras = [f for f in files if f not in results and f.suffix != ".failed"]
        if extras or failed:
            logs_target.mkdir(parents=True, exist_ok=True)
            for f in extras + [f for f in files if f.suffix == ".failed"]:
                shutil.copyfile(f, logs_target / f.name)
            report["logs"] = str(logs_target)
    return report


# ---------------------------------------------------------------------------------------------- CLI

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
    except (DeviceError, GridError, ds.DatasetError, BackboneError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 1 if report["rejected"] else 0


if __name__ == "__main__":
    sys.exit(main())
