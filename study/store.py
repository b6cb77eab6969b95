"""Where runs live: DuckDB (one writer, each run committed atomically) or, where duckdb is missing (the GPU
machine), one JSON result file per run that ``python -m study.run ingest`` loads idempotently."""
from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "study.duckdb"

# table -> (columns, primary key). Column names here are the only identifiers ever put into SQL text.
SCHEMA = {
    "runs": ("""
        run_id VARCHAR, grid VARCHAR, dataset VARCHAR, backbone VARCHAR, pretrained BOOLEAN, method VARCHAR,
        k_label VARCHAR, images_per_class_requested INTEGER, images_per_class INTEGER, k_capped BOOLEAN,
        seed INTEGER, resolution INTEGER, n_classes INTEGER, n_train INTEGER, n_val INTEGER, n_test INTEGER,
        accuracy DOUBLE, balanced_accuracy DOUBLE, macro_f1 DOUBLE, hyperparams VARCHAR, n_trials INTEGER,
        extract_s DOUBLE, fit_s DOUBLE, eval_s DOUBLE, total_s DOUBLE, warmup_s DOUBLE, extract_energy_j DOUBLE,
        fit_energy_j DOUBLE, eval_energy_j DOUBLE, energy_j DOUBLE, energy_source VARCHAR, images_processed BIGINT,
        peak_memory_mb DOUBLE, device_type VARCHAR, hardware_id VARCHAR, extraction_id VARCHAR, spec VARCHAR,
        python_version VARCHAR, torch_version VARCHAR, timm_version VARCHAR, sklearn_version VARCHAR,
        numpy_version VARCHAR, cuda_version VARCHAR, git_commit VARCHAR, started_at VARCHAR, finished_at VARCHAR,
        recipe VARCHAR, process_cpu_s DOUBLE, cpu_utilisation DOUBLE""",
        ('run_id',)),
    "trials": ("""
        run_id VARCHAR, trial_index INTEGER, learning_rate DOUBLE, steps_planned INTEGER, steps_run INTEGER,
        best_step INTEGER, val_accuracy DOUBLE, val_loss DOUBLE, test_accuracy DOUBLE,
        test_balanced_accuracy DOUBLE, test_macro_f1 DOUBLE, fit_s DOUBLE, eval_s DOUBLE, energy_j DOUBLE,
        images_processed BIGINT, selected BOOLEAN, epochs_planned DOUBLE""",
        ('run_id', 'trial_index')),
    # A fine-tuning trial's validation curve: one row per validation check (every trial's, selected or not).
    "trial_curves": ("""
        run_id VARCHAR, trial_index INTEGER, check_index INTEGER, step INTEGER, epoch DOUBLE,
        learning_rate DOUBLE, train_loss DOUBLE, val_accuracy DOUBLE, val_loss DOUBLE, test_accuracy DOUBLE""",
        ('run_id', 'trial_index', 'check_index')),
    "datasets": ("""
        name VARCHAR, domain VARCHAR, n_classes INTEGER, class_names VARCHAR, channels INTEGER,
        native_size VARCHAR, licence VARCHAR, source VARCHAR, split VARCHAR, split_seed INTEGER,
        n_train_pool INTEGER, n_test INTEGER, n_skipped_corrupt INTEGER, skipped_files VARCHAR""",
        ('name',)),
    "backbones": ("""
        name VARCHAR, timm_arch VARCHAR, pretrained BOOLEAN, params BIGINT, weights_sha256 VARCHAR,
        package VARCHAR, native_resolution INTEGER""",
        ('name',)),
    "hardware": ("""
        hardware_id VARCHAR, cpu_model VARCHAR, cpu_count INTEGER, torch_threads INTEGER, memory_gb DOUBLE,
        gpu_model VARCHAR, gpu_count INTEGER, gpu_memory_gb DOUBLE, device_type VARCHAR""",
        ('hardware_id',)),
    "extractions": ("""
        extraction_id VARCHAR, dataset VARCHAR, backbone VARCHAR, resolution INTEGER, n_images INTEGER,
        seconds DOUBLE, energy_j DOUBLE, energy_source VARCHAR, warmup_s DOUBLE, peak_memory_mb DOUBLE,
        images_per_s DOUBLE, hardware_id VARCHAR, created_at VARCHAR, cpu_utilisation DOUBLE""",
        ('extraction_id',)),
    # A study dataset's probe (python -m study.probe --study-datasets): mean test accuracy over the repeats of
    # one feature-extraction option trained on k images per class of the probe's subsample.
    "probe_curves": ("""
        dataset VARCHAR, backbone VARCHAR, method VARCHAR, resolution INTEGER, k INTEGER, accuracy DOUBLE,
        accuracy_sd DOUBLE, tested_per_class DOUBLE, repeats INTEGER, images_used INTEGER, seconds DOUBLE,
        git_commit VARCHAR, created_at VARCHAR, hardware_id VARCHAR, python_version VARCHAR, torch_version VARCHAR,
        timm_version VARCHAR, sklearn_version VARCHAR, numpy_version VARCHAR""",
        ('dataset', 'backbone', 'method', 'resolution', 'k')),
    "failures": ("""
        run_id VARCHAR, spec VARCHAR, error VARCHAR, failed_at VARCHAR""",
        ()),
}
# A run's record: the run row plus the rows it references; dimension rows are upserted, run rows never replaced.
RECORD_TABLES = {"run": "runs", "dataset": "datasets", "backbone": "backbones", "hardware": "hardware",
                 "extraction": "extractions"}
