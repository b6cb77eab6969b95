"""The grid runner end to end: storage, provenance, resume after a kill, bad input at the command line."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from study.run import main
from study.store import DuckStore, FileStore, ingest
from tests.conftest import TEST_RESOLUTION

ROOT = Path(__file__).resolve().parent.parent

TINY_GRID = textwrap.dedent(f"""
    [tiny]
    resolution = {TEST_RESOLUTION}
    [[tiny.blocks]]
    datasets = ["flowers5", "neu_steel_defects"]
    backbones = ["mobilenetv2_100"]
    images_per_class = [1, 2, 5, 10]
    methods = ["fe_linear", "fe_fne"]
    seeds = [0, 1, 2]
    [capped]
    resolution = {TEST_RESOLUTION}
    [[capped.blocks]]
    datasets = ["dtd_textures10"]
    backbones = ["mobilenetv2_100"]
    images_per_class = [100]
    methods = ["fe_linear"]
    seeds = [0]
""")
TINY_RUNS = 2 * 4 * 2 * 3


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "grids.toml"
    path.write_text(TINY_GRID)
    return path


def _run_ids(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT run_id FROM runs").fetchall()]


def test_killed_grid_resumes_without_losing_or_duplicating_runs(tmp_path, grid_file):
    db = tmp_path / "study.duckdb"
    log = tmp_path / "study.log"
    command = [sys.executable, "-m", "study.run", "--grid", "tiny", "--grid-file", str(grid_file), "--db", str(db),
               "--log-file", str(log), "--no-progress", "--threads", "2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.read_text().count("stored run") >= 6:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the grid finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stored_before = len(_run_ids(db))
    assert 6 <= stored_before < TINY_RUNS
    assert subprocess.run(command, cwd=ROOT, capture_output=True).returncode == 0
    run_ids = _run_ids(db)
    assert len(run_ids) == len(set(run_ids)) == TINY_RUNS
    assert subprocess.run(command, cwd=ROOT, capture_output=True).returncode == 0  # nothing left: no-op
    assert len(_run_ids(db)) == TINY_RUNS
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM failures").fetchone()[0] == 0
        empty = con.execute("""SELECT count(*) FROM runs WHERE accuracy IS NULL OR git_commit IS NULL
                               OR hardware_id IS NULL OR torch_version IS NULL OR started_at IS NULL""").fetchone()
        assert empty[0] == 0
        sources = con.execute("SELECT DISTINCT energy_source FROM runs").fetchall()
        assert sources == [("estimated",)]
        assert con.execute("SELECT count(*) FROM hardware").fetchone()[0] == 1


def test_k_larger_than_the_pool_is_capped_and_recorded(tmp_path, grid_file):
    db = tmp_path / "study.duckdb"
    assert main(["--grid", "capped", "--grid-file", str(grid_file), "--db", str(db), "--no-progress",
                 "--log-file", str(tmp_path / "log")]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT images_per_class_requested, images_per_class, k_capped FROM runs").fetchone()
    assert row == (100, 80, True)  # dtd_textures10 has 80 training images per class


@pytest.mark.parametrize("args, message", [
    (["--grid", "tiny", "--datasets", "x"], "select no runs"),
    (["--grid", "nope"], "unknown grid 'nope'"),
    (["--grid", "tiny", "--db", "/proc/forbidden/db.duckdb"], "cannot create"),
])
def test_bad_command_lines_get_a_clear_message(args, message, grid_file, capsys):
    assert main(["--grid-file", str(grid_file), *args]) == 2
    assert message in capsys.readouterr().err


def test_unknown_names_in_a_grid_file_are_refused_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_GRID.replace('backbones = ["mobilenetv2_100"]', 'backbones = ["vgg16"]', 1))
    assert main(["--grid", "tiny", "--grid-file", str(bad), "--db", str(tmp_path / "db")]) == 2
    assert "unknown backbone 'vgg16'" in capsys.readouterr().err
    bad.write_text(TINY_GRID.replace('"flowers5"', '"cifar10"'))
    assert main(["--grid", "tiny", "--grid-file", str(bad), "--db", str(tmp_path / "db")]) == 2
    assert "unknown dataset 'cifar10'" in capsys.readouterr().err


def test_a_grid_lists_its_datasets_once_and_a_block_may_name_its_own(tmp_path, capsys):
    from study.grid import grid_specs

    shared = tmp_path / "shared.toml"
    shared.write_text(textwrap.dedent(f"""
        [g]
        resolution = {TEST_RESOLUTION}
        datasets = ["flowers5", "neu_steel_defects"]
        [[g.blocks]]
        backbones = ["mobilenetv2_100"]
        images_per_class = [5]
        methods = ["fe_linear"]
        seeds = [0]
        [[g.blocks]]
        datasets = ["dtd_textures10"]
        backbones = ["mobilenetv2_100"]
        images_per_class = [10]
        methods = ["fe_linear"]
        seeds = [0]
        resolution = 96
    """))
    assert sorted((spec.dataset, spec.images_per_class, spec.resolution) for spec in grid_specs("g", shared)) == [
        ("dtd_textures10", 10, 96), ("flowers5", 5, TEST_RESOLUTION), ("neu_steel_defects", 5, TEST_RESOLUTION)]
    assert {spec.resolution for spec in grid_specs("g", shared, resolution=128)} == {128}  # the command line's wins
    # --datasets runs the grid's design on datasets it does not list; a block's own datasets are only narrowed
    assert sorted((spec.dataset, spec.images_per_class)
                  for spec in grid_specs("g", shared, datasets=["dtd_textures10", "elpv"])) == [
        ("dtd_textures10", 5), ("dtd_textures10", 10), ("elpv", 5)]
    shared.write_text(shared.read_text().replace('datasets = ["flowers5", "neu_steel_defects"]', ""))
    assert main(["--grid", "g", "--grid-file", str(shared), "--db", str(tmp_path / "db")]) == 2
    assert "block 1 of grid 'g' names no datasets" in capsys.readouterr().err


def test_a_k_at_or_above_every_class_pool_is_not_run_again_beside_its_max(tmp_path):
    """DTD has 80 training images a class: k = 100 draws the same images as max, so the grid runs it only where
    it has no max twin."""
    from study.datasets import largest_class_pool
    from study.grid import grid_specs

    assert largest_class_pool("dtd_textures10") == 80
    grid = tmp_path / "capped.toml"
    grid.write_text(textwrap.dedent(f"""
        [g]
        resolution = {TEST_RESOLUTION}
        datasets = ["dtd_textures10"]
        [[g.blocks]]
        backbones = ["mobilenetv2_100"]
        images_per_class = [5, 79, 80, 100, "max"]
        methods = ["fe_linear"]
        seeds = [0]
        [[g.blocks]]
        backbones = ["mobilenetv2_100"]
        images_per_class = [100]
        methods = ["fe_fne"]
        seeds = [0]
    """))
    assert sorted((spec.method, spec.k_label) for spec in grid_specs("g", grid)) == [
        ("fe_fne", "100"), ("fe_linear", "5"), ("fe_linear", "79"), ("fe_linear", "max")]


def test_plan_lists_only_runs_not_yet_stored(tmp_path, grid_file, capsys):
    db = tmp_path / "study.duckdb"
    assert main(["--grid", "tiny", "--grid-file", str(grid_file), "--db", str(db), "--plan"]) == 0
    assert f"{TINY_RUNS} runs to do" in capsys.readouterr().out
    assert main(["--grid", "tiny", "--grid-file", str(grid_file), "--db", str(db), "--max-runs", "3",
                 "--no-progress", "--log-file", str(tmp_path / "log")]) == 0
    capsys.readouterr()
    assert main(["--grid", "tiny", "--grid-file", str(grid_file), "--db", str(db), "--plan"]) == 0
    out = capsys.readouterr().out
    assert f"{TINY_RUNS - 3} runs to do (3 of {TINY_RUNS} already stored)" in out
    # The two more seeds of each stored run are planned at its measured time, the rest from throughputs.
    assert f"(6 from the median of stored runs of the same kind, {TINY_RUNS - 3 - 6} from stated throughputs" in out
    with duckdb.connect(str(db), read_only=True) as con:
        stored = dict(con.execute("SELECT dataset || method || k_label, total_s FROM runs").fetchall())
    planned = {(dataset + method + k, seed): float(seconds) for _, dataset, _, method, k, seed, _, seconds
               in (line.split() for line in out.splitlines() if len(line.split()) == 8)
               if seed in ("1", "2") and dataset + method + k in stored}
    assert len(planned) == 6
    for (kind, _), seconds in planned.items():
        assert seconds == pytest.approx(stored[kind], abs=0.051)


def test_plan_estimates_fine_tuning_runs(tmp_path, capsys):
    """A fine-tuning run's timing key holds its recipe: the plan of a grid with fine-tuning must not fail there."""
    grid = tmp_path / "ft.toml"
    grid.write_text(textwrap.dedent(f"""
        [ft]
        resolution = {TEST_RESOLUTION}
        [[ft.blocks]]
        datasets = ["flowers5"]
        backbones = ["mobilenetv2_100"]
        images_per_class = [5, 20]
        methods = ["ft_full"]
        seeds = [0]
    """))
    assert main(["--grid", "ft", "--grid-file", str(grid), "--db", str(tmp_path / "db"), "--plan"]) == 0
    assert "2 runs to do (0 of 2 already stored)" in capsys.readouterr().out


