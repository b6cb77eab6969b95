"""Fitted models persisted on disk, so a fresh server answers a shared link without refitting:
``python -m webapp.persisted [--db PATH]`` fits and persists them ahead, with the advisor charts' layouts
(``scripts/bootstrap.sh`` does, for the shipped evidence, so even a fresh checkout's first server reads them).

Fitting the advisor takes seconds (2-2.5 s on an idle AVX2 EPYC); reading it back takes milliseconds. A model is
stored under a key made of the evidence's fingerprint and a hash of the code that fits it (``recommender`` and
``study`` sources, Python, numpy and pandas versions), so new runs, a re-probe or a code change each fit afresh; the
newest few per model are kept. Files are pickles this app wrote itself into its own cache directory
(``EOT_CACHE_DIR``, default ``.cache/``; like Streamlit's own ``persist="disk"`` cache): keep that directory
writable by the app's user only. An unreadable or corrupt file is refitted and replaced, and a read-only directory
only costs the refit.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import pickle
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import pandas as pd

from study.datasets.base import PROJECT_ROOT, cache_root

# The evidence tables the app reads: its models are fitted from them, and their content is the fingerprint.
TABLES = ("runs", "trials", "datasets", "backbones", "hardware", "extractions", "probe_curves", "failures")
KEEP_PER_MODEL = 4
SOURCE_PACKAGES = ("recommender", "study")
log = logging.getLogger(__name__)
Model = TypeVar("Model")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """What fitted models depend on besides the evidence: the packages' sources (code and data files) and the
    versions pickles depend on."""
    digest = hashlib.sha256(f"{sys.version}|{np.__version__}|{pd.__version__}".encode())
    for package in SOURCE_PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def evidence_fingerprint(tables: dict[str, pd.DataFrame]) -> str:
    """A hash of every table's content (tens of milliseconds): the same evidence read from another path or server
    gives the same fingerprint, and any added, removed or changed row a new one."""
    digest = hashlib.sha256()
    for name in sorted(tables):
        frame = tables[name]
        digest.update(f"{name}|{len(frame)}|{list(frame.columns)}|".encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def model_path(name: str, fingerprint: str, root: Path | None = None) -> Path:
    key = hashlib.sha256(f"{fingerprint}|{code_hash()}".encode()).hexdigest()[:24]
    return (root or cache_root()) / "models" / f"{name}-{key}.pkl"


def load_or_fit(name: str, fingerprint: str, fit: Callable[[], Model], root: Path | None = None) -> Model:
    """The model persisted for this evidence and code, else ``fit()``, persisted for the next server."""
    path = model_path(name, fingerprint, root)
    try:
        with path.open("rb") as stream:
            return pickle.load(stream)
    except (FileNotFoundError, NotADirectoryError):
        pass  # not persisted yet (or no cache folder): fit
    except Exception as error:  # a truncated or foreign file: refit and replace it
        log.warning("ignoring the persisted %s at %s (%s); refitting", name, path, error)
    model = fit()
    try:
        _write(path, model)
        _prune(path.parent, name)
    except OSError as error:
        log.warning("could not persist the %s to %s (%s); the next server refits it", name, path, error)
    return model


def _advisor(tables: dict):
    from recommender.advise import Advisor

    return Advisor().fit(tables)


def _guidelines(tables: dict):
    from recommender.guidelines import derive

    return derive(tables)


MODELS = {"advisor": _advisor, "guidelines": _guidelines}  # what the app derives from the evidence, by name


def fitted(name: str, fingerprint: str, tables: dict):
    """The ``MODELS`` entry for this evidence: persisted, else fitted from ``tables`` and persisted."""
    return load_or_fit(name, fingerprint, lambda: MODELS[name](tables))


def _write(path: Path, model) -> None:
    """Atomically: a server reading meanwhile sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            pickle.dump(model, stream, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _prune(folder: Path, name: str) -> None:
    """Keep the ``KEEP_PER_MODEL`` newest files of a model (the evidence grows; old fingerprints never return)."""
    files = sorted(folder.glob(f"{name}-*.pkl"), key=lambda path: path.stat().st_mtime, reverse=True)
    for stale in files[KEEP_PER_MODEL:]:
        stale.unlink(missing_ok=True)


def main(argv=None) -> int:
    from recommender.evidence import DEFAULT_DB, load_tables

    parser = argparse.ArgumentParser(description="Fit and persist the app's models for an evidence database, as "
                                                 "its first server would.")
    parser.add_argument("--db", default=os.environ.get("EOT_DB") or str(DEFAULT_DB))
    args = parser.parse_args(argv)
    tables = load_tables(args.db, tables=TABLES)
    fingerprint = evidence_fingerprint(tables)
    for name in MODELS:
        fitted(name, fingerprint, tables)
        print(f"{name}: {model_path(name, fingerprint)}")
    from webapp.charts import layouts

    print(f"chart layouts: {len(layouts())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
