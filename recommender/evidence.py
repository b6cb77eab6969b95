"""Read-only access to the study's DuckDB evidence, safe while a study run is writing to it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.store import DEFAULT_DB, REGENERATE_COMMAND, EvidenceError, read_tables  # noqa: F401 (re-exported)


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


def reference_hardware(tables: dict[str, pd.DataFrame], device_type: str) -> set[str]:
    """The machine of a device kind (``cpu``, ``cuda``) that its costs are read from: the one with the most runs,
    as a set of at most one hardware_id (empty where the kind has none). Rates pooled over two CPUs, one twice as
    fast at fine-tuning, would describe neither."""
    hardware, runs = tables["hardware"], tables["runs"]
    of_kind = runs[runs["hardware_id"].isin(hardware.loc[hardware["device_type"] == device_type, "hardware_id"])]
    return set(of_kind["hardware_id"].value_counts().index[:1])


TABLES = ("runs", "trials", "datasets", "backbones", "hardware", "extractions", "probe_curves")


def load_tables(db: str | Path = DEFAULT_DB, tables: tuple[str, ...] = TABLES,
                retries: int = 20) -> dict[str, pd.DataFrame]:
    """The recommender's evidence tables, read safely while a study run writes (``study.store.read_tables``)."""
    return read_tables(db, tables, retries)
