#!/usr/bin/env bash
# Pretraining on a SLURM cluster: 2 nodes x 4 GPUs, one task per GPU, requeued on preemption.
#   mkdir -p runs && sbatch scripts/slurm_pretrain.sh -c configs/loss/hard_contrastive.yaml   (extra args: cli.py)
# SLURM opens the log below (runs/slurm-<job>.out) before the script runs: runs/ must exist.
# Lightning reads SLURM's variables (SLURM_NTASKS, SLURM_PROCID, ...) and, on the signal below,
# saves runs/.../hpc_ckpt_N.ckpt and requeues the job; the requeued job resumes from it.
#SBATCH --job-name=contrastive-pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@120
#SBATCH --requeue
#SBATCH --output=runs/slurm-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
export WANDB_MODE="${WANDB_MODE:-offline}"
# a requeued job keeps its SLURM_JOB_ID: the same W&B run continues
export WANDB_RUN_ID="${WANDB_RUN_ID:-slurm-${SLURM_JOB_ID:-local}}" WANDB_RESUME="${WANDB_RESUME:-allow}"
# num_nodes and devices must match the #SBATCH lines above
srun python cli.py fit -c configs/base.yaml -c configs/trainer/multi_node.yaml \
    --trainer.num_nodes "${SLURM_NNODES:-2}" --trainer.devices "${SLURM_NTASKS_PER_NODE:-4}" \
    --data.init_args.num_workers "${SLURM_CPUS_PER_TASK:-8}" "$@"
