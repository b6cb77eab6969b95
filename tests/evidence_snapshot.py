"""A private, consistent copy of the shipped evidence for the app tests: the study may be writing
data/study.duckdb, so its tables are read once (read-only) and written to a temporary DuckDB file with the
study's own schema (keys included), so the copy behaves like the real database."""
from pathlib import Path

from recommender.evidence import load_tables
from webapp.persisted import TABLES
from study.store import DuckStore


def snapshot_db(folder: Path) -> Path:
    import duckdb

    path = Path(folder) / "study.duckdb"
    tables = load_tables(tables=TABLES)
    DuckStore(path)
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            if not frame.empty:
                columns = ", ".join(frame.columns)  # names from our own schema
                con.register("frame", frame)
                con.execute(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM frame")
                con.unregister("frame")
    return path
