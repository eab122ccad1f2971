#!/usr/bin/env bash
# The CUDA checks of the speed options (model.kernels, model.compile,
# model.gradient_checkpointing), the MFU runs and the comparison with TRL, prepared to run in
# one command on a machine with a GPU. docs/performance.md ("On a GPU") says what each part
# proves.
#
#   bash scripts/device_kernels.sh                 # all of it, in the order below
#   bash scripts/device_kernels.sh setup           # wheels, then every import (a smoke test)
#   bash scripts/device_kernels.sh test            # pytest -m gpu (every CUDA test)
#   bash scripts/device_kernels.sh equality        # bench_train.py --gpu --preset equality
#   bash scripts/device_kernels.sh mfu MODEL [bench_train.py options]   # --preset mfu
#   bash scripts/device_kernels.sh trl [bench_vs_trl.py options]        # xlam vs TRL, --gpu
#
# Everything is appended to one log, $OUT/device.log if OUT is set, else logs/device/; each
# benchmark's last line there is its JSON. XLAM_DEVICE_DEADLINE (epoch seconds) stops the
# part that runs past it (`all` gives each part what is left). Offline machines: the wheels
# in .device/whl/ are installed first (once per machine); if the carried transformers does
# not import there, the image's own is used. .device/tokenizers/qwen2_5 (if there) gives the
# real-shape models Qwen2.5's vocabulary, .device/data/ the glaive sample for `trl`.
# .device/ is git-ignored.
set -uo pipefail
what=${1:-all}
shift || true
out=${OUT:-logs/device}
mkdir -p "$out"
log="$out/device.log"
site=/tmp/xlam-site
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

smoke() {
    python3 - <<'EOF'
import importlib, torch
assert torch.cuda.is_available(), "no CUDA device"
for m in ("transformers", "huggingface_hub", "peft", "lightning", "deepspeed", "hydra",
          "datasets", "liger_kernel", "bitsandbytes", "trl", "xlam.train"):
    try:
        mod = importlib.import_module(m)
        print(f"{m} {getattr(mod, '__version__', '')}")
    except Exception as e:  # noqa: BLE001 - the smoke test names what is missing
        print(f"{m} MISSING: {type(e).__name__}: {e}")
        if m in ("transformers", "deepspeed", "hydra", "datasets", "xlam.train"):
            raise SystemExit(1)
print("torch", torch.__version__, torch.cuda.get_device_name(0))
EOF
}

if compgen -G ".device/whl/*.whl" >/dev/null && [ ! -f "$site/.done" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .device/whl/*.whl 2>&1 | tee -a "$log" || exit 1
    touch "$site/.done"
fi
[ -d "$site" ] && export PYTHONPATH="$site"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

left() {  # seconds a part may run: its cap, or less where the deadline comes first
    local cap=$1 now
    now=$(date +%s)
    if [ -n "${XLAM_DEVICE_DEADLINE:-}" ] && [ $((XLAM_DEVICE_DEADLINE - now)) -lt "$cap" ]; then
        cap=$((XLAM_DEVICE_DEADLINE - now))
    fi
    echo $((cap > 1 ? cap : 1))
}

part() {  # part CAP_S NAME COMMAND...: the command under a time limit, logged
    local cap=$1 name=$2
    shift 2
    echo "=== $name ($(date +%T), up to $(left "$cap") s)" | tee -a "$log"
    timeout -k 10 "$(left "$cap")" bash -c '"$@"' _ "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: rc $rc" | tee -a "$log"
    return "$rc"
}

mfu() {  # mfu MODEL [options]
    local model=$1 tok=()
    shift
    [ -d .device/tokenizers/qwen2_5 ] && tok=(--tokenizer .device/tokenizers/qwen2_5)
    python3 scripts/bench_train.py --gpu --preset mfu --models "$model" "${tok[@]}" "$@"
}
trl() {
    local data=()
    [ -f .device/data/glaive_toolcall_en_demo.json ] &&
        data=(--data .device/data/glaive_toolcall_en_demo.json)
    [ -d .device/tokenizers/qwen2_5 ] && data+=(--tokenizer .device/tokenizers/qwen2_5)
    python3 scripts/bench_vs_trl.py --gpu "${data[@]}" "$@"
}
gpu_tests() {
    local n=()
    python3 -c "import xdist" 2>/dev/null && n=(-n 10)
    # every CUDA test: ZeRO-2/3 and FSDP in bf16, QLoRA nf4, MFU logged, packed attention,
    # and each speed option's losses against the plain path (bf16 tolerance)
    python3 -m pytest -q -m gpu tests/test_gpu.py tests/test_packing.py -p no:cacheprovider \
        "${n[@]}" -rs
}

export -f smoke mfu trl gpu_tests  # what `part` runs under timeout, in a child bash

if ! part 120 setup smoke; then
    if [ -d "$site/transformers" ]; then
        echo "the carried transformers does not import here: the image's own" | tee -a "$log"
        rm -rf "$site"/transformers* "$site"/huggingface_hub* "$site"/kernels* \
            "$site"/httpx2* "$site"/httpcore2*
        part 120 setup-image-transformers smoke || exit 1
    else
        exit 1
    fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"

rc=0
case $what in
all)
    # the most telling first: the bare step is the ceiling the xlam step is held against
    part 60 bare python3 scripts/bench_bare_step.py --shape qwen2_5_1_5b --profile || rc=1
    part 150 mfu-1.5b-gpu mfu qwen2_5_1_5b --strategies gpu --variants plain,liger_compile || rc=1
    part 200 test gpu_tests || rc=1
    part 150 trl trl --shape qwen2_5_1_5b --steps 8 || rc=1
    part 150 mfu-1.5b-sharded mfu qwen2_5_1_5b --strategies deepspeed_zero2,fsdp \
        --variants plain || rc=1
    # the 7B/8B shapes initialise on the CPU first: minutes each (2 were not enough for the 8B)
    part 300 mfu-8b-lora mfu llama3_8b_lora --strategies gpu --variants plain || rc=1
    part 300 mfu-7b-lora mfu qwen2_5_7b_lora --strategies gpu --variants plain || rc=1
    ;;
setup) ;;
test) part 1800 test gpu_tests || rc=1 ;;
equality)
    # per strategy (gpu, deepspeed_zero2, fsdp) and variant: max |loss - plain's|, speed
    part 3600 equality python3 scripts/bench_train.py --gpu --preset equality "$@" || rc=1
    ;;
mfu) part 3600 "mfu-$1" mfu "$@" || rc=1 ;;
trl) part 1800 trl trl "$@" || rc=1 ;;
*)
    echo "unknown part $what (all, setup, test, equality, mfu, trl)" >&2
    exit 2
    ;;
esac
exit $rc
