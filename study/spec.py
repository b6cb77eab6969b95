"""A run's specification and its stable id: everything that determines the result, hashed."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning recipe; part of a fine-tuning run's id, so changing it makes new runs."""
    learning_rates: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    batch_size: int = 32
    epochs: int = 30  # epochs over the training subset, clipped to [min_steps, max_steps] steps
    min_steps: int = 40
    max_steps: int = 400
    evaluations: int = 10  # validation checks per trial
    patience: int = 4  # checks without improvement before early stopping
    validation_fraction: float = 0.2
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.1


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
        if spec["finetune"] is not None:
            spec["finetune"]["learning_rates"] = list(spec["finetune"]["learning_rates"])
        return spec

    @property
    def run_id(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode()).hexdigest()[:20]

    @property
    def is_finetune(self) -> bool:
        return self.method.startswith("ft_")
