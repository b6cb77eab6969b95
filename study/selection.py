"""How a fine-tuning run chooses among its learning-rate trials: on the validation split only, never on test.

One rule, shared by the run itself (``study.methods.finetune``), the convergence check's learning-rate table and the
recommender's tuning curve, so each scores a subset of trials exactly as the run would have chosen.
"""
from __future__ import annotations

import math


def select_trial(trials: list[dict]) -> tuple[dict, str]:
    """(the chosen trial, how): best final validation accuracy, ties to the lower validation loss, then the earlier
    trial; without a validation split (1 image per class), the lowest final training loss."""
    if all(math.isfinite(t["val_accuracy"]) for t in trials):
        return (max(trials, key=lambda t: (t["val_accuracy"], -t["val_loss"], -t["trial_index"])),
                "best final validation accuracy (ties: lower validation loss)")
    return (min(trials, key=lambda t: (t["train_loss"], t["trial_index"])),
            "lowest final training loss (1 image per class: no validation split)")
