#!/usr/bin/env bash
# Set up this checkout on a fresh machine; safe to run again.
#   1. Debian's dataset-fashion-mnist package (the four original files), where apt-get is available;
#      without it hf_fmnist downloads the files from the official mirrors on first use.
#      Debian's chromium and chromium-driver too, for the demo's browser test.
#   2. A virtual environment in .venv with the CPU build of torch, then this package with its dev extras.
# Environment: PYTHON (default python3); TORCH_SPEC (default torch==2.13.0); TORCH_INDEX_URL, e.g.
# https://download.pytorch.org/whl/cpu to get a CPU-only torch where the default index serves CUDA builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  updated=""
  apt_install() {  # apt_install PACKAGE... ; runs apt-get update once
    if [ -z "$updated" ]; then $sudo apt-get update -qq >/dev/null && updated=1 || return 1; fi
    $sudo apt-get install -y -qq "$@" >/dev/null
  }
  if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && ! apt_install dataset-fashion-mnist; then
    echo "setup: could not install dataset-fashion-mnist; the raw files will be downloaded on first use" >&2
  fi
  # The demo's browser test drives Debian's headless Chromium through chromedriver (browsers cannot be downloaded
  # by selenium or playwright everywhere); without them that one test is skipped.
  if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } && ! apt_install chromium chromium-driver; then
    echo "setup: could not install chromium and chromium-driver; the demo's browser test will be skipped" >&2
  fi
fi

"${PYTHON:-python3}" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: an unpinned torch, also as another package's dependency, pulls a multi-GB CUDA build.
"${pip[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch==2.13.0}"
"${pip[@]}" -e ".[dev]"
echo "setup: ready (.venv/bin/hf-fmnist, .venv/bin/python)"
