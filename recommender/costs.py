"""Cost model: time, energy, CO2, money and human hours of each option on the user's hardware.

Throughputs come from the evidence (pixels per second of the study's own extraction and training code, per
backbone and device kind) and are translated to other hardware with ``hardware.speed_factor``. Where the evidence
has no GPU runs yet, GPU costs start from the pilot figures measured on an H200 (../shared/GPU-NOTES.md) and are
labelled so.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommender.carbon import REGIONS
from recommender.hardware import HARDWARE, profile_for_gpu_name, speed_factor

# The recipe the advice assumes for fine-tuning (study.spec.FinetuneConfig defaults, the GPU grid's recipe).
FT_BATCH, FT_EPOCHS, FT_MIN_STEPS, FT_MAX_STEPS, FT_VALIDATION = 32, 30, 40, 400, 0.2
FT_EVALUATIONS = 10
CPU_RESOLUTION = 128  # CPU users are advised at the CPU grid's reduced resolution
# H200 pilot (GPU-NOTES.md, 2026-11-28): img/s and J/img at 224 px, batch 256, bf16; small runs add ~5 s a trial.
GPU_PILOT = {"mobilenetv2_100": {"extract_ips": 15925, "train_ips": 5486, "extract_jpi": 0.018, "train_jpi": 0.072},
             "efficientnet_lite0": {"extract_ips": 14423, "train_ips": 5214, "extract_jpi": 0.028,
                                    "train_jpi": 0.082}}
GPU_PILOT_HARDWARE, GPU_PILOT_RESOLUTION, GPU_TRIAL_OVERHEAD_S = "h200", 224, 5.0
CPU_TRIAL_OVERHEAD_S = 1.0  # building the model for a trial


@dataclass(frozen=True)
class Assumptions:
    pue: float = 1.5
    price_usd_per_h: float | None = None  # None: the hardware profile's default price
    grid_gco2_per_kwh: float | None = None  # None: the region's figure
    hourly_rate_usd: float = 60.0
    setup_hours_fe: float = 2.0
    setup_hours_ft: float = 6.0
    hours_per_trial: float = 0.5
    ft_trials: int | None = None  # None: from the measured tuning curve

    def validate(self) -> "Assumptions":
        for name in ("pue", "hourly_rate_usd", "setup_hours_fe", "setup_hours_ft", "hours_per_trial"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.pue < 1:
            raise ValueError("pue (power usage effectiveness) is at least 1")
        for name in ("price_usd_per_h", "grid_gco2_per_kwh"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number or empty")
        if self.ft_trials is not None and not (isinstance(self.ft_trials, int) and 1 <= self.ft_trials <= 100):
            raise ValueError("ft_trials must be a whole number from 1 to 100")
        return self


ASSUMPTION_SOURCES = {
    "pue": "Uptime Institute Global Data Center Survey 2024: average PUE ~1.56 (hyperscalers ~1.1)",
    "price_usd_per_h": "hardware profile's typical on-demand price (recommender/hardware.py)",
    "grid_gco2_per_kwh": "region's grid intensity (codecarbon's table, recommender/data/SOURCES.md)",
    "hourly_rate_usd": "assumption: loaded cost of an ML engineer hour; edit for your team",
    "setup_hours_fe": "assumption: wiring a frozen backbone + linear classifier (Tormos et al. 2022 count human "
                      "hours as a cost of each method)",
    "setup_hours_ft": "assumption: training loop, augmentation, validation split, checkpointing",
    "hours_per_trial": "assumption: launching, watching and comparing one hyper-parameter trial",
    "ft_trials": "measured tuning curve: trials until the expected validation-chosen accuracy is within 0.5 "
                 "points of the full grid's",
}


def ft_steps(n_train: int) -> int:
    return int(min(FT_MAX_STEPS, max(FT_MIN_STEPS, math.ceil(FT_EPOCHS * n_train / FT_BATCH))))


def tuning_curve(trials: pd.DataFrame) -> pd.DataFrame:
    """Expected test accuracy of the validation-chosen trial when only n of a run's trials are tried (every
    n-subset averaged), minus the accuracy with all of them; averaged over fine-tuning runs."""
    gains = {}
    for _, run in trials.dropna(subset=["val_accuracy"]).groupby("run_id"):
        run = run.sort_values("trial_index")
        val, test = run["val_accuracy"].to_numpy(), run["test_accuracy"].to_numpy()
        full = test[np.argmax(val)]
        for n in range(1, len(run) + 1):
            picks = [test[list(c)[int(np.argmax(val[list(c)]))]] for c in itertools.combinations(range(len(run)), n)]
            gains.setdefault(n, []).append(float(np.mean(picks) - full))
    return pd.DataFrame({"n_trials": list(gains), "accuracy_vs_full_grid": [np.mean(v) for v in gains.values()],
                         "runs": [len(v) for v in gains.values()]})


def trials_needed(curve: pd.DataFrame, tolerance: float = 0.005) -> int:
    if curve.empty:
        return 3
    within = curve[curve["accuracy_vs_full_grid"] >= -tolerance]
    return int(within["n_trials"].min()) if not within.empty else int(curve["n_trials"].max())


def _power_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y = a * x^b by least squares in log space; (a, b)."""
    mask = (x > 0) & (y > 0)
    if mask.sum() < 2:
        return (float(np.median(y)) if len(y) else 0.1), 0.0
    b, log_a = np.polyfit(np.log(x[mask]), np.log(y[mask]), 1)
    return float(np.exp(log_a)), float(b)


