"""The bring-your-own-data probe: real images, and real malformed uploads for every limit."""
import io
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from study import probe as probe_module
from study import upload
from study.probe import (MAX_IMAGES, MAX_PER_CLASS, MAX_TEST_PER_CLASS, MAX_TRAIN_PER_CLASS, PROBE_BACKBONES,
                         PROBE_METHODS, draws, main, probe, subsample)
from study.upload import UploadError, intake

OPTIONS = {(method, backbone) for method in PROBE_METHODS for backbone in PROBE_BACKBONES}

CLASSES = ["daisy", "dandelion", "sunflower"]


@pytest.fixture
def flowers(tmp_path, shared_root):
    """A user folder of real flower photos: CLASS/*.jpg, 14 per class."""
    root = tmp_path / "my_flowers"
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for source in sorted((shared_root / "flowers5" / "train" / cls).glob("*.jpg"))[:14]:
            shutil.copy(source, root / cls)
    return root


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Route the upload's temporary folders to a place the test can inspect."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in entries:
            bundle.writestr(name, data)
    return path


def _zip_folder(path, root, extra=()):
    entries = [(str(p.relative_to(root.parent)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]
    return _zip(path, entries + list(extra))


def test_probe_measures_every_option_on_the_same_draws_and_reports_what_it_skipped(flowers, tmp_path, private_tmp,
                                                                                   monkeypatch):
    (flowers / "daisy" / "readme.txt").write_text("not an image")
    good = next((flowers / "daisy").glob("*.jpg")).read_bytes()
    (flowers / "dandelion" / "truncated.jpg").write_bytes(good[:2000])
    (flowers / "sunflower" / "empty.jpg").write_bytes(b"")
    archive = _zip_folder(tmp_path / "upload.zip", flowers)
    fits, measure = [], probe_module.option_accuracy

    def recording(method, pooled, fne, labels, train, test, seed):
        fits.append((method, fne.shape[1], tuple(train), tuple(test), seed))  # FNE width tells the backbones apart
        return measure(method, pooled, fne, labels, train, test, seed)

    monkeypatch.setattr(probe_module, "option_accuracy", recording)
    steps = []
    result = probe(archive, progress=lambda fraction, message: steps.append(fraction))
    assert result.n_classes == 3 and result.class_names == CLASSES
    assert result.skipped_non_image == 1
    assert any("truncated.jpg" in line for line in result.unreadable)
    assert any("empty.jpg" in line for line in result.unreadable)
    assert result.colour and result.image_size_px == 160
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    assert not list(private_tmp.glob("eot-upload-*"))  # nothing of the upload is kept

    # Four options (2 backbones x 2 heads), each at every k below the smallest class (14 images), 5 repeats.
    assert result.images_used == 42 and result.backbones == list(PROBE_BACKBONES) and result.resolution == 128
    assert set(result.curves) == set(result.curve_sd) == OPTIONS
    assert all(set(by_k) == {2, 5, 10} for by_k in [*result.curves.values(), *result.curve_sd.values()])
    assert result.tested_per_class == {2: 12.0, 5: 9.0, 10: 4.0}
    assert all(0 <= sd <= 0.5 for by_k in result.curve_sd.values() for sd in by_k.values())
    # 3 flower classes, chance is 0.33: every option is well above it at k=10, and the curves rise with k.
    assert all(by_k[10] > 0.6 for by_k in result.curves.values()), result.curves
    assert np.mean([by_k[10] - by_k[2] for by_k in result.curves.values()]) > 0.05
    assert all(by_k[10] >= by_k[2] - 0.1 for by_k in result.curves.values())
    # Every option was fitted on the same train/test draws: 3 k x 5 repeats, each seen by all 4 options.
    assert len(fits) == 4 * 3 * 5
    by_draw = {}
    for method, dims, train, test, seed in fits:
        by_draw.setdefault((train, test, seed), set()).add((method, dims))
    assert len(by_draw) == 3 * 5 and all(len(options) == 4 for options in by_draw.values())
    assert {"decode", "extract mobilenetv2_100", "fit efficientnet_lite0"} <= set(result.seconds_by_step)
    assert 0 < sum(result.seconds_by_step.values()) <= result.seconds
    text = result.summary()  # the four curves, readable
    assert "MobileNetV2 · linear classifier" in text and "EfficientNet-Lite0 · Full-Network Embedding" in text
    assert "k=2" in text and "k=10" in text and f"{result.seconds:.1f} s" in text
    assert len([line for line in text.splitlines() if line.count("%") == 3]) == 4


def test_draws_are_stratified_disjoint_and_reproducible():
    labels = np.repeat(np.arange(3), [6, 8, 10])
    no_split = np.zeros(len(labels), bool)
    splits = draws(labels, no_split, 5)
    assert len(splits) == 5 and len({tuple(train) for train, _ in splits}) > 1
    for train, test in splits:
        assert np.bincount(labels[train]).tolist() == [5, 5, 5]
        assert not set(train) & set(test) and len(train) + len(test) == len(labels)
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(splits, draws(labels, no_split, 5)))


def test_with_a_test_split_the_probe_trains_on_train_and_tests_on_test():
    labels = np.r_[np.repeat(np.arange(3), 25), np.repeat(np.arange(3), MAX_TEST_PER_CLASS + 10)]
    is_test = np.r_[np.zeros(75, bool), np.ones(3 * (MAX_TEST_PER_CLASS + 10), bool)]
    chosen = subsample(labels, is_test)
    assert np.bincount(labels[chosen][~is_test[chosen]]).tolist() == [MAX_TRAIN_PER_CLASS] * 3  # k = 20 plus one
    assert np.bincount(labels[chosen][is_test[chosen]]).tolist() == [MAX_TEST_PER_CLASS] * 3
    for train, test in draws(labels[chosen], is_test[chosen], 20):
        assert not is_test[chosen][train].any() and is_test[chosen][test].all()
        assert len(train) == 60 and len(test) == 3 * MAX_TEST_PER_CLASS


def test_json_output_and_questionnaire_encoding(flowers, capsys):
    from recommender.questionnaire import Questionnaire, encode_probe, parse_probe

    assert main(["--json", str(flowers)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["curves"]) == {f"{m}.{b}" for m, b in OPTIONS} == set(data["curve_sd"])
    assert all(set(by_k) == {"2", "5", "10"} for by_k in data["curves"].values())
    assert set(data["tested_per_class"]) == {"2", "5", "10"} and data["seconds"] > 0
    assert data["backbones"] == list(PROBE_BACKBONES) and data["resolution"] == 128
    assert "probe_accuracy" not in data and "accuracy_by_k" not in data
    curves = {tuple(key.split(".", 1)): {int(k): a for k, a in by_k.items()} for key, by_k in data["curves"].items()}
    decoded = parse_probe(encode_probe(curves))
    assert set(decoded) == OPTIONS
    assert all(abs(decoded[o][k] - curves[o][k]) < 1e-4 for o in OPTIONS for k in curves[o])
    assert Questionnaire(n_classes=3, probe=encode_probe(curves)).validate().probe_curves == decoded


def test_study_datasets_store_probe_curves(tmp_path, capsys):
    import duckdb
    import torch

    from study import measure
    from study.store import DuckStore

    db = tmp_path / "probe.duckdb"
    assert main(["--study-datasets", "--datasets", "flowers5", "--db", str(db)]) == 0
    assert "flowers5:" in capsys.readouterr().out
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT * FROM probe_curves ORDER BY backbone, method, k").df()
        columns = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_name = 'probe_curves' ORDER BY ordinal_position").fetchall()
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert columns == [("dataset", "VARCHAR"), ("backbone", "VARCHAR"), ("method", "VARCHAR"),
                       ("resolution", "INTEGER"), ("k", "INTEGER"), ("accuracy", "DOUBLE"),
                       ("accuracy_sd", "DOUBLE"), ("tested_per_class", "DOUBLE"), ("repeats", "INTEGER"),
                       ("images_used", "INTEGER"), ("seconds", "DOUBLE"), ("git_commit", "VARCHAR"),
                       ("created_at", "VARCHAR"), ("hardware_id", "VARCHAR"), ("python_version", "VARCHAR"),
                       ("torch_version", "VARCHAR"), ("timm_version", "VARCHAR"), ("sklearn_version", "VARCHAR"),
                       ("numpy_version", "VARCHAR")]
    assert "probes" not in tables
    assert len(rows) == 16 and set(rows["dataset"]) == {"flowers5"} and set(rows["resolution"]) == {128}
    assert set(zip(rows["method"], rows["backbone"])) == OPTIONS and set(rows["k"]) == {2, 5, 10, 20}
    # flowers5 has a test split: each class gives k = 20 plus one training images and MAX_TEST_PER_CLASS test images.
    assert (rows["repeats"] == 5).all() and (rows["images_used"] == 5 * (MAX_TRAIN_PER_CLASS + MAX_TEST_PER_CLASS)).all()
    assert rows["accuracy"].between(0, 1).all() and rows["accuracy_sd"].between(0, 0.5).all()
    assert rows[rows["k"] == 20]["accuracy"].mean() > rows[rows["k"] == 2]["accuracy"].mean()
    assert rows[rows["k"] == 20]["accuracy"].min() > 0.5  # 5 flower classes: chance is 0.2
    assert (rows["tested_per_class"] == MAX_TEST_PER_CLASS).all()
    # Where and with what it was measured: this machine's hardware row and the software versions, as a run's.
    assert set(rows["hardware_id"]) == {measure.hardware("cpu")["hardware_id"]}
    assert set(rows["torch_version"]) == {torch.__version__} and rows["git_commit"].notna().all()
    with duckdb.connect(str(db), read_only=True) as con:
        machine = con.execute("SELECT cpu_model, device_type FROM hardware WHERE hardware_id = ?",
                              [measure.hardware("cpu")["hardware_id"]]).fetchall()
    assert machine == [(measure.hardware("cpu")["cpu_model"], "cpu")]

    # A re-probe replaces the dataset's rows (one transaction), dropping points it did not measure again.
    again = [{**row, "accuracy": 0.5, "created_at": "later"}
             for row in rows.to_dict("records") if row["k"] != 20]
    DuckStore(db).write_probe("flowers5", again)
    with duckdb.connect(str(db), read_only=True) as con:
        after = con.execute("SELECT k, accuracy, created_at FROM probe_curves").fetchall()
    assert len(after) == 12 and {k for k, _, _ in after} == {2, 5, 10}
    assert all(accuracy == 0.5 and created == "later" for _, accuracy, created in after)


def test_unknown_study_dataset_is_refused_before_probing(tmp_path, capsys):
    assert main(["--study-datasets", "--datasets", "no_such_dataset", "--db", str(tmp_path / "x.duckdb")]) == 2
    assert "no_such_dataset" in capsys.readouterr().err


def test_train_test_layout_in_a_folder(flowers, tmp_path):
    split = tmp_path / "split"
    for cls in CLASSES:
        files = sorted((flowers / cls).glob("*.jpg"))
        for part, chunk in (("train", files[:10]), ("test", files[10:])):
            (split / part / cls).mkdir(parents=True)
            for file in chunk:
                shutil.copy(file, split / part / cls)
    result = probe(split)
    assert result.images_used == 42 and result.tested_on == "the test split"
    assert set(result.ks) == {2, 5, 10}  # 10 training images a class: k up to 10, tested on the test folder


def test_subsample_respects_both_caps():
    import numpy as np

    labels = np.repeat(np.arange(20), 100)
    chosen = subsample(labels)
    assert len(chosen) <= MAX_IMAGES and np.bincount(labels[chosen]).max() <= MAX_PER_CLASS


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/passwd.jpg", "a/../../escape.jpg", "C:\\evil.jpg"])
def test_zip_entries_leaving_the_archive_are_rejected(tmp_path, name, private_tmp):
    archive = _zip(tmp_path / "evil.zip", [("a/x.jpg", b"x"), (name, b"y")])
    with pytest.raises(UploadError, match="absolute path|outside the archive"):
        with intake(archive):
            pass
    assert not (tmp_path / "escape.jpg").exists()
    assert not list(private_tmp.glob("eot-upload-*"))


def test_a_zip_bomb_is_refused(tmp_path, private_tmp):
    archive = _zip(tmp_path / "bomb.zip", [("a/bomb.jpg", b"\0" * (60 * 2**20)), ("b/x.jpg", b"x")])
    assert archive.stat().st_size < 2**20
    with pytest.raises(UploadError, match="zip bomb|expands"):
        with intake(archive):
            pass
    assert not list(private_tmp.glob("eot-upload-*"))


def test_a_zip_declaring_more_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(upload, "MAX_EXTRACTED_BYTES", 1000)
    archive = _zip(tmp_path / "big.zip", [("a/1.jpg", os.urandom(800)), ("b/2.jpg", os.urandom(800))])
    with pytest.raises(UploadError, match="expands to"):
        with intake(archive):
            pass


def test_upload_size_and_file_count_are_bounded(tmp_path, monkeypatch, flowers):
    archive = _zip_folder(tmp_path / "upload.zip", flowers)
    monkeypatch.setattr(upload, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(UploadError, match="the limit is"):
        probe(archive)
    monkeypatch.setattr(upload, "MAX_UPLOAD_BYTES", 2**30)
    monkeypatch.setattr(upload, "MAX_FILES", 10)
    with pytest.raises(UploadError, match="entries; the limit is 10"):
        probe(archive)


def test_symlinks_are_ignored(flowers, tmp_path):
    secret = tmp_path / "secret.jpg"
    shutil.copy(next((flowers / "daisy").glob("*.jpg")), secret)
    (flowers / "daisy" / "link.jpg").symlink_to(secret)
    (flowers / "linked_class").symlink_to(flowers / "daisy")
    result = probe(flowers)
    assert result.skipped_links == 2 and result.n_classes == 3
    info = zipfile.ZipInfo("my_flowers/daisy/zip_link.jpg")
    info.external_attr = (0o120777 << 16)
    archive = _zip_folder(tmp_path / "links.zip", flowers.parent / "my_flowers")
    with zipfile.ZipFile(archive, "a") as bundle:
        bundle.writestr(info, "/etc/passwd")
    assert probe(archive).skipped_links >= 1


def test_too_few_classes_or_images_get_a_clear_error(flowers, tmp_path):
    one_class = tmp_path / "one"
    shutil.copytree(flowers / "daisy", one_class / "daisy")
    with pytest.raises(UploadError, match="1 class folder"):
        probe(one_class)
    lonely = tmp_path / "lonely"
    shutil.copytree(flowers / "daisy", lonely / "daisy")
    (lonely / "rose").mkdir()
    shutil.copy(next((flowers / "daisy").glob("*.jpg")), lonely / "rose")
    with pytest.raises(UploadError, match="rose have fewer than 2 images"):
        probe(lonely)


def test_decompression_bombs_and_absurd_images_are_reported_not_decoded(flowers):
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, "PNG")  # 144 Mpx, a few kB on disk
    (flowers / "daisy" / "huge.png").write_bytes(buffer.getvalue())
    Image.new("L", (100_000, 2)).save(flowers / "daisy" / "wide.png")
    result = probe(flowers)
    assert any("huge.png" in line for line in result.unreadable)
    assert any("wide.png" in line for line in result.unreadable)
    assert result.n_classes == 3


def test_a_non_zip_upload_is_refused(tmp_path):
    fake = tmp_path / "photos.zip"
    fake.write_bytes(b"GIF89a not a zip")
    with pytest.raises(UploadError, match="not a readable .zip"):
        probe(fake)


def test_progress_in_a_log_file_is_one_line_per_step():
    """Redirected to a file, the probe's progress writes one line when its step changes, not one per percent."""
    log = io.StringIO()
    report = probe_module._progress_printer(log)
    for percent in range(40):
        report(percent / 100, "decoding 300 images")
    report(0.5, "MobileNetV2: classifiers at k=2")
    report(1.0, "done")
    assert log.getvalue().splitlines() == ["[  0%] decoding 300 images", "[ 50%] MobileNetV2: classifiers at k=2",
                                           "[100%] done"]


def test_the_finetuning_pilot_runs_the_study_recipe_once_at_the_largest_k(flowers, monkeypatch):
    from dataclasses import replace

    from recommender.questionnaire import encode_probe, parse_probe
    from study import grid
    from study.methods import base
    from study.probe import PILOT_BACKBONE, PILOT_METHOD, curve_rows

    seen = []
    study_code = base.METHODS[PILOT_METHOD]

    def spy(spec, context):
        data = context.images(spec)
        seen.append((spec, data.train_labels.copy(), len(data.test_labels)))
        return study_code(spec, context)

    monkeypatch.setitem(base.METHODS, PILOT_METHOD, spy)
    recipe = grid.recipe_of("cpu")
    # A short schedule of the same recipe: this checks what the pilot trains and tests on, not its accuracy.
    monkeypatch.setattr(grid, "recipe_of", lambda name: replace(recipe, min_steps=3, epochs=1, min_epochs=1,
                                                                evaluations=1))
    result = probe(flowers, pilot=True)
    (spec, train_labels, n_test), = seen
    # 14 images a class and no test split: k = 2, 5, 10; the pilot trains on 10 a class and tests on the other 4.
    assert result.ks == [2, 5, 10] and result.pilot_k == 10
    assert (spec.method, spec.backbone, spec.images_per_class, spec.resolution) == (PILOT_METHOD, PILOT_BACKBONE, 10,
                                                                                   128)
    assert spec.finetune.learning_rates == recipe.learning_rates and spec.finetune.batch_size == recipe.batch_size
    assert np.bincount(train_labels).tolist() == [10, 10, 10] and n_test == 3 * 4
    assert set(result.curves) == OPTIONS | {(PILOT_METHOD, PILOT_BACKBONE)}
    assert list(result.curves[(PILOT_METHOD, PILOT_BACKBONE)]) == [10]
    assert 0 <= result.curves[(PILOT_METHOD, PILOT_BACKBONE)][10] <= 1
    assert "fine-tuning pilot is one run" in result.summary() and "fine-tuned (all layers)" in result.summary()
    repeats = {(row["method"], row["k"]): row["repeats"] for row in curve_rows("mine", result, {"git_commit": "commit"})}
    assert repeats[(PILOT_METHOD, 10)] == 1 and repeats[("fe_linear", 10)] == 5
    assert parse_probe(encode_probe(result.curves)) == {option: {k: round(a, 4) for k, a in curve.items()}
                                                        for option, curve in result.curves.items()}


def test_study_datasets_can_store_the_pilot_with_their_probe(tmp_path, monkeypatch):
    from dataclasses import replace

    import duckdb

    from study import grid

    recipe = grid.recipe_of("cpu")
    monkeypatch.setattr(grid, "recipe_of", lambda name: replace(recipe, min_steps=3, epochs=1, min_epochs=1,
                                                                evaluations=1))  # a short schedule: the wiring
    db = tmp_path / "probe.duckdb"
    assert main(["--study-datasets", "--finetune-pilot", "--datasets", "flowers5", "--db", str(db)]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT method, backbone, k, repeats FROM probe_curves ORDER BY method, backbone, k").df()
    assert len(rows) == 17
    pilot = rows[rows["method"] == "ft_full"]
    assert pilot[["backbone", "k", "repeats"]].values.tolist() == [["mobilenetv2_100", 20, 1]]


def test_hidden_files_and_macos_resource_forks_are_skipped_not_decoded(flowers):
    """A folder copied from a Mac: ``._photo.jpg`` beside each photo and a ``.DS_Store``; neither is an image."""
    daisies = sorted((flowers / "daisy").glob("*.jpg"))
    for photo in daisies[:2]:
        (photo.parent / f"._{photo.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (flowers / "daisy" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    found = upload.inventory(flowers)
    assert found.files["daisy"] == daisies
    assert sorted(found.skipped_non_image) == sorted(["daisy/.DS_Store"] + [f"daisy/._{p.name}" for p in daisies[:2]])


def test_a_whole_dataset_folder_is_sampled_while_a_zip_of_as_many_files_is_refused(flowers, tmp_path, monkeypatch):
    """A local folder is only listed (the probe decodes a sample); a zip's every entry would be extracted."""
    monkeypatch.setattr(upload, "MAX_FILES", 10)
    result = probe(flowers)  # 14 photos in each of its classes: more than the zip limit
    assert result.n_classes == len(CLASSES)
    with pytest.raises(UploadError, match="entries; the limit is 10"):
        probe(_zip_folder(tmp_path / "upload.zip", flowers))
    monkeypatch.setattr(upload, "MAX_FOLDER_FILES", 20)
    with pytest.raises(UploadError, match="more than 20 images"):
        probe(flowers)
