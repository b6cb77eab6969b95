"""Executes run specs: builds each run's record (metrics, costs, provenance) and stores it; resumable."""
from __future__ import annotations

import json
import logging
import time
import traceback
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from study import measure
from study.backbones import BackboneError, get_spec
from study.datasets import DatasetError, ImageData, load_images, sample_subset
from study.features import FeatureSet, extract_features
from study.methods import METHODS
from study.spec import RunSpec
from study.store import StoreError

log = logging.getLogger(__name__)
FATAL_ERRORS = (DatasetError, BackboneError, StoreError, KeyboardInterrupt)


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class Context:
    """What runs in one process share: decoded images, extracted features, the device and its energy meter."""

    def __init__(self, device: torch.device):
        self.device = device
        self.meter = measure.EnergyMeter(device)
        self._images = _LRU(3)
        self._features = _LRU(6)
        self._device_test = _LRU(1)

    def images(self, spec: RunSpec) -> ImageData:
        return self._images.get_or_make((spec.dataset, spec.resolution),
                                        lambda: load_images(spec.dataset, spec.resolution))

    def features(self, spec: RunSpec) -> FeatureSet:
        return self._features.get_or_make((spec.dataset, spec.backbone, spec.resolution),
                                          lambda: extract_features(self.images(spec), spec.backbone, self.device))

    def subset(self, spec: RunSpec) -> np.ndarray:
        return sample_subset(self.images(spec).train_labels, spec.images_per_class, spec.seed)

    def device_test_images(self, spec: RunSpec) -> torch.Tensor:
        return self._device_test.get_or_make(
            (spec.dataset, spec.resolution),
            lambda: torch.from_numpy(self.images(spec).test_images).to(self.device))

    def clock(self) -> measure.PhaseClock:
        return measure.PhaseClock(self.meter)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is available")
    return torch.device(name)


def _scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0))}


@lru_cache(maxsize=16)
def backbone_row(name: str) -> dict:
    import timm

    spec = get_spec(name)
    params = sum(p.numel() for p in timm.create_model(spec.timm_arch, pretrained=False).parameters())
    return {"name": name, "timm_arch": spec.timm_arch, "pretrained": spec.pretrained, "params": params,
            "weights_sha256": spec.sha256 if spec.pretrained else None, "package": spec.package,
            "native_resolution": spec.native_resolution}


