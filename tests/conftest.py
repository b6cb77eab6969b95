"""Tests run on small slices of the real datasets at low resolution; decoded images and features are cached
in one temporary folder for the whole session (as the study caches them), so each is computed once."""
import atexit
import os
import shutil
import tempfile

import pytest

_CACHE = tempfile.mkdtemp(prefix="eot-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)  # decoded images and features: gone with the session
os.environ.setdefault("EOT_CACHE_DIR", _CACHE)

TEST_RESOLUTION = 64


@pytest.fixture(scope="session")
def cpu():
    import torch

    return torch.device("cpu")


@pytest.fixture(scope="session")
def shared_root():
    from study.datasets import shared_datasets_root

    root = shared_datasets_root()
    assert root.is_dir(), f"../shared/datasets missing at {root}"
    return root
