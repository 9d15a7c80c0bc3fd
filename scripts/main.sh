#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up (scripts/setup_main.sh: only what these steps need), build and
# export the dataset, summarise it, train with the cpu-5min recipe (the CNN preset, 9 epochs of batch 512; its
# measured results, per CPU, are in docs/benchmarks.md), evaluate it, and leave a Hub-ready model folder with card
# and plots in out/model.
# Environment: EPOCHS (default: the recipe's 9), OUT (default out); set-up variables as in scripts/setup_main.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}

bash scripts/setup_main.sh
.venv/bin/hf-fmnist build --output-dir "$out/fashion_mnist"
.venv/bin/hf-fmnist summary --dataset "$out/fashion_mnist" --grid "$out/samples.png"
# Every launcher setting given, so accelerate does not open the output with its "values were not passed" warning; the
# recipe still picks the precision (train.py's settings override the launcher's defaults).
.venv/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train.py --recipe cpu-5min --output_dir "$out/model" ${EPOCHS:+--num_train_epochs "$EPOCHS"}
.venv/bin/hf-fmnist evaluate --model "$out/model"
echo "main: done. Dataset export: $out/fashion_mnist; model folder (card, plots, results): $out/model"