# Lists of rows a record may carry (a fine-tuning run's trials and their validation curves), stored with the run.
ROW_LIST_TABLES = {"trials": "trials", "curves": "trial_curves"}
# The runs' columns that make runs take the same time: the key of ``measured_seconds`` and ``study.grid.timing_key``.
TIMING_COLUMNS = ("dataset", "backbone", "method", "k_label", "device_type", "resolution", "recipe")
COLUMNS = {table: [part.split()[0] for part in columns.split(",")] for table, (columns, _) in SCHEMA.items()}


class StoreError(RuntimeError):
    """The store cannot be used (in use by another process, unwritable, malformed record)."""


def _check_record(record: dict) -> None:
    if not isinstance(record, dict) or not isinstance(record.get("run"), dict):
        raise StoreError("not a run record (no 'run' object)")
    missing = {"run_id", "dataset", "method", "accuracy"} - set(record["run"])
    if missing:
        raise StoreError(f"run record lacks {sorted(missing)}")
    for key, table in RECORD_TABLES.items():
        row = record.get(key)
        if row is not None and not set(row) <= set(COLUMNS[table]):
            raise StoreError(f"unknown {table} columns {sorted(set(row) - set(COLUMNS[table]))}")
    for key, table in ROW_LIST_TABLES.items():
        for row in record.get(key, []):
            if not isinstance(row, dict) or not set(row) <= set(COLUMNS[table]):
                raise StoreError(f"malformed {table} row in the record of run {record['run']['run_id']}")


