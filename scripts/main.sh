#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, build and export the dataset, summarise it, train with the
# cpu-5min recipe (the CNN preset, 9 epochs of batch 512; its measured result is in hf_fmnist/recipes.py and
# docs/benchmarks.md), evaluate it, and leave a Hub-ready model folder with card and plots in out/model.
# Environment: EPOCHS (default: the recipe's 9), OUT (default out).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}

bash scripts/setup.sh
.venv/bin/hf-fmnist build --output-dir "$out/fashion_mnist"
.venv/bin/hf-fmnist summary --dataset "$out/fashion_mnist" --grid "$out/samples.png"
.venv/bin/accelerate launch --num_processes 1 train.py --recipe cpu-5min --output_dir "$out/model" \
  ${EPOCHS:+--num_train_epochs "$EPOCHS"}
.venv/bin/hf-fmnist evaluate --model "$out/model"
echo "main: done. Dataset export: $out/fashion_mnist; model folder (card, plots, results): $out/model"
