import hashlib
import shutil

import numpy as np
import pytest

from study.datasets import DatasetError, dataset_info, list_datasets, load_images, sample_subset

SHARED = ["brain_tumor_mri", "dtd_textures10", "flowers5", "neu_steel_defects", "rsscn7_aerial"]


def test_registry_has_package_and_shared_datasets():
    names = set(list_datasets())
    assert {"elpv", "fashion_mnist", "mnist5k", "animal_mnist", *SHARED} <= names


@pytest.mark.parametrize("name", ["elpv", "fashion_mnist", "mnist5k", "animal_mnist", "neu_steel_defects"])
def test_datasets_decode_with_fixed_splits_and_metadata(name):
    data = load_images(name, 32)
    info = data.info
    assert data.train_images.shape[1:3] == (32, 32) and data.train_images.dtype == np.uint8
    assert data.train_images.shape[3] == info.channels == 1  # these five are greyscale
    assert len(data.train_images) == len(data.train_labels) == info.n_train_pool > 0
    assert len(data.test_images) == info.n_test > 0
    assert set(np.unique(data.train_labels)) == set(range(info.n_classes))
    assert info.domain and info.licence and info.source and info.split
    again = load_images(name, 32)  # from the cache, identical
    assert np.array_equal(again.test_labels, data.test_labels)


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
