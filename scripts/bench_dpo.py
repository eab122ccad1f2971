"""DPO throughput: xlam against TRL's ``DPOTrainer`` on the same pairs, model and machine.

Both train a config-built model (the tiny preset's shape, random-initialised with the same
seed, the tiny tokenizer's vocabulary) with sigmoid DPO (beta 0.1) and a frozen copy of the
initial model as the reference, fp32 on the CPU (bf16 with ``--gpu``), on the same pairs:
synthetic tool tasks (``xlam.synth``) whose rejected side calls a tool that does not exist.
xlam packs pairs into rows of ``--seq`` tokens (both halves of a pair in one row); TRL pads
``--batch`` pairs per step (its padding-free mode is disabled in TRL 1.x). By default xlam
computes each pair's history once for both sides (``data.render.shared_history``;
``--no-shared-history``: both halves in full, as TRL). Per optimizer step
both are measured the same way: wall time between step ends (data loading included), pairs,
and supervised tokens (the compared turns). The first ``--warmup`` steps are left out;
figures are medians. Without TRL (``pip install -e ".[bench]"``) only xlam's are reported.

Usage::

    python scripts/bench_dpo.py [--steps 12] [--seq 2048] [--batch 2] [--gpu]
        [--no-shared-history]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench_common import step_timer, tiny_model, trl_args, xlam_overrides

BETA, LR = 0.1, 1e-3


def make_pairs(n: int, path: Path) -> int:
    """Synthetic pairs: the gold first call turn against the same call to ``<name>_legacy``."""
    from xlam.data.preference import pair_at, write_pairs
    from xlam.data.schema import Trajectory
    from xlam.synth.generate import generate

    pairs = []
    for d in generate(n, 0, "train"):
        t = Trajectory.from_dict(d)
        for i, m in enumerate(t.conversation):
            if m.role == "assistant" and m.tool_calls:
                rejected = copy.deepcopy(m)
                rejected.tool_calls[0].name += "_legacy"
                pairs.append(pair_at(t, i, rejected, f"{t.id}:{i}"))
                break
    return write_pairs(pairs, path)


def summarise(steps: list[dict[str, float]], warmup: int) -> dict[str, Any]:
    """Medians over the timed steps of ``{"s", "pairs", "supervised"}`` records."""
    timed = steps[warmup:] or steps
    return {
        "steps_timed": len(timed),
        "pairs_per_s": round(statistics.median(s["pairs"] / s["s"] for s in timed), 2),
        "supervised_tokens_per_s": round(
            statistics.median(s["supervised"] / s["s"] for s in timed), 1
        ),
    }


def run_xlam(spec: dict[str, Any]) -> list[dict[str, float]]:
    from xlam.train import train
    from xlam.utils.hydra import compose_config

    run = Path(spec["out"]) / "xlam"
    overrides = [
        "objective=dpo",
        f"objective.beta={BETA}",
        "objective.reference=frozen_copy",
        "model.packing_check=false",
        f"data.render.shared_history={str(spec['shared_history']).lower()}",
        # the frozen copy is kept in fp32 next to the bf16 autocast policy
        *xlam_overrides(spec, LR, gpu_precision="bf16-mixed"),
    ]
    cfg = compose_config(overrides, output_dir=run)
    cfg.data.sources = {"pairs": {"path": spec["data"], "format": "pairs"}}
    cfg.callbacks = {"throughput": {"_target_": "xlam.utils.monitors.ThroughputMonitor"}}
    train(cfg)
    with (run / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    # The throughput monitor and the module log a step in separate rows.
    pairs = {r["step"]: float(r["train/pairs"]) for r in rows if r.get("train/pairs")}
    out = []
    for r in rows:
        if r.get("train/supervised_tokens_per_s"):
            sup = float(r["train/step_tokens"])
            rate = float(r["train/supervised_tokens_per_s"])
            out.append({"s": sup / rate, "pairs": pairs[r["step"]], "supervised": sup})
    return out


def run_trl(spec: dict[str, Any]) -> list[dict[str, float]]:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from xlam import TINY_TOKENIZER_DIR
    from xlam.data.preference import read_pairs

    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    rows: dict[str, list[Any]] = {"prompt": [], "chosen": [], "rejected": [], "tools": []}
    for p in read_pairs(spec["data"]):
        # Arguments as JSON text: Arrow would merge heterogeneous argument objects into one
        # struct type with null keys (docs/trajectory_format.md).
        msgs, tools = p.completed("chosen").to_chat()
        rej = p.completed("rejected").to_chat()[0][-1]
        for m in [*msgs, rej]:
            for c in m.get("tool_calls") or []:
                c["function"]["arguments"] = json.dumps(c["function"]["arguments"])
        rows["prompt"].append(msgs[:-1])
        rows["chosen"].append(msgs[-1:])
        rows["rejected"].append([rej])
        rows["tools"].append(json.dumps(tools))
    model = tiny_model(len(tok), spec["seed"])
    steps: list[dict[str, float]] = []
    seen = {"pairs": 0.0, "supervised": 0.0}

    args = DPOConfig(
        **trl_args(spec, "trl"),
        per_device_train_batch_size=spec["batch"],
        max_length=spec["seq"],
        beta=BETA,
        learning_rate=LR,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model).eval(),  # a frozen copy, as xlam's reference
        args=args,
        train_dataset=Dataset.from_dict(rows),
        processing_class=tok,
        callbacks=[step_timer(steps, seen)],
    )
    collate = trainer.data_collator

    def counting(examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(examples)
        seen["pairs"] += batch["input_ids"].shape[0] // 2  # chosen rows, then rejected rows
        # completion_mask marks the compared turns; one-token shift as in the loss
        seen["supervised"] += float(batch["completion_mask"][:, 1:].sum())
        return batch

    trainer.data_collator = counting
    trainer.train()
    return steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=200, help="synthetic tasks (about one pair each)")
    p.add_argument("--seq", type=int, default=2048, help="xlam's packed row; TRL's max_length")
    p.add_argument("--batch", type=int, default=2, help="TRL's pairs per step")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu", action="store_true", help="CUDA, bf16")
    p.add_argument(
        "--attn",
        default="xlam_segments",
        help="xlam's model.attn_implementation (TRL runs SDPA; flash_attention_2 on CUDA)",
    )
    p.add_argument(
        "--shared-history",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="xlam computes each pair's history once for both sides (needs xlam_segments)",
    )
    p.add_argument("--out", type=Path, default=None, help="work dir (default: a temp dir)")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="xlam-bench-dpo-"))
    out.mkdir(parents=True, exist_ok=True)
    data = out / "pairs.jsonl"
    spec = {
        "data": str(data),
        "pairs": make_pairs(args.tasks, data),
        **{k: getattr(args, k) for k in ("seq", "batch", "steps", "warmup", "seed", "gpu", "attn")},
        "shared_history": args.shared_history,
        "out": str(out),
    }
    results: dict[str, Any] = {"config": {k: v for k, v in spec.items() if k != "out"}}
    results["xlam"] = summarise(run_xlam(spec), args.warmup)
    print(f"xlam: {json.dumps(results['xlam'])}", flush=True)
    try:
        import trl  # noqa: F401
    except ImportError:
        results["trl"] = "not installed (pip install -e '.[bench]')"
    else:
        results["trl"] = summarise(run_trl(spec), args.warmup)
        results["ratio_xlam_over_trl"] = {
            k: round(results["xlam"][k] / results["trl"][k], 3)
            for k in ("pairs_per_s", "supervised_tokens_per_s")
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
