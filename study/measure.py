"""What a run costs and where it ran: phase timers, NVML or estimated energy, peak memory, provenance."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

import torch

# CPU energy has no counter here: a stated power model, always stored as energy_source='estimated'.
CPU_WATTS_PER_THREAD = 10.0
CPU_POWER_MODEL = f"{CPU_WATTS_PER_THREAD:g} W per busy thread x threads x wall time (estimate, no counter)"


class EnergyMeter:
    """Energy between ``start`` and ``stop``: NVML's total-energy counter on a GPU, else the stated CPU model."""

    def __init__(self, device: torch.device):
        self.device = device
        self.source = "estimated"
        self._handle = None
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                index = device.index if device.index is not None else torch.cuda.current_device()
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                self.source = "nvml"
            except Exception:  # noqa: BLE001 - no NVML: fall back to the estimate, flagged as such
                self._handle = None

    def read_mj(self) -> float | None:
        if self._handle is None:
            return None
        import pynvml

        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def joules(self, start_mj: float | None, seconds: float) -> float:
        if self._handle is not None and start_mj is not None:
            return (self.read_mj() - start_mj) / 1000.0
        return seconds * CPU_WATTS_PER_THREAD * torch.get_num_threads()


@dataclass
class PhaseClock:
    """Wall time and energy per named phase of one run."""
    meter: EnergyMeter
    seconds: dict = field(default_factory=dict)
    joules: dict = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str):
        synchronize(self.meter.device)
        start_mj = self.meter.read_mj()
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.meter.device)
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            self.joules[name] = self.joules.get(name, 0.0) + self.meter.joules(start_mj, elapsed)


def cpu_utilisation(process_cpu_s: float, wall_s: float, device: torch.device) -> float | None:
    """CPU seconds this process used / (wall seconds x torch threads), on a CPU device (None on a GPU).

    Near 1 for fine-tuning on an otherwise idle machine; well below 1 means other work shared the cores and the
    timings are pessimistic (scikit-learn fits use one thread by design, so feature runs sit lower).
    """
    if device.type != "cpu":
        return None
    return process_cpu_s / max(wall_s, 1e-9) / torch.get_num_threads()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:  # Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on a GPU, else the process's peak resident memory since the last reset."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# The widest vector extension a CPU has, of those that change how fast the study computes (bf16 inference needs
# AVX512-BF16 or AMX, see study.precision): a virtual machine's model name ("AMD EPYC") can stand for CPU generations
# whose fine-tuning runs differ 2.5x (159 s against 399 s for the same kind of run), so the name alone is no
# fingerprint.
ISA_FLAGS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def _cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The model name with the widest of ``ISA_FLAGS`` the CPU has, e.g. "AMD EPYC (AVX512-BF16)"."""
    name, flags = None, set()
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("model name") and name is None:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    widest = next((label for flag, label in ISA_FLAGS if flag in flags), None)
    return f"{name} ({widest})" if widest else name


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


@lru_cache(maxsize=4)
def hardware(device_type: str) -> dict:
    """Fingerprint of the machine a run used; ``hardware_id`` is a hash of it."""
    info = {
        "cpu_model": _cpu_model(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(_memory_gb(), 1),
        "gpu_model": None,
        "gpu_count": 0,
        "gpu_memory_gb": None,
        "device_type": device_type,
    }
    if device_type == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_model=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gb=round(props.total_memory / 2**30, 1))
    info["hardware_id"] = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]
    return info


@lru_cache(maxsize=1)
def software() -> dict:
    import numpy
    import sklearn
    import timm

    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": numpy.__version__,
        "cuda_version": torch.version.cuda or "",
        "git_commit": git_commit(),
    }


def git_commit() -> str:
    """The code's commit (``EOT_GIT_COMMIT`` where the tree travels without .git), '+dirty' if modified."""
    if os.environ.get("EOT_GIT_COMMIT"):
        return os.environ["EOT_GIT_COMMIT"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "study"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