def test_result_files_ingest_idempotently_and_malformed_files_are_rejected_by_name(tmp_path, grid_file):
    results = tmp_path / "results"
    assert main(["--grid", "tiny", "--grid-file", str(grid_file), "--results-dir", str(results), "--max-runs", "4",
                 "--no-progress", "--log-file", str(tmp_path / "log")]) == 0
    assert len(FileStore(results).stored_run_ids()) == 4
    (results / "broken.json").write_text('{"run": {"run_id": "x"')
    (results / "alien.json").write_text('{"run": {"run_id": "y", "dataset": "d", "method": "m", "accuracy": 1,'
                                        ' "drop_table": 1}}')
    db = tmp_path / "study.duckdb"
    report = ingest([results], db)
    assert report["ingested"] == 4 and set(map(lambda p: Path(p).name, report["rejected"])) == {"broken.json",
                                                                                               "alien.json"}
    again = ingest([results], db)
    assert again["ingested"] == 0 and again["already_stored"] == 4
    assert len(DuckStore(db).stored_run_ids()) == 4
    # Either store plans with the same measured times (the malformed files skipped).
    measured = FileStore(results).measured_seconds()
    assert len(measured) == 4 and measured == pytest.approx(DuckStore(db).measured_seconds())


@pytest.mark.parametrize("flags, model", [("fpu avx2 avx512f avx512_bf16", "AMD EPYC (AVX512-BF16)"),
                                          ("fpu sse4_2 avx2", "AMD EPYC (AVX2)"), ("fpu", "AMD EPYC")])
