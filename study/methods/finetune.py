"""Fine-tuning with a learning-rate grid; every trial is kept with its validation curve, the test score is the
validation-chosen trial's (never chosen on test data).

Speed on both devices: channels_last and bf16 where measured to help (``study.precision``), fixed batch shapes
on a GPU. In ``ft_partial`` the frozen half has no parameter that needs a gradient
and the input needs none, so autograd records nothing there: the backward pass stops at the first trained stage.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from study import measure, precision
from study.backbones import build_backbone, data_config, stage_split
from study.methods.base import MethodResult, register_method
from study.preprocess import random_resized_crop_flip, to_model_input
from study.selection import select_trial
from study.spec import RunSpec

EVAL_BATCH = {"cuda": 256, "cpu": 128}


def split_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, validation positions) within a subset: ``fraction`` of each class with >= 2 images."""
    rng = np.random.default_rng([seed, 7919])
    train, val = [], []
    for cls in np.unique(labels):
        positions = rng.permutation(np.flatnonzero(labels == cls))
        n_val = max(1, int(math.floor(len(positions) * fraction))) if len(positions) >= 2 else 0
        val.extend(positions[:n_val])
        train.extend(positions[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def _schedule(step: int, steps: int, warmup_fraction: float) -> float:
    warmup = max(1, int(steps * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def predict(model, images: torch.Tensor, cfg: dict, device: torch.device) -> torch.Tensor:
    """Logits for uint8 images on ``device``; fixed batch shape on the GPU (last batch padded) for cudnn."""
    model.eval()
    batch = EVAL_BATCH[device.type]
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        real = len(chunk)
        if device.type == "cuda" and real < batch:
            chunk = torch.cat([chunk, chunk[:1].expand(batch - real, *chunk.shape[1:])])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.bf16_inference(device)):
            logits = model(to_model_input(chunk, cfg["mean"], cfg["std"], channels_last=True))
        outputs.append(logits[:real].float())
    return torch.cat(outputs)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless fixed-size batches of indices from cycled permutations (small sets repeat within a batch)."""
    pending = torch.empty(0, dtype=torch.long)
    while True:
        while len(pending) < batch_size:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def train_trial(spec: RunSpec, learning_rate: float, train_x, train_y, val_x, val_y, n_classes: int,
                device: torch.device, freeze_first_half: bool, test: tuple) -> dict:
    """One learning-rate trial: the whole warm-up + cosine schedule, keeping the final weights.

    The validation split is scored at ``evaluations`` evenly spaced checks; the curve (step, epoch, learning rate,
    mean training loss since the last check, validation accuracy and loss) is returned so convergence can be
    seen, and the final check scores the trial for the learning-rate choice. No checkpoint is picked on it: with
    1-40 validation images a class, picking the best check chose early, worse weights (the convergence grid
    measures this: with ``test_curve`` set, ``test`` = (images, labels) is also scored at every check, for
    analysis only; ``python -m study.convergence`` reports it).
    """
    config = spec.finetune
    cfg = data_config(spec.backbone)
    model = build_backbone(spec.backbone, seed=spec.seed)
    model.reset_classifier(n_classes)
    frozen = stage_split(model)[0] if freeze_first_half else []
    for module in frozen:
        module.requires_grad_(False)
    model = model.to(device).to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=config.weight_decay)
    steps = config.planned_steps(len(train_x))
    check_every = max(1, steps // config.evaluations)
    generator = torch.Generator().manual_seed(spec.seed)
    batches = _batches(len(train_x), config.batch_size, generator)
    train_amp = precision.bf16_training(device)
    scored_per_check = len(val_x) + (len(test[0]) if config.test_curve else 0)
    curve, loss_sum, loss_count = [], 0.0, 0
    for step in range(steps):
        model.train()
        for module in frozen:  # frozen BatchNorm keeps its ImageNet statistics
            module.eval()
        lr = learning_rate * _schedule(step, steps, config.warmup_fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = next(batches).to(device)
        x = to_model_input(train_x[index], cfg["mean"], cfg["std"])
        x = random_resized_crop_flip(x, generator).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=train_amp):
            loss = F.cross_entropy(model(x).float(), train_y[index], label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        if (step + 1) % check_every and step + 1 != steps:
            continue
        if len(val_x):
            logits = predict(model, val_x, cfg, device)
            val_loss = F.cross_entropy(logits, val_y).item()
            val_accuracy = (logits.argmax(1) == val_y).float().mean().item()
        else:  # one image per class: no validation split
            val_loss, val_accuracy = float("nan"), float("nan")
        curve.append({"check_index": len(curve), "step": step + 1,
                      "epoch": (step + 1) * config.batch_size / len(train_x), "learning_rate": lr,
                      "train_loss": loss_sum / loss_count, "val_accuracy": val_accuracy, "val_loss": val_loss})
        if config.test_curve:
            test_logits = predict(model, test[0], cfg, device)
            curve[-1]["test_accuracy"] = (test_logits.argmax(1) == test[1]).float().mean().item()
        loss_sum, loss_count = 0.0, 0
    final = curve[-1]
    return {"model": model, "learning_rate": learning_rate, "steps_planned": steps, "steps_run": steps,
            "epochs_planned": steps * config.batch_size / len(train_x), "best_step": steps,
            "val_accuracy": final["val_accuracy"], "val_loss": final["val_loss"],
            "train_loss": final["train_loss"], "curve": curve,
            "images_processed": steps * config.batch_size + len(curve) * scored_per_check}


def finetune(spec: RunSpec, context, freeze_first_half: bool) -> MethodResult:
    """Run the learning-rate grid; select on validation only; store every trial with its own test score."""
    data = context.images(spec)
    subset = context.subset(spec)
    device = context.device
    cfg = data_config(spec.backbone)
    labels = data.train_labels[subset]
    train_pos, val_pos = split_validation(labels, spec.finetune.validation_fraction, spec.seed)
    to_device = lambda array: torch.from_numpy(np.ascontiguousarray(array)).to(device)  # noqa: E731
    train_x, train_y = to_device(data.train_images[subset][train_pos]), to_device(labels[train_pos])
    val_x, val_y = to_device(data.train_images[subset][val_pos]), to_device(labels[val_pos])
    test_x = context.device_test_images(spec)
    test_y = to_device(data.test_labels)
    measure.reset_peak_memory(device)
    run_clock = context.clock()
    trials = []
    for index, learning_rate in enumerate(spec.finetune.learning_rates):
        clock = context.clock()
        with clock.phase("fit"):
            trial = train_trial(spec, learning_rate, train_x, train_y, val_x, val_y, data.info.n_classes, device,
                                freeze_first_half, (test_x, test_y))
        with clock.phase("eval"):
            predictions = predict(trial.pop("model"), test_x, cfg, device).argmax(1).cpu().numpy()
        trial.update(trial_index=index, predictions=predictions, seconds=dict(clock.seconds),
                     joules=dict(clock.joules), images_processed=trial["images_processed"] + len(test_x))
        trials.append(trial)
        for phase in clock.seconds:
            run_clock.seconds[phase] = run_clock.seconds.get(phase, 0.0) + clock.seconds[phase]
            run_clock.joules[phase] = run_clock.joules.get(phase, 0.0) + clock.joules[phase]
    chosen, selection = select_trial(trials)
    for trial in trials:
        trial["selected"] = trial is chosen
    hyperparams = {"learning_rate": chosen["learning_rate"], "selection": selection,
                   "frozen": "stem + first half of stages" if freeze_first_half else "none",
                   "recipe": spec.finetune.recipe_id, "epochs_planned": round(chosen["epochs_planned"], 2),
                   "precision": precision.describe(device),
                   **{key: value for key, value in spec.finetune.canonical().items() if key != "learning_rates"}}
    return MethodResult(chosen["predictions"], len(train_pos), len(val_pos), hyperparams, run_clock.seconds,
                        run_clock.joules, sum(t["images_processed"] for t in trials), context.meter.source,
                        measure.peak_memory_mb(device), trials=trials, recipe=spec.finetune.recipe_id)


@register_method("ft_full")
def ft_full(spec, context) -> MethodResult:
    """Fine-tune every layer with a new head."""
    return finetune(spec, context, freeze_first_half=False)


@register_method("ft_partial")
def ft_partial(spec, context) -> MethodResult:
    """Fine-tune with the stem and first half of the stages frozen."""
    return finetune(spec, context, freeze_first_half=True)
