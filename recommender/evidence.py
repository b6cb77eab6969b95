"""Read-only access to the study's DuckDB evidence, safe while a study run is writing to it."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "study.duckdb"
DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB file
# Read errors that a writer causes (it holds the lock, or is extending or checkpointing the file under the reader):
# retried, then read from a snapshot copy. A damaged file fails the same way every time and is reported as such.
TRANSIENT_READ_ERRORS = ("lock", "could not read")
REGENERATE_COMMAND = "python -m study.run --grid cpu-smoke"


class EvidenceError(RuntimeError):
    """The evidence cannot be read; the message says how to fix it."""


def _read_tables(path: Path, tables: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {t: con.execute(f"SELECT * FROM {t}").df() if t in present else pd.DataFrame() for t in tables}


def evidence_only(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables restricted to the grids the recommender learns from (``evidence = true`` in the grid file):
    the smoke and convergence grids are checks, not evidence, and their recipes must not mix in."""
    from study.grid_file import evidence_grids

    runs = tables["runs"][tables["runs"]["grid"].isin(evidence_grids())]
    kept = dict(tables, runs=runs)
    for name in ("trials", "trial_curves"):
        if name in tables and not tables[name].empty:
            kept[name] = tables[name][tables[name]["run_id"].isin(runs["run_id"])]
    if "extractions" in tables and not tables["extractions"].empty:
        kept["extractions"] = tables["extractions"][tables["extractions"]["extraction_id"].isin(runs["extraction_id"])]
    return kept


def measured_backbone_params(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Parameters of each pretrained backbone the runs measured: what the evidence can speak for."""
    backbones = tables.get("backbones")
    if backbones is None or backbones.empty:
        return {}
    measured = backbones[backbones["pretrained"].astype(bool) & backbones["name"].isin(tables["runs"]["backbone"])]
    return dict(zip(measured["name"], measured["params"].astype(int)))


TABLES = ("runs", "trials", "datasets", "backbones", "hardware", "extractions", "probe_curves")


def load_tables(db: str | Path = DEFAULT_DB, tables: tuple[str, ...] = TABLES,
                retries: int = 20) -> dict[str, pd.DataFrame]:
    """All evidence tables as DataFrames.

    DuckDB lets one process write a file at a time; while ``study.run`` holds it, reading is retried and then
    falls back to a snapshot copy of the file, so readers keep working during a run.
    """
    import duckdb

    path = Path(db)
    if not path.is_file():
        raise EvidenceError(f"No evidence database at {path}. Generate it with: {REGENERATE_COMMAND}")
    with open(path, "rb") as handle:
        if handle.read(12)[8:] != DUCKDB_MAGIC:  # else it would be retried as if a writer held it
            raise EvidenceError(f"{path} is not a DuckDB database. Regenerate it with: {REGENERATE_COMMAND}")
    last_error, result = None, None
    for attempt in range(retries):
        try:
            result = _read_tables(path, tables)
            break
        except duckdb.IOException as error:
            if not any(word in str(error).lower() for word in TRANSIENT_READ_ERRORS):
                raise EvidenceError(f"{path} cannot be read ({error}). Regenerate it with: {REGENERATE_COMMAND}") \
                    from None
            last_error = error  # a writer holds it (one short transaction per run): retry, then read a snapshot
            time.sleep(min(0.5, 0.05 * (attempt + 1)))
        except duckdb.Error as error:  # a damaged file
            raise EvidenceError(f"{path} cannot be read as a DuckDB database ({error}). "
                                f"Regenerate it with: {REGENERATE_COMMAND}") from None
    for _ in range(3 if result is None else 0):
        with tempfile.TemporaryDirectory() as folder:
            snapshot = Path(folder) / path.name
            shutil.copyfile(path, snapshot)
            try:
                result = _read_tables(snapshot, tables)
                break
            except duckdb.Error:
                time.sleep(0.2)  # copied mid-write: try a fresh copy
    if result is None and "lock" in str(last_error).lower():
        raise EvidenceError(f"{path} is in use and no readable snapshot could be taken ({last_error}); "
                            "try again in a moment")
    if result is None:
        raise EvidenceError(f"{path} cannot be read ({last_error}), neither directly nor as a copy. Regenerate it "
                            f"with: {REGENERATE_COMMAND}")
    if result["runs"].empty:
        raise EvidenceError(f"{path} holds no runs yet. Generate them with: {REGENERATE_COMMAND}")
    return result
