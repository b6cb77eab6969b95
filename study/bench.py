"""``python -m study.bench``: throughput of the study's own FE and FT code paths against a minimal reference loop.

Per backbone:
  reference FE  one device-resident uint8 batch (256 on a GPU, 32 on a CPU), normalised, forward to the pooled
                features, repeated; channels_last and bf16 where the study uses them (``study.precision``)
  reference FT  the same batch, a fresh head, AdamW, cross-entropy, forward + backward + step, repeated, in the
                precision and memory format the study trains in
  study FE      ``study.features.extract_features`` on real datasets as the grid runs it (host arrays copied per
                batch, pooled + every stage's mean); its warm rate (its own timed pass) and its end-to-end rate
                (model build + warm-up + pass) are both reported
  study FT      several small ``ft_full`` runs through ``study.finetune.finetune`` at small k with the grid's
                recipe (learning-rate trials, the whole schedule, validation checks, test predictions), counted as
                the images the runs report processing (training, validation and test) over their wall time; one
                short untimed run first, reported as warm-up. Its reference rate is the reference loops' rate on
                the same mix of trained and evaluated images (trained / ref FT rate + evaluated / ref FE rate)
Ratios are study / reference. Targets on a GPU: FE >= 90 %, FT >= 70 %; on a CPU: FT >= 85 % (FE reported).
The reference loops run before and after the study paths and their timings are pooled: over a bench of minutes
the machine's state drifts (clocks, other load), and a reference timed only once, for a few seconds, moved by 13%
between two runs on the same idle CPU. Both rates are reported.

  python -m study.bench                                # CPU: the cpu grid's recipe at k=20, about 10 minutes
  python -m study.bench --quick                        # CPU: small sizes, about 2-3 minutes (not judged)
  python -m study.bench --out $OUT/bench.json          # device machine (after: source .device/env.sh)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from study import measure, precision
from study.backbones import build_backbone, data_config, get_spec
from study.datasets import load_images
from study.preprocess import to_model_input

LOG_DIR = Path(__file__).resolve().parent.parent / "logs"
TARGETS = {"cuda": {"fe": 0.90, "ft": 0.70}, "cpu": {"ft": 0.85}}  # study / reference (the issues' targets)
DEFAULT_BACKBONES = ["mobilenetv2_100", "efficientnet_lite0"]
DEFAULT_DATASETS = ["flowers5", "neu_steel_defects"]
QUICK_CPU_IMAGES = 256  # --quick on a CPU: each dataset's first 256 train-pool and 64 test images


@contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def device_description(device: torch.device) -> dict:
    info = {"type": device.type, "cpu_model": measure._cpu_model(), "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "cuda_version": torch.version.cuda or ""}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
    else:
        info["name"] = f"CPU: {info['cpu_model']}"
    return info


def _batch(images: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """``size`` real images (repeated if there are fewer) as a device-resident uint8 NHWC tensor."""
    index = np.arange(size) % len(images)
    return torch.from_numpy(np.ascontiguousarray(images[index])).to(device)


def _timed(step, iterations: int, device: torch.device, meter: measure.EnergyMeter) -> tuple[float, float]:
    clock = measure.PhaseClock(meter)
    with clock.phase("x"):
        for _ in range(iterations):
            step()
    return clock.seconds["x"], clock.joules["x"]


def _rate(step, build_s: float, batch: int, warmup: int, iterations: int, device, meter) -> dict:
    """Warm up ``step``, then time ``iterations`` of it: images/s and J/image, warm-up (with build) apart."""
    warm_s, _ = _timed(step, warmup, device, meter)
    seconds, joules = _timed(step, iterations, device, meter)
    n = batch * iterations
    return {"images": n, "seconds": seconds, "images_per_s": n / seconds, "joules_per_image": joules / n,
            "warmup_s": build_s + warm_s, "batch": batch, "iterations": iterations}


def _pooled(before: dict, after: dict) -> dict:
    """Two timings of the same reference loop, before and after the study paths, as one (all images over all
    seconds), keeping each rate."""
    images, seconds = before["images"] + after["images"], before["seconds"] + after["seconds"]
    joules = before["joules_per_image"] * before["images"] + after["joules_per_image"] * after["images"]
    return {**before, "images": images, "seconds": seconds, "images_per_s": images / seconds,
            "joules_per_image": joules / images, "iterations": before["iterations"] + after["iterations"],
            "images_per_s_before": before["images_per_s"], "images_per_s_after": after["images_per_s"]}


def reference_fe(backbone: str, images: np.ndarray, batch: int, warmup: int, iterations: int,
                 device: torch.device, meter) -> dict:
    cfg = data_config(backbone)
    bf16 = precision.bf16_inference(device)
    build_start = time.perf_counter()
    model = build_backbone(backbone).to(device).eval().to(memory_format=torch.channels_last)
    x = _batch(images, batch, device)

    def step():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model.forward_head(model.forward_features(to_model_input(x, cfg["mean"], cfg["std"], channels_last=True)),
                               pre_logits=True)

    return _rate(step, time.perf_counter() - build_start, batch, warmup, iterations, device, meter)


def reference_ft(backbone: str, images: np.ndarray, n_classes: int, batch: int, warmup: int, iterations: int,
                 device: torch.device, meter) -> dict:
    cfg = data_config(backbone)
    bf16 = precision.bf16_training(device)
    build_start = time.perf_counter()
    model = build_backbone(backbone)
    model.reset_classifier(n_classes)
    model = model.to(device).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x = _batch(images, batch, device)
    y = torch.arange(batch, device=device) % n_classes

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(to_model_input(x, cfg["mean"], cfg["std"], channels_last=True))
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _rate(step, time.perf_counter() - build_start, batch, warmup, iterations, device, meter)


def study_fe(backbone: str, datas: list, device: torch.device) -> dict:
    """extract_features as the grid calls it (features cache pointed at an empty folder, so it computes)."""
    from study.features import extract_features

    per_dataset, images, seconds, wall, warmup, joules = [], 0, 0.0, 0.0, 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="eot-bench-") as folder, _env("EOT_CACHE_DIR", folder):
        for data in datas:
            start = time.perf_counter()
            extraction = extract_features(data, backbone, device).extraction
            elapsed = time.perf_counter() - start
            per_dataset.append({"dataset": data.info.name, "images": extraction["n_images"],
                                "seconds": extraction["seconds"], "wall_s": elapsed,
                                "warmup_s": extraction["warmup_s"], "images_per_s": extraction["images_per_s"]})
            images += extraction["n_images"]
            seconds += extraction["seconds"]
            joules += extraction["energy_j"]
            wall += elapsed
            warmup += extraction["warmup_s"]
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds,
            "end_to_end_images_per_s": images / wall, "joules_per_image": joules / images,
            "warmup_s": warmup, "overhead_s": wall - seconds, "datasets": per_dataset}


def study_ft(backbone: str, dataset: str, resolution: int, ks: list[int], config, device: torch.device,
             cap: int | None = None) -> dict:
    """ft_full runs through study.methods.finetune, one short untimed warm-up run first (another seed)."""
    from study.methods.finetune import finetune
    from study.runner import Context
    from study.spec import RunSpec

    class BenchContext(Context):
        def images(self, spec):
            return self._images.get_or_make((spec.dataset, spec.resolution),
                                            lambda: _cap(load_images(spec.dataset, spec.resolution), cap))

    context = BenchContext(device)
    warm_spec = RunSpec(dataset, backbone, "ft_full", ks[0], 1, resolution, _short(config, device))
    context.images(warm_spec)
    context.device_test_images(warm_spec)
    start = time.perf_counter()
    finetune(warm_spec, context, freeze_first_half=False)
    measure.synchronize(device)
    warmup_s = time.perf_counter() - start
    runs, images, trained, wall, joules = [], 0, 0, 0.0, 0.0
    for k in ks:
        spec = RunSpec(dataset, backbone, "ft_full", k, 0, resolution, config)
        start = time.perf_counter()
        result = finetune(spec, context, freeze_first_half=False)
        measure.synchronize(device)
        elapsed = time.perf_counter() - start
        n_trained = sum(t["steps_run"] for t in result.trials) * config.batch_size
        runs.append({"k": k, "trials": len(result.trials), "steps_run": [t["steps_run"] for t in result.trials],
                     "images": result.images_processed, "trained_images": n_trained, "wall_s": elapsed,
                     "images_per_s": result.images_processed / elapsed})
        images += result.images_processed
        trained += n_trained
        wall += elapsed
        joules += sum(result.joules.values())
    return {"images": images, "seconds": wall, "images_per_s": images / wall,
            "trained_images_per_s": trained / wall, "joules_per_image": joules / images, "warmup_s": warmup_s,
            "dataset": dataset, "runs": runs}


def _short(config, device: torch.device):
    """A few steps of one trial: the same code path, not the grid's budget (warm-up, --quick)."""
    steps = 40 if device.type == "cuda" else 8
    return replace(config, learning_rates=config.learning_rates[:1], epochs=1, min_epochs=1, min_steps=steps,
                   evaluations=min(config.evaluations, 2))


