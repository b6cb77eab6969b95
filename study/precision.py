"""Numeric precision the study computes in, per device, chosen by measurement (one policy for every code path).

Measured on this project's 2-core AMD EPYC (avx512_bf16, no AMX), 128 px, batch 32 training / 128 inference,
channels_last: bf16 autocast made inference 2-4x faster (mobilenetv2_100 258 -> 556 img/s, efficientnet_lite0
168 -> 680) but training no faster (151 -> 132 and 105 -> 109 img/s), so a CPU trains in fp32 and infers in
bf16. On a GPU both use bf16 autocast (the pilot's setting, ../shared/GPU-NOTES.md). A CPU without native bf16
would emulate it slowly, so it stays in fp32. channels_last is used everywhere (1.5x for CPU training).
"""
from __future__ import annotations

import torch


def bf16_inference(device: torch.device) -> bool:
    """bf16 autocast for inference: every CUDA card, or a CPU with native bf16 (AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return True
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_training(device: torch.device) -> bool:
    """bf16 autocast for training: on a GPU only (no faster on the CPU, measured)."""
    return device.type == "cuda"


def describe(device: torch.device) -> dict:
    """What a run records about how it computed."""
    name = lambda on: "bf16 autocast" if on else "fp32"  # noqa: E731
    return {"train": name(bf16_training(device)), "inference": name(bf16_inference(device)),
            "memory_format": "channels_last"}
