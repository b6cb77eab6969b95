import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from study.datasets import DatasetError, dataset_info, list_datasets, load_images, sample_subset, to_square

SHARED = ["brain_tumor_mri", "dtd_textures10", "flowers5", "neu_steel_defects", "rsscn7_aerial"]


def test_registry_has_package_and_shared_datasets():
    names = set(list_datasets())
    assert {"elpv", "fashion_mnist", "mnist5k", "animal_mnist", "digits", *SHARED} <= names


@pytest.mark.parametrize("name", ["elpv", "fashion_mnist", "mnist5k", "animal_mnist", "digits", "neu_steel_defects"])
def test_datasets_decode_with_fixed_splits_and_metadata(name):
    data = load_images(name, 32)
    info = data.info
    assert data.train_images.shape[1:3] == (32, 32) and data.train_images.dtype == np.uint8
    assert data.train_images.shape[3] == info.channels == 1  # these six are greyscale
    assert len(data.train_images) == len(data.train_labels) == info.n_train_pool > 0
    assert len(data.test_images) == info.n_test > 0
    assert set(np.unique(data.train_labels)) == set(range(info.n_classes))
    assert info.domain and info.licence and info.source and info.split
    again = load_images(name, 32)  # from the cache, identical
    assert np.array_equal(again.test_labels, data.test_labels)


def test_digits_ink_counts_span_the_grey_scale():
    """scikit-learn's digits count ink 0..16 per pixel: read as 0..255 (a full stroke is black ink, white here),
    not as a nearly black image."""
    data = load_images("digits", 8)
    assert data.info.native_size == "8x8" and data.train_images.max() == 255 and data.train_images.min() == 0
    assert len(data.train_images) + len(data.test_images) == 1797


def test_elpv_is_binary_and_imbalanced():
    data = load_images("elpv", 32)
    counts = np.bincount(data.train_labels)
    assert data.info.n_classes == 2 and counts[0] > 1.8 * counts[1]


def test_animal_mnist_files_are_checksummed_and_unpickled_as_arrays_only(tmp_path):
    import gzip
    import pickle

    from study.datasets.loaders import _checked_array

    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = tmp_path / "array.gz"
    path.write_bytes(gzip.compress(pickle.dumps(array)))
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert np.array_equal(_checked_array(path, sha256), array)
    with pytest.raises(DatasetError, match="checksum"):
        _checked_array(path, "0" * 64)
    hostile = tmp_path / "hostile.gz"  # a pickle that would call os.system when loaded
    hostile.write_bytes(gzip.compress(pickle.dumps(Hostile())))
    with pytest.raises(DatasetError, match="refusing to unpickle"):
        _checked_array(hostile, hashlib.sha256(hostile.read_bytes()).hexdigest())


class Hostile:
    def __reduce__(self):
        import os
        return os.system, ("echo pwned",)


def test_stratified_split_keeps_test_images_out_of_training():
    data = load_images("mnist5k", 28)
    train = {row.tobytes() for row in data.train_images}
    overlap = sum(row.tobytes() in train for row in data.test_images)
    assert overlap <= 5  # MNIST has a few identical digits; a leaky split would overlap by hundreds


def test_subsets_are_balanced_nested_and_seeded():
    labels = load_images("flowers5", 32).train_labels
    small, large = sample_subset(labels, 5, seed=1), sample_subset(labels, 20, seed=1)
    assert np.all(np.bincount(labels[small]) == 5) and set(small) <= set(large)
    assert not np.array_equal(small, sample_subset(labels, 5, seed=2))
    assert len(sample_subset(labels, None, seed=0)) == len(labels)


def _user_folder(tmp_path, shared_root, classes, per_class=4):
    root = tmp_path / "my_data"
    for split in ("train", "test"):
        for cls in classes:
            target = root / split / cls
            target.mkdir(parents=True)
            for source in sorted((shared_root / "flowers5" / split / cls).glob("*.jpg"))[:per_class]:
                shutil.copy(source, target)
    return root


def test_user_folder_with_corrupt_and_zero_byte_images_skips_and_counts_them(tmp_path, shared_root):
    root = _user_folder(tmp_path, shared_root, ["daisy", "rose"])
    good = next((root / "train" / "daisy").glob("*.jpg")).read_bytes()
    (root / "train" / "daisy" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "train" / "rose" / "empty.jpg").write_bytes(b"")
    (root / "train" / "rose" / "notes.txt").write_text("not an image")
    data = load_images(str(root), 32)
    assert data.info.name == "my_data" and data.info.n_classes == 2
    assert data.info.n_skipped_corrupt == 2
    assert any("truncated.jpg" in f for f in data.info.skipped_files)
    assert any("empty.jpg" in f for f in data.info.skipped_files)
    assert len(data.train_labels) == 8


def test_folder_with_one_class_is_refused(tmp_path, shared_root):
    root = _user_folder(tmp_path, shared_root, ["daisy"])
    with pytest.raises(DatasetError, match="1 class folder"):
        dataset_info(str(root))


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'.*flowers5"):
        dataset_info("imagenet")


def _scans(shared_root, label: str, n: int) -> list[np.ndarray]:
    """Real chest X-rays (8-bit grey JPEGs) as pixels."""
    paths = sorted((shared_root / "chest_xray_pneumonia" / "train" / label).glob("*.jpg"))[:n]
    return [np.asarray(Image.open(path).convert("L")) for path in paths]


def _stretched(pixels: np.ndarray) -> np.ndarray:
    low, high = float(pixels.min()), float(pixels.max())
    return np.round((pixels - low) * 255.0 / (high - low)).astype(np.uint8)


