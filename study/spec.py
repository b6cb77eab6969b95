"""A run's specification and its stable id: everything that determines the result, hashed."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field


FINETUNING_PREFIX = "ft_"  # method ids: ft_* fine-tune the backbone, fe_* extract features from a frozen one


def is_finetuning(method: str) -> bool:
    """Whether a method id fine-tunes (else it extracts features)."""
    return str(method).startswith(FINETUNING_PREFIX)


def finetuning_rows(methods):
    """``is_finetuning`` of each entry of a pandas column of method ids (a boolean column)."""
    return methods.astype(str).str.startswith(FINETUNING_PREFIX)


def _digest(payload: dict, length: int) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning recipe; part of a fine-tuning run's id, so changing it makes new runs.

    The budget is in epochs, never capped by a step limit: ``epochs`` over a training set of up to
    ``epochs_reference_images`` images; larger sets get ``epochs * sqrt(reference / n)`` epochs (more images per
    epoch need fewer passes), never fewer than ``min_epochs``, and every trial takes at least ``min_steps`` steps
    (a 2-class k=5 set is smaller than one batch). ``budget_scale`` multiplies all of it: the convergence check
    (``python -m study.convergence``) runs the recipe at 2x to show it is not budget-bound. Every trial runs its
    whole schedule and keeps its final weights; the validation split chooses the learning rate.
    """
    learning_rates: tuple[float, ...] = (3e-4, 1e-3)
    batch_size: int = 32
    epochs: float = 30.0
    epochs_reference_images: int = 256
    min_epochs: float = 10.0
    min_steps: int = 250  # few-shot sets need a floor of steps, not epochs (a pilot: dtd k=20, 150 -> 300 steps: +3 points)
    budget_scale: float = 1.0
    evaluations: int = 20  # validation checks per trial, evenly spaced (the stored validation curve)
    test_curve: bool = False  # also score the test split at every check: analysis only, never used to choose
    validation_fraction: float = 0.2
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.1

    def epochs_for(self, n_train: int) -> float:
        """Planned epochs over ``n_train`` training images (budget_scale included)."""
        shrink = min(1.0, math.sqrt(self.epochs_reference_images / max(1, n_train)))
        return self.budget_scale * max(self.min_epochs, self.epochs * shrink)

    def planned_steps(self, n_train: int) -> int:
        """Optimiser steps of one trial: the epoch budget, at least ``min_steps`` (scaled)."""
        steps = math.ceil(self.epochs_for(n_train) * max(1, n_train) / self.batch_size)
        return int(max(math.ceil(self.budget_scale * self.min_steps), steps))

    def canonical(self) -> dict:
        config = asdict(self)
        config["learning_rates"] = list(config["learning_rates"])
        return config

    @property
    def recipe_id(self) -> str:
        """Short stable name of the recipe, stored with every fine-tuning run (``ft-`` + hash of the settings)."""
        return "ft-" + _digest(self.canonical(), 8)


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    backbone: str
    method: str
    images_per_class: int | None  # None = the whole train pool ("max")
    seed: int
    resolution: int
    finetune: FinetuneConfig | None = field(default=None)

    @property
    def k_label(self) -> str:
        return "max" if self.images_per_class is None else str(self.images_per_class)

    def canonical(self) -> dict:
        spec = asdict(self)
        if self.finetune is not None:
            spec["finetune"] = self.finetune.canonical()
        return spec

    @property
    def run_id(self) -> str:
        return _digest(self.canonical(), 20)

    @property
    def is_finetune(self) -> bool:
        return is_finetuning(self.method)