def execute_run(spec: RunSpec, context: Context, grid: str) -> dict:
    """Run one spec and return its full record (run row, trial rows, and the rows it references)."""
    started_at = measure.utc_now()
    data = context.images(spec)
    measure.reset_peak_memory(context.device)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    result = METHODS[spec.method](spec, context)
    total_s = time.perf_counter() - wall_start
    process_cpu_s = time.process_time() - cpu_start
    subset_labels = data.train_labels[context.subset(spec)]
    counts = np.bincount(subset_labels, minlength=data.info.n_classes)
    hardware = measure.hardware(context.device.type)
    run = {
        "run_id": spec.run_id, "grid": grid, "dataset": data.info.name, "backbone": spec.backbone,
        "pretrained": get_spec(spec.backbone).pretrained, "method": spec.method, "k_label": spec.k_label,
        "images_per_class_requested": spec.images_per_class,
        "images_per_class": int(round(len(subset_labels) / data.info.n_classes)),
        "k_capped": bool(spec.images_per_class is not None and counts.min() < spec.images_per_class),
        "seed": spec.seed, "resolution": spec.resolution, "n_classes": data.info.n_classes,
        "n_train": result.n_train, "n_val": result.n_val, "n_test": len(data.test_labels),
        **_scores(data.test_labels, result.predictions),
        "hyperparams": json.dumps(result.hyperparams), "n_trials": max(1, len(result.trials)),
        "recipe": result.recipe,
        "extract_s": result.seconds.get("extract", 0.0), "fit_s": result.seconds.get("fit", 0.0),
        "eval_s": result.seconds.get("eval", 0.0),
        # Feature methods are charged their share of the one shared extraction, so total = sum of phases.
        "total_s": sum(result.seconds.values()) if not spec.is_finetune else total_s,
        "warmup_s": result.warmup_s,
        "extract_energy_j": result.joules.get("extract", 0.0), "fit_energy_j": result.joules.get("fit", 0.0),
        "eval_energy_j": result.joules.get("eval", 0.0), "energy_j": sum(result.joules.values()),
        "energy_source": result.energy_source, "images_processed": result.images_processed,
        "peak_memory_mb": result.peak_memory_mb, "device_type": context.device.type,
        "process_cpu_s": process_cpu_s,
        "cpu_utilisation": measure.cpu_utilisation(process_cpu_s, total_s, context.device),
        "hardware_id": hardware["hardware_id"], "extraction_id": result.extraction_id,
        "spec": json.dumps(spec.canonical(), sort_keys=True), **measure.software(),
        "started_at": started_at, "finished_at": measure.utc_now(),
    }
    trials, curves = [], []
    for trial in result.trials:
        scores = _scores(data.test_labels, trial["predictions"])
        trials.append({
            "run_id": spec.run_id, "trial_index": trial["trial_index"], "learning_rate": trial["learning_rate"],
            "steps_planned": trial["steps_planned"], "epochs_planned": trial["epochs_planned"],
            "steps_run": trial["steps_run"],
            "best_step": trial["best_step"], "val_accuracy": _finite(trial["val_accuracy"]),
            "val_loss": _finite(trial["val_loss"]), "test_accuracy": scores["accuracy"],
            "test_balanced_accuracy": scores["balanced_accuracy"], "test_macro_f1": scores["macro_f1"],
            "fit_s": trial["seconds"].get("fit", 0.0), "eval_s": trial["seconds"].get("eval", 0.0),
            "energy_j": sum(trial["joules"].values()), "images_processed": trial["images_processed"],
            "selected": trial["selected"]})
        curves.extend({"run_id": spec.run_id, "trial_index": trial["trial_index"], **point,
                       "val_accuracy": _finite(point["val_accuracy"]), "val_loss": _finite(point["val_loss"])}
                      for point in trial["curve"])
    extraction = None
    if result.extraction_id:
        extraction = context.features(spec).extraction
    return {"run": run, "trials": trials, "curves": curves, "dataset": data.info.to_row(), "backbone": backbone_row(spec.backbone),
            "hardware": {k: v for k, v in hardware.items()}, "extraction": extraction}


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def pending_runs(specs: list[RunSpec], store, exclude=frozenset(), max_runs: int | None = None):
    """(specs still to run, the summary counts every executor starts from): stored and excluded ids skipped."""
    stored = store.stored_run_ids()
    excluded = {spec.run_id for spec in specs if spec.run_id in exclude and spec.run_id not in stored}
    pending = [spec for spec in specs if spec.run_id not in stored and spec.run_id not in excluded]
    if max_runs is not None:
        pending = pending[:max_runs]
    summary = {"planned": len(specs), "already_stored": len([s for s in specs if s.run_id in stored]),
               "excluded": len(excluded), "stored": 0, "failed": 0, "not_started": 0}
    return pending, summary


def run_specs(specs: list[RunSpec], store, grid: str, device: torch.device, progress: bool = True,
              max_runs: int | None = None, exclude: set[str] | frozenset = frozenset(),
              time_budget_s: float | None = None) -> dict:
    """Run every spec not yet stored, committing each run as it finishes; returns counts.

    ``exclude``: run_ids to treat as done (stored elsewhere, e.g. the local DuckDB of a device call).
    ``time_budget_s``: start no new run once this many seconds have passed (a started run finishes).
    """
    from tqdm import tqdm

    started = time.monotonic()
    pending, summary = pending_runs(specs, store, exclude, max_runs)
    log.info("grid %s: %d runs, %d already stored, %d excluded, %d to run on %s", grid, len(specs),
             summary["already_stored"], summary["excluded"], len(pending), device)
    measure.software()  # the commit of the code this process loaded, read now: the tree may change during the grid
    context = Context(device)
    bar = tqdm(pending, disable=not progress, unit="run", dynamic_ncols=True)
    for position, spec in enumerate(bar):
        if time_budget_s is not None and time.monotonic() - started >= time_budget_s:
            summary["not_started"] = len(pending) - position
            log.info("time budget of %.0f s spent: %d runs not started (they resume on the next call)",
                     time_budget_s, summary["not_started"])
            break
        bar.set_description(f"{spec.dataset[:14]} {spec.backbone[:16]} {spec.method} k={spec.k_label}")
        try:
            record = execute_run(spec, context, grid)
        except FATAL_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - recorded with its traceback, retried on the next resume
            log.error("run %s failed: %s", spec.run_id, traceback.format_exc())
            store.record_failure(spec.run_id, spec.canonical(), f"{type(error).__name__}: {error}",
                                 measure.utc_now())
            summary["failed"] += 1
            continue
        store.write(record)
        summary["stored"] += 1
        log.info("stored run %s %s %s %s k=%s seed=%d acc=%.3f %.1fs", spec.run_id, spec.dataset, spec.backbone,
                 spec.method, spec.k_label, spec.seed, record["run"]["accuracy"], record["run"]["total_s"])
    return summary
