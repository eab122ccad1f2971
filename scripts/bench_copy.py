"""Copy probe: how many steps a config-built Qwen2 needs to copy a value from its context.

The skill the learnability benchmark's tiny model lacks (it calls the right tool with made-up
argument values), isolated: a random filler context of ``--ctx`` tokens holds ``P - d d d d d``
once (and a few stray digits), and after a marker the model must write the five digits again.
Loss on those five tokens only; exact match of all five on 64 fresh sequences every 100 steps.

``--tokenizer DIR`` runs the task in a real tokenizer's vocabulary (its digit, ``P``, ``-``
and ``:`` tokens; filler from its other ids), ``--filler-from JSONL`` draws the filler from
the token frequencies of that text instead of uniformly, and ``--save DIR`` keeps the model
and tokenizer (a start for ``xlam-train model.path=DIR``). ``--optimizer muon`` trains with
xlam's ``MuonAdamW`` (``model/optimizer=muon``) instead of AdamW. ``--then-ctx STEP CTX``
is a length curriculum: from step ``STEP`` on, training and measuring use ``CTX``-token contexts.

Usage::

    python scripts/bench_copy.py [--hidden 64] [--layers 2] [--lr 3e-3] [--steps 2000] [--ctx 50]
        [--batch 8] [--supervise-prefix] [--tokenizer DIR [--filler-from JSONL] [--save DIR]]
        [--optimizer adamw|muon [--muon-lr 0.02]] [--vocab 300] [--then-ctx STEP CTX]

The last line printed is one JSON object: the accuracy curve and the seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class Vocab:
    """The task's token ids: ten digits, the marker ``P -`` and ``:``, and the filler."""

    size: int
    digits: list[int]
    p: int
    dash: int
    mark: int
    filler: list[int]
    weights: list[int] | None = None  # filler frequencies; None: uniform


def synthetic_vocab(size: int = 300) -> Vocab:
    """ids 0-9 the digits, 10-12 the marker and ``:``, 20 up to ``size`` the filler."""
    return Vocab(size, list(range(10)), 10, 11, 12, list(range(20, size)))


SYNTHETIC = synthetic_vocab()


def real_vocab(tokenizer: Any, filler_from: Path | None) -> Vocab:
    """The task in a real tokenizer's vocabulary (filler weighted by ``filler_from``'s text)."""
    ids = tokenizer.convert_tokens_to_ids
    digits = [ids(str(d)) for d in range(10)]
    p, dash, mark = ids("P"), ids("-"), ids(":")
    taken = {*digits, p, dash, mark, *tokenizer.all_special_ids}
    filler = [i for i in range(len(tokenizer)) if i not in taken]
    weights = None
    if filler_from is not None:
        counts = Counter(i for line in filler_from.open() for i in tokenizer(line)["input_ids"])
        filler = [i for i in filler if counts[i]]
        weights = [counts[i] for i in filler]
    return Vocab(len(tokenizer), digits, p, dash, mark, filler, weights)


def batch(
    rng: random.Random, size: int, ctx: int, prefix: bool = False, vocab: Vocab = SYNTHETIC
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` sequences and their labels (``-100`` but on the copied digits).

    ``prefix``: the ``P -`` before the digits is supervised too, two tokens any model
    predicts after a few steps, as most tokens of a tool call are.
    """
    v = vocab
    xs, ys = [], []
    for _ in range(size):
        if v.weights is None:  # (randrange: the random stream of the first version)
            filler = [v.filler[rng.randrange(len(v.filler))] for _ in range(ctx)]
        else:
            filler = rng.choices(v.filler, v.weights, k=ctx)
        for _ in range(6):  # stray digits: copying must find the ones after "P-"
            filler[rng.randrange(ctx)] = v.digits[rng.randrange(10)]
        digits = [v.digits[rng.randrange(10)] for _ in range(5)]
        at = rng.randrange(ctx - 10)
        seq = [*filler[:at], v.p, v.dash, *digits, *filler[at:], v.mark, v.p, v.dash, *digits]
        xs.append(seq)
        target = [v.p, v.dash, *digits] if prefix else digits
        ys.append([-100] * (len(seq) - len(target)) + target)
    return torch.tensor(xs), torch.tensor(ys)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW's (with muon: the rest's)")
    p.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw")
    p.add_argument("--muon-lr", type=float, default=0.02, help="Muon's, on hidden matrices")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--ctx", type=int, default=50)
    p.add_argument(
        "--then-ctx",
        nargs=2,
        type=int,
        metavar=("STEP", "CTX"),
        default=None,
        help="a length curriculum: train (and measure) in contexts of CTX tokens from STEP on",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--supervise-prefix",
        action="store_true",
        help="supervise the (trivially predictable) 'P -' before the digits too",
    )
    p.add_argument("--vocab", type=int, default=300, help="synthetic vocabulary size")
    p.add_argument("--tokenizer", type=Path, default=None, help="a real tokenizer's vocabulary")
    p.add_argument("--filler-from", type=Path, default=None, help="JSONL: filler frequencies")
    p.add_argument("--save", type=Path, default=None, help="keep the model (needs --tokenizer)")
    args = p.parse_args()
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer) if args.tokenizer else None
    vocab = real_vocab(tokenizer, args.filler_from) if tokenizer else synthetic_vocab(args.vocab)
    cfg = Qwen2Config(  # the tiny default's shape, width and depth from the flags
        vocab_size=vocab.size,
        hidden_size=args.hidden,
        intermediate_size=3 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg)
    if args.optimizer == "muon":  # xlam's model/optimizer=muon: Muon on hidden matrices
        from xlam.models.components.muon import MuonAdamW
        from xlam.models.components.schedules import param_groups

        groups = param_groups(model, 0.01, named=True)
        opt = MuonAdamW(groups, lr=args.lr, muon_lr=args.muon_lr, weight_decay=0.01)
    else:
        opt = torch.optim.AdamW(
            model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01
        )
    curve, t0 = [], time.perf_counter()
    ctx = args.ctx
    for step in range(args.steps + 1):
        if args.then_ctx and step == args.then_ctx[0]:
            ctx = args.then_ctx[1]
        x, y = batch(rng, args.batch, ctx, args.supervise_prefix, vocab)
        model(input_ids=x, labels=y).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            with torch.no_grad():
                x, y = batch(rng, 64, ctx, vocab=vocab)
                pred = model(input_ids=x).logits[:, -6:-1].argmax(-1)
                exact = float((pred == y[:, -5:]).all(-1).float().mean())
            curve.append({"step": step, "exact": exact})
            print(f"step {step:>5}  exact copies {exact:.2f}", flush=True)
    if args.save and tokenizer is not None:
        model.save_pretrained(args.save)
        tokenizer.save_pretrained(args.save)
    seconds = round(time.perf_counter() - t0)
    out = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print(json.dumps({**out, "curve": curve, "seconds": seconds}))


if __name__ == "__main__":
    main()