class DuckStore:
    """DuckDB file; a connection is held only while reading or writing, so readers (the app) get turns."""

    def __init__(self, path: str | Path = DEFAULT_DB, lock_timeout_s: float = 60.0):
        import duckdb

        self._duckdb = duckdb
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create {self.path.parent}: {error.strerror}") from None
        with self._connect() as con:
            for table, (columns, key) in SCHEMA.items():
                primary = f", PRIMARY KEY ({', '.join(key)})" if key else ""
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}{primary})")
                self._add_missing_columns(con, table, columns)

    def _connect(self):
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                return self._duckdb.connect(str(self.path))
            except self._duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise StoreError(f"cannot open {self.path} for writing: {error}") from None
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.path} is in use by another process ({error}); only one study.run may "
                                     "write at a time: wait for it to finish, or use --db for a separate file") from None
                time.sleep(0.2)

    @staticmethod
    def _add_missing_columns(con, table: str, columns: str) -> None:
        """A file made by an older schema gains the columns added since (NULL in its earlier rows)."""
        present = {row[0] for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
        for definition in columns.split(","):
            name, sql_type = definition.split()
            if name not in present:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")

    def stored_run_ids(self) -> set[str]:
        with self._connect() as con:
            return {row[0] for row in con.execute("SELECT run_id FROM runs").fetchall()}

    def measured_seconds(self) -> dict[tuple, float]:
        """The median wall time of the stored runs of each kind (``TIMING_COLUMNS``), to plan the runs to come."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {', '.join(TIMING_COLUMNS)}, median(total_s) FROM runs "
                               "WHERE total_s IS NOT NULL GROUP BY ALL").fetchall()
        return {tuple(row[:-1]): float(row[-1]) for row in rows}

    @staticmethod
    def _insert(con, table: str, row: dict, mode: str) -> None:
        columns = [c for c in COLUMNS[table] if c in row]  # names from our schema only, values parameterised
        placeholders = ", ".join("?" for _ in columns)
        con.execute(f"INSERT {mode} INTO {table} ({', '.join(columns)}) VALUES ({placeholders})",
                    [row[c] for c in columns])

    def write(self, record: dict) -> bool:
        """Store one run and its trials in one transaction; False if the run_id was already stored."""
        _check_record(record)
        with self._connect() as con:
            try:
                con.execute("BEGIN TRANSACTION")
                exists = con.execute("SELECT 1 FROM runs WHERE run_id = ?", [record["run"]["run_id"]]).fetchone()
                if exists:
                    con.execute("ROLLBACK")
                    return False
                for key, table in RECORD_TABLES.items():
                    if record.get(key) is not None:
                        self._insert(con, table, record[key], "OR IGNORE" if key == "run" else "OR REPLACE")
                for key, table in ROW_LIST_TABLES.items():
                    for row in record.get(key, []):
                        self._insert(con, table, row, "OR IGNORE")
                con.execute("COMMIT")
                return True
            except self._duckdb.Error as error:
                try:
                    con.execute("ROLLBACK")
                except self._duckdb.Error:
                    pass  # a failed COMMIT has already ended the transaction
                raise StoreError(f"could not store run {record['run']['run_id']}: {error}") from None

    def write_probe(self, dataset: str, rows: list[dict], hardware: dict | None = None) -> None:
        """Store a study dataset's probe curves (``probe_curves`` rows) in one transaction, replacing its earlier
        probe entirely; ``hardware``: the ``hardware`` row of the machine that probed (its ``hardware_id`` is in
        the rows)."""
        if not rows or any(row.get("dataset") != dataset or not set(row) <= set(COLUMNS["probe_curves"])
                           for row in rows):
            raise StoreError(f"malformed probe_curves rows for {dataset!r}")
        if hardware is not None and not set(hardware) <= set(COLUMNS["hardware"]):
            raise StoreError(f"unknown hardware columns {sorted(set(hardware) - set(COLUMNS['hardware']))}")
        with self._connect() as con:
            try:
                con.execute("BEGIN TRANSACTION")
                if hardware is not None:
                    self._insert(con, "hardware", hardware, "OR REPLACE")
                con.execute("DELETE FROM probe_curves WHERE dataset = ?", [dataset])
                for row in rows:
                    self._insert(con, "probe_curves", row, "")
                con.execute("COMMIT")
            except self._duckdb.Error as error:
                try:
                    con.execute("ROLLBACK")
                except self._duckdb.Error:
                    pass  # a failed COMMIT has already ended the transaction
                raise StoreError(f"could not store the probe of {dataset}: {error}") from None

    def record_failure(self, run_id: str, spec: dict, error: str, failed_at: str) -> None:
        with self._connect() as con:
            con.execute("INSERT INTO failures VALUES (?, ?, ?, ?)", [run_id, json.dumps(spec), error, failed_at])


class FileStore:
    """One JSON file per run (written atomically), for machines without duckdb."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create {self.folder}: {error.strerror}") from None

    def stored_run_ids(self) -> set[str]:
        return {p.stem for p in self.folder.glob("*.json")}

    def measured_seconds(self) -> dict[tuple, float]:
        """As ``DuckStore.measured_seconds``, from the result files (an unreadable one is skipped: ingest names it)."""
        times: dict[tuple, list] = {}
        for path in self.folder.glob("*.json"):
            try:
                run = json.loads(path.read_text())["run"]
                seconds = float(run["total_s"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            times.setdefault(tuple(run.get(column) for column in TIMING_COLUMNS), []).append(seconds)
        return {key: statistics.median(seconds) for key, seconds in times.items()}

    def _write_json(self, name: str, payload: dict) -> None:
        partial = self.folder / f".{name}.partial"
        try:
            partial.write_text(json.dumps(payload))
            os.replace(partial, self.folder / name)
        except OSError as error:
            raise StoreError(f"cannot write results to {self.folder}: {error.strerror}") from None

    def write(self, record: dict) -> bool:
        _check_record(record)
        run_id = record["run"]["run_id"]
        if (self.folder / f"{run_id}.json").exists():
            return False
        self._write_json(f"{run_id}.json", record)
        return True

    def record_failure(self, run_id: str, spec: dict, error: str, failed_at: str) -> None:
        self._write_json(f"{run_id}.failed", {"run_id": run_id, "spec": spec, "error": error, "failed_at": failed_at})


def open_store(db: str | Path | None, results_dir: str | Path | None = None):
    """DuckDB when duckdb is importable and no results folder was asked for, else JSON result files."""
    if results_dir is None:
        try:
            import duckdb  # noqa: F401
        except ImportError:
            results_dir = Path(db or DEFAULT_DB).parent / "results"
            log.warning("duckdb is not installed: writing result files to %s (ingest them later)", results_dir)
    return FileStore(results_dir) if results_dir is not None else DuckStore(db or DEFAULT_DB)


def ingest(paths: list[str | Path], db: str | Path = DEFAULT_DB) -> dict:
    """Load result files (or folders of them) into DuckDB; already stored runs are skipped, bad files named."""
    store = DuckStore(db)
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    report = {"ingested": 0, "already_stored": 0, "rejected": {}}
    for file in files:
        try:
            record = json.loads(file.read_text())
            stored = store.write(record)
        except (OSError, ValueError, StoreError) as error:
            report["rejected"][str(file)] = str(error)[:300]
            log.error("rejected %s: %s", file, error)
            continue
        report["ingested" if stored else "already_stored"] += 1
    return report


# Reading, safe while a study run writes. A writer's read errors (it holds the lock, or is extending or
# checkpointing the file under the reader) are retried, then read from a snapshot copy; a damaged file fails the
# same way every time and is reported as such.
DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB file
TRANSIENT_READ_ERRORS = ("lock", "could not read")
REGENERATE_COMMAND = "python -m study.run --grid cpu-smoke"


class EvidenceError(RuntimeError):
    """The evidence cannot be read; the message says how to fix it."""


def _read_tables(path: Path, tables: tuple[str, ...]) -> dict:
    import duckdb
    import pandas as pd

    with duckdb.connect(str(path), read_only=True) as con:
        present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {t: con.execute(f"SELECT * FROM {t}").df() if t in present else pd.DataFrame() for t in tables}


def read_tables(db: str | Path, tables: tuple[str, ...], retries: int = 20) -> dict:
    """The named tables of the evidence database as DataFrames (empty where the file predates a table).

    DuckDB lets one process write a file at a time; while ``study.run`` holds it, reading is retried and then
    falls back to a snapshot copy of the file, so the app and the study's reports keep working during a run.
    """
    import duckdb

    unknown = set(tables) - set(SCHEMA)
    if unknown:  # names from SCHEMA only reach the SQL
        raise ValueError(f"not evidence tables: {sorted(unknown)}")
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
    if "runs" in result and result["runs"].empty:
        raise EvidenceError(f"{path} holds no runs yet. Generate them with: {REGENERATE_COMMAND}")
    return result
