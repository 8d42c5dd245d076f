#!/usr/bin/env bash
# Pretraining with torchrun (no SLURM): run this on every node with the same MASTER_ADDR.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 GPUS=4 bash scripts/torchrun_pretrain.sh [cli args]
# Lightning detects torchrun's environment (TorchElasticEnvironment) and does not spawn processes itself.
set -euo pipefail
cd "$(dirname "$0")/.."
NNODES="${NNODES:-1}"; NODE_RANK="${NODE_RANK:-0}"; GPUS="${GPUS:-$(nvidia-smi -L | wc -l)}"
torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
    cli.py fit -c configs/base.yaml -c configs/trainer/multi_gpu.yaml \
    --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS" "$@"
