"""Peak memory of one training step's loss: every logit, supervised logits, chunked loss.

One packed row of ``--seq`` tokens through the tiny Qwen2 with a real large vocabulary (the
Qwen2.5 tokenizer, 151,665 tokens, from ``../shared/fixtures``), a fraction ``--supervised``
of positions supervised (glaive's is 0.46). Each configuration runs in its own process: the
figure is the growth of the process's peak resident memory over one forward and backward
(``model_step`` and ``loss.backward()``), after the model and the batch exist.

Usage::

    python scripts/bench_loss_memory.py [--seq 4096 8192] [--tokenizer DIR]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "all_logits": ["model.supervised_logits=false"],
    "supervised_logits": ["model.chunked_loss=false"],
    "chunked_loss": ["model.chunked_loss=true"],
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def one(mode: str, seq: int, tokenizer: str, supervised: float) -> dict[str, float]:
    """In this process: the peak memory growth of one step of ``mode``."""
    import hydra
    import torch

    from xlam.data.labels import IGNORE_INDEX
    from xlam.utils.hydra import compose_config

    torch.manual_seed(0)
    cfg = compose_config(
        [f"model.tokenizer_path={tokenizer}", *MODES[mode]], output_dir="/tmp/xlam-bench-mem"
    )
    module = hydra.utils.instantiate(cfg.model)
    module.configure_model()
    vocab = module.model.config.vocab_size
    ids = torch.randint(0, vocab, (1, seq))
    labels = ids.clone()
    labels[torch.rand(1, seq) >= supervised] = IGNORE_INDEX
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "position_ids": torch.arange(seq)[None],
        "labels": labels,
    }
    before = _rss_mb()
    out = module.model_step(batch)
    out["loss"].backward()
    return {
        "peak_growth_mb": round(_rss_mb() - before, 1),
        "loss": round(float(out["loss"]), 6),
        "vocab": vocab,
        "supervised_tokens": int(out["n_sup"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, nargs="+", default=[4096, 8192])
    p.add_argument(
        "--tokenizer", default=str(ROOT.parent / "shared" / "fixtures" / "tokenizers" / "qwen2_5")
    )
    p.add_argument("--supervised", type=float, default=0.46)
    p.add_argument("--one", nargs=2, metavar=("MODE", "SEQ"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.tokenizer, args.supervised)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for seq in args.seq:
        for mode in MODES:
            cmd = [sys.executable, __file__, "--one", mode, str(seq)]
            cmd += ["--tokenizer", args.tokenizer, "--supervised", str(args.supervised)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.setdefault(str(seq), {})[mode] = r
            print(
                f"seq {seq:>5}  {mode:>18}: peak +{r['peak_growth_mb']:8.1f} MB  "
                f"loss {r['loss']:.6f}",
                flush=True,
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
