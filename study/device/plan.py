"""Whether a selection fits one device call, and if not, how to split it: estimated bytes of each part (tree,
weights, datasets under their best encoding) against the limit, and pack commands for parts that each fit."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from study.device.common import MIB, _mib
from study.device.payload import (TINY_NATIVE_SIDE, Encoding, PackageSizer, folder_dataset_files, is_package_dataset,
                                  weights_estimate)
from study.device.selection import Selection
from study.grid import DEFAULT_GRID_FILE

SMALL_FILES_BYTES = 128 * 1024  # run.sh, env.sh, manifest.json, grids.toml, commit.txt (exclude ids counted apart)


@dataclass
class Plan:
    tree_bytes: int
    weights: dict[str, int]  # backbone -> estimated bytes
    datasets: dict[str, dict]  # name -> {"bytes", "encoding" (Encoding or None), "resolutions"}
    exclude_bytes: int
    limit_bytes: int
    margin_bytes: int

    @property
    def fixed_bytes(self) -> int:
        return self.tree_bytes + SMALL_FILES_BYTES + self.exclude_bytes + self.margin_bytes

    @property
    def total_bytes(self) -> int:
        return self.fixed_bytes + sum(self.weights.values()) + sum(d["bytes"] for d in self.datasets.values())


def plan_pack(selection: Selection, tree_bytes: int, limit_bytes: int, margin_bytes: int, allow_lossy: bool,
              jpeg_quality: int, sizer: PackageSizer) -> Plan:
    needs = selection.needs()
    weights = {name: weights_estimate(name) for name in selection.pretrained_backbones()}
    exclude_bytes = 21 * len(selection.stored)
    plan = Plan(tree_bytes, weights, {}, exclude_bytes, limit_bytes, margin_bytes)
    big_packages = []
    for name, resolutions in needs.items():
        if not is_package_dataset(name):
            size = sum(src.stat().st_size for src, _ in folder_dataset_files(name))
            plan.datasets[name] = {"bytes": size, "encoding": None, "resolutions": resolutions}
        elif sizer.native_side(name) <= TINY_NATIVE_SIDE:
            encoding = Encoding("native", "npz")
            plan.datasets[name] = {"bytes": sizer.estimate(name, encoding, resolutions), "encoding": encoding,
                                   "resolutions": resolutions}
        else:
            big_packages.append(name)
    for name in big_packages:  # what is left of the limit goes to the large package datasets
        room = limit_bytes - plan.total_bytes
        encoding, size = sizer.best(name, needs[name], room, allow_lossy, jpeg_quality)
        plan.datasets[name] = {"bytes": size, "encoding": encoding, "resolutions": needs[name]}
    return plan


def backbone_groups(selection: Selection) -> list[list[str]]:
    """One group per pretrained backbone, its ``_random_init`` variant with it (that one carries no weights)."""
    from study.backbones import RANDOM_INIT_SUFFIX

    names = selection.all_backbones()
    groups: dict[str, list[str]] = {}
    for name in names:
        base = name.removesuffix(RANDOM_INIT_SUFFIX)
        groups.setdefault(base if base in names else name, []).append(name)
    return [sorted(group) for _, group in sorted(groups.items())]


def split_advice(selection: Selection, plan: Plan, allow_lossy: bool, jpeg_quality: int,
                 sizer: PackageSizer) -> list[str]:
    """Pack commands for parts of the selection that each fit one call: all backbones together if the largest
    dataset fits with them, else one backbone group at a time; datasets first-fit decreasing within that."""
    base = plan.fixed_bytes
    everything = selection.all_backbones()
    largest = max(d["bytes"] for d in plan.datasets.values())
    together = base + sum(plan.weights.values()) + largest <= plan.limit_bytes
    common = _common_options(selection)
    lines = []
    for group in [everything] if together else backbone_groups(selection):
        weight = sum(plan.weights.get(name, 0) for name in group)
        room = plan.limit_bytes - base - weight
        sizes, lossy, unfit = {}, set(), []
        for name, resolutions in sorted(selection.needs(set(group)).items()):
            if is_package_dataset(name):
                encoding, size = sizer.best(name, resolutions, room, allow_lossy, jpeg_quality)
                if encoding is not None and not encoding.lossless:
                    lossy.add(name)
                fits = encoding is not None
            else:
                size = plan.datasets[name]["bytes"]
                fits = size <= room
            if fits:
                sizes[name] = size
            else:
                unfit.append((name, size))
        bins: list[list[str]] = []
        loads: list[int] = []
        for name in sorted(sizes, key=sizes.get, reverse=True):
            for index, load in enumerate(loads):
                if load + sizes[name] <= room:
                    bins[index].append(name)
                    loads[index] += sizes[name]
                    break
            else:
                bins.append([name])
                loads.append(sizes[name])
        for names, load in zip(bins, loads):
            flag = " --allow-lossy" if lossy & set(names) else ""
            lines.append(f"python -m study.device pack{common} --datasets {','.join(sorted(names))} "
                         f"--backbones {','.join(group)}{flag}   # ~{_mib(base + weight + load)}")
        for name, size in unfit:
            hint = "" if allow_lossy else "; with --allow-lossy it travels as JPEG (recorded in the manifest)"
            lines.append(f"# {name} with {','.join(group)}: ~{_mib(base + weight + size)} losslessly, over "
                         f"{plan.limit_bytes / MIB:g} MiB{hint}")
    return lines


def _common_options(selection: Selection) -> str:
    parts = [f" --grid {shlex.quote(selection.grid)}"]
    if Path(selection.grid_file).resolve() != DEFAULT_GRID_FILE.resolve():
        parts.append(f" --grid-file {shlex.quote(str(selection.grid_file))}")
    if selection.methods:
        parts.append(f" --methods {','.join(selection.methods)}")
    if selection.resolution:
        parts.append(f" --resolution {selection.resolution}")
    return "".join(parts)
