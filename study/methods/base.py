"""What every method returns, and the registry (name -> function(spec, context) -> MethodResult)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class MethodResult:
    predictions: np.ndarray  # predicted test labels
    n_train: int
    n_val: int
    hyperparams: dict
    seconds: dict  # wall time per phase: extract, fit, eval
    joules: dict  # energy per phase
    images_processed: int
    energy_source: str
    peak_memory_mb: float
    warmup_s: float = 0.0
    extraction_id: str | None = None
    trials: list[dict] = field(default_factory=list)
    recipe: str | None = None  # fine-tuning recipe id (study.spec.FinetuneConfig.recipe_id)


METHODS: dict[str, Callable] = {}


def register_method(name: str):
    def decorate(function):
        METHODS[name] = function
        return function
    return decorate
