"""xlam against TRL's ``SFTTrainer`` on the same data, tokenizer, model, sequence and steps.

Both train a config-built model (the tiny default's shape, ``conf/model/default.yaml``
``from_config``, or with ``--shape`` that of a real model, ``bench_common.SHAPES``;
random-initialised with the same seed, vocabulary of the tokenizer) on the
same unified trajectories (default: the glaive sample from ``../shared/fixtures``, converted
and verified by xlam's importer, with Qwen2.5's tokenizer and chat template), one packed row
of ``--seq`` tokens per optimizer step, assistant-only loss, fp32 on the CPU (with
``--gpu`` bf16 autocast over fp32 weights: xlam's ``bf16-mixed``, TRL's ``bf16``), the same
optimizer settings. TRL gets the trajectories as conversational records
(``messages`` and ``tools``, what ``Trajectory.to_chat`` gives the chat template) and packs
with its own best-fit decreasing, masking with its training variant of the template
(``{% generation %}`` markers); xlam runs ``xlam-train``.

Each trainer runs in its own child process, one after the other. Per optimizer step, both
are measured the same way: the wall time between consecutive step ends (data loading
included), the tokens of the step (padding excluded) and its supervised tokens (labels other
than -100 after the one-token shift). The first ``--warmup`` steps are left out; the figures
are medians over the rest. Peak memory is the child's peak resident memory on the CPU
(``os.wait4``), ``torch.cuda.max_memory_allocated`` on CUDA.

Usage::

    pip install -e ".[bench]"            # TRL, only for this script
    python scripts/bench_vs_trl.py [--steps 12] [--seq 4096] [--gpu] [--shape qwen2_5_1_5b]

The last line printed is one JSON object with both runs and the ratios xlam / TRL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import SHAPES, step_timer, tiny_model, trl_args, xlam_overrides

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
GLAIVE = FIXTURES / "datasets/sharegpt_glaive/glaive_toolcall_en_demo.json"
QWEN2_5 = FIXTURES / "tokenizers/qwen2_5"
ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
# What both trainers are given (xlam's tiny preset: conf/model/tiny.yaml, trainer default).
LR, BETAS, WEIGHT_DECAY, WARMUP_RATIO, CLIP = 3e-3, (0.9, 0.95), 0.01, 0.05, 1.0


def summarise(steps: list[dict[str, float]], warmup: int) -> dict[str, Any]:
    """Medians over the timed steps of ``{"s", "tokens", "supervised"}`` records."""
    timed = steps[warmup:] or steps
    tok = [s["tokens"] / s["s"] for s in timed]
    sup = [s["supervised"] / s["s"] for s in timed]
    return {
        "steps_timed": len(timed),
        "tokens_per_s": round(statistics.median(tok), 1),
        "supervised_tokens_per_s": round(statistics.median(sup), 1),
        "tokens_per_supervised_token": round(
            sum(s["tokens"] for s in timed) / max(1.0, sum(s["supervised"] for s in timed)), 4
        ),
    }


# -- the workers (child processes) -----------------------------------------------------------
def xlam_worker(spec: dict[str, Any]) -> list[dict[str, float]]:
    """``xlam-train`` on the unified file; per-step figures from its own metrics log."""
    import csv

    from xlam.train import train
    from xlam.utils.hydra import compose_config

    run = Path(spec["out"]) / "xlam"
    overrides = [
        "model=tiny",
        *SHAPES[spec["shape"]],
        f"model.tokenizer_path={spec['tokenizer']}",
        # TRL's bf16 is autocast over fp32 weights: the same on both sides
        *xlam_overrides(spec, LR, gpu_precision="bf16-mixed"),
    ]
    cfg = compose_config(overrides, output_dir=run)
    cfg.data.sources = {"bench": {"path": spec["data"], "format": "unified"}}
    # per-step figures only: no checkpoints, no eval
    cfg.callbacks = {"throughput": {"_target_": "xlam.utils.monitors.ThroughputMonitor"}}
    train(cfg)
    with (run / "csv" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/tokens_per_s")]
    out = []
    for r in rows:
        tok_s = float(r["train/tokens_per_s"])
        sup = float(r["train/step_tokens"])  # supervised tokens of the step
        tokens = tok_s / float(r["train/supervised_tokens_per_s"]) * sup
        out.append({"s": tokens / tok_s, "tokens": tokens, "supervised": sup})
    return out


def trl_worker(spec: dict[str, Any]) -> list[dict[str, float]]:
    """TRL ``SFTTrainer`` (packing, assistant-only loss) on the same trajectories."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import get_training_chat_template

    from xlam.data.schema import read_trajectories

    tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
    # Tokenized here, as SFTTrainer tokenizes (its training template, assistant masks from
    # its {% generation %} markers): handing it the messages through Arrow would merge the
    # heterogeneous argument and schema objects into one struct type, adding null keys.
    template = get_training_chat_template(tok) or tok.chat_template
    columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for traj in read_trajectories(spec["data"]):
        messages, tools = traj.to_chat()
        enc = tok.apply_chat_template(
            messages,
            tools=tools or None,
            chat_template=template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids = list(enc["input_ids"])
        columns["input_ids"].append(ids)
        columns["labels"].append(
            [t if m else -100 for t, m in zip(ids, enc["assistant_masks"], strict=True)]
        )
    model = tiny_model(len(tok), spec["seed"], spec["shape"])
    steps: list[dict[str, float]] = []
    seen = {"tokens": 0.0, "supervised": 0.0}

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        ids, labels = kwargs["input_ids"], kwargs.get("labels")
        mask = kwargs.get("attention_mask")
        seen["tokens"] += float(ids.numel() if mask is None else mask.sum())
        if labels is not None:
            seen["supervised"] += float((labels[:, 1:] != -100).sum())

    model.register_forward_pre_hook(count, with_kwargs=True)
    args = SFTConfig(
        **trl_args(spec, "trl"),
        per_device_train_batch_size=1,
        max_length=spec["seq"],
        packing=True,
        # the labels given carry the assistant-only mask, made above as TRL makes it
        assistant_only_loss=False,
        learning_rate=LR,
        adam_beta1=BETAS[0],
        adam_beta2=BETAS[1],
        weight_decay=WEIGHT_DECAY,
        warmup_steps=WARMUP_RATIO,  # a float below 1: a fraction of the steps
        lr_scheduler_type="cosine",
        max_grad_norm=CLIP,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        processing_class=tok,
        callbacks=[step_timer(steps, seen)],
    )
    trainer.train()
    return steps


def worker_main(which: str, spec_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text())
    steps = (xlam_worker if which == "xlam" else trl_worker)(spec)
    peak = torch.cuda.max_memory_allocated() / 2**20 if spec["gpu"] else None
    Path(spec["result"]).write_text(json.dumps({"steps": steps, "cuda_peak_mb": peak}))


# -- the parent ---------------------------------------------------------------------------
def run_child(which: str, spec: dict[str, Any]) -> dict[str, Any]:
    spec = {**spec, "result": str(Path(spec["out"]) / f"{which}.json")}
    spec_path = Path(spec["out"]) / f"{which}-spec.json"
    spec_path.write_text(json.dumps(spec))
    log = (Path(spec["out"]) / f"{which}.log").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", which, str(spec_path)],
        env={**os.environ, **ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = (Path(spec["out"]) / f"{which}.log").read_text()[-3000:]
        raise RuntimeError(f"{which} run failed ({proc.returncode}):\n{tail}")
    res = json.loads(Path(spec["result"]).read_text())
    out = summarise(res["steps"], spec["warmup"])
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["peak_mem_mb"] = round(
        res["cuda_peak_mb"] if res["cuda_peak_mb"] is not None else usage.ru_maxrss / 1024, 1
    )
    out["memory"] = "cuda_max_allocated" if res["cuda_peak_mb"] is not None else "peak_rss"
    return out


def convert(data: Path, fmt: str, out: Path) -> Path:
    """The trajectories both trainers get: ``xlam-data convert --verify``."""
    from xlam.data.cli import main as data_cli

    path = out / "data.jsonl"
    if data_cli(["convert", "--format", fmt, str(data), str(path), "--verify"]):
        raise RuntimeError(f"xlam-data convert failed on {data}")
    return path


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=GLAIVE)
    p.add_argument("--format", default="sharegpt", help="the data's xlam importer")
    p.add_argument("--tokenizer", type=Path, default=QWEN2_5)
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu", action="store_true", help="CUDA, bf16 autocast")
    p.add_argument(
        "--shape",
        choices=("tiny", "qwen2_5_1_5b"),
        default="tiny",
        help="the model's shape (bench_common.SHAPES; full fine-tuning)",
    )
    p.add_argument(
        "--attn",
        default="xlam_segments",
        help="xlam's model.attn_implementation (TRL runs SDPA; flash_attention_2 on CUDA)",
    )
    p.add_argument("--only", choices=("xlam", "trl"), default=None)
    p.add_argument("--out", type=Path, default=None, help="work dir (default: a temp dir)")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="xlam-vs-trl-"))
    out.mkdir(parents=True, exist_ok=True)
    spec = {
        "data": str(convert(args.data, args.format, out)),
        "tokenizer": str(args.tokenizer),
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
        "seed": args.seed,
        "gpu": args.gpu,
        "shape": args.shape,
        "attn": args.attn,
        "out": str(out),
    }
    results: dict[str, Any] = {"config": {k: v for k, v in spec.items() if k != "out"}}
    for which in ("xlam", "trl"):
        if args.only in (None, which):
            results[which] = run_child(which, spec)
            print(f"{which}: {json.dumps(results[which])}", flush=True)
    if "xlam" in results and "trl" in results:
        x, t = results["xlam"], results["trl"]
        results["ratio_xlam_over_trl"] = {
            k: round(x[k] / t[k], 3)
            for k in ("tokens_per_s", "supervised_tokens_per_s", "peak_mem_mb")
            if t.get(k)
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
