#!/usr/bin/env bash
# Prepare what benchmarks/gpu.sh needs on the device machine, which has no network: Python 3.12 wheels of the packages
# its image lacks (into .whl/) and the four raw Fashion-MNIST files (into .gpu_data/). Both folders are git-ignored;
# name them in the device tool's `carry`. Run here, in the repository, with network access to PyPI.
#
# The image has torch 2.11 (CUDA), transformers 5.17, accelerate 1.15, huggingface-hub, safetensors, pandas, pyarrow,
# pytest (see /work/.library/device/KINDS.md), but not datasets or evaluate. datasets 5.2 asks for fsspec <= 2026.9.0
# (carried, small) and pyarrow >= 24: a pyarrow wheel is 55 MB and would break the device tool's 64 MiB limit beside
# the 30 MB of raw data, so the machine's own pyarrow is used (gpu.sh prints its version; datasets does not check it
# at import). Usage: bash benchmarks/gpu_prepare.sh [RAW_DIR]   (default: Debian's dataset-fashion-mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
raw=${1:-${HF_FMNIST_DATA_DIR:-/usr/share/datasets/fashion-mnist}}
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3

# Versions: what this repository is tested with here (pip show in .venv), pinned so the device runs the same code.
pins=(datasets==5.2.0 evaluate==0.4.6 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0)
rm -rf .whl.tmp && mkdir -p .whl.tmp
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl.tmp "${pins[@]}"
rm -rf .whl && mv .whl.tmp .whl

mkdir -p .gpu_data
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -f "$raw/$name.gz" ]; then cp "$raw/$name.gz" .gpu_data/; elif [ -f "$raw/$name" ]; then gzip -c "$raw/$name" > ".gpu_data/$name.gz"
  else echo "error: $raw has no $name(.gz); pass the folder holding the four raw Fashion-MNIST files" >&2; exit 2; fi
done
echo "gpu_prepare: $(ls .whl | wc -l) wheels in .whl ($(du -sh .whl | cut -f1)), raw files in .gpu_data ($(du -sh .gpu_data | cut -f1))"
echo "device run: command 'bash benchmarks/gpu.sh', carry ['.whl', '.gpu_data'], timeout_s 420"