class CostModel:
    """fit(tables) / estimate(...): per-option costs from measured throughputs."""

    def fit(self, tables: dict) -> "CostModel":
        runs, trials, extractions, hardware = (tables["runs"], tables["trials"], tables["extractions"],
                                               tables["hardware"])
        self.references_ = {}  # device kind -> {backbone: rates}, with the reference hardware key and basis
        for kind, device in (("cpu", "cpu"), ("gpu", "cuda")):
            hw_ids = set(hardware.loc[hardware["device_type"] == device, "hardware_id"])
            ext = extractions[extractions["hardware_id"].isin(hw_ids)]
            ft = trials.merge(runs[["run_id", "backbone", "resolution", "hardware_id", "device_type"]], on="run_id")
            ft = ft[ft["hardware_id"].isin(hw_ids)]
            rates = {}
            for backbone, e in ext.groupby("backbone"):
                rates[backbone] = {
                    "extract_pps": float(np.median(e["images_per_s"] * e["resolution"] ** 2)),
                    "extract_jpp": float(np.median(e["energy_j"] / (e["n_images"] * e["resolution"] ** 2))),
                    "warmup_s": float(e["warmup_s"].median())}
            for backbone, t in ft.groupby("backbone"):
                pixels = (t["images_processed"] * t["resolution"] ** 2).sum()
                rates.setdefault(backbone, {"warmup_s": 1.0}).update(
                    train_pps=float(pixels / t["fit_s"].sum()), train_jpp=float(t["energy_j"].sum() / pixels))
            if rates:
                gpu_names = hardware.loc[hardware["hardware_id"].isin(hw_ids), "gpu_model"].dropna()
                key = "cpu_2core" if kind == "cpu" else profile_for_gpu_name(gpu_names.iloc[0]) or "h100"
                sources = set(runs.loc[runs["hardware_id"].isin(hw_ids), "energy_source"])
                self.references_[kind] = {"hardware": key, "rates": rates, "basis": "study runs",
                                          "energy_basis": "NVML counter" if sources == {"nvml"} else
                                          "estimated (CPU power model, no energy counter)"}
        if "gpu" not in self.references_:
            pixels = GPU_PILOT_RESOLUTION ** 2
            self.references_["gpu"] = {
                "hardware": GPU_PILOT_HARDWARE, "basis": "H200 pilot figures (GPU-NOTES.md), no GPU study runs yet",
                "energy_basis": "NVML counter in the H200 pilot, scaled",
                "rates": {b: {"extract_pps": r["extract_ips"] * pixels, "extract_jpp": r["extract_jpi"] / pixels,
                              "train_pps": r["train_ips"] * pixels, "train_jpp": r["train_jpi"] / pixels,
                              "warmup_s": 5.0} for b, r in GPU_PILOT.items()}}
        fe = runs[runs["method"].str.startswith("fe_")]
        self.fit_time_ = {m: _power_fit(g["n_train"].to_numpy(float), g["fit_s"].to_numpy(float))
                          for m, g in fe.groupby("method")}
        self.tuning_curve_ = tuning_curve(trials)
        self.trials_needed_ = trials_needed(self.tuning_curve_)
        return self

    def supports(self, hardware_key: str, method: str, backbone: str) -> bool:
        """Whether measured throughput exists for this method family and backbone on this kind of device."""
        rates = self.references_.get(HARDWARE[hardware_key].kind, {}).get("rates", {}).get(backbone, {})
        return ("extract_pps" if method.startswith("fe_") else "train_pps") in rates

    def working_resolution(self, hardware_key: str, native_resolution: int) -> int:
        return native_resolution if HARDWARE[hardware_key].kind == "gpu" else CPU_RESOLUTION

    def estimate(self, method: str, backbone: str, n_classes: int, images_per_class: int, hardware_key: str,
                 resolution: int, region: str, assumptions: Assumptions) -> dict:
        """Costs of one option; ``cost_basis`` says whether they are the study's measurement or scaled."""
        target = HARDWARE[hardware_key]
        reference = self.references_[target.kind]
        rates = reference["rates"][backbone]
        ref_hw = HARDWARE[reference["hardware"]]
        speed = speed_factor(target, ref_hw)
        pixels = resolution ** 2
        n_images = n_classes * images_per_class
        if method.startswith("fe_"):
            a, b = self.fit_time_.get(method, (0.1, 1.0))
            ref_seconds = n_images * pixels / rates["extract_pps"]
            ref_energy = n_images * pixels * rates["extract_jpp"]
            # Model build + warm-up is a one-off latency; the linear fit runs on the host CPU.
            seconds = rates["warmup_s"] + ref_seconds / speed + a * n_images ** b
            trials, human = 1, assumptions.setup_hours_fe
        else:
            trials = assumptions.ft_trials or self.trials_needed_
            n_val = max(n_classes, int(n_images * FT_VALIDATION))
            per_trial_images = ft_steps(n_images - n_val) * FT_BATCH + FT_EVALUATIONS * n_val
            overhead = GPU_TRIAL_OVERHEAD_S if target.kind == "gpu" else CPU_TRIAL_OVERHEAD_S
            ref_seconds = trials * (per_trial_images * pixels / rates["train_pps"])
            ref_energy = trials * per_trial_images * pixels * rates["train_jpp"]
            seconds = ref_seconds / speed + trials * overhead
            human = assumptions.setup_hours_ft + assumptions.hours_per_trial * trials
        # Energy: the reference's measured average power draw, rescaled to the target's board power.
        ref_power_fraction = (ref_energy / max(ref_seconds, 1e-9)) / ref_hw.board_power_w
        energy_kwh = seconds * target.board_power_w * min(1.0, ref_power_fraction) / 3.6e6
        grid = assumptions.grid_gco2_per_kwh if assumptions.grid_gco2_per_kwh is not None else \
            REGIONS[region].grid_gco2_per_kwh
        price = assumptions.price_usd_per_h if assumptions.price_usd_per_h is not None else target.price_usd_per_h
        time_h = seconds / 3600
        compute_usd = time_h * price
        measured = reference["hardware"] == hardware_key and reference["basis"] == "study runs"
        return {"time_h": time_h, "energy_kwh": energy_kwh, "co2_kg": energy_kwh * assumptions.pue * grid / 1000,
                "compute_usd": compute_usd, "human_hours": human, "human_usd": human * assumptions.hourly_rate_usd,
                "total_usd": compute_usd + human * assumptions.hourly_rate_usd, "trials": trials,
                "cost_basis": "measured" if measured else f"scaled from {ref_hw.name} ({reference['basis']})",
                "energy_basis": reference["energy_basis"]}
