"""Dataset registry: name -> loader of a real image dataset with a fixed test split and metadata.

Images are decoded once per resolution (shorter side resized, centre crop) and cached as uint8 arrays, so every
run at that resolution reuses them. Grey datasets keep one channel; models see it replicated to three.

  base      error, records (DatasetInfo, ImageData, the undecoded source), roots, split rules
  packed    the NAME.npz format the device pack carries datasets in (``EOT_PACKED_DATASETS``)
  loaders   the registry and its loaders (packages, Debian files, ../shared/datasets, folder paths)
  images    decode + cache per resolution, class-balanced subsets
"""
from study.datasets.base import (IMAGE_SUFFIXES, MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, PROJECT_ROOT, SPLIT_SEED,
                                 TEST_FRACTION, DatasetError, DatasetInfo, ImageData, cache_root, is_grey, is_hidden,
                                 is_path, shared_datasets_root)
from study.datasets.images import load_images, native_shorter_side, sample_subset, to_square
from study.datasets.loaders import _folder_source  # noqa: F401 (tests build folder sources directly)
from study.datasets.loaders import (dataset_info, dataset_name, largest_class_pool, list_datasets, original_source,
                                   register_dataset)
from study.datasets.packed import (LOSSLESS_CODECS, PACKED_FORMAT, decode_images, encode_images,
                                   packed_datasets_root, packed_file)

__all__ = ["IMAGE_SUFFIXES", "MAX_ASPECT_RATIO", "MAX_IMAGE_PIXELS", "PROJECT_ROOT", "SPLIT_SEED", "TEST_FRACTION",
           "DatasetError", "DatasetInfo", "ImageData", "cache_root", "is_grey", "is_hidden", "is_path",
           "shared_datasets_root",
           "load_images", "native_shorter_side", "sample_subset", "to_square", "dataset_info", "dataset_name",
           "largest_class_pool", "list_datasets", "original_source", "register_dataset", "LOSSLESS_CODECS",
           "PACKED_FORMAT", "decode_images", "encode_images", "packed_datasets_root", "packed_file"]
