#!/usr/bin/env bash
# The device check: one call on a fresh H200 machine, at most 6 minutes, one summary table at the end.
#   1. CUDA tests (pytest -m gpu: bf16 and fp16 training, compile, resume, pipeline on the GPU);
#   2. recipes h200-10s and h200-2min: time to accuracy (the trainer's own clock, from the first step to each printed
#      accuracy line; process start and imports beside it) and images/s.
# `benchmarks/gpu.sh --long` runs h200-5min alone instead (a second call, if the device minutes allow).
#
# Prepare here first: `bash benchmarks/gpu_prepare.sh` (wheels into .whl/, raw files into .gpu_data/), then call the
# device tool with command `bash benchmarks/gpu.sh`, carry [".whl", ".gpu_data"], timeout_s 420. The machine has no
# network: everything comes from the carried folders. Results go to $OUT (the tool brings them back): summary.md,
# gpu_tests.log, and per recipe its log and all_results.json.
#
# GPU_DRY_RUN=1 runs the whole script here on CPU with tiny settings (tests are skipped without CUDA; each recipe
# trains 8 steps on 256 images, without compiling), into out/gpu-dry-run unless OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
long=0
[ "${1:-}" = "--long" ] && long=1
dry=${GPU_DRY_RUN:-0}
python=${PYTHON:-python3}
[ "$dry" = 1 ] && [ -x .venv/bin/python ] && python=${PYTHON:-.venv/bin/python}
out=${OUT:-$PWD/out/gpu$([ "$dry" = 1 ] && echo -dry-run)}
work=$(mktemp -d /tmp/hf_fmnist_gpu.XXXXXX)
mkdir -p "$out"
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }

# Offline and cold, as on the device: no Hub calls, fresh caches under $work.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export HF_HOME=$work/hf_home HF_DATASETS_CACHE=$work/datasets HF_FMNIST_CACHE=$work/hf_fmnist PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=$work/inductor

# 1. Packages: the carried wheels (not in a dry run: the venv has them), then this repository, into one folder that
# PYTHONPATH puts first. `python -P` keeps the source tree off sys.path: the installed package is the complete one.
site=$work/site
if [ "$dry" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
fi
"$python" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target "$site" . \
  >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; exit 1; }
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
py=("$python" -P)
versions=$("${py[@]}" -c '
import sys, torch, transformers, accelerate, datasets, pyarrow, hf_fmnist
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device (CPU)"
print(f"{gpu}; python {sys.version.split()[0]}, torch {torch.__version__}, transformers "
      f"{transformers.__version__}, accelerate {accelerate.__version__}, datasets {datasets.__version__}, "
      f"pyarrow {pyarrow.__version__}, hf_fmnist {hf_fmnist.__version__} from {hf_fmnist.__file__}")') || exit 1
echo "gpu.sh: $versions"
date -u +"gpu.sh: started %Y-%m-%d %H:%M:%S UTC"

# 2. The dataset, built once from the carried raw files (the recipes then start with a warm cache, as on CPU).
data=.gpu_data
[ -d "$data" ] || data=${HF_FMNIST_DATA_DIR:-/usr/share/datasets/fashion-mnist}
"${py[@]}" -m hf_fmnist.cli build --data-dir "$data" --output-dir "$work/export" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; exit 1; }
echo "gpu.sh: dataset built from $data at $(elapsed) s"

runs=()
run_recipe() {  # NAME TARGET_PERCENT TIME_LIMIT_S
  local name=$1 target=$2 limit=$3 extra=()
  if [ "$dry" = 1 ]; then  # a few steps; bf16 autocast stays on (slow on a CPU without bf16 hardware)
    extra=(--max_train_samples 256 --max_eval_samples 500 --num_train_epochs 2 --per_device_train_batch_size 64
           --per_device_eval_batch_size 250 --no-torch_compile)
    limit=900
  fi
  echo "gpu.sh: $name (limit ${limit} s) at $(elapsed) s"
  timeout "$limit" "${py[@]}" train.py --recipe "$name" --data_dir "$data" --output_dir "$work/$name" "${extra[@]}" \
    >"$out/$name.log" 2>&1
  echo "gpu.sh: $name exit status $? at $(elapsed) s"
  [ -f "$work/$name/all_results.json" ] && cp "$work/$name/all_results.json" "$out/$name.all_results.json"
  runs+=(--run "$name:$out/$name.log:$work/$name:$target")
}

if [ "$long" = 1 ]; then
  run_recipe h200-5min 96.0 330
  tests=()
else
  # 3. CUDA tests (skipped without CUDA): at most 135 s, compile included; worst case of the whole script: about 6 minutes.
  echo "gpu.sh: CUDA tests at $(elapsed) s"
  timeout 135 "${py[@]}" -m pytest -q -m gpu -p no:cacheprovider tests/test_precision.py \
    --junitxml "$out/gpu_tests.xml" >"$out/gpu_tests.log" 2>&1
  echo "gpu.sh: tests exit status $? at $(elapsed) s"
  tests=(--tests "$out/gpu_tests.xml")
  run_recipe h200-10s 94.0 45
  run_recipe h200-2min 95.5 155
fi

"${py[@]}" benchmarks/gpu_summary.py "${tests[@]}" "${runs[@]}" --output "$out/summary.md" \
  --header "$(date -u +%Y-%m-%d) $([ "$dry" = 1 ] && echo 'DRY RUN (CPU, tiny settings: no GPU numbers); ')$versions; total $(elapsed) s"
rm -rf "$work"
