"""Hardware profiles that translate measured costs to the user's machine.

Peak figures are dense (no sparsity) from vendor datasheets; prices are typical on-demand cloud rates on the
given date and are editable defaults, not quotes. ``measured`` marks hardware the study itself ran on.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    kind: str  # 'cpu' or 'gpu'
    peak_bf16_tflops: float  # fp16 where the card has no bf16 (T4)
    peak_fp32_tflops: float
    memory_bandwidth_gbs: float
    board_power_w: float
    price_usd_per_h: float
    source: str
    date: str
    personal: bool = False  # a machine the user owns and sits at (no data-centre PUE, no hourly price)


HARDWARE: dict[str, HardwareProfile] = {
    "cpu_2core": HardwareProfile(
        "2-core cloud VM (the study's CPU)", "cpu", 0.16, 0.16, 20, 20, 0.10,
        "study machine (AMD EPYC, 2 vCPUs); peak = 2 cores x 2.5 GHz x 32 FP32 FLOP/cycle, estimate; "
        "power = the study's 10 W/thread model", "2026-11"),
    "cpu_laptop": HardwareProfile(
        "CPU-only laptop (8 cores)", "cpu", 0.77, 0.77, 60, 45, 0.0,
        "estimate: 8 cores x 3 GHz x 32 FP32 FLOP/cycle; 45 W typical package power; owned (no hourly price)",
        "2026-11", personal=True),
    "t4": HardwareProfile("NVIDIA T4", "gpu", 65, 8.1, 320, 70, 0.35,
                          "NVIDIA T4 datasheet (fp16 tensor; no bf16); GCP on-demand price", "2019 / 2026-11"),
    "l4": HardwareProfile("NVIDIA L4", "gpu", 121, 30.3, 300, 72, 0.71,
                          "NVIDIA L4 datasheet; GCP g2-standard-4 on-demand price", "2023 / 2026-11"),
    "a10": HardwareProfile("NVIDIA A10", "gpu", 125, 31.2, 600, 150, 1.01,
                           "NVIDIA A10 datasheet; AWS g5.xlarge on-demand price", "2021 / 2026-11"),
    "rtx4090": HardwareProfile("NVIDIA RTX 4090", "gpu", 165, 82.6, 1008, 450, 0.40,
                               "NVIDIA Ada whitepaper (bf16 dense, FP32 accumulate); community-cloud price",
                               "2022 / 2026-11"),
    "a100": HardwareProfile("NVIDIA A100 80GB SXM", "gpu", 312, 19.5, 2039, 400, 3.00,
                            "NVIDIA A100 datasheet; typical on-demand price", "2021 / 2026-11"),
    "h100": HardwareProfile("NVIDIA H100 SXM", "gpu", 989, 67, 3350, 700, 4.00,
                            "NVIDIA H100 datasheet; typical on-demand price", "2023 / 2026-11"),
    "h200": HardwareProfile("NVIDIA H200 SXM", "gpu", 989, 67, 4800, 700, 5.00,
                            "NVIDIA H200 datasheet; typical on-demand price", "2024 / 2026-11"),
}


def speed_factor(target: HardwareProfile, reference: HardwareProfile) -> float:
    """How many times faster ``target`` runs the study's workloads than ``reference``.

    Small CNNs at small batch are bound by both arithmetic and memory traffic, so the ratio is the geometric mean
    of the compute ratio (bf16 on GPUs, fp32 on CPUs) and the memory-bandwidth ratio. A stated model, not a
    measurement: costs translated with it are labelled 'scaled'.
    """
    compute = (target.peak_bf16_tflops if target.kind == "gpu" else target.peak_fp32_tflops) / (
        reference.peak_bf16_tflops if reference.kind == "gpu" else reference.peak_fp32_tflops)
    bandwidth = target.memory_bandwidth_gbs / reference.memory_bandwidth_gbs
    return (compute * bandwidth) ** 0.5


def profile_for_gpu_name(gpu_model: str | None) -> str | None:
    """The HARDWARE key of a GPU the study measured (from its device name), if known."""
    if not gpu_model:
        return None
    name = gpu_model.upper()
    for key in ("h200", "h100", "a100", "a10", "l4", "t4"):
        if key.upper() in name:
            return key
    return "rtx4090" if "4090" in name else None
