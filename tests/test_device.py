"""The device path end to end on the CPU: pack a tiny selection, run its run.sh as the device machine would, ingest
the archive; packed data and fp16 weights equal the originals; tampering and unsafe archives are refused."""
import io
import json
import os
import shutil
import subprocess
import tarfile
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from study import datasets as ds
from study.backbones import BackboneError, build_backbone, data_config
from study.device import DeviceError, Encoding, extract_archive, ingest_archive, pack, pack_package_dataset
from study.grid import grid_specs
from study.preprocess import to_model_input
from study.run import main as run_main
from study.store import DuckStore

ROOT = Path(__file__).resolve().parent.parent
RES = 32  # tiny on purpose: this file runs the grid for real on a 2-core CPU

GRID = textwrap.dedent(f"""
    [tiny]
    resolution = {RES}
    [tiny.finetune]
    learning_rates = [1e-3]
    batch_size = 8
    epochs = 1
    min_epochs = 1
    min_steps = 2
    evaluations = 1
    [[tiny.blocks]]
    datasets = ["flowers5"]
    backbones = ["mobilenetv2_100"]
    images_per_class = [2, 5]
    methods = ["fe_linear"]
    seeds = [0]
    [[tiny.blocks]]
    datasets = ["mnist5k"]
    backbones = ["mobilenetv2_100"]
    images_per_class = [2]
    methods = ["ft_full"]
    seeds = [0]
""")


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A pack of 3 runs, one of which the local DuckDB already holds (so 2 are to run)."""
    base = tmp_path_factory.mktemp("device")
    grid_file = base / "grids.toml"
    grid_file.write_text(GRID)
    specs = grid_specs("tiny", grid_file)
    done = next(s for s in specs if s.dataset == "flowers5" and s.images_per_class == 5)
    db = base / "local.duckdb"
    DuckStore(db).write({"run": {"run_id": done.run_id, "dataset": "flowers5", "method": "fe_linear",
                                 "accuracy": 0.5}})
    manifest = pack("tiny", grid_file, ["flowers5", "mnist5k"], ["mobilenetv2_100"], None, None, base / "pack", db,
                    say=lambda *_: None)
    return {"base": base, "pack": base / "pack", "db": db, "manifest": manifest, "done": done.run_id, "specs": specs}


def test_pack_holds_only_what_the_runs_need(packed):
    pack_dir, manifest = packed["pack"], packed["manifest"]
    assert manifest["runs"] == {"selected": 3, "already_stored": 1, "to_run": 2,
                                "to_run_by_method": {"fe_linear": 1, "ft_full": 1}}
    assert sorted(p.name for p in (pack_dir / "weights").iterdir()) == ["SHA256SUMS", "mobilenet_v2-b0353104.fp16.pth"]
    assert [p.name for p in (pack_dir / "datasets").iterdir()] == ["mnist5k.npz"]
    assert sorted(p.name for p in (pack_dir / "shared_datasets").iterdir()) == ["README.md", "flowers5"]
    assert packed["done"] in (pack_dir / "exclude_run_ids.txt").read_text()
    assert manifest["sizes"]["total_bytes"] <= manifest["sizes"]["limit_bytes"]
    weights = manifest["weights"][0]
    assert weights["bytes"] < 0.55 * weights["original_bytes"]


def test_run_sh_runs_the_pack_and_its_archive_ingests_with_the_packed_commit(packed):
    out = packed["base"] / "out"
    env = {**os.environ, "OUT": str(out), "EOT_CACHE_DIR": str(packed["base"] / "device-cache")}
    for name in ("EOT_PACKED_DATASETS", "EOT_WEIGHTS_DIR", "EOT_SHARED_DATASETS", "EOT_GIT_COMMIT"):
        env.pop(name, None)
    result = subprocess.run(["bash", str(packed["pack"] / "run.sh"), "--device", "cpu", "--threads", "1"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert [p.name for p in out.iterdir()] == ["results.tar.gz"]
    report = ingest_archive(out / "results.tar.gz", packed["db"], keep_logs=packed["base"] / "logs")
    assert report["ingested"] == 2 and not report["rejected"] and not report["failed_on_device"]
    assert report["device_exit_code"] == "0" and (packed["base"] / "logs" / "study.log").exists()
    commit = (packed["pack"] / "commit.txt").read_text().strip()
    with duckdb.connect(str(packed["db"]), read_only=True) as con:
        rows = con.execute("SELECT run_id, git_commit, device_type, n_test FROM runs WHERE run_id <> ?",
                           [packed["done"]]).fetchall()
    assert {r[0] for r in rows} == {s.run_id for s in packed["specs"]} - {packed["done"]}
    assert all(r[1] == commit and r[2] == "cpu" and r[3] > 0 for r in rows)
    again = ingest_archive(out / "results.tar.gz", packed["db"], keep_logs=packed["base"] / "logs")
    assert again["ingested"] == 0 and again["already_stored"] == 2


def _load(name, resolution, cache, monkeypatch, **kwargs):
    monkeypatch.setenv("EOT_CACHE_DIR", str(cache))
    return ds.load_images(name, resolution, **kwargs)


def test_packed_datasets_equal_the_originals(packed, tmp_path, monkeypatch):
    original = _load("mnist5k", RES, tmp_path / "a", monkeypatch, original=True)
    monkeypatch.setenv("EOT_PACKED_DATASETS", str(packed["pack"] / "datasets"))
    copy = _load("mnist5k", RES, tmp_path / "b", monkeypatch)
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(original, key), getattr(copy, key)), key
    assert copy.info == original.info and "mnist5k" in ds.list_datasets()
    # the ImageFolder copy: same files (fingerprint of paths and sizes), labels and README metadata
    flowers = ds._folder_source(ds.shared_datasets_root() / "flowers5")
    monkeypatch.setenv("EOT_SHARED_DATASETS", str(packed["pack"] / "shared_datasets"))
    flowers_copy = ds._folder_source(packed["pack"] / "shared_datasets" / "flowers5")
    assert flowers_copy.fingerprint == flowers.fingerprint and flowers_copy.info == flowers.info
    assert np.array_equal(flowers_copy.train_labels, flowers.train_labels)
    assert flowers.info.licence != "see the folder's SOURCE.md"  # metadata really came from the README table


def test_datasets_packed_at_their_resolution_are_exact_and_refuse_other_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("EOT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "packed").mkdir()
    entry = pack_package_dataset("mnist5k", Encoding("resolution", "webp-lossless"), {RES},
                                 tmp_path / "packed" / "mnist5k.npz")
    assert entry["lossless"] and entry["resolutions"] == [RES]
    original = _load("mnist5k", RES, tmp_path / "a", monkeypatch, original=True)
    monkeypatch.setenv("EOT_PACKED_DATASETS", str(tmp_path / "packed"))
    copy = _load("mnist5k", RES, tmp_path / "b", monkeypatch)
    assert np.array_equal(copy.train_images, original.train_images)
    assert np.array_equal(copy.test_images, original.test_images)
    with pytest.raises(ds.DatasetError, match=f"at \\[{RES}\\] px only"):
        _load("mnist5k", 2 * RES, tmp_path / "c", monkeypatch)
    monkeypatch.delenv("EOT_PACKED_DATASETS")
    lossy = pack_package_dataset("mnist5k", Encoding("resolution", "jpeg", 90), {RES}, tmp_path / "lossy.npz")
    assert not lossy["lossless"] and lossy["error_vs_original"]["max_abs"] > 0
    assert lossy["fingerprint"] != entry["fingerprint"]  # a lossy copy never shares a decode cache


def _daisies(resolution=224, n=8):
    folder = ds.shared_datasets_root() / "flowers5" / "train" / "daisy"
    files = sorted(folder.glob("*.jpg"))[:n]
    return torch.from_numpy(np.stack([ds.to_square(f, resolution, 3) for f in files]))


def test_fp16_weights_give_the_same_top1_on_real_images(packed, monkeypatch):
    cfg = data_config("mobilenetv2_100")
    x = to_model_input(_daisies(), cfg["mean"], cfg["std"])
    with torch.no_grad():
        reference = build_backbone("mobilenetv2_100")(x)
        monkeypatch.setenv("EOT_WEIGHTS_DIR", str(packed["pack"] / "weights"))
        half = build_backbone("mobilenetv2_100")(x)
    assert torch.equal(reference.argmax(1), half.argmax(1))
    assert (reference - half).abs().max() < 0.05 * reference.abs().max()


def test_tampered_or_unlisted_fp16_weights_are_refused(packed, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    shutil.copytree(packed["pack"] / "weights", folder)
    target = folder / "mobilenet_v2-b0353104.fp16.pth"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setenv("EOT_WEIGHTS_DIR", str(folder))
    with pytest.raises(BackboneError, match="checksum mismatch"):
        build_backbone("mobilenetv2_100")
    (folder / "SHA256SUMS").write_text("")
    with pytest.raises(BackboneError, match="not listed in"):
        build_backbone("mobilenetv2_100")


def _tar(path, name, kind=tarfile.REGTYPE, payload=b"{}"):
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
            archive.addfile(info)
        else:
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


@pytest.mark.parametrize("name, kind", [("results/../../evil.json", tarfile.REGTYPE), ("/tmp/evil.json", tarfile.REGTYPE),
                                        ("results/link.json", tarfile.SYMTYPE), ("results/x", tarfile.LNKTYPE)])
def test_unsafe_archives_are_rejected_before_anything_is_written(tmp_path, name, kind):
    archive = tmp_path / "results.tar.gz"
    _tar(archive, name, kind)
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(DeviceError, match="unsafe path|link"):
        extract_archive(archive, target)
    assert not any(target.iterdir()) and not (tmp_path / "evil.json").exists()
    assert run_main_device(["ingest", str(archive), "--db", str(tmp_path / "db.duckdb")]) == 2


def run_main_device(argv):
    from study.device import main

    return main(argv)


def test_malformed_result_files_are_rejected_by_name(tmp_path):
    archive = tmp_path / "results.tar.gz"
    _tar(archive, "./results/broken.json", payload=b'{"run": {"run_id": "x"')
    report = ingest_archive(archive, tmp_path / "db.duckdb", keep_logs=tmp_path / "logs")
    assert list(report["rejected"]) == ["broken.json"] and report["ingested"] == 0


def test_a_selection_over_the_limit_fails_with_a_split(packed, tmp_path):
    with pytest.raises(DeviceError) as error:
        pack("tiny", packed["base"] / "grids.toml", ["flowers5", "mnist5k"], ["mobilenetv2_100"], None, None,
             tmp_path / "pack", tmp_path / "none.duckdb", limit_mib=25, say=lambda *_: None)
    message = str(error.value)
    assert "over the device call's 25 MiB" in message and "--datasets mnist5k" in message
    assert not (tmp_path / "pack").exists()


def test_exclude_run_ids_and_time_budget(packed, tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("# comment\n" + "\n".join(s.run_id for s in packed["specs"]) + "\n")
    common = ["--grid", "tiny", "--grid-file", str(packed["base"] / "grids.toml"), "--results-dir",
              str(tmp_path / "r"), "--no-progress", "--log-file", str(tmp_path / "log")]
    assert run_main([*common, "--exclude-run-ids", str(ids)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["excluded"] == 3
    assert run_main([*common, "--time-budget-s", "0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stored"] == 0 and summary["not_started"] == 3
    assert not list((tmp_path / "r").glob("*.json"))
