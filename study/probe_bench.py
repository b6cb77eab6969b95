"""``python -m study.probe_bench``: wall time of the probe on 200 real images on this machine (target <= 60 s).

The images are copied from a shared dataset into a temporary folder (the user's layout) and probed through the
same entry point the app uses; the model builds (both backbones), decoding, feature extraction and every fit of
the four options (2 backbones x 2 heads, 4 k x 5 repeats) are all inside the timing, also broken down by step.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from study.datasets import shared_datasets_root
from study.probe import probe

TARGET_S = 60.0


def bench(dataset: str = "rsscn7_aerial", images: int = 200) -> dict:
    source = shared_datasets_root() / dataset / "train"
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    per_class = -(-images // len(classes))
    with tempfile.TemporaryDirectory(prefix="eot-probe-bench-") as folder:
        copied = 0
        for cls in classes:
            (Path(folder) / cls).mkdir()
            for file in sorted((source / cls).glob("*.jpg"))[:min(per_class, images - copied)]:
                shutil.copy(file, Path(folder) / cls)
                copied += 1
        started = time.perf_counter()
        result = probe(folder)
        seconds = time.perf_counter() - started
    return {"dataset": dataset, "images_in_upload": copied, "images_probed": result.images_used,
            "classes": result.n_classes, "seconds": round(seconds, 1), "target_s": TARGET_S,
            "meets_target": seconds <= TARGET_S,
            "seconds_by_step": {step: round(s, 1) for step, s in result.seconds_by_step.items()},
            "options": len(result.curves), "ks": result.ks,
            "accuracy": {f"{method}.{backbone}": {str(k): round(a, 3) for k, a in by_k.items()}
                         for (method, backbone), by_k in result.curves.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="rsscn7_aerial")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args(argv)
    print(json.dumps(bench(args.dataset, args.images), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
