"""The bring-your-own-data probe: real images, and real malformed uploads for every limit."""
import io
import os
import shutil
import tempfile
import zipfile

import pytest
from PIL import Image

from study import upload
from study.probe import MAX_IMAGES, MAX_PER_CLASS, probe, subsample
from study.upload import UploadError, intake

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


def test_probe_measures_real_photos_and_reports_what_it_skipped(flowers, tmp_path, private_tmp):
    (flowers / "daisy" / "readme.txt").write_text("not an image")
    good = next((flowers / "daisy").glob("*.jpg")).read_bytes()
    (flowers / "dandelion" / "truncated.jpg").write_bytes(good[:2000])
    (flowers / "sunflower" / "empty.jpg").write_bytes(b"")
    archive = _zip_folder(tmp_path / "upload.zip", flowers)
    steps = []
    result = probe(archive, progress=lambda fraction, message: steps.append(fraction))
    assert result.n_classes == 3 and result.class_names == CLASSES
    assert result.skipped_non_image == 1
    assert any("truncated.jpg" in line for line in result.unreadable)
    assert any("empty.jpg" in line for line in result.unreadable)
    assert set(result.accuracy_by_k) == {2, 5, 10} and result.probe_k == 10
    assert result.probe_accuracy > 0.6  # 3 flower classes: chance is 0.33
    assert result.colour and result.image_size_px == 160
    assert steps[0] == 0.0 and steps[-1] == 1.0
    assert not list(private_tmp.glob("eot-upload-*"))  # nothing of the upload is kept


def test_train_test_layout_in_a_folder(flowers, tmp_path):
    split = tmp_path / "split"
    for cls in CLASSES:
        files = sorted((flowers / cls).glob("*.jpg"))
        for part, chunk in (("train", files[:10]), ("test", files[10:])):
            (split / part / cls).mkdir(parents=True)
            for file in chunk:
                shutil.copy(file, split / part / cls)
    assert probe(split).images_used == 42


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
