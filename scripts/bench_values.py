"""Value probe: does the tiny shape learn to copy argument values from the tool data itself?

``bench_copy.py`` isolates copying in random filler; this trains the tiny default shape
(2 layers x 64, Muon) on the learnability bench's synthetic tasks in a plain loop and
measures, teacher-forced on the first ``--n-test`` test tasks, the three classes of
``value_accuracy.py``: the first token of a copied value, its continuation, every other
supervised token. What it varies is what the bench cannot: ``--supervise values`` puts the
loss on the value tokens only, ``--first-turn`` keeps each task's first user turn and first
assistant turn without the tools (about 76 tokens against 340), and ``--sliding-window N``
lets every layer attend to the last ``N`` tokens only (Qwen2's sliding-window attention:
the same weights, a narrower mask). ``--copy-weight W`` keeps every assistant token
supervised and weighs the copied ones ``W`` times, as ``xlam-train``'s ``model.copy_weight``
does (the same :func:`~xlam.models.components.loss.copy_weights`).

Usage::

    python scripts/bench_values.py --data DIR --tokenizer DIR [--steps 2000] [--batch 6]
        [--supervise all|values] [--copy-weight 10] [--first-turn] [--sliding-window 64]
        [--model-type llama]

``--data`` is an ``xlam-data synth`` folder (``train.jsonl``, ``test.jsonl``). The last line
printed is one JSON object: the curve and the seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import dataclasses
import json
import math
import random
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from value_accuracy import render_classes, teacher_forced

from xlam.data.labels import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[1]
Sample = tuple[list[int], list[int], list[str | None]]


def first_turn(trajectories: Iterator[Any]) -> Iterator[Any]:
    """Each trajectory cut after its first assistant turn, without its tools."""
    for t in trajectories:
        i = next(k for k, m in enumerate(t.conversation) if m.role == "assistant")
        yield dataclasses.replace(t, tools=[], conversation=t.conversation[: i + 1])


def make_batch(
    items: list[Sample], pad_id: int, values_only: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and labels; ``values_only``: labels on value tokens alone."""
    width = max(len(x[0]) for x in items)
    ids = torch.full((len(items), width), pad_id)
    labels = torch.full((len(items), width), IGNORE_INDEX)
    for i, (x, y, kinds) in enumerate(items):
        ids[i, : len(x)] = torch.tensor(x)
        for j, (label, kind) in enumerate(zip(y, kinds, strict=True)):
            if kind is not None and not (values_only and kind == "other"):
                labels[i, j] = label
    return ids, labels


def build_model(vocab_size: int, model_type: str, sliding_window: int, seed: int = 0) -> Any:
    """The tiny default shape (``conf/model/default.yaml``'s ``from_config``), built as
    ``xlam-train`` builds it."""
    from omegaconf import OmegaConf

    from xlam.models.components.build import build_causal_lm

    shape = OmegaConf.load(ROOT / "conf" / "model" / "default.yaml").from_config
    fields: dict[str, Any] = {**OmegaConf.to_container(shape), "model_type": model_type}
    if sliding_window:
        if model_type != "qwen2":
            raise SystemExit("--sliding-window needs --model-type qwen2")
        fields |= {"use_sliding_window": True, "sliding_window": sliding_window}
        fields["max_window_layers"] = 0  # every layer windowed
    return build_causal_lm(None, vocab_size, fields, seed=seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="an xlam-data synth folder")
    p.add_argument("--tokenizer", type=Path, required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=6, help="samples a step")
    p.add_argument("--supervise", choices=("all", "values"), default="all")
    p.add_argument(
        "--copy-weight",
        type=float,
        default=1.0,
        help="loss weight of copied targets (xlam-train's model.copy_weight)",
    )
    p.add_argument("--first-turn", action="store_true")
    p.add_argument("--sliding-window", type=int, default=0, help="0: full attention")
    p.add_argument("--model-type", default="llama", help="llama (no q/k/v biases) | qwen2")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW's (embeddings, norms)")
    p.add_argument("--muon-lr", type=float, default=0.02)
    p.add_argument("--n-test", type=int, default=80, help="first N test tasks")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", type=Path, default=None, help="keep the model and tokenizer")
    args = p.parse_args()
    from transformers import AutoTokenizer

    from xlam.data.schema import read_trajectories
    from xlam.models.components.loss import copy_weights, copyable_vocab
    from xlam.models.components.muon import MuonAdamW

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    cut = first_turn if args.first_turn else iter
    train = render_classes(tok, cut(read_trajectories(args.data / "train.jsonl")), 1024)
    test_tasks = islice(read_trajectories(args.data / "test.jsonl"), args.n_test)
    test = render_classes(tok, cut(test_tasks), 1024)
    mean_len = sum(len(s[0]) for s in train) / len(train)
    print(f"{len(train)} train samples (mean {mean_len:.0f} tokens), {len(test)} test", flush=True)

    model = build_model(len(tok), args.model_type, args.sliding_window, args.seed)
    named = list(model.named_parameters())
    opt = MuonAdamW(
        [
            {"params": [(n, w) for n, w in named if w.ndim >= 2], "weight_decay": 0.01},
            {"params": [(n, w) for n, w in named if w.ndim < 2], "weight_decay": 0.0},
        ],
        lr=args.lr,
        muon_lr=args.muon_lr,
    )
    warmup = max(1, int(0.05 * args.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1, s / args.steps))),
    )
    rng = random.Random(args.seed)
    pad = tok.pad_token_id or 0
    copyable = copyable_vocab(tok) if args.copy_weight != 1 else None
    curve: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        ids, labels = make_batch(rng.sample(train, args.batch), pad, args.supervise == "values")
        if copyable is None:
            loss = model(input_ids=ids, labels=labels).loss
        else:  # as CausalLMModule.training_step weighs them
            logits = model(input_ids=ids).logits[:, :-1]
            targets = labels[:, 1:]
            losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            weights = copy_weights(ids, labels, None, copyable, args.copy_weight)
            loss = (losses * weights).sum() / (targets != IGNORE_INDEX).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % args.eval_every == 0 or step == args.steps:
            acc = {k: v["accuracy"] for k, v in teacher_forced(model, test).items()}
            curve.append({"step": step, "loss": round(loss.item(), 3), **acc})
            print(json.dumps(curve[-1]), f"{time.perf_counter() - t0:.0f} s", flush=True)
    if args.save:
        model.save_pretrained(args.save)
        tok.save_pretrained(args.save)
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "curve": curve}))


if __name__ == "__main__":
    main()
