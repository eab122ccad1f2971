"""Training throughput: tokens/s, supervised tokens/s and peak memory per strategy.

Runs ``xlam-train`` for a few optimizer steps of the tiny model and of a ~100M-parameter
config-built Qwen2 (``model=small_100m``) under each strategy, and reads the per-step metrics
the module logs. On a machine without CUDA the strategies run on the CPU (DeepSpeed with 2
processes); with CUDA they run on one GPU in bf16 and the figures include tokens/s per GPU and
MFU. The first step (warm-up, allocator growth) is left out of the medians.

Usage::

    python scripts/bench_train.py                       # CPU: cpu, deepspeed_zero2, zero3
    python scripts/bench_train.py --steps 20 --gpu      # CUDA: gpu, deepspeed_zero2, zero3

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODELS = {
    # name: (overrides, packed sequence length)
    "tiny": (["model=tiny"], 1024),
    "small_100m": (["model=small_100m"], 512),
}


def _strategy_args(strategy: str, gpu: bool) -> list[str]:
    if strategy in ("cpu", "gpu"):
        return [f"trainer={'gpu' if gpu else 'cpu'}"]
    if gpu:
        return [f"trainer={strategy}", "trainer.accelerator=gpu", "trainer.devices=1"]
    return [
        f"trainer={strategy}",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
    ]


def _run(
    model: str, strategy: str, steps: int, batch: int, gpu: bool, out: Path, extra: list[str]
) -> dict[str, Any]:
    overrides, seq = MODELS[model]
    run_dir = out / f"{model}-{strategy}"
    args = [
        *overrides,
        *_strategy_args(strategy, gpu),
        f"hydra.run.dir={run_dir}",
        f"trainer.max_steps={steps}",
        f"data.batch_size={batch}",
        f"data.packing.seq_length={seq}",
        "data.val_size=0",
        "callbacks=none",
        "export.enabled=false",
        "extras.print_config=false",
        "trainer.enable_progress_bar=false",
        *extra,
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "TOKENIZERS_PARALLELISM": "false",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "xlam.train", *args],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"model": model, "strategy": strategy, "error": proc.stderr[-2000:]}
    with (run_dir / "csv" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    timed = rows[1:] or rows

    def med(key: str) -> float | None:
        vals = [float(r[key]) for r in timed if r.get(key)]
        return statistics.median(vals) if vals else None

    record = json.loads(next(run_dir.glob("run-*.json")).read_text())
    result = {
        "model": model,
        "strategy": strategy,
        "device": "cuda" if gpu else "cpu",
        "world_size": record["world_size"],
        "params": record["model_params"].get("params"),
        "steps": len(rows),
        "tokens_per_s": med("train/tokens_per_s"),
        "tokens_per_s_per_device": med("train/tokens_per_s_per_device"),
        "supervised_tokens_per_s": med("train/supervised_tokens_per_s"),
        "padding_ratio": med("train/padding_ratio"),
        "peak_mem_gb": max(float(r["train/peak_mem_gb"]) for r in rows),
        "mfu": med("train/mfu"),
        "first_loss": float(rows[0]["train/loss"]),
        "last_loss": float(rows[-1]["train/loss"]),
        "wall_s": round(wall, 1),
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=2, help="packed rows per micro-batch")
    parser.add_argument("--models", default="tiny,small_100m")
    parser.add_argument(
        "--strategies",
        default=None,
        help="comma list (default: cpu|gpu, deepspeed_zero2, deepspeed_zero3)",
    )
    parser.add_argument("--gpu", action="store_true", help="run on CUDA (bf16)")
    parser.add_argument("--out", default=None, help="keep run dirs here (default: temp)")
    parser.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    args = parser.parse_args(argv)
    gpu = args.gpu
    default = ("gpu" if gpu else "cpu") + ",deepspeed_zero2,deepspeed_zero3"
    strategies = (args.strategies or default).split(",")
    results = []
    with tempfile.TemporaryDirectory(prefix="xlam-bench-") as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        for model in args.models.split(","):
            for strategy in strategies:
                r = _run(model, strategy, args.steps, args.batch, gpu, out, args.extra)
                results.append(r)
                if "error" in r:
                    print(f"{model:>11} {strategy:<16} FAILED\n{r['error']}", flush=True)
                    continue
                mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
                print(
                    f"{model:>11} {strategy:<16} world {r['world_size']}  "
                    f"{r['tokens_per_s']:>9.0f} tok/s  {r['tokens_per_s_per_device']:>9.0f} "
                    f"tok/s/dev  {r['supervised_tokens_per_s']:>8.0f} sup tok/s  "
                    f"peak {r['peak_mem_gb']:.2f} GB  MFU {mfu}  "
                    f"loss {r['first_loss']:.3f}->{r['last_loss']:.3f}  {r['wall_s']} s",
                    flush=True,
                )
    print(
        json.dumps({"bench": "train", "steps": args.steps, "batch": args.batch, "results": results})
    )


if __name__ == "__main__":
    main()
