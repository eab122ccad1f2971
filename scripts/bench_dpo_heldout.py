"""Held-out preference accuracy of DPO on the replay-proven pairs of ``xlam-data pairs
from-synth`` (:mod:`xlam.synth.pairs`: ``wrong_tool``, ``wrong_value``, ``missing_argument``).

1. Synthetic trajectories (:func:`xlam.synth.generate.generate`): ``--n-train`` of the train
   split, ``--n-test`` of the test split (held-out phrasings and tool combinations), so no
   test pair comes from a task of the training pairs.
2. Pairs from each split with :func:`xlam.synth.pairs.synth_pairs` (``--per-turn``).
3. ``--split qwen2|copy``: the tiny tokenizer trained on the train trajectories
   (``scripts/build_tiny_tokenizer.py``, tools as signatures; ``copy``: a value is the same
   tokens in a query and in a call, numbers in chunks of up to ``--digits`` digits, 2 by
   default; with a Llama-type model, as ``bench_learn.py --recipe tiny --split copy``);
   ``none``: the embedded one.
4. SFT of the model on the train trajectories for ``--sft-steps`` (``xlam-train``, in
   process; 1 step: a nearly random start, as in ``tests/test_dpo.py``), then DPO on the
   train pairs from its run dir (``objective=dpo model.path=RUN_DIR``, the precomputed
   reference).
5. On the test pairs: the share whose chosen side gains more log-prob over the SFT model
   than the rejected side (the DPO reward accuracy), overall and per perturbation.

Prints one JSON object on the last line. Extra arguments are ``xlam-train`` overrides for
both runs (e.g. ``model.from_config.num_hidden_layers=2``).

Usage::

    python scripts/bench_dpo_heldout.py [--split copy|qwen2|none] [--n-train 2000]
        [--sft-steps 600] [--steps 300] [--lr 5e-3] [--beta 0.1] [--loss sigmoid]
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

BENCH_LEARN = Path(__file__).resolve().parent / "bench_learn.py"
QUIET = [
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "data.val_size=0",
]


def make_data(out: Path, n_train: int, n_test: int, per_turn: int) -> dict[str, Any]:
    """Trajectories and pairs of both splits under ``out``; counts per perturbation."""
    from xlam.data.preference import write_pairs
    from xlam.synth.generate import generate
    from xlam.synth.pairs import synth_pairs

    counts: dict[str, Any] = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        trajs = generate(n, seed, split)
        out.mkdir(parents=True, exist_ok=True)
        with (out / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(t) + "\n" for t in trajs)
        pairs = list(synth_pairs(trajs, seed=0, per_turn=per_turn))
        write_pairs(pairs, out / f"{split}.pairs.jsonl")
        kinds: dict[str, int] = defaultdict(int)
        for p in pairs:
            kinds[p.metadata["pair"]["perturbation"]] += 1
        counts[split] = {"pairs": len(pairs), **kinds}
    return counts


def build_tokenizer(out: Path, vocab_size: int, split: str, digits: int = 3) -> Path:
    """The tiny tokenizer trained on ``out/train.jsonl`` alone, as ``bench_learn.py`` builds it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_learn", BENCH_LEARN)
    bench_learn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_learn)  # type: ignore[union-attr]
    return bench_learn.build_tokenizer(
        out, out / "tokenizer", vocab_size, "signature", split, digits
    )


