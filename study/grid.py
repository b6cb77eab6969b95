"""Named grids from TOML -> ordered run specs, with cost estimates for ``--plan``."""
from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from study.backbones import get_spec
from study.datasets import DatasetError, dataset_name, is_path, largest_class_pool, list_datasets
from study.grid_file import (DEFAULT_GRID_FILE, GridError, finetune_config, grid_recipe,  # noqa: F401  (re-exported)
                             load_grids, recipe_of)
from study.methods import METHODS
from study.spec import RunSpec, is_finetuning
from study.store import TIMING_COLUMNS

# Most informative first: a spread of k over every dataset before the in-between k, and seed 0 before more seeds.
# A grid may give its own order (``k_priority``).
K_PRIORITY = [10, 1, 100, 5, None, 50, 2, 20]
METHOD_ORDER = ["fe_linear", "fe_fne", "ft_full", "ft_partial"]


def _k_value(k) -> int | None:
    if k == "max":
        return None
    if isinstance(k, int) and not isinstance(k, bool) and k >= 1:
        return k
    raise GridError(f"images_per_class must be a positive integer or 'max', got {k!r}")


def validate_names(datasets=(), backbones=(), methods=()) -> None:
    """Fail before any work on names that do not exist, listing the known ones."""
    for name in datasets:
        if not is_path(name) and name not in list_datasets():
            raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}, "
                               "or a folder path in NAME/{train,test}/CLASS/ layout")
    for name in backbones:
        get_spec(name)
    for name in methods:
        if name not in METHODS:
            raise GridError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")


def grid_specs(name: str, path: str | Path = DEFAULT_GRID_FILE, datasets=None, backbones=None,
               methods=None, resolution: int | None = None, seeds=None) -> list[RunSpec]:
    """Ordered, de-duplicated specs of a named grid, optionally narrowed to some backbones/methods/seeds, and run on
    other ``datasets`` (registered names or folder paths: the grid's design on a dataset it does not list).

    A block may override the grid's fine-tuning recipe with a ``finetune`` table of its own (the convergence grid
    runs the CPU recipe at twice its budget, and with more learning rates), the grid's ``datasets`` with its own
    (a grid lists its datasets once; a block without ``datasets`` runs them), and its ``resolution`` (the resolution
    check runs one block per resolution). A ``resolution`` given here overrides every block's.
    """
    grids = load_grids(path)
    if name not in grids:
        raise GridError(f"unknown grid {name!r}; grids in {path}: {', '.join(grids)}")
    grid = grids[name]
    recipe = grid_recipe(grids, name)
    k_priority = [_k_value(k) for k in grid.get("k_priority", [])] or K_PRIORITY
    specs: dict[str, RunSpec] = {}
    for number, block in enumerate(grid.get("blocks", []), 1):
        finetune = finetune_config({**recipe, **block.get("finetune", {})})
        if "datasets" not in block and "datasets" not in grid:
            raise GridError(f"block {number} of grid {name!r} names no datasets, nor does the grid")
        if "datasets" in block:  # a check on named datasets (the convergence grid's): narrowed, never extended
            block_datasets = [d for d in block["datasets"] if datasets is None or dataset_name(d) in datasets]
        else:  # the grid's design, on its datasets or on the ones asked for (any registered name or folder path)
            block_datasets = list(grid["datasets"] if datasets is None else datasets)
        block_backbones = [b for b in block["backbones"] if backbones is None or b in backbones]
        block_methods = [m for m in block["methods"] if methods is None or m in methods]
        block_seeds = [s for s in block["seeds"] if seeds is None or s in seeds]
        validate_names(block_datasets, block_backbones, block_methods)
        for dataset, backbone, k, method, seed in itertools.product(
                block_datasets, block_backbones, block["images_per_class"], block_methods, block_seeds):
            res = resolution or block.get("resolution", grid.get("resolution", "native"))
            res = get_spec(backbone).native_resolution if res == "native" else int(res)
            spec = RunSpec(dataset, backbone, method, _k_value(k), int(seed), res,
                           finetune if is_finetuning(method) else None)
            specs[spec.run_id] = spec
    return sorted(_without_capped_twins(specs).values(), key=lambda spec: _priority(spec, k_priority))


def _without_capped_twins(specs: dict[str, RunSpec]) -> dict[str, RunSpec]:
    """The specs but those whose k is at or above every class's pool while the grid runs the same spec at ``max``:
    both would train and test on the same images (DTD's k = 100 at its 80 a class), one measurement under two
    labels. A capped k without a ``max`` twin stays: it is the grid's only run of that cell."""
    pools: dict[str, int] = {}
    kept = {}
    for run_id, spec in specs.items():
        if spec.images_per_class is not None and replace(spec, images_per_class=None).run_id in specs:
            if spec.dataset not in pools:
                pools[spec.dataset] = largest_class_pool(spec.dataset)
            if spec.images_per_class >= pools[spec.dataset]:
                continue
        kept[run_id] = spec
    return kept


def _priority(spec: RunSpec, k_priority: list):
    k_rank = k_priority.index(spec.images_per_class) if spec.images_per_class in k_priority else len(k_priority)
    method_rank = METHOD_ORDER.index(spec.method) if spec.method in METHOD_ORDER else len(METHOD_ORDER)
    return (spec.seed, k_rank, method_rank, spec.backbone, spec.dataset)


# Throughput used to estimate a plan before any history exists: images/s at 224 px (../shared/ASSETS.md and
# GPU-NOTES.md), scaled by pixel count. Small GPU fine-tuning runs are overhead-bound: a fixed cost per trial.
FALLBACK_IMAGES_PER_S = {("cpu", "extract"): 30.0, ("cpu", "train"): 12.0,
                         ("cuda", "extract"): 15000.0, ("cuda", "train"): 5000.0}
GPU_TRIAL_OVERHEAD_S = 5.0


def timing_key(spec: RunSpec, device_type: str) -> tuple:
    """What makes runs take the same time: the spec but its seed (the fine-tuning recipe included), on one kind of
    device; the values of ``TIMING_COLUMNS``, by which ``Store.measured_seconds`` keys the stored runs' times."""
    kind = {"dataset": spec.dataset, "backbone": spec.backbone, "method": spec.method, "k_label": spec.k_label,
            "device_type": device_type, "resolution": spec.resolution,
            "recipe": spec.finetune.recipe_id if spec.is_finetune else None}
    return tuple(kind[column] for column in TIMING_COLUMNS)


def estimate_seconds(spec: RunSpec, n_classes: int, pool_per_class: int, n_test: int, device_type: str) -> float:
    """A run's expected wall time from stated throughputs, for runs of a kind never measured (a measured kind is
    planned from the median of its stored runs, ``timing_key``)."""
    k = pool_per_class if spec.images_per_class is None else min(spec.images_per_class, pool_per_class)
    scale = (spec.resolution / 224) ** 2
    extract_rate = FALLBACK_IMAGES_PER_S[(device_type, "extract")] / scale
    if not spec.is_finetune:
        return (k * n_classes + n_test) / extract_rate + 0.5
    config = spec.finetune
    steps = config.planned_steps(int(k * n_classes * (1 - config.validation_fraction)) or 1)
    per_trial = steps * config.batch_size / (FALLBACK_IMAGES_PER_S[(device_type, "train")] / scale)
    per_trial += n_test / extract_rate + (GPU_TRIAL_OVERHEAD_S if device_type == "cuda" else 0.0)
    return per_trial * len(config.learning_rates)
