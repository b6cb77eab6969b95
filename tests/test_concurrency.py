"""The app keeps answering while `study.run ingest` writes the same DuckDB file."""
import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import streamlit as st
from streamlit.testing.v1 import AppTest

from evidence_snapshot import snapshot_db

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "webapp" / "main.py")
PAGE_LOADS = 50
PASSES = 60  # distinct batches of runs; the writer cycles through them (later cycles re-check) until told to stop


def _plain(row: dict) -> dict:
    return {key: (None if value is None or (not isinstance(value, str) and pd.isna(value))
                  else value.item() if hasattr(value, "item") else value) for key, value in row.items()}


def _result_files(db: Path, folder: Path, runs: int = 20) -> None:
    """Records of real stored runs, renamed per pass so every ingest pass really writes."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT * FROM runs WHERE method LIKE 'fe_%' LIMIT ?", [runs]).df()
        datasets = con.execute("SELECT * FROM datasets").df().set_index("name", drop=False)
        backbones = con.execute("SELECT * FROM backbones").df().set_index("name", drop=False)
        hardware = con.execute("SELECT * FROM hardware").df().set_index("hardware_id", drop=False)
    for number in range(PASSES):
        target = folder / f"pass{number}"
        target.mkdir(parents=True)
        for row in rows.to_dict("records"):
            run = _plain(row)
            run["run_id"] = f"{run['run_id']}-concurrency-{number}"
            record = {"run": run, "trials": [], "dataset": _plain(datasets.loc[run["dataset"]].to_dict()),
                      "backbone": _plain(backbones.loc[run["backbone"]].to_dict()),
                      "hardware": _plain(hardware.loc[run["hardware_id"]].to_dict())}
            (target / f"{run['run_id']}.json").write_text(json.dumps(record))


def test_pages_keep_loading_while_ingest_writes_the_database(tmp_path, monkeypatch):
    db = snapshot_db(tmp_path)
    with duckdb.connect(str(db), read_only=True) as con:
        before = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    _result_files(db, tmp_path / "results")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import itertools, os; from study.store import ingest\n"
         "for n in itertools.count():\n"
         f"    if os.path.exists(r'{tmp_path / 'stop'}'): break\n"
         f"    report = ingest([r'{tmp_path / 'results'}/pass' + str(n % {PASSES})], r'{db}')\n"
         "    print(report['ingested'], flush=True)"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    monkeypatch.setenv("EOT_DB", str(db))
    failures, loads_during_writes = [], 0
    started = time.monotonic()
    for _ in range(PAGE_LOADS):
        st.cache_resource.clear()  # every load reads the database afresh (no cached copy to fall back on)
        st.cache_data.clear()
        writing = writer.poll() is None
        at = AppTest.from_file(APP, default_timeout=60).run()
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        if problems or not at.get("form"):
            failures.append(problems)
        loads_during_writes += writing
    loads_s = time.monotonic() - started
    (tmp_path / "stop").touch()
    output, errors = writer.communicate(timeout=300)
    assert writer.returncode == 0, errors[-2000:]
    ingested = sum(int(line) for line in output.split())
    with duckdb.connect(str(db), read_only=True) as con:
        after = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    print(f"page loads: {PAGE_LOADS}, during writes: {loads_during_writes}, failed: {len(failures)}; "
          f"runs {before} -> {after}; {loads_s:.0f} s of page loads")
    assert failures == []
    assert loads_during_writes == PAGE_LOADS, "the writer finished before the page loads did"
    assert after == before + ingested and ingested >= 20