def test_the_hardware_record_tells_cpus_with_one_model_name_apart(tmp_path, flags, model):
    """A virtual machine names two CPU generations "AMD EPYC"; their fine-tuning ran 2.5x apart (bf16 inference
    or not), so the widest vector extension goes into the record, and with it into the hardware id."""
    from study.measure import _cpu_model
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\n"
                       f"processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n")
    assert _cpu_model(str(cpuinfo)) == model


def test_a_grid_runs_on_a_folder_it_does_not_list(tmp_path, shared_root, grid_file):
    """A practitioner's own folder, by path: the grid's design, stored under the folder's name, and resumed."""
    folder = tmp_path / "my_flowers"
    for split, count in (("train", 6), ("test", 3)):
        for cls in ("daisy", "tulip"):
            (folder / split / cls).mkdir(parents=True)
            for photo in sorted((shared_root / "flowers5" / split / cls).glob("*.jpg"))[:count]:
                shutil.copy(photo, folder / split / cls)
    grid = tmp_path / "grids.toml"
    grid.write_text(textwrap.dedent(f"""
        [design]
        resolution = {TEST_RESOLUTION}
        datasets = ["flowers5"]
        [[design.blocks]]
        backbones = ["mobilenetv2_100"]
        images_per_class = [2, 5]
        methods = ["fe_linear"]
        seeds = [0]
    """))
    db = tmp_path / "study.duckdb"
    command = ["--grid", "design", "--grid-file", str(grid), "--datasets", str(folder), "--db", str(db),
               "--no-progress", "--log-file", str(tmp_path / "log")]
    assert main(command) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT dataset, images_per_class FROM runs ORDER BY 2").fetchall() == [
            ("my_flowers", 2), ("my_flowers", 5)]
    stored = _run_ids(db)
    assert main(command) == 0 and _run_ids(db) == stored


def test_a_grid_records_the_commit_of_the_code_it_loaded_not_of_a_tree_edited_during_it(monkeypatch, tmp_path):
    """A grid runs for hours; the commit was read at its first stored run, after the tree had been edited, so that
    run and every later one were marked '+dirty' though the process ran the committed code."""
    import torch

    from study import measure
    from study.runner import run_specs

    monkeypatch.setattr(measure, "git_commit", lambda: "loaded")
    measure.software.cache_clear()
    try:
        run_specs([], DuckStore(tmp_path / "study.duckdb"), "cpu", torch.device("cpu"), progress=False)
        monkeypatch.setattr(measure, "git_commit", lambda: "loaded+dirty")
        assert measure.software()["git_commit"] == "loaded"
    finally:
        measure.software.cache_clear()
