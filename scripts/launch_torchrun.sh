#!/usr/bin/env bash
# One multi-GPU training run on this machine, launched by torchrun (one process per GPU).
#
#   scripts/launch_torchrun.sh 8 trainer=deepspeed_zero3 model=qwen2_5_instruct \
#       model.path=/models/Qwen2.5-7B-Instruct experiment=xlam_fc
#
# Every rank must write into the same run directory, so it is fixed here (Hydra would
# otherwise stamp each rank's start time). Re-running with the same RUN_DIR and
# ckpt_path=last resumes. Never wrap this in `xlam-train -m`: sweeps run single-process points.
set -euo pipefail

NPROC="${1:?usage: $0 NUM_GPUS [hydra overrides...]}"
shift
RUN_DIR="${RUN_DIR:-$PWD/logs/train/runs/$(date +%Y-%m-%d_%H-%M-%S)_torchrun}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
export TOKENIZERS_PARALLELISM=false

exec torchrun --standalone --nnodes=1 --nproc-per-node="$NPROC" -m xlam.train \
    trainer.devices="$NPROC" trainer.num_nodes=1 \
    hydra.run.dir="$RUN_DIR" "$@"
