"""The Ray executor on a real local Ray cluster (2 CPUs, loopback only): same stored results as the local executor
for the deterministic methods, resume, and a task that raises inside a worker ending up in ``failures``."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from study.executors import ExecutorError, executor_names, get_executor
from study.ray_executor import RAY_ENV_DEFAULTS, RAY_LOOPBACK_ENV
from study.run import main
from tests.conftest import TEST_RESOLUTION

# Before Ray is imported: no usage stats, no `uv run` environment, every socket on 127.0.0.1.
for _name, _value in {**RAY_ENV_DEFAULTS, **RAY_LOOPBACK_ENV}.items():
    os.environ.setdefault(_name, _value)
ray = pytest.importorskip("ray")

GRID = textwrap.dedent(f"""
    [tiny]
    resolution = {TEST_RESOLUTION}
    [[tiny.blocks]]
    datasets = ["flowers5", "neu_steel_defects"]
    backbones = ["mobilenetv2_100"]
    images_per_class = [1, 5]
    methods = ["fe_linear", "fe_fne"]
    seeds = [0, 1]
""")
RUNS = 2 * 2 * 2 * 2
ROOT = Path(__file__).resolve().parent.parent
DRIVER_COMMIT = "driver-commit-for-the-ray-test"
COLUMNS = "run_id, dataset, method, k_label, seed, accuracy, balanced_accuracy, macro_f1, n_train"


@pytest.fixture(scope="module")
def cluster():
    context = ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1",
                       logging_level="WARNING")
    try:
        assert context.address_info["address"].startswith("127.0.0.1:")
        assert context.address_info["node_ip_address"] == "127.0.0.1"
        yield context
    finally:
        ray.shutdown()


def _rows(db, columns=COLUMNS):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT {columns} FROM runs ORDER BY run_id").fetchall()


def _failures(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT run_id, error FROM failures ORDER BY run_id").fetchall()


def _args(grid_file, db, log, *extra):
    return ["--grid", "tiny", "--grid-file", str(grid_file), "--db", str(db), "--log-file", str(log),
            "--no-progress", "--threads", "1", *extra]


def _study(grid_file, db, log, *extra):
    """The command in this process."""
    return main(_args(grid_file, db, log, *extra))


def _study_on_cluster(cluster, grid_file, db, log, *extra):
    """The command as its own driver process joining the test's cluster (the job ships ``study`` and the env)."""
    done = subprocess.run([sys.executable, "-m", "study.run", *_args(grid_file, db, log, *extra), "--executor", "ray",
                           "--address", cluster.address_info["address"]], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "EOT_GIT_COMMIT": DRIVER_COMMIT})
    return done.returncode, done.stdout


def test_the_registry_names_both_executors():
    assert {"local", "ray"} <= set(executor_names())
    with pytest.raises(ExecutorError, match="unknown executor 'dask'"):
        get_executor("dask")
    with pytest.raises(ExecutorError, match="--executor ray"):
        get_executor("local")([], None, "g", address="127.0.0.1:6379")


def test_ray_executor_stores_what_the_local_executor_stores_and_resumes(cluster, tmp_path, capsys):
    import torch

    grid_file = tmp_path / "grids.toml"
    grid_file.write_text(GRID)
    threads = torch.get_num_threads()
    try:
        assert _study(grid_file, tmp_path / "local.duckdb", tmp_path / "local.log", "--executor", "local") == 0
    finally:
        torch.set_num_threads(threads)
    code, out = _study_on_cluster(cluster, grid_file, tmp_path / "ray.duckdb", tmp_path / "ray.log")
    assert code == 0, out
    assert f'"stored": {RUNS}, "failed": 0' in out and '"groups": 2' in out
    local, distributed = _rows(tmp_path / "local.duckdb"), _rows(tmp_path / "ray.duckdb")
    assert len(local) == len(distributed) == RUNS
    assert distributed == local  # fe_linear and fe_fne are deterministic: same run_ids, same accuracies
    assert _failures(tmp_path / "ray.duckdb") == []
    # The records were made on the workers with the driver's environment (its commit), estimated CPU energy.
    provenance = set(_rows(tmp_path / "ray.duckdb", "git_commit, device_type, energy_source"))
    assert provenance == {(DRIVER_COMMIT, "cpu", "estimated")}
    assert "stored run" in (tmp_path / "ray.log").read_text()
    capsys.readouterr()
    # Resume (in this process, already connected to Ray): everything is stored, so nothing is submitted.
    assert _study(grid_file, tmp_path / "ray.duckdb", tmp_path / "ray.log", "--executor", "ray") == 0
    assert f'"already_stored": {RUNS}, "excluded": 0, "stored": 0' in capsys.readouterr().out
    assert len(_rows(tmp_path / "ray.duckdb")) == RUNS


def test_a_task_raising_in_the_worker_is_recorded_in_failures_and_the_rest_is_stored(cluster, tmp_path, capsys):
    broken = tmp_path / "one_class"  # a valid path for the driver; loading it in the worker raises DatasetError
    (broken / "only").mkdir(parents=True)
    grid_file = tmp_path / "grids.toml"
    grid_file.write_text(textwrap.dedent(f"""
        [tiny]
        resolution = {TEST_RESOLUTION}
        [[tiny.blocks]]
        datasets = ["flowers5", "{broken}"]
        backbones = ["mobilenetv2_100"]
        images_per_class = [1]
        methods = ["fe_linear", "fe_fne"]
        seeds = [0]
    """))
    db = tmp_path / "ray.duckdb"
    code, summary = _study_on_cluster(cluster, grid_file, db, tmp_path / "ray.log")
    assert code == 1, summary  # failed runs: exit 1
    assert '"stored": 2, "failed": 2' in summary and '"groups_failed": 1' in summary
    assert {row[1] for row in _rows(db)} == {"flowers5"}
    failures = _failures(db)
    assert len(failures) == 2
    assert all(error.startswith("DatasetError: ") and "1 class folder(s)" in error for _, error in failures)
    assert {run_id for run_id, _ in failures}.isdisjoint(row[0] for row in _rows(db))
    # Failed runs are not stored, so the next resume tries them again (here in this process, already connected to
    # the cluster: the tasks carry the env_vars, and the workers import study from this checkout).
    assert _study(grid_file, db, tmp_path / "ray.log", "--executor", "ray") == 1
    assert '"already_stored": 2, "excluded": 0, "stored": 0, "failed": 2' in capsys.readouterr().out
    assert len(_failures(db)) == 4