@pytest.mark.parametrize("bits", [16, 12])
def test_deep_scans_keep_their_contrast_instead_of_clipping_to_white(tmp_path, shared_root, bits):
    """A scanner's 16-bit PNG (all 16 bits, or 12 of them) and a float TIFF decode as the 8-bit scan would."""
    scan = _scans(shared_root, "NORMAL", 1)[0]
    deep, floating = tmp_path / "scan.png", tmp_path / "scan.tiff"
    Image.fromarray(scan.astype(np.uint16) * ((2 ** bits - 1) // 255)).save(deep)
    Image.fromarray(scan.astype(np.float32) / 255).save(floating)
    assert Image.open(deep).mode.startswith("I;16") and Image.open(floating).mode == "F"
    expected = to_square(_stretched(scan), 64, 1).astype(int)
    for path in (deep, floating):
        decoded = to_square(path, 64, 1).astype(int)
        assert np.abs(decoded - expected).max() <= 2, path.name


def test_a_folder_of_16_bit_scans_is_read_as_grey_with_contrast(tmp_path, shared_root):
    root = tmp_path / "scans16"
    for label in ("NORMAL", "PNEUMONIA"):
        scans = _scans(shared_root, label, 5)
        for split, part in (("train", scans[:3]), ("test", scans[3:])):
            (root / split / label).mkdir(parents=True)
            for i, scan in enumerate(part):
                Image.fromarray(scan.astype(np.uint16) * 257).save(root / split / label / f"{i}.png")
    data = load_images(str(root), 32)
    assert data.info.channels == 1 and data.train_images.shape[-1] == 1
    assert data.train_images.mean() < 200 and data.train_images.std() > 20  # not clipped to white


def test_a_photo_is_turned_upright_by_its_exif_orientation(tmp_path, shared_root):
    photo = next((shared_root / "flowers5" / "train" / "daisy").glob("*.jpg"))
    upright = Image.open(photo).convert("RGB")
    stored = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show
    upright.transpose(Image.Transpose.ROTATE_90).save(stored, quality=95, exif=exif)
    expected = to_square(np.asarray(upright), 64, 3).astype(int)
    decoded = to_square(stored, 64, 3).astype(int)
    sideways = to_square(np.asarray(Image.open(stored)), 64, 3).astype(int)  # the pixels as stored
    assert np.abs(decoded - expected).mean() < 3 < np.abs(sideways - expected).mean()


def test_a_class_kept_in_subfolders_is_read_whole_and_hidden_files_are_not(tmp_path, shared_root):
    """As the probe reads an upload: a class per patient or per day in subfolders; macOS's ._ files skipped."""
    root = _user_folder(tmp_path, shared_root, ["daisy", "rose"])
    for split in ("train", "test"):
        nested = root / split / "rose" / "day2"
        nested.mkdir()
        for photo in list((root / split / "rose").glob("*.jpg"))[:2]:
            photo.rename(nested / photo.name)
        (nested / "._copy.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    data = load_images(str(root), 32)
    assert np.bincount(data.train_labels).tolist() == [4, 4] and data.info.n_skipped_corrupt == 0


def test_a_colour_folder_whose_first_image_is_grey_stays_colour(tmp_path, shared_root):
    root = _user_folder(tmp_path, shared_root, ["daisy", "rose"])
    first = sorted((root / "train" / "daisy").glob("*.jpg"))[0]
    Image.open(first).convert("L").save(first)
    (root / "train" / "daisy" / "0_empty.jpg").write_bytes(b"")  # unreadable, and first in the pool
    assert dataset_info(str(root)).channels == 3
    for photo in root.rglob("*.jpg"):
        if photo.stat().st_size:
            Image.open(photo).convert("L").save(photo)
    assert dataset_info(str(root)).channels == 1


def test_features_of_a_folder_whose_images_changed_are_extracted_afresh(tmp_path, shared_root):
    """Same name, classes and counts, other photos: the features cached for the first folder are not reused."""
    import torch

    from study.features import extract_features

    ids = []
    for flowers in (["daisy", "rose"], ["tulip", "sunflower"]):
        root = _user_folder(tmp_path / flowers[0], shared_root, flowers, per_class=3)
        for folder, name in zip(sorted((root / "train").iterdir()), ["a", "b"]):
            folder.rename(folder.with_name(name))
        for folder, name in zip(sorted((root / "test").iterdir()), ["a", "b"]):
            folder.rename(folder.with_name(name))
        data = load_images(str(root), 32)
        ids.append(extract_features(data, "mobilenetv2_100", torch.device("cpu")).extraction["extraction_id"])
    assert ids[0] != ids[1] and all(i.startswith("my_data-") for i in ids)


def test_a_folder_without_a_readme_row_takes_its_domain_from_its_source_md(tmp_path, shared_root):
    root = _user_folder(tmp_path, shared_root, ["daisy", "rose"])
    assert dataset_info(str(root)).domain == "user data (unknown domain)"
    (root / "SOURCE.md").write_text("# my_data\n\n- **What**: photos.\n- **Domain**: natural objects (garden flowers).\n")
    assert dataset_info(str(root)).domain == "natural objects (garden flowers)"


def test_a_folder_without_a_readme_row_states_the_size_of_its_images(tmp_path, shared_root):
    root = _user_folder(tmp_path, shared_root, ["daisy", "rose"])
    for photo in root.rglob("*.jpg"):
        Image.open(photo).resize((300, 200)).save(photo)
    assert dataset_info(str(root)).native_size == "300x200 (8) of 8 sampled"
