#!/bin/bash
# Train on N machines x G GPUs under SLURM, preemptible: a signal makes train.py finish its optimizer step, write a
# checkpoint and exit with status 75 ("stopped by a signal after writing a checkpoint; requeue me"); this script
# then requeues itself, and the next allocation continues with --resume_from_checkpoint latest, on any number of
# machines or GPUs. See docs/clusters.md.
#
#   sbatch docs/examples/slurm_train.sh
#
#SBATCH --job-name=hf-fmnist
#SBATCH --nodes=2                   # N machines
#SBATCH --ntasks-per-node=4         # G training processes per machine, one per GPU ...
#SBATCH --gpus-per-node=4           # ... and G GPUs
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --signal=USR1@120           # SIGUSR1 to every training process 120 s before the time limit
#SBATCH --requeue                   # this job may be requeued (below, or by the scheduler on preemption)
#SBATCH --open-mode=append          # a requeued job appends to its log instead of overwriting it
#SBATCH --output=%x-%j.log

set -u
# On storage every machine mounts: process 0 writes the model, the card and the checkpoints there, and every
# process reads the checkpoint back on resume (train.py refuses to start when a machine cannot see it).
OUT=${OUT:-/shared/$USER/fmnist-vit}
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export OUT

# No launcher between SLURM and the training processes: srun starts one python per GPU, so SLURM's signals reach
# them directly (torchrun and `accelerate launch` do not pass SIGUSR1 on, and kill their workers 30 s after a
# SIGTERM) and srun returns their exit status (both launchers turn 75 into 1). Accelerate reads the ranks from the
# environment set here, as it reads torchrun's.
srun --kill-on-bad-exit=1 bash -c '
  export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID LOCAL_WORLD_SIZE=$SLURM_NTASKS_PER_NODE
  exec python train.py --output_dir "$OUT" --model_name_or_path vit --checkpointing_steps 500 \
    --resume_from_checkpoint latest'
status=$?

if [ "$status" -eq 75 ]; then
  echo "stopped by a signal after writing a checkpoint: requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