def run(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    from xlam.train import train
    from xlam.utils.hydra import compose_config

    cfg = compose_config([*QUIET, f"paths.log_dir={run_dir.parent / 'logs'}", *overrides], run_dir)
    return train(cfg)[1]


def heldout(
    module: Any, reference: torch.nn.Module, tokenizer: Any, pairs: Path, limit: int | None = None
) -> dict[str, float]:
    """Reward accuracy on ``pairs`` (the first ``limit``; against ``reference``), overall and
    per perturbation."""
    from xlam.data.collate import packed_collate
    from xlam.data.preference import read_pairs
    from xlam.data.render import Renderer, RenderOptions
    from xlam.data.render.pairs import render_pair

    renderer = Renderer(tokenizer, RenderOptions(mode="per_turn"))
    module.reference = "frozen_copy"  # the path whose log-probs tests/test_dpo.py checks
    object.__setattr__(module, "_ref_model", reference)
    module.eval()
    right: dict[str, list[bool]] = defaultdict(list)
    batch: list[tuple[str, dict[str, Any]]] = []
    todo = list(read_pairs(pairs))[:limit]
    for k, p in enumerate(todo):
        s = render_pair(renderer, p)
        batch.append((p.metadata["pair"]["perturbation"], {"source": "t", **vars(s)}))
        if len(batch) == 8 or k == len(todo) - 1:
            with torch.no_grad():
                out = module.pair_step(packed_collate([[s] for _, s in batch], pad_id=0))
            for (kind, _), r in zip(batch, out["rewards"], strict=True):
                right[kind].append(bool(r[0] > r[1]))
            batch = []
    every = [x for v in right.values() for x in v]
    return {
        "all": round(sum(every) / len(every), 3),
        **{k: round(sum(v) / len(v), 3) for k, v in sorted(right.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=4000, help="train-split trajectories")
    ap.add_argument("--n-test", type=int, default=200, help="test-split trajectories")
    ap.add_argument("--per-turn", type=int, default=1, help="pairs per call turn at most")
    ap.add_argument("--sft-steps", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=600, help="DPO optimizer steps")
    ap.add_argument("--batch", type=int, default=2, help="packed rows per DPO step")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--loss", default="sigmoid", choices=("sigmoid", "ipo", "simpo"))
    ap.add_argument(
        "--split",
        default="copy",
        choices=("copy", "qwen2", "none"),
        help="the tokenizer: trained on the train trajectories with this pre-tokenization, "
        "or (none) the embedded tiny one",
    )
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--digits", type=int, default=2, help="copy split: digits per number chunk")
    ap.add_argument(
        "--n-test-pairs-train", type=int, default=400, help="training pairs scored (fit)"
    )
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp one)")
    args, extra = ap.parse_known_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_dpo_heldout-"))
    t0 = time.time()
    counts = make_data(out, args.n_train, args.n_test, args.per_turn)
    print("pairs:", counts, flush=True)
    if args.split != "none":
        tok = build_tokenizer(out, args.vocab_size, args.split, args.digits)
        extra = [f"model.tokenizer_path={tok}", *extra]
        if args.split == "copy":  # a qwen2 folder's tokenizer would load with Qwen2's pattern
            extra = ["model.from_config.model_type=llama", *extra]
    sft = out / "sft"
    run(
        [
            f"data.sources={{synth: {{path: {out / 'train.jsonl'}}}}}",
            f"trainer.max_steps={args.sft_steps}",
            f"model.optimizer.lr={args.lr}",
            *extra,
        ],
        sft,
    )
    t1 = time.time()
    dpo = [
        "objective=dpo",
        f"objective.loss={args.loss}",
        f"objective.beta={args.beta}",
        f"data.sources={{pairs: {{path: {out / 'train.pairs.jsonl'}, format: pairs}}}}",
        f"data.batch_size={args.batch}",
        "data.packing.seq_length=2048",
        f"trainer.max_steps={args.steps}",
        f"model.optimizer.lr={args.lr}",
        f"model.path={sft}",
        "export.enabled=false",
        "~callbacks.model_checkpoint",
    ]
    if args.loss != "simpo":
        dpo.append("objective.reference=precomputed")
    objects = run([*dpo, *extra], out / "dpo")
    t2 = time.time()
    reference = AutoModelForCausalLM.from_pretrained(sft / "export").eval()
    tokenizer = AutoTokenizer.from_pretrained(sft / "export")
    module = objects["module"]
    acc = {
        split: heldout(module, reference, tokenizer, out / f"{split}.pairs.jsonl", limit)
        for split, limit in (("test", None), ("train", args.n_test_pairs_train))
    }
    print(f"held-out accuracy: {acc['test']}  (first training pairs: {acc['train']})")
    result = {
        **vars(args),
        "out": str(out),
        "overrides": extra,
        "pairs": counts,
        "accuracy": acc,
        "sft_s": round(t1 - t0, 1),
        "dpo_s": round(t2 - t1, 1),
    }
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
