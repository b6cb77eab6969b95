"""Faults: a study killed at random moments loses nothing; full or read-only storage gets a clear message."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from study.run import main
from tests.conftest import TEST_RESOLUTION

ROOT = Path(__file__).resolve().parent.parent
GRID = textwrap.dedent(f"""
    [faults]
    resolution = {TEST_RESOLUTION}
    [faults.finetune]
    learning_rates = [1e-3, 3e-3]
    batch_size = 8
    epochs = 1
    min_epochs = 1
    min_steps = 4
    evaluations = 2
    [[faults.blocks]]
    datasets = ["flowers5", "neu_steel_defects"]
    backbones = ["mobilenetv2_100"]
    images_per_class = [1, 2, 5]
    methods = ["fe_linear", "fe_fne"]
    seeds = [0, 1]
    [[faults.blocks]]
    datasets = ["flowers5", "neu_steel_defects"]
    backbones = ["mobilenetv2_100"]
    images_per_class = [4]
    methods = ["ft_full"]
    seeds = [0]
""")
EXPECTED_RUNS = 2 * 3 * 2 * 2 + 2
KILLS = 10


def _command(grid_file, db, log):
    return [sys.executable, "-m", "study.run", "--grid", "faults", "--grid-file", str(grid_file), "--db", str(db),
            "--log-file", str(log), "--no-progress", "--threads", "2"]


def _runs(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * FROM runs").df(), con.execute("SELECT * FROM trials").df()


def test_sigkill_at_ten_random_moments_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text(GRID)
    monkeypatch.setenv("EOT_CACHE_DIR", str(tmp_path / "cache"))  # cold: kills land in decoding and extraction too
    db, log = tmp_path / "killed.duckdb", tmp_path / "killed.log"
    rng = random.Random(20261128)
    env = {**os.environ, "EOT_CACHE_DIR": str(tmp_path / "cache")}
    survived = 0
    for _ in range(KILLS):
        process = subprocess.Popen(_command(grid_file, db, log), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 12.0))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        survived += 1
    assert subprocess.run(_command(grid_file, db, log), cwd=ROOT, env=env, capture_output=True).returncode == 0
    runs, trials = _runs(db)
    assert survived == KILLS
    assert len(runs) == runs["run_id"].nunique() == EXPECTED_RUNS  # none lost, none duplicated
    assert runs[["accuracy", "total_s", "energy_j", "git_commit", "finished_at"]].notna().all().all()  # no partial row
    ft = runs[runs["method"] == "ft_full"]
    assert (trials.groupby("run_id").size().reindex(ft["run_id"]) == ft["n_trials"].to_numpy()).all()
    assert trials.duplicated(["run_id", "trial_index"]).sum() == 0

    reference_db = tmp_path / "uninterrupted.duckdb"
    assert subprocess.run(_command(grid_file, reference_db, tmp_path / "ref.log"), cwd=ROOT, env=env,
                          capture_output=True).returncode == 0
    reference, _ = _runs(reference_db)
    fe = lambda frame: frame[frame["method"].str.startswith("fe_")].set_index("run_id")["accuracy"].sort_index()  # noqa: E731
    assert fe(runs).equals(fe(reference))  # deterministic methods: the same accuracies as an uninterrupted run


@pytest.fixture
def mounted(tmp_path):
    """A tiny or read-only tmpfs (needs root and mount rights, as on this project's machines)."""
    mounts = []

    def mount(options):
        target = tmp_path / f"mnt{len(mounts)}"
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounts.append(target)
        return target

    yield mount
    for target in mounts:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_a_read_only_data_folder_gets_a_clear_message(mounted, capsys, tmp_path):
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text(GRID)
    read_only = mounted("ro,size=1m")
    code = main(["--grid", "faults", "--grid-file", str(grid_file), "--db", str(read_only / "data" / "study.duckdb"),
                 "--max-runs", "1", "--no-progress", "--log-file", str(tmp_path / "log")])
    assert code == 2 and "Read-only file system" in capsys.readouterr().err


def test_a_full_disk_gets_a_clear_message_and_keeps_what_was_stored(mounted, capsys, tmp_path):
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text(GRID)
    small = mounted("size=1600k")
    db = small / "study.duckdb"
    args = ["--grid", "faults", "--grid-file", str(grid_file), "--db", str(db), "--no-progress",
            "--log-file", str(tmp_path / "log")]
    code = main(args)
    err = capsys.readouterr().err
    if code == 0:
        pytest.skip("the whole grid fitted in the small filesystem")
    assert code == 2 and ("No space left" in err or "not enough space" in err.lower()), err
    stored, _ = _runs(db)  # what was committed before the disk filled is intact and readable
    assert stored["accuracy"].notna().all()
