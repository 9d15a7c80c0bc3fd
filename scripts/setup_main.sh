#!/usr/bin/env bash
# The light set-up: what the main job (scripts/main.sh: build, summary, train, evaluate) needs, on a fresh machine;
# safe to run again.
#   1. Debian's dataset-fashion-mnist package (the four original files), where apt-get is available (it asks for sudo
#      when not root); without it hf_fmnist downloads the files from the official mirrors on first use.
#   2. A virtual environment in .venv with the CPU build of torch, then this package (no extras).
# scripts/setup.sh, the test set-up, sources this file and adds the dev extras and Chromium.
# Environment: PYTHON (default python3); TORCH_SPEC (default torch==2.13.0); TORCH_INDEX_URL, e.g.
# https://download.pytorch.org/whl/cpu to get a CPU-only torch where the default index serves CUDA builds;
# SETUP_EXTRAS, pip extras to install with the package (setup.sh: dev).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_updated=""
apt_install() {  # apt_install PACKAGE... ; fails without apt-get; runs apt-get update once
  command -v apt-get >/dev/null || return 1
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if [ -z "$apt_updated" ]; then $sudo apt-get update -qq >/dev/null && apt_updated=1 || return 1; fi
  $sudo apt-get install -y -qq "$@" >/dev/null
}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && ! apt_install dataset-fashion-mnist; then
  echo "setup: could not install dataset-fashion-mnist; the raw files will be downloaded on first use" >&2
fi

"${PYTHON:-python3}" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: an unpinned torch, also as another package's dependency, pulls a multi-GB CUDA build.
"${pip[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch==2.13.0}"
"${pip[@]}" -e ".${SETUP_EXTRAS:+[$SETUP_EXTRAS]}"
if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run, not sourced by setup.sh
  echo "setup: ready for the main job (.venv/bin/hf-fmnist, .venv/bin/python)"
fi
