"""Which runs a pack is for: a grid's runs, narrowed by the filters, less those the local DuckDB already holds
(so each device call resumes where the last one stopped)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from study.backbones import get_spec
from study.datasets import is_path
from study.device.common import DeviceError
from study.grid import grid_specs

log = logging.getLogger(__name__)


def stored_run_ids(db: str | Path, timeout_s: float = 60.0) -> set[str]:
    """run_ids in a DuckDB file, opened read-only for a moment (retried while a writer holds it)."""
    path = Path(db)
    if not path.exists():
        return set()
    try:
        import duckdb
    except ImportError:
        log.warning("duckdb is not installed: no local runs are excluded")
        return set()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                return {row[0] for row in con.execute("SELECT run_id FROM runs").fetchall()}
        except duckdb.CatalogException:
            return set()
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise DeviceError(f"cannot read {path}: {error}") from None
            time.sleep(0.2)


@dataclass
class Selection:
    grid: str
    grid_file: Path
    datasets: list[str] | None
    backbones: list[str] | None
    methods: list[str] | None
    resolution: int | None
    specs: list = field(default_factory=list)
    stored: set = field(default_factory=set)

    @property
    def pending(self) -> list:
        return [spec for spec in self.specs if spec.run_id not in self.stored]

    def needs(self, backbones: set[str] | None = None) -> dict[str, set[int]]:
        """dataset -> resolutions its pending runs use (only the runs of ``backbones``, if given)."""
        out: dict[str, set[int]] = {}
        for spec in self.pending:
            if backbones is None or spec.backbone in backbones:
                out.setdefault(spec.dataset, set()).add(spec.resolution)
        return out

    def pretrained_backbones(self, backbones: set[str] | None = None) -> list[str]:
        names = {spec.backbone for spec in self.pending if backbones is None or spec.backbone in backbones}
        return sorted(name for name in names if get_spec(name).pretrained)

    def all_backbones(self) -> list[str]:
        return sorted({spec.backbone for spec in self.pending})


def select(grid: str, grid_file: str | Path, datasets, backbones, methods, resolution, db) -> Selection:
    selection = Selection(grid, Path(grid_file), datasets, backbones, methods, resolution)
    selection.specs = grid_specs(grid, grid_file, datasets, backbones, methods, resolution)
    if not selection.specs:
        raise DeviceError("the grid and filters select no runs")
    for spec in selection.specs:
        if is_path(spec.dataset):
            raise DeviceError(f"dataset {spec.dataset!r} is a folder path; only registered datasets can be packed")
    ids = stored_run_ids(db)
    selection.stored = {spec.run_id for spec in selection.specs if spec.run_id in ids}
    return selection
