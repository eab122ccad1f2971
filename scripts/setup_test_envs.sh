#!/usr/bin/env bash
# Every environment the tests use, built side by side: .venv/ (training: torch's CPU build,
# then this package with its dev extra), .venv-serve/ (vLLM's CPU build,
# scripts/setup_serving_env.sh) and .venv-bfcl/ (BFCL's checkers, scripts/setup_eval_env.sh).
# They share nothing, and pip spends most of a build waiting on the disk while unpacking
# wheels, so building the three at once takes little more than the longest. Each build's output
# goes to its own log, printed if that build fails; the exit status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/build_lock.sh
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
train_env() {
    python3.11 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 &&
        with_build_lock .venv/bin/pip install -q -e ".[dev]"
}
train_env >"$LOGS/train.log" 2>&1 &
train=$!
scripts/setup_serving_env.sh >"$LOGS/serve.log" 2>&1 &
serve=$!
scripts/setup_eval_env.sh >"$LOGS/bfcl.log" 2>&1 &
bfcl=$!
status=0
for job in "train:$train" "serve:$serve" "bfcl:$bfcl"; do
    name=${job%%:*}
    if ! wait "${job#*:}"; then
        echo "setup_test_envs: the $name environment failed to build; its log:" >&2
        cat "$LOGS/$name.log" >&2
        status=1
    fi
done
exit "$status"
