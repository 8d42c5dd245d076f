#!/usr/bin/env bash
# Table 1 on a SLURM cluster: one grid cell (pretraining + linear evaluation) per array task, one GPU each.
#   sbatch scripts/slurm_sweep.sh                                       # the 40 cells of grid_table1.yaml
#   GRID=configs/experiments/grid_short.yaml OUT=runs/short sbatch --array=0-6 scripts/slurm_sweep.sh
#   sbatch --array=0-9 scripts/slurm_sweep.sh --cache-features          # extra arguments go to sweep.py
# The array must cover the grid: `python scripts/sweep.py <grid> --count` cells, indices 0 to count-1.
# SLURM needs the log folder before the job starts: mkdir -p runs.
# Resubmitting the same array is safe: finished cells are skipped, interrupted pretrainings resume
# from their last.ckpt (saved every epoch), unfinished linear evaluations are redone.
# The ImageNet-100 cells (30-39: ResNet-50, 224-pixel JPEGs) are the slow ones; if one outlives --time,
# resubmit its index and it resumes.
#SBATCH --job-name=contrastive-table1
#SBATCH --array=0-39
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=runs/slurm-%A_%a.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
export WANDB_MODE="${WANDB_MODE:-offline}"
GRID="${GRID:-configs/experiments/grid_table1.yaml}"
OUT="${OUT:-runs/table1}"
python scripts/sweep.py "$GRID" --out "$OUT" --index "${SLURM_ARRAY_TASK_ID:?run this under sbatch --array}" "$@"
