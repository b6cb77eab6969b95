"""Accuracy model: predicts accuracy(k) of every option for a described task, with an 80% interval.

A gradient-boosted model over task features (monotone increasing in k and in the probe accuracy), fitted
on the evidence aggregated over seeds. Intervals are leave-one-dataset-out conformal: the 80th percentile of the
errors the model makes on datasets it has not seen, per range of k, so they reflect what a new task looks like.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from recommender.tasks import dataset_descriptors, design_matrix

PROBE_BACKBONE, PROBE_METHOD, PROBE_K = "mobilenetv2_100", "fe_linear", 10
K_BUCKETS = (0, 5, 50, np.inf)  # interval widths are estimated separately for k <= 5, <= 50 and above
COVERAGE = 0.8


def evidence_rows(tables: dict) -> pd.DataFrame:
    """Pretrained runs averaged over seeds: one row per (dataset, backbone, method, k, resolution)."""
    runs = tables["runs"]
    runs = runs[runs["pretrained"]]
    rows = (runs.groupby(["dataset", "backbone", "method", "k_label", "resolution"], as_index=False)
            .agg(images_per_class=("images_per_class", "mean"), accuracy=("accuracy", "mean"),
                 accuracy_sd=("accuracy", "std"), seeds=("seed", "nunique"), n_classes=("n_classes", "first"),
                 device_type=("device_type", "first")))
    descriptors = dataset_descriptors(tables["datasets"]).drop(columns="n_classes")
    rows = rows.merge(descriptors, on="dataset", how="left")
    probes = probe_accuracies(runs, tables.get("probes"))
    rows["probe_accuracy"] = rows["dataset"].map(probes)
    return rows


def probe_accuracies(runs: pd.DataFrame, probes: pd.DataFrame | None = None) -> dict[str, float]:
    """Per dataset, the quick probe's accuracy: measured by ``python -m study.probe --study-datasets`` (the same
    code the user's images go through) where stored, else the closest study runs (fe_linear, smallest backbone,
    k=10, lowest resolution)."""
    if probes is not None and not probes.empty:
        return probes.set_index("dataset")["probe_accuracy"].to_dict()
    probe = runs[(runs["backbone"] == PROBE_BACKBONE) & (runs["method"] == PROBE_METHOD)
                 & (runs["k_label"] == str(PROBE_K))]
    if probe.empty:
        return {}
    lowest = probe.groupby("dataset")["resolution"].transform("min")
    return probe[probe["resolution"] == lowest].groupby("dataset")["accuracy"].mean().to_dict()


def _bucket(images_per_class: pd.Series) -> np.ndarray:
    return np.digitize(images_per_class.to_numpy(dtype=float), K_BUCKETS[1:-1], right=True)


class AccuracyModel:
    """fit(rows) / predict(rows) -> acc_low, acc_median, acc_high; deterministic for a given evidence."""

    def __init__(self, use_probe: bool = False, random_state: int = 0):
        self.use_probe = use_probe
        self.random_state = random_state

    def _regressor(self, columns) -> HistGradientBoostingRegressor:
        monotone = {"log2_k": 1, **({"probe_accuracy": 1} if "probe_accuracy" in columns else {})}
        return HistGradientBoostingRegressor(loss="squared_error", max_iter=150, learning_rate=0.08,
                                             max_leaf_nodes=15, min_samples_leaf=4, monotonic_cst=monotone,
                                             categorical_features="from_dtype", random_state=self.random_state)

    def _features(self, rows: pd.DataFrame) -> pd.DataFrame:
        x = design_matrix(rows)
        if not self.use_probe:
            x = x.drop(columns="probe_accuracy", errors="ignore")
        return x

    def _fit_one(self, rows: pd.DataFrame) -> HistGradientBoostingRegressor:
        x = self._features(rows)
        return self._regressor(x.columns).fit(x, rows["accuracy"])

    def fit(self, rows: pd.DataFrame) -> "AccuracyModel":
        # Tiny data: one thread is fastest, and OpenMP threads contending with a running study stall badly.
        with threadpool_limits(limits=1, user_api="openmp"):
            return self._fit(rows.reset_index(drop=True))

    def _fit(self, rows: pd.DataFrame) -> "AccuracyModel":
        self.backbones_ = sorted(rows["backbone"].unique())
        self.model_ = self._fit_one(rows)
        residuals, buckets = [], []
        for dataset in rows["dataset"].unique():  # what the model gets wrong on an unseen dataset
            held = rows["dataset"] == dataset
            if held.all():
                continue
            model = self._fit_one(rows[~held])
            predicted = model.predict(self._features(rows[held]))
            residuals.append(np.abs(rows.loc[held, "accuracy"].to_numpy() - predicted))
            buckets.append(_bucket(rows.loc[held, "images_per_class"]))
        residuals = np.concatenate(residuals) if residuals else np.zeros(1)
        buckets = np.concatenate(buckets) if buckets else np.zeros(1, dtype=int)
        overall = _conformal_quantile(residuals)
        self.half_width_ = {b: _conformal_quantile(residuals[buckets == b]) if (buckets == b).sum() >= 10 else overall
                            for b in range(len(K_BUCKETS) - 1)}
        return self

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.copy()
        rows["backbone"] = pd.Categorical(rows["backbone"], categories=self.backbones_)
        with threadpool_limits(limits=1, user_api="openmp"):
            median = np.clip(self.model_.predict(self._features(rows)), 0.0, 1.0)
        width = np.array([self.half_width_[b] for b in _bucket(rows["images_per_class"])])
        chance = 1.0 / rows["n_classes"].to_numpy(dtype=float)
        median = np.maximum(median, chance)
        return pd.DataFrame({"acc_low": np.clip(median - width, 0.0, 1.0), "acc_median": median,
                             "acc_high": np.clip(median + width, 0.0, 1.0)}, index=rows.index)


def _conformal_quantile(residuals: np.ndarray) -> float:
    n = len(residuals)
    if n == 0:
        return 0.2
    level = min(1.0, np.ceil((n + 1) * COVERAGE) / n)
    return float(np.quantile(residuals, level))
