"""Learning curves accuracy(k): a saturating power law fitted per (dataset, backbone, method)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit


def power_law(k, ceiling, gap, rate):
    """accuracy(k) = ceiling - gap * k^-rate: rises with k and saturates at ``ceiling``."""
    return ceiling - gap * np.power(k, -rate)


def fit_curve(images_per_class: np.ndarray, accuracy: np.ndarray, chance: float) -> tuple[float, float, float]:
    """(ceiling, gap, rate); with fewer than 3 distinct k, a straight line in log k is not extrapolated."""
    k = np.asarray(images_per_class, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    start = (min(1.0, acc.max() + 0.05), max(1e-3, acc.max() - acc.min() + 0.05), 0.5)
    if len(np.unique(k)) < 3:
        return float(acc.max()), float(max(0.0, acc.max() - acc.min())), 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(power_law, k, acc, p0=start, bounds=([chance, 0.0, 0.01], [1.0, 1.5, 3.0]),
                              maxfev=5000)
    return tuple(float(p) for p in params)


def fit_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """One fitted curve per (dataset, backbone, method, resolution) from the mean accuracy at each k."""
    rows = []
    keys = ["dataset", "backbone", "method", "resolution"]
    for key, group in runs.groupby(keys):
        means = group.groupby("images_per_class")["accuracy"].mean()
        chance = 1.0 / group["n_classes"].iloc[0]
        ceiling, gap, rate = fit_curve(means.index.values, means.values, chance)
        rows.append({**dict(zip(keys, key)), "ceiling": ceiling, "gap": gap, "rate": rate,
                     "k_min": int(means.index.min()), "k_max": int(means.index.max()), "n_points": len(means)})
    return pd.DataFrame(rows)


def crossover_k(fe_curve: pd.Series, ft_curve: pd.Series, k_grid=np.unique(np.geomspace(1, 1000, 200).astype(int))):
    """Smallest k at which the fine-tuning curve is above the feature-extraction curve, within both curves'
    measured range; None if it never is."""
    low = max(fe_curve["k_min"], ft_curve["k_min"])
    high = min(fe_curve["k_max"], ft_curve["k_max"])
    for k in k_grid[(k_grid >= low) & (k_grid <= high)]:
        if power_law(k, ft_curve["ceiling"], ft_curve["gap"], ft_curve["rate"]) > power_law(
                k, fe_curve["ceiling"], fe_curve["gap"], fe_curve["rate"]):
            return int(k)
    return None
