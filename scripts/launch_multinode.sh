#!/usr/bin/env bash
# One training run over several machines with torchrun's rendezvous (no scheduler).
# Start the same command on every node, with the same MASTER_ADDR, RUN_DIR (on a shared
# file system) and overrides; NODE_RANK differs per node.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 RUN_DIR=/shared/runs/exp1 \
#     scripts/launch_multinode.sh 8 trainer=deepspeed_zero3 model=llama3_1_instruct \
#     model.path=/models/Llama-3.1-8B-Instruct
set -euo pipefail

NPROC="${1:?usage: $0 GPUS_PER_NODE [hydra overrides...]}"
shift
: "${NNODES:?set NNODES}" "${NODE_RANK:?set NODE_RANK}" "${MASTER_ADDR:?set MASTER_ADDR}"
: "${RUN_DIR:?set RUN_DIR to a folder on a file system all nodes share}"
MASTER_PORT="${MASTER_PORT:-29500}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
export TOKENIZERS_PARALLELISM=false

exec torchrun --nnodes="$NNODES" --node-rank="$NODE_RANK" --nproc-per-node="$NPROC" \
    --master-addr="$MASTER_ADDR" --master-port="$MASTER_PORT" -m xlam.train \
    trainer.devices="$NPROC" trainer.num_nodes="$NNODES" \
    hydra.run.dir="$RUN_DIR" "$@"
