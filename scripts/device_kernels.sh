#!/usr/bin/env bash
# The CUDA checks of the speed options (model.kernels, model.compile,
# model.gradient_checkpointing) and the MFU runs, prepared to run in one command on a machine
# with a GPU. docs/performance.md ("Waiting for a device") says what each part proves.
#
#   bash scripts/device_kernels.sh                 # all of it, in this order:
#   bash scripts/device_kernels.sh test            # pytest -m gpu tests/test_gpu.py
#   bash scripts/device_kernels.sh equality        # bench_train.py --gpu --preset equality
#   bash scripts/device_kernels.sh mfu [MODEL...]  # bench_train.py --gpu --preset mfu
#
# Logs and JSON go to $OUT if set, else logs/device. Offline machines: wheels found in
# .device/whl/ are installed first; .device/tokenizers/qwen2_5 (if there) gives the MFU
# models Qwen2.5's vocabulary. .device/ is git-ignored.
set -uo pipefail
what=${1:-all}
shift || true
out=${OUT:-logs/device}
mkdir -p "$out"
if compgen -G ".device/whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .device/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
rc=0
case $what in all | test)
    # every CUDA test: ZeRO-2/3 and FSDP in bf16, QLoRA nf4, MFU, and each speed option's
    # losses against the plain path (bf16 tolerance)
    python3 -m pytest -q -m gpu tests/test_gpu.py tests/test_packing.py -p no:cacheprovider 2>&1 \
        | tee "$out/test_gpu.log" || rc=1 ;;
esac
case $what in all | equality)
    # per strategy (gpu, deepspeed_zero2, fsdp) and variant: max |loss - plain's|, speed
    python3 scripts/bench_train.py --gpu --preset equality 2>&1 \
        | tee "$out/bench_equality.log" || rc=1 ;;
esac
case $what in all | mfu)
    tok=()
    [ -d .device/tokenizers/qwen2_5 ] && tok=(--tokenizer .device/tokenizers/qwen2_5)
    models=("$@")
    [ ${#models[@]} -eq 0 ] && models=(qwen2_5_1_5b qwen2_5_7b_lora llama3_8b_lora)
    for model in "${models[@]}"; do
        python3 scripts/bench_train.py --gpu --preset mfu --models "$model" "${tok[@]}" 2>&1 \
            | tee "$out/bench_mfu_$model.log" || rc=1
    done ;;
esac
exit $rc
