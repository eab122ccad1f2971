#!/usr/bin/env bash
# A separate BFCL environment, .venv-bfcl/, with the Berkeley Function Calling Leaderboard's
# own data and checkers (bfcl-eval). bfcl-eval pins numpy 1.26, many vendor SDKs and its own
# torch; keeping it out of the training venv keeps both sets of pins intact. The `bfcl` eval
# suite runs its checkers there, in a worker process (xlam/eval/bfcl_worker.py), and the
# tests (tests/test_eval_bfcl.py) use it. Idempotent: a working env is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${XLAM_BFCL_VENV:-.venv-bfcl}
BFCL=${XLAM_BFCL_SPEC:-bfcl-eval==2026.3.23}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import bfcl_eval, soundfile" 2>/dev/null; then
    exit 0
fi
python3.11 -m venv "$VENV"
# torch first, pinned to the CPU build: otherwise bfcl-eval's dependencies pull a
# multi-GB CUDA torch (only its local-inference handlers use it, never the checkers).
"$VENV/bin/pip" install -q torch==2.13.0
# soundfile: importing the AST checker imports every model handler, one of which needs it.
"$VENV/bin/pip" install -q "$BFCL" soundfile
# Checked the way the suite uses it: the checkers import, with their side effects (result/,
# score/ folders) kept in a scratch project root.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
BFCL_PROJECT_ROOT="$SCRATCH" "$VENV/bin/python" -c "
import bfcl_eval.eval_checker.ast_eval.ast_checker, bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker
" >/dev/null
