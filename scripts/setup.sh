#!/usr/bin/env bash
# The test set-up (CI runs `bash scripts/setup.sh && .venv/bin/python -m pytest -q`); safe to run again.
#   1. Everything scripts/setup_main.sh does (Debian's dataset-fashion-mnist, .venv, the pinned CPU torch), with this
#      package's dev extras: the demo and onnx extras, pytest, selenium, ruff and mypy.
#   2. Debian's chromium and chromium-driver, for the demo's browser test, where apt-get is available.
#   3. transformers.js from the npm registry, exactly as js/package-lock.json pins it (npm ci: about 25 s), for the
#      transformers.js tests and `push-space --static`. --ignore-scripts: onnxruntime-node's CPU binary is in its
#      package, and its install script would download more from outside the registries.
# Environment: as scripts/setup_main.sh (PYTHON, TORCH_SPEC, TORCH_INDEX_URL).
set -euo pipefail
SETUP_EXTRAS=dev
# shellcheck source=scripts/setup_main.sh
. "$(dirname "$0")/setup_main.sh"  # the light set-up, with SETUP_EXTRAS; defines apt_install

# The demo's browser test drives Debian's headless Chromium through chromedriver (browsers cannot be downloaded by
# selenium or playwright everywhere); without them that one test is skipped.
if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } && ! apt_install chromium chromium-driver; then
  echo "setup: could not install chromium and chromium-driver; the demo's browser test will be skipped" >&2
fi
if ! command -v npm >/dev/null && ! apt_install nodejs npm; then
  echo "setup: could not install Node and npm; the transformers.js tests will be skipped (failed under CI=true)" >&2
fi
if command -v npm >/dev/null; then
  (cd js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
# `hf-fmnist tune --storage` is tested against a real PostgreSQL server that the test starts on a private port (its
# own cluster in a temp folder, removed afterwards): Debian's server binaries, where missing.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! apt_install postgresql; then
  echo "setup: could not install postgresql; the shared-study test will be skipped (it fails under CI=true)" >&2
fi
echo "setup: ready for the tests (.venv/bin/hf-fmnist, .venv/bin/python)"
