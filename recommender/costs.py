"""Cost model: time, energy, CO2, money and human hours of each option on the user's hardware.

Throughputs come from the evidence (pixels per second of the study's own extraction and training code, per
backbone and device kind, on the machine of that kind with the most runs) and are translated to other hardware
with ``hardware.speed_factor`` and to the user's working resolution by pixel count. Fine-tuning is costed with the
recipe that produced the evidence (its epoch budget, validation checks and learning-rate trials, read from the
stored runs: one source of truth). Where the evidence has no GPU runs yet, GPU costs start from the pilot figures
measured on an H200 (../shared/GPU-NOTES.md) and are labelled so.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommender.carbon import REGIONS
from recommender.evidence import reference_hardware
from recommender.hardware import HARDWARE, profile_for_gpu_name, speed_factor
from study.selection import select_trial
from study.spec import FinetuneConfig, finetuning_rows, is_finetuning

# H200 pilot (GPU-NOTES.md, 2026-11-28): img/s and J/img at 224 px, batch 256, bf16; small runs add ~5 s a trial.
GPU_PILOT = {"mobilenetv2_100": {"extract_ips": 15925, "train_ips": 5486, "extract_jpi": 0.018, "train_jpi": 0.072},
             "efficientnet_lite0": {"extract_ips": 14423, "train_ips": 5214, "extract_jpi": 0.028,
                                    "train_jpi": 0.082}}
GPU_PILOT_HARDWARE, GPU_PILOT_RESOLUTION, GPU_TRIAL_OVERHEAD_S = "h200", 224, 5.0
GPU_PILOT_SOURCE = "the H200 pilot measurement of 2026-11-28 (bf16, batch 256)"
CPU_TRIAL_OVERHEAD_S = 1.0  # building the model for a trial
DATA_CENTRE_PUE = 1.56  # Uptime Institute Global Data Center Survey 2024 average


def ft_recipe(runs: pd.DataFrame, device_type: str | None = None) -> FinetuneConfig:
    """The fine-tuning recipe of the evidence (the most frequent among its fine-tuning runs, on ``device_type``
    if given); the study's default recipe where the evidence has none."""
    ft = runs[finetuning_rows(runs["method"])]
    if device_type is not None:
        ft = ft[ft["device_type"] == device_type]
    if ft.empty:
        return FinetuneConfig()
    recipes = ft["spec"].map(lambda text: json.dumps(json.loads(text)["finetune"], sort_keys=True))
    config = json.loads(recipes.mode().iloc[0])
    return FinetuneConfig(**{**config, "learning_rates": tuple(config["learning_rates"])})


