"""Frozen-backbone features, extracted once per (dataset, backbone, resolution, device) and reused by every run.

One forward pass yields both the pooled penultimate features (for ``fe_linear``) and the Full-Network Embedding
input: the spatial mean of every stage's activations plus the pooled head features (for ``fe_fne``).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from study import measure, precision
from study.backbones import build_backbone, data_config
from study.datasets import ImageData, cache_root
from study.preprocess import to_model_input


@dataclass
class FeatureSet:
    pooled_train: np.ndarray
    pooled_test: np.ndarray
    fne_train: np.ndarray
    fne_test: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray
    extraction: dict  # measured cost of extracting every image once

    def attributed_cost(self, n_images: int) -> tuple[float, float]:
        """(seconds, joules) of extracting ``n_images`` at the measured warm per-image cost."""
        share = n_images / max(1, self.extraction["n_images"])
        return self.extraction["seconds"] * share, self.extraction["energy_j"] * share


def batch_size_for(device: torch.device) -> int:
    return 512 if device.type == "cuda" else 64


@torch.no_grad()
def embed(model: torch.nn.Module, images: np.ndarray, cfg: dict, device: torch.device):
    """(pooled, FNE) features of uint8 NHWC images, batched on ``device``."""
    pooled_parts, fne_parts = [], []
    batch = batch_size_for(device)
    use_amp = precision.bf16_inference(device)
    for start in range(0, len(images), batch):
        chunk = torch.from_numpy(images[start:start + batch]).to(device, non_blocking=True)
        x = to_model_input(chunk, cfg["mean"], cfg["std"], channels_last=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            final, stages = model.forward_intermediates(x)
            pooled = model.forward_head(final, pre_logits=True)
        stage_means = [stage.float().mean(dim=(2, 3)) for stage in stages]
        pooled = pooled.float()
        pooled_parts.append(pooled.cpu().numpy())
        fne_parts.append(torch.cat([*stage_means, pooled], dim=1).cpu().numpy())
    return np.concatenate(pooled_parts), np.concatenate(fne_parts)


def _cache_path(data: ImageData, backbone: str, device: torch.device) -> str:
    key = hashlib.sha256(json.dumps([data.info.name, data.content_key, data.info.n_train_pool, data.info.n_test,
                                     int(data.train_labels.sum()), backbone, data.resolution,
                                     device.type, precision.describe(device)]).encode()).hexdigest()[:12]
    return str(cache_root() / "features" / f"{data.info.name}-{backbone}-{data.resolution}px-{device.type}-{key}.npz")


def extract_features(data: ImageData, backbone: str, device: torch.device) -> FeatureSet:
    """Features of the whole train pool and test split; cached with the measured cost of extracting them."""
    path = _cache_path(data, backbone, device)
    if os.path.exists(path):
        stored = np.load(path, allow_pickle=False)
        return FeatureSet(stored["pooled_train"], stored["pooled_test"], stored["fne_train"], stored["fne_test"],
                          data.train_labels, data.test_labels, json.loads(str(stored["extraction"])))
    cfg = data_config(backbone)
    model = build_backbone(backbone).to(device).to(memory_format=torch.channels_last)
    meter = measure.EnergyMeter(device)
    warm_start = time.perf_counter()
    embed(model, data.train_images[:batch_size_for(device)], cfg, device)  # build + warm-up, timed apart
    measure.synchronize(device)
    warmup_s = time.perf_counter() - warm_start
    measure.reset_peak_memory(device)
    clock = measure.PhaseClock(meter)
    cpu_start = time.process_time()
    with clock.phase("extract"):
        pooled_train, fne_train = embed(model, data.train_images, cfg, device)
        pooled_test, fne_test = embed(model, data.test_images, cfg, device)
    process_cpu_s = time.process_time() - cpu_start
    n_images = len(data.train_images) + len(data.test_images)
    extraction = {
        "extraction_id": os.path.basename(path).removesuffix(".npz"),
        "dataset": data.info.name, "backbone": backbone, "resolution": data.resolution,
        "n_images": n_images, "seconds": clock.seconds["extract"], "energy_j": clock.joules["extract"],
        "energy_source": meter.source, "warmup_s": warmup_s, "peak_memory_mb": measure.peak_memory_mb(device),
        "images_per_s": n_images / max(clock.seconds["extract"], 1e-9),
        "cpu_utilisation": measure.cpu_utilisation(process_cpu_s, clock.seconds["extract"], device),
        "hardware_id": measure.hardware(device.type)["hardware_id"], "created_at": measure.utc_now(),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial.npz"
    np.savez(partial, pooled_train=pooled_train, pooled_test=pooled_test, fne_train=fne_train, fne_test=fne_test,
             extraction=json.dumps(extraction))
    os.replace(partial, path)
    return FeatureSet(pooled_train, pooled_test, fne_train, fne_test, data.train_labels, data.test_labels,
                      extraction)
