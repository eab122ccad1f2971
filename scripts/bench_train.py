"""Training throughput: tokens/s, supervised tokens/s and peak memory per strategy.

Runs ``xlam-train`` for a few optimizer steps of the tiny model and of a ~100M-parameter
config-built Qwen2 (``model=small_100m``) under each strategy, and reads the per-step metrics
the module logs. On a machine without CUDA the strategies run on the CPU (DeepSpeed with 2
processes); with CUDA they run on one GPU in bf16 and the figures include tokens/s per GPU and
MFU. The first step (warm-up, allocator growth) is left out of the medians.

The speed options of the model run as ``--variants`` of each (model, strategy): ``plain``
(no Liger, no compile, no checkpointing), ``liger`` (``model.kernels=liger``), ``compile``
(``model.compile=true``), ``ckpt`` (``model.gradient_checkpointing=true``), ``ckpt_every2``
(every second layer), ``liger_compile`` (Liger + compile), ``all`` (Liger + compile +
checkpointing). Each variant's per-step
losses are compared with ``plain``'s (``loss_max_abs_diff``): the same seed and data give
the same losses up to bf16 rounding. ``--models`` also takes random-initialised models of
real shapes (no download): ``qwen2_5_1_5b`` (full fine-tuning), ``qwen2_5_7b_lora`` and
``llama3_8b_lora`` (LoRA), packed rows of 4,096 tokens; their vocabulary is the tokenizer's
(``--tokenizer``, default the embedded tiny one).

Usage::

    python scripts/bench_train.py                       # CPU: cpu, deepspeed_zero2, zero3
    python scripts/bench_train.py --steps 20 --gpu      # CUDA: gpu, deepspeed_zero2, zero3
    # the prepared CUDA runs (docs/performance.md, "Waiting for a device"):
    python scripts/bench_train.py --gpu --preset equality
    python scripts/bench_train.py --gpu --preset mfu --tokenizer DIR

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

from bench_common import SHAPES

LORA = [
    "model.lora.enabled=true",
    # the frozen base in bf16, as LoRA is run (autocast computes in bf16 either way); the
    # adapters stay fp32
    "model.dtype=bfloat16",
    "model.lora.r=16",
    "model.lora.alpha=32",
    "model.optimizer.lr=1e-4",
]

MODELS = {
    # name: (overrides, packed sequence length)
    "tiny": (["model=tiny"], 1024),
    "small_100m": (["model=small_100m"], 512),
    # the shapes of real models, random-initialised (bench_common.SHAPES)
    "qwen2_5_1_5b": (["model=tiny", *SHAPES["qwen2_5_1_5b"], "model.optimizer.lr=1e-5"], 4096),
    "qwen2_5_7b_lora": (["model=tiny", *SHAPES["qwen2_5_7b"], *LORA], 4096),
    "llama3_8b_lora": (["model=tiny", *SHAPES["llama3_8b"], *LORA], 4096),
}

# The speed options of the model (docs/training.md); `plain` turns all of them off.
PLAIN = ["model.kernels=null", "model.compile=false", "model.gradient_checkpointing=false"]
VARIANTS = {
    "plain": PLAIN,
    "liger": [*PLAIN, "model.kernels=liger"],
    "compile": [*PLAIN, "model.compile=true"],
    "ckpt": [*PLAIN, "model.gradient_checkpointing=true"],
    "ckpt_every2": [*PLAIN, "model.gradient_checkpointing={every: 2}"],
    # the fast path where memory does not call for recomputation
    "liger_compile": [*PLAIN, "model.kernels=liger", "model.compile=true"],
    "all": ["model.kernels=liger", "model.compile=true", "model.gradient_checkpointing=true"],
}

# The prepared CUDA runs: (models, strategies, variants, steps, micro-batch rows, overrides).
PRESETS = {
    # each option's loss against the plain path, on a model that builds in seconds
    "equality": ("small_100m", "gpu,deepspeed_zero2,fsdp", ",".join(VARIANTS), 6, 2, []),
    # MFU at real shapes, bf16, rows of 4,096 tokens, one row per micro-batch, every row
    # padded to 4,096: one shape for the whole run (on an H200 the unpadded runs, a new
    # shape every step, were at 7-9% MFU; docs/performance.md says why shapes are suspected)
    "mfu": (
        "qwen2_5_1_5b,qwen2_5_7b_lora,llama3_8b_lora",
        "gpu,deepspeed_zero2,fsdp",
        "plain,all",
        8,
        1,
        ["data.packing.pad_to_multiple_of=4096"],
    ),
}


def _strategy_args(strategy: str, gpu: bool) -> list[str]:
    if strategy in ("cpu", "gpu"):
        return [f"trainer={'gpu' if gpu else 'cpu'}"]
    if gpu:
        return [
            f"trainer={strategy}",
            "trainer.accelerator=gpu",
            "trainer.devices=1",
            "trainer.precision=bf16-mixed",
        ]
    return [
        f"trainer={strategy}",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
    ]


def _run(
    model: str,
    strategy: str,
    steps: int,
    batch: int,
    gpu: bool,
    out: Path,
    extra: list[str],
    variant: str | None = None,
    seq: int | None = None,
) -> dict[str, Any]:
    overrides, model_seq = MODELS[model]
    seq = seq or model_seq
    run_dir = (
        out / f"{model}-{strategy}" if variant is None else out / f"{model}-{strategy}-{variant}"
    )
    args = [
        *overrides,
        *_strategy_args(strategy, gpu),
        *(VARIANTS[variant] if variant else []),
        f"hydra.run.dir={run_dir}",
        f"trainer.max_steps={steps}",
        f"data.batch_size={batch}",
        f"data.packing.seq_length={seq}",
        "data.val_size=0",
        # the throughput monitor (tokens/s, MFU, peak memory), no checkpoints
        "callbacks=default",
        "callbacks.model_checkpoint=null",
        "callbacks.preemption=null",
        "callbacks.progress_bar=null",
        "trainer.enable_checkpointing=false",
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
        return {
            "model": model,
            "strategy": strategy,
            "variant": variant,
            "error": proc.stderr[-2000:],
        }
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
        "variant": variant,
        "seq": seq,
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
        "losses": [float(r["train/loss"]) for r in rows],
        "wall_s": round(wall, 1),
    }
    return result


def loss_differences(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant's per-step losses against ``plain``'s, per (model, strategy)."""
    plain = {
        (r["model"], r["strategy"]): r["losses"]
        for r in results
        if r.get("variant") == "plain" and "losses" in r
    }
    out = []
    for r in results:
        ref = plain.get((r["model"], r["strategy"]))
        if r.get("variant") in (None, "plain") or ref is None or "losses" not in r:
            continue
        n = min(len(ref), len(r["losses"]))
        diffs = [abs(a - b) for a, b in zip(ref[:n], r["losses"][:n], strict=True)]
        out.append(
            {
                "model": r["model"],
                "strategy": r["strategy"],
                "variant": r["variant"],
                "steps": n,
                "loss_max_abs_diff": max(diffs) if diffs else None,
                "loss_max_rel_diff": max(d / abs(a) for d, a in zip(diffs, ref[:n], strict=True))
                if diffs
                else None,
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (4)")
    parser.add_argument("--batch", type=int, default=None, help="packed rows per micro-batch (2)")
    parser.add_argument("--models", default=None, help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument(
        "--strategies",
        default=None,
        help="comma list (default: cpu|gpu, deepspeed_zero2, deepspeed_zero3; also fsdp)",
    )
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma list of speed options per run: {', '.join(VARIANTS)} "
        "(default: the model's config as it is)",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a prepared CUDA run")
    parser.add_argument("--seq", type=int, default=None, help="packed row length (per model)")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer folder (vocabulary and chat template)"
    )
    parser.add_argument("--gpu", action="store_true", help="run on CUDA (bf16)")
    parser.add_argument("--out", default=None, help="keep run dirs here (default: temp)")
    parser.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    args = parser.parse_args(argv)
    gpu = args.gpu
    models, strategies_arg, variants_arg, steps, batch = "tiny,small_100m", None, None, 4, 2
    preset_overrides: list[str] = []
    if args.preset:
        if not gpu:
            parser.error(f"--preset {args.preset} is a CUDA run: add --gpu")
        models, strategies_arg, variants_arg, steps, batch, preset_overrides = PRESETS[args.preset]
    models = args.models or models
    steps = args.steps or steps
    batch = args.batch or batch
    default = ("gpu" if gpu else "cpu") + ",deepspeed_zero2,deepspeed_zero3"
    strategies = (args.strategies or strategies_arg or default).split(",")
    variants: list[str | None] = [None]
    if args.variants or variants_arg:
        variants = list((args.variants or variants_arg).split(","))
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    extra = [*preset_overrides, *args.extra]
    if args.tokenizer:
        extra.append(f"model.tokenizer_path={Path(args.tokenizer).resolve()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="xlam-bench-") as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        for model in models.split(","):
            for strategy in strategies:
                for variant in variants:
                    r = _run(model, strategy, steps, batch, gpu, out, extra, variant, args.seq)
                    results.append(r)
                    name = f"{model:>11} {strategy:<16} {variant or '':<12}"
                    if "error" in r:
                        print(f"{name} FAILED\n{r['error']}", flush=True)
                        continue
                    mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
                    print(
                        f"{name} world {r['world_size']}  "
                        f"{r['tokens_per_s']:>9.0f} tok/s  {r['tokens_per_s_per_device']:>9.0f} "
                        f"tok/s/dev  {r['supervised_tokens_per_s']:>8.0f} sup tok/s  "
                        f"peak {r['peak_mem_gb']:.2f} GB  MFU {mfu}  "
                        f"loss {r['first_loss']:.3f}->{r['last_loss']:.3f}  {r['wall_s']} s",
                        flush=True,
                    )
    diffs = loss_differences(results)
    for d in diffs:
        print(
            f"{d['model']:>11} {d['strategy']:<16} {d['variant']:<12} against plain: "
            f"max |loss diff| {d['loss_max_abs_diff']:.2e} over {d['steps']} steps",
            flush=True,
        )
    print(
        json.dumps(
            {
                "bench": "train",
                "preset": args.preset,
                "steps": steps,
                "batch": batch,
                "results": results,
                "loss_vs_plain": diffs,
            }
        )
    )


if __name__ == "__main__":
    main()