@dataclass(frozen=True)
class Assumptions:
    pue: float | None = None  # None: 1.0 on a personal machine, the data-centre average elsewhere
    price_usd_per_h: float | None = None  # None: the hardware profile's default price
    grid_gco2_per_kwh: float | None = None  # None: the region's figure
    hourly_rate_usd: float = 60.0
    setup_hours_fe: float = 2.0
    setup_hours_ft: float = 6.0
    hours_per_trial: float = 0.5
    ft_trials: int | None = None  # None: the evidence recipe's learning-rate trials

    def validate(self) -> "Assumptions":
        for name in ("hourly_rate_usd", "setup_hours_fe", "setup_hours_ft", "hours_per_trial"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.pue is not None and not (isinstance(self.pue, (int, float)) and math.isfinite(self.pue)
                                         and 1 <= self.pue <= 5):
            raise ValueError("pue (power usage effectiveness) is between 1 and 5, or empty for the default")
        for name in ("price_usd_per_h", "grid_gco2_per_kwh"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number or empty")
        if self.ft_trials is not None and not (isinstance(self.ft_trials, int) and 1 <= self.ft_trials <= 100):
            raise ValueError("ft_trials must be a whole number from 1 to 100")
        return self

    def pue_for(self, hardware_key: str) -> float:
        """The PUE applied: the user's, else 1.0 on a personal machine and the data-centre average elsewhere."""
        if self.pue is not None:
            return float(self.pue)
        return 1.0 if HARDWARE[hardware_key].personal else DATA_CENTRE_PUE


ASSUMPTION_SOURCES = {
    "pue": f"empty = 1.0 on a personal machine (no data-centre overhead), {DATA_CENTRE_PUE} in a data centre "
           "(Uptime Institute Global Data Center Survey 2024 average; hyperscalers ~1.1)",
    "price_usd_per_h": "the hardware's typical on-demand cloud price (0 for a machine you own)",
    "grid_gco2_per_kwh": "the region's grid carbon intensity (codecarbon's table: Our World in Data / Ember)",
    "hourly_rate_usd": "assumption: loaded cost of an ML engineer hour; edit for your team",
    "setup_hours_fe": "assumption: wiring a frozen backbone + linear classifier (Tormos et al. 2022 count human "
                      "hours as a cost of each method)",
    "setup_hours_ft": "assumption: training loop, augmentation, validation split, checkpointing",
    "hours_per_trial": "assumption: launching, watching and comparing one hyper-parameter trial",
    "ft_trials": "the study's fine-tuning recipe: one trial per learning rate it tries (validation picks one)",
}


def tuning_curve(trials: pd.DataFrame) -> pd.DataFrame:
    """Expected test accuracy of the validation-chosen trial when only n of a run's trials are tried (every
    n-subset averaged, chosen by the runs' own rule), minus the accuracy with all of them; averaged over runs."""
    gains = {}
    for _, run in trials.dropna(subset=["val_accuracy"]).groupby("run_id"):
        records = run.sort_values("trial_index").to_dict("records")
        full = select_trial(records)[0]["test_accuracy"]
        for n in range(1, len(records) + 1):
            picks = [select_trial(list(subset))[0]["test_accuracy"] for subset in itertools.combinations(records, n)]
            gains.setdefault(n, []).append(float(np.mean(picks) - full))
    return pd.DataFrame({"n_trials": list(gains), "accuracy_vs_full_grid": [np.mean(v) for v in gains.values()],
                         "runs": [len(v) for v in gains.values()]})


def _power_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y = a * x^b by least squares in log space; (a, b)."""
    mask = (x > 0) & (y > 0)
    if mask.sum() < 2:
        return (float(np.median(y)) if len(y) else 0.1), 0.0
    b, log_a = np.polyfit(np.log(x[mask]), np.log(y[mask]), 1)
    return float(np.exp(log_a)), float(b)


class CostModel:
    """fit(tables) / estimate(...): per-option costs from measured throughputs and the evidence's recipe."""

    def fit(self, tables: dict) -> "CostModel":
        runs, trials, extractions, hardware = (tables["runs"], tables["trials"], tables["extractions"],
                                               tables["hardware"])
        self.references_ = {}  # device kind -> rates per backbone, the reference hardware, the basis
        reference_ids = {}  # device kind -> the hardware_id its rates come from
        for kind, device in (("cpu", "cpu"), ("gpu", "cuda")):
            hw_ids = reference_ids[kind] = reference_hardware(tables, device)
            ext = extractions[extractions["hardware_id"].isin(hw_ids)]
            ft = trials.merge(runs[["run_id", "backbone", "resolution", "hardware_id", "n_test"]], on="run_id")
            ft = ft[ft["hardware_id"].isin(hw_ids)]
            rates = {}
            for backbone, e in ext.groupby("backbone"):
                rates[backbone] = {
                    "extract_pps": float(np.median(e["images_per_s"] * e["resolution"] ** 2)),
                    "extract_jpp": float(np.median(e["energy_j"] / (e["n_images"] * e["resolution"] ** 2))),
                    "warmup_s": float(e["warmup_s"].median())}
            for backbone, t in ft.groupby("backbone"):  # the fit phase: trained + validation images
                pixels = ((t["images_processed"] - t["n_test"]) * t["resolution"] ** 2).sum()
                rates.setdefault(backbone, {"warmup_s": 1.0}).update(
                    train_pps=float(pixels / t["fit_s"].sum()), train_jpp=float(t["energy_j"].sum() / pixels))
            if rates:
                measured_on = runs[runs["hardware_id"].isin(hw_ids)]
                gpu_names = hardware.loc[hardware["hardware_id"].isin(hw_ids), "gpu_model"].dropna()
                key = "cpu_2core" if kind == "cpu" else profile_for_gpu_name(gpu_names.iloc[0]) or "h100"
                sources = set(measured_on["energy_source"])
                self.references_[kind] = {
                    "hardware": key, "rates": rates, "basis": "the study's runs",
                    "resolutions": sorted(int(r) for r in measured_on["resolution"].unique()),
                    "energy_basis": "measured by the GPU's NVML counter" if sources == {"nvml"} else
                    "estimated (a CPU power model: no energy counter)"}
        if "gpu" not in self.references_:
            pixels = GPU_PILOT_RESOLUTION ** 2
            self.references_["gpu"] = {
                "hardware": GPU_PILOT_HARDWARE, "basis": GPU_PILOT_SOURCE, "resolutions": [GPU_PILOT_RESOLUTION],
                "energy_basis": "measured by the NVML counter in the H200 pilot, then scaled",
                "rates": {b: {"extract_pps": r["extract_ips"] * pixels, "extract_jpp": r["extract_jpi"] / pixels,
                              "train_pps": r["train_ips"] * pixels, "train_jpp": r["train_jpi"] / pixels,
                              "warmup_s": 5.0} for b, r in GPU_PILOT.items()}}
        # The linear classifier's fit runs on a CPU whatever extracted the features: timed on the CPU reference.
        fe = runs[~finetuning_rows(runs["method"])]
        if reference_ids["cpu"]:
            fe = fe[fe["hardware_id"].isin(reference_ids["cpu"])]
        self.fit_time_ = {m: _power_fit(g["n_train"].to_numpy(float), g["fit_s"].to_numpy(float))
                          for m, g in fe.groupby("method")}
        self.recipe_ = ft_recipe(runs)
        return self

    def supports(self, hardware_key: str, method: str, backbone: str) -> bool:
        """Whether measured throughput exists for this method family and backbone on this kind of device."""
        rates = self.references_.get(HARDWARE[hardware_key].kind, {}).get("rates", {}).get(backbone, {})
        return ("train_pps" if is_finetuning(method) else "extract_pps") in rates

    def measured_resolutions(self, hardware_key: str) -> list[int]:
        """Resolutions the costs on this kind of device were measured at."""
        return self.references_[HARDWARE[hardware_key].kind]["resolutions"]

    def ft_images_per_trial(self, n_images: int, n_classes: int) -> int:
        """Images one fine-tuning trial processes under the evidence's recipe: its epoch budget on the training
        part, plus the validation checks."""
        n_val = max(n_classes, int(n_images * self.recipe_.validation_fraction))
        n_train = max(1, n_images - n_val)
        return self.recipe_.planned_steps(n_train) * self.recipe_.batch_size + self.recipe_.evaluations * n_val

    def estimate(self, method: str, backbone: str, n_classes: int, images_per_class: int, hardware_key: str,
                 resolution: int, region: str, assumptions: Assumptions) -> dict:
        """Costs of one option at the working ``resolution``; ``cost_basis`` says whether they are the study's
        measurement or scaled (other hardware, or another resolution by pixel count)."""
        target = HARDWARE[hardware_key]
        reference = self.references_[target.kind]
        rates = reference["rates"][backbone]
        ref_hw = HARDWARE[reference["hardware"]]
        speed = speed_factor(target, ref_hw)
        pixels = resolution ** 2
        n_images = n_classes * images_per_class
        if not is_finetuning(method):
            a, b = self.fit_time_.get(method, (0.1, 1.0))
            ref_seconds = n_images * pixels / rates["extract_pps"]
            ref_energy = n_images * pixels * rates["extract_jpp"]
            # Model build + warm-up is a one-off latency; the linear fit runs on the host CPU.
            seconds = rates["warmup_s"] + ref_seconds / speed + a * n_images ** b
            trials, human = 1, assumptions.setup_hours_fe
        else:
            trials = assumptions.ft_trials or len(self.recipe_.learning_rates)
            per_trial_images = self.ft_images_per_trial(n_images, n_classes)
            overhead = GPU_TRIAL_OVERHEAD_S if target.kind == "gpu" else CPU_TRIAL_OVERHEAD_S
            ref_seconds = trials * (per_trial_images * pixels / rates["train_pps"])
            ref_energy = trials * per_trial_images * pixels * rates["train_jpp"]
            seconds = ref_seconds / speed + trials * overhead
            human = assumptions.setup_hours_ft + assumptions.hours_per_trial * trials
        # Energy: the reference's measured average power draw, rescaled to the target's board power.
        ref_power_fraction = (ref_energy / max(ref_seconds, 1e-9)) / ref_hw.board_power_w
        energy_kwh = seconds * target.board_power_w * min(1.0, ref_power_fraction) / 3.6e6
        pue = assumptions.pue_for(hardware_key)
        grid = assumptions.grid_gco2_per_kwh if assumptions.grid_gco2_per_kwh is not None else \
            REGIONS[region].grid_gco2_per_kwh
        price = assumptions.price_usd_per_h if assumptions.price_usd_per_h is not None else target.price_usd_per_h
        time_h = seconds / 3600
        compute_usd = time_h * price
        same_hardware = reference["hardware"] == hardware_key and reference["basis"] == "the study's runs"
        same_resolution = resolution in reference["resolutions"]
        if same_hardware and same_resolution:
            basis = "measured"
        else:
            scaled = ([] if same_hardware else [f"from {reference['basis']} on {ref_hw.name} to "
                                                f"{target.name}"]) + \
                ([] if same_resolution else [f"from {', '.join(map(str, reference['resolutions']))} px to "
                                             f"{resolution} px by pixel count"])
            basis = "scaled " + " and ".join(scaled)
        return {"time_h": time_h, "energy_kwh": energy_kwh, "energy_kwh_with_pue": energy_kwh * pue, "pue": pue,
                "co2_kg": energy_kwh * pue * grid / 1000, "compute_usd": compute_usd, "human_hours": human,
                "human_usd": human * assumptions.hourly_rate_usd,
                "total_usd": compute_usd + human * assumptions.hourly_rate_usd, "trials": trials,
                "cost_basis": basis, "energy_basis": reference["energy_basis"]}
