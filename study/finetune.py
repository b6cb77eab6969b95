"""Fine-tuning with a learning-rate grid; every trial is kept, the test score is the validation-chosen trial's."""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from study import measure
from study.backbones import build_backbone, data_config, stage_split
from study.methods import MethodResult
from study.preprocess import random_resized_crop_flip, to_model_input
from study.spec import FinetuneConfig, RunSpec

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


def total_steps(config: FinetuneConfig, n_train: int) -> int:
    steps = math.ceil(config.epochs * n_train / config.batch_size)
    return int(min(config.max_steps, max(config.min_steps, steps)))


def _schedule(step: int, steps: int, warmup_fraction: float) -> float:
    warmup = max(1, int(steps * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def predict(model, images: torch.Tensor, cfg: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits for uint8 images on ``device``; fixed batch shape on the GPU (last batch padded) for cudnn."""
    model.eval()
    batch = EVAL_BATCH[device.type]
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        real = len(chunk)
        if device.type == "cuda" and real < batch:
            chunk = torch.cat([chunk, chunk[:1].expand(batch - real, *chunk.shape[1:])])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(to_model_input(chunk, cfg["mean"], cfg["std"], channels_last=device.type == "cuda"))
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
                device: torch.device, freeze_first_half: bool) -> dict:
    """One learning-rate trial with early stopping on validation; returns the best model and its record."""
    config = spec.finetune
    cfg = data_config(spec.backbone)
    model = build_backbone(spec.backbone, seed=spec.seed)
    model.reset_classifier(n_classes)
    frozen = stage_split(model)[0] if freeze_first_half else []
    for module in frozen:
        module.requires_grad_(False)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=config.weight_decay)
    steps = total_steps(config, len(train_x))
    check_every = max(1, steps // config.evaluations)
    generator = torch.Generator().manual_seed(spec.seed)
    batches = _batches(len(train_x), config.batch_size, generator)
    use_amp = device.type == "cuda"
    best = {"val_accuracy": -1.0, "val_loss": math.inf, "step": 0, "state": None}
    checks_without_gain, steps_run, last_loss = 0, 0, math.inf
    for step in range(steps):
        model.train()
        for module in frozen:  # frozen BatchNorm keeps its ImageNet statistics
            module.eval()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * _schedule(step, steps, config.warmup_fraction)
        index = next(batches).to(device)
        x = to_model_input(train_x[index], cfg["mean"], cfg["std"], channels_last=use_amp)
        x = random_resized_crop_flip(x, generator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = F.cross_entropy(model(x).float(), train_y[index], label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps_run = step + 1
        if steps_run % check_every and steps_run != steps:
            continue
        if len(val_x):
            logits = predict(model, val_x, cfg, device)
            val_loss = F.cross_entropy(logits, val_y).item()
            val_accuracy = (logits.argmax(1) == val_y).float().mean().item()
            better = (val_accuracy, -val_loss) > (best["val_accuracy"], -best["val_loss"])
        else:  # one image per class: no validation, keep the lowest training loss
            last_loss = loss.item()
            val_loss, val_accuracy = last_loss, float("nan")
            better = last_loss < best["val_loss"]
        if better:
            best.update(val_accuracy=val_accuracy, val_loss=val_loss, step=steps_run,
                        state=copy.deepcopy(model.state_dict()))
            checks_without_gain = 0
        else:
            checks_without_gain += 1
            if checks_without_gain >= config.patience:
                break
    model.load_state_dict(best["state"])
    return {"model": model, "learning_rate": learning_rate, "steps_planned": steps, "steps_run": steps_run,
            "best_step": best["step"], "val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"],
            "images_processed": steps_run * config.batch_size + (steps_run // check_every) * len(val_x)}


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
    measure.reset_peak_memory(device)
    run_clock = context.clock()
    trials = []
    for index, learning_rate in enumerate(spec.finetune.learning_rates):
        clock = context.clock()
        with clock.phase("fit"):
            trial = train_trial(spec, learning_rate, train_x, train_y, val_x, val_y, data.info.n_classes, device,
                                freeze_first_half)
        with clock.phase("eval"):
            predictions = predict(trial.pop("model"), test_x, cfg, device).argmax(1).cpu().numpy()
        trial.update(trial_index=index, predictions=predictions, seconds=dict(clock.seconds),
                     joules=dict(clock.joules), images_processed=trial["images_processed"] + len(test_x))
        trials.append(trial)
        for phase in clock.seconds:
            run_clock.seconds[phase] = run_clock.seconds.get(phase, 0.0) + clock.seconds[phase]
            run_clock.joules[phase] = run_clock.joules.get(phase, 0.0) + clock.joules[phase]
    if len(val_pos):
        chosen = max(trials, key=lambda t: (t["val_accuracy"], -t["val_loss"], -t["trial_index"]))
        selection = "best validation accuracy (ties: lower validation loss)"
    else:
        chosen = min(trials, key=lambda t: (t["val_loss"], t["trial_index"]))
        selection = "lowest training loss (1 image per class: no validation split)"
    for trial in trials:
        trial["selected"] = trial is chosen
    hyperparams = {"learning_rate": chosen["learning_rate"], "selection": selection,
                   "frozen": "stem + first half of stages" if freeze_first_half else "none",
                   **{key: value for key, value in spec.finetune.__dict__.items() if key != "learning_rates"}}
    return MethodResult(chosen["predictions"], len(train_pos), len(val_pos), hyperparams, run_clock.seconds,
                        run_clock.joules, sum(t["images_processed"] for t in trials), context.meter.source,
                        measure.peak_memory_mb(device), trials=trials)
