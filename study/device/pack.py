"""``pack``: build the folder one device call carries for the selected pending runs (see study.device.cli for its
layout), refusing, with split advice, a selection that does not fit the call."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from study.backbones import WEIGHTS_MANIFEST
from study.datasets import packed_datasets_root, shared_datasets_root
from study.device.common import (DEFAULT_CALL_TIMEOUT_S, DEVICE_LIMIT_MIB, MIB, PROJECT_ROOT, DeviceError, _inside,
                                 _mib, folder_bytes, tree_files)
from study.device.payload import (PackageSizer, copy_folder_dataset, fp16_weights, is_package_dataset,
                                  pack_package_dataset)
from study.device.plan import plan_pack, split_advice
from study.device.runscript import write_scripts
from study.device.selection import select
from study.grid import DEFAULT_GRID_FILE
from study.store import DEFAULT_DB

PACK_TOOL = "study.device pack"


def _prepare_out(out: Path) -> None:
    if out.exists():
        manifest = out / "manifest.json"
        ours = False
        if manifest.is_file():
            try:
                ours = json.loads(manifest.read_text()).get("tool") == PACK_TOOL
            except ValueError:
                ours = False
        if not ours and any(out.iterdir()):
            raise DeviceError(f"{out} exists and is not a pack folder (no manifest.json from {PACK_TOOL}); "
                              "refusing to empty it")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _git_ignored(path: Path) -> bool | None:
    try:
        return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=PROJECT_ROOT).returncode == 0
    except OSError:
        return None


def pack(grid: str = "gpu", grid_file: str | Path = DEFAULT_GRID_FILE, datasets=None, backbones=None, methods=None,
         resolution: int | None = None, out: str | Path = PROJECT_ROOT / ".device", db: str | Path = DEFAULT_DB,
         limit_mib: float = DEVICE_LIMIT_MIB, margin_mib: float = 1.0, allow_lossy: bool = False,
         jpeg_quality: int = 95, time_budget_s: int | None = None, call_timeout_s: int = DEFAULT_CALL_TIMEOUT_S,
         say=print) -> dict:
    """Build the pack folder for the selected pending runs; returns its manifest (layout: study.device.cli)."""
    from study.measure import git_commit, utc_now

    out = Path(out).resolve()
    if packed_datasets_root() is not None:
        say("note: EOT_PACKED_DATASETS is set here; packing from the original datasets regardless")
    selection = select(grid, grid_file, datasets, backbones, methods, resolution, db)
    pending = selection.pending
    if not pending:
        raise DeviceError(f"all {len(selection.specs)} selected runs are already in {db}: nothing to pack")
    tree = tree_files(exclude=out)
    tree_bytes = sum(tree.values())
    limit_bytes, margin_bytes = int(limit_mib * MIB), int(margin_mib * MIB)
    sizer = PackageSizer()
    plan = plan_pack(selection, tree_bytes, limit_bytes, margin_bytes, allow_lossy, jpeg_quality, sizer)
    too_big = plan.total_bytes > limit_bytes or any(d["bytes"] is None or (is_package_dataset(n)
                                                                          and d["encoding"] is None)
                                                    for n, d in plan.datasets.items())
    if too_big:
        advice = split_advice(selection, plan, allow_lossy, jpeg_quality, sizer)
        raise DeviceError(
            f"the selection needs about {_mib(plan.total_bytes)} with the working tree ({_mib(tree_bytes)}), "
            f"over the device call's {limit_mib:g} MiB: weights {_mib(sum(plan.weights.values()))}, datasets "
            + ", ".join(f"{n} {_mib(d['bytes'])}" for n, d in sorted(plan.datasets.items()))
            + ". Split it into calls that each fit, e.g.:\n  " + "\n  ".join(advice))

    budget = time_budget_s if time_budget_s is not None else max(60, call_timeout_s - 150)
    hard = max(budget + 30, call_timeout_s - 40)
    _prepare_out(out)
    for sub in ("weights", "datasets", "shared_datasets"):
        (out / sub).mkdir()
    weights = [fp16_weights(name, out / "weights") for name in selection.pretrained_backbones()]
    (out / "weights" / WEIGHTS_MANIFEST).write_text("".join(f"{w['sha256']}  {w['file']}\n" for w in weights))
    packed = []
    for name, entry in sorted(plan.datasets.items()):
        if entry["encoding"] is None:
            packed.append(copy_folder_dataset(name, out / "shared_datasets"))
        else:
            say(f"packing {name}: {entry['encoding'].describe(entry['resolutions'])}")
            packed.append(pack_package_dataset(name, entry["encoding"], entry["resolutions"],
                                               out / "datasets" / f"{name}.npz"))
    if any(p["kind"] == "folder" for p in packed):
        shutil.copyfile(shared_datasets_root() / "README.md", out / "shared_datasets" / "README.md")
    shutil.copyfile(selection.grid_file, out / "grids.toml")
    commit = git_commit()
    (out / "commit.txt").write_text(commit + "\n")
    (out / "exclude_run_ids.txt").write_text(
        f"# {len(selection.stored)} runs of this selection already in {db} (python -m study.device pack)\n"
        + "".join(f"{run_id}\n" for run_id in sorted(selection.stored)))
    pack_rel = os.path.relpath(out, PROJECT_ROOT)
    created = utc_now()
    write_scripts(out, selection, [p["dataset"] for p in packed][:2], pack_rel, created, commit, budget, hard)
    inside = _inside(out, PROJECT_ROOT)
    command = f"bash {shlex.quote(pack_rel)}/run.sh" if inside else f"bash {out}/run.sh"
    by_method: dict[str, int] = {}
    for spec in pending:
        by_method[spec.method] = by_method.get(spec.method, 0) + 1
    manifest = {
        "tool": PACK_TOOL, "created_at": created, "commit": commit,
        "selection": {"grid": grid, "grid_file": str(selection.grid_file), "datasets": datasets,
                      "backbones": backbones, "methods": methods, "resolution": resolution},
        "runs": {"selected": len(selection.specs), "already_stored": len(selection.stored), "to_run": len(pending),
                 "to_run_by_method": by_method},
        "weights": weights, "datasets": packed,
        "time_budget_s": budget, "hard_limit_s": hard, "call_timeout_s": call_timeout_s,
        "device_call": {"command": command, "carry": [pack_rel] if inside else [], "timeout_s": call_timeout_s},
        "sizes": {"tree_bytes": tree_bytes, "tree_largest": sorted(tree.items(), key=lambda kv: -kv[1])[:5],
                  "limit_bytes": limit_bytes},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    pack_bytes = folder_bytes(out)
    manifest["sizes"]["pack_bytes"] = pack_bytes
    manifest["sizes"]["total_bytes"] = pack_bytes + tree_bytes
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    total = folder_bytes(out) + tree_bytes
    if total > limit_bytes:
        raise DeviceError(f"the pack came out at {_mib(total)} with the tree, over {limit_mib:g} MiB (the estimate "
                          f"was {_mib(plan.total_bytes)}); split the selection with --datasets/--backbones")
    if inside and _git_ignored(out) is False:
        say(f"warning: {pack_rel} is not ignored by git: it would travel twice; add it to .gitignore")
    if commit.endswith("+dirty"):
        say("warning: study/ has uncommitted changes; the runs will record " + commit)
    return manifest


def describe_pack(manifest: dict) -> str:
    sizes = manifest["sizes"]
    lines = [f"packed {manifest['runs']['to_run']} runs to do ({manifest['runs']['already_stored']} of "
             f"{manifest['runs']['selected']} already stored) for commit {manifest['commit']}"]
    for w in manifest["weights"]:
        lines.append(f"  weights  {w['backbone']:22} {_mib(w['bytes']):>9}  fp16 of {w['original_file']}")
    for d in manifest["datasets"]:
        lines.append(f"  dataset  {d['dataset']:22} {_mib(d['bytes']):>9}  {d['encoding']}")
    lines.append(f"  pack {_mib(sizes['pack_bytes'])} + working tree {_mib(sizes['tree_bytes'])} = "
                 f"{_mib(sizes['total_bytes'])} of {sizes['limit_bytes'] / MIB:g} MiB")
    call = manifest["device_call"]
    lines.append("Device call (the device tool's run; command <= 2000 characters):")
    lines.append(f"  run(command={json.dumps(call['command'])}, carry={json.dumps(call['carry'])}, "
                 f"timeout_s={call['timeout_s']})")
    lines.append(f"  (optional: prefix the command with EOT_BENCH=1 to run python -m study.bench first, "
                 f"within the same time budget of {manifest['time_budget_s']} s)")
    lines.append("Then here, with the folder the reply names as files_at:")
    lines.append("  python -m study.device ingest FILES_AT/results.tar.gz")
    return "\n".join(lines)
