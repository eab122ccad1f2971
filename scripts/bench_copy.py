"""Copy probe: how many steps a config-built Qwen2 needs to copy a value from its context.

The skill the learnability benchmark's tiny model lacks (it calls the right tool with made-up
argument values), isolated: a random filler context of ``--ctx`` tokens holds ``P - d d d d d``
once (and a few stray digits), and after a marker the model must write the five digits again.
Loss on those five tokens only; exact match of all five on 64 fresh sequences every 100 steps.

Usage::

    python scripts/bench_copy.py [--hidden 64] [--layers 2] [--lr 3e-3] [--steps 2000] [--ctx 50]
        [--batch 8] [--supervise-prefix]

The last line printed is one JSON object: the accuracy curve and the seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

VOCAB, P, DASH, MARK, FIRST_FILLER = 300, 10, 11, 12, 20  # ids 0-9 are the digits


def batch(
    rng: random.Random, size: int, ctx: int, prefix: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` sequences and their labels (``-100`` but on the copied digits).

    ``prefix``: the ``P -`` before the digits is supervised too, two tokens any model
    predicts after a few steps, as most tokens of a tool call are.
    """
    xs, ys = [], []
    for _ in range(size):
        filler = [rng.randrange(FIRST_FILLER, VOCAB) for _ in range(ctx)]
        for _ in range(6):  # stray digits: copying must find the ones after "P-"
            filler[rng.randrange(ctx)] = rng.randrange(10)
        digits = [rng.randrange(10) for _ in range(5)]
        at = rng.randrange(ctx - 10)
        seq = [*filler[:at], P, DASH, *digits, *filler[at:], MARK, P, DASH, *digits]
        xs.append(seq)
        target = [P, DASH, *digits] if prefix else digits
        ys.append([-100] * (len(seq) - len(target)) + target)
    return torch.tensor(xs), torch.tensor(ys)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--ctx", type=int, default=50)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--supervise-prefix",
        action="store_true",
        help="supervise the (trivially predictable) 'P -' before the digits too",
    )
    args = p.parse_args()
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    cfg = Qwen2Config(  # the tiny default's shape, width and depth from the flags
        vocab_size=VOCAB,
        hidden_size=args.hidden,
        intermediate_size=3 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    curve, t0 = [], time.perf_counter()
    for step in range(args.steps + 1):
        x, y = batch(rng, args.batch, args.ctx, args.supervise_prefix)
        model(input_ids=x, labels=y).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            with torch.no_grad():
                x, y = batch(rng, 64, args.ctx)
                pred = model(input_ids=x).logits[:, -6:-1].argmax(-1)
                exact = float((pred == y[:, -5:]).all(-1).float().mean())
            curve.append({"step": step, "exact": exact})
            print(f"step {step:>5}  exact copies {exact:.2f}", flush=True)
    print(json.dumps({**vars(args), "curve": curve, "seconds": round(time.perf_counter() - t0)}))


if __name__ == "__main__":
    main()