def _finetune_config(grid: str, quick: bool, device: torch.device):
    from study.grid import recipe_of

    config = recipe_of(grid)
    if quick:
        config = replace(_short(config, device),
                         batch_size=config.batch_size if device.type == "cuda" else min(config.batch_size, 16))
    return config


def _cap(data, n: int | None):
    """About ``n`` train-pool and ``n / 4`` test images, the same number from each class (seeded)."""
    if not n:
        return data
    from study.datasets import sample_subset

    per_class = max(1, n // data.info.n_classes)
    train = sample_subset(data.train_labels, per_class, seed=0)
    test = sample_subset(data.test_labels, max(1, per_class // 4), seed=0)
    return replace(data, train_images=data.train_images[train], train_labels=data.train_labels[train],
                   test_images=data.test_images[test], test_labels=data.test_labels[test])


def run_bench(backbones=None, datasets=None, resolution: int | None = None, device: str = "auto",
              quick: bool = False, ref_batch: int | None = None, ref_iters: int | None = None,
              warmup_iters: int | None = None, ft_ks: list[int] | None = None, fe_images: int | None = None,
              say=print) -> dict:
    from study.runner import resolve_device

    started = time.perf_counter()
    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    backbones = backbones or DEFAULT_BACKBONES
    datasets = datasets or DEFAULT_DATASETS
    ref_batch = ref_batch or (256 if gpu else 32)
    if quick:
        ref_iters = ref_iters or (20 if gpu else 6)
        fe_images = fe_images if fe_images is not None else (None if gpu else QUICK_CPU_IMAGES)
    else:
        ref_iters = ref_iters or (50 if gpu else 30)
    warmup_iters = warmup_iters if warmup_iters is not None else (5 if gpu else 1)
    ft_ks = ft_ks or ([2, 5] if quick else [5, 10, 20] if gpu else [20])
    grid = "gpu" if gpu else "cpu"
    config = _finetune_config(grid, quick, dev)
    meter = measure.EnergyMeter(dev)
    report = {"created_at": measure.utc_now(), "device": device_description(dev),
              "settings": {"quick": quick, "backbones": backbones, "datasets": datasets, "resolution": resolution,
                           "reference_batch": ref_batch, "reference_iterations": ref_iters,
                           "warmup_iterations": warmup_iters, "ft_ks": ft_ks, "ft_recipe_from_grid": grid,
                           "ft_config": {**config.__dict__, "learning_rates": list(config.learning_rates)},
                           "images_cap": fe_images, "cudnn_benchmark": torch.backends.cudnn.benchmark,
                           "energy_source": meter.source},
              "targets": TARGETS[dev.type], "targets_judged": not quick, "git_commit": measure.git_commit(), "results": []}
    say(f"device: {report['device']['name']}")
    for backbone in backbones:
        res = resolution or (get_spec(backbone).native_resolution if gpu else 64 if quick else 128)
        decode_start = time.perf_counter()
        datas = [_cap(load_images(name, res), fe_images) for name in datasets]
        decode_s = time.perf_counter() - decode_start
        first = datas[0]

        def references():
            return (reference_fe(backbone, first.train_images, ref_batch, warmup_iters, ref_iters, dev, meter),
                    reference_ft(backbone, first.train_images, first.info.n_classes, ref_batch, warmup_iters,
                                 max(2, ref_iters // 2), dev, meter))

        say(f"{backbone} @ {res} px: reference loops ...")
        before = references()
        say(f"{backbone} @ {res} px: study paths ...")
        fe = study_fe(backbone, datas, dev)
        ft = study_ft(backbone, datasets[0], res, ft_ks, config, dev, fe_images)
        say(f"{backbone} @ {res} px: reference loops again ...")
        ref_fe, ref_ft = (_pooled(b, a) for b, a in zip(before, references()))
        entry = {"backbone": backbone, "resolution": res, "decode_s": decode_s}
        # The study's FT runs also evaluate (validation checks, test predictions): the reference rate they are
        # compared with is the reference loops' rate on the same mix of trained and evaluated images.
        trained = sum(run["trained_images"] for run in ft["runs"])
        reference_s = trained / ref_ft["images_per_s"] + (ft["images"] - trained) / ref_fe["images_per_s"]
        ref_ft["same_mix_images_per_s"] = ft["images"] / reference_s
        for kind, study, reference, rate in (("fe", fe, ref_fe, ref_fe["images_per_s"]),
                                             ("ft", ft, ref_ft, ref_ft["same_mix_images_per_s"])):
            ratio = study["images_per_s"] / rate
            target = TARGETS[dev.type].get(kind)
            entry[kind] = {"study": study, "reference": reference, "reference_images_per_s": rate, "ratio": ratio,
                           "target": target,
                           "meets_target": None if quick or target is None else bool(ratio >= target)}
        report["results"].append(entry)
        if gpu:
            torch.cuda.empty_cache()
    report["total_s"] = time.perf_counter() - started
    return report


def format_table(report: dict) -> str:
    lines = [f"device: {report['device']['name']}  (torch {report['device']['torch_version']}, "
             f"{report['device']['torch_threads']} CPU threads)",
             f"{'backbone':20} {'res':>4} {'path':4} {'study img/s':>12} {'ref img/s':>10} {'ratio':>6} "
             f"{'target':>7} {'study warm-up s':>16} {'ref warm-up s':>14}"]
    for entry in report["results"]:
        for kind in ("fe", "ft"):
            item = entry[kind]
            verdict = {True: "ok", False: "MISS", None: ""}[item["meets_target"]]
            target = "" if item["target"] is None else f"{item['target']:.0%}"
            lines.append(f"{entry['backbone']:20} {entry['resolution']:>4} {kind.upper():4} "
                         f"{item['study']['images_per_s']:12.1f} {item['reference_images_per_s']:10.1f} "
                         f"{item['ratio']:6.0%} {target:>4} {verdict:5} "
                         f"{item['study']['warmup_s']:11.2f} {item['reference']['warmup_s']:14.2f}")
        fe = entry["fe"]["study"]
        ft = entry["ft"]
        lines.append(f"{'':25} FE end to end (build + warm-up + pass) {fe['end_to_end_images_per_s']:.1f} img/s; "
                     f"FT trained images only {ft['study']['trained_images_per_s']:.1f} img/s vs reference "
                     f"training {ft['reference']['images_per_s']:.1f} img/s")
        lines.append(f"{'':25} reference before / after the study paths: FE "
                     f"{entry['fe']['reference']['images_per_s_before']:.1f} / "
                     f"{entry['fe']['reference']['images_per_s_after']:.1f} img/s, FT training "
                     f"{ft['reference']['images_per_s_before']:.1f} / {ft['reference']['images_per_s_after']:.1f} "
                     "img/s")
    lines.append(f"total {report['total_s']:.0f} s. FT ref img/s is the reference loops' rate on the study runs' "
                 "mix of trained and evaluated images.")
    targets = ", ".join(f"{kind.upper()} >= {value:.0%}" for kind, value in report["targets"].items())
    lines.append(f"Targets on this device (study/reference): {targets}"
                 + ("" if report["targets_judged"] else "; --quick sizes are not judged") + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU: about 2-3 minutes)")
    parser.add_argument("--backbones", help=f"comma-separated (default {','.join(DEFAULT_BACKBONES)})")
    parser.add_argument("--datasets", help=f"comma-separated, the first also for FT "
                                           f"(default {','.join(DEFAULT_DATASETS)})")
    parser.add_argument("--resolution", type=int, help="pixels (default: native on a GPU, 64 quick / 128 on a CPU)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--ref-batch", type=int, help="reference batch (default 256 GPU / 32 CPU)")
    parser.add_argument("--ref-iters", type=int, help="timed reference iterations (FT uses half)")
    parser.add_argument("--warmup-iters", type=int, help="untimed reference iterations first")
    parser.add_argument("--ft-ks", help="images per class of the timed ft_full runs (default: 5,10,20 on a GPU, "
                                        "20 on a CPU; quick 2,5)")
    parser.add_argument("--fe-images", type=int, help="use each dataset's first N train-pool images and N/4 test "
                                                       f"images (default: all; --quick on a CPU: {QUICK_CPU_IMAGES})")
    parser.add_argument("--out", help="JSON report path (default logs/bench-<time>.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = lambda text: [p.strip() for p in text.split(",") if p.strip()] if text else None  # noqa: E731
    try:
        report = run_bench(names(args.backbones), names(args.datasets), args.resolution, args.device, args.quick,
                           args.ref_batch, args.ref_iters, args.warmup_iters,
                           [int(k) for k in names(args.ft_ks)] if args.ft_ks else None, args.fe_images,
                           say=lambda m: print(m, file=sys.stderr))
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else LOG_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(format_table(report))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
