"""A private, consistent copy of the shipped evidence for the app tests: the study may be writing
data/study.duckdb, so its tables are read once (read-only) and written to a temporary DuckDB file."""
from pathlib import Path

from recommender.evidence import load_tables
from recommender.ui import TABLES


def snapshot_db(folder: Path) -> Path:
    import duckdb

    path = Path(folder) / "study.duckdb"
    tables = load_tables(tables=TABLES)
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            if not frame.empty:
                con.register("frame", frame)
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
                con.unregister("frame")
    return path
