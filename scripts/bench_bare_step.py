"""A bare transformers training step at a real shape: the ceiling xlam's step is held against.

No Lightning, no xlam data: a random-initialised model of one of ``bench_common.SHAPES``
built on the device (fp32 weights), one row of ``--seq`` random tokens, bf16 autocast on
CUDA, the same row every step. Times forward + backward (one logit, or every logit), with
AdamW, and packed (samples of ``--doc`` tokens by restarting position ids), each over
``--steps`` steps after 2 warm-up steps, and prints ms per step, tokens/s and MFU
(``xlam.models.components.flops.mfu``: 6 x parameters x tokens over the device's peak, as
the training monitor counts it). ``--profile`` adds torch.profiler's table of one packed step.

Usage::

    python scripts/bench_bare_step.py --shape qwen2_5_1_5b --seq 4096   # on a GPU
    python scripts/bench_bare_step.py --shape tiny --seq 1024           # CPU, fp32

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from typing import Any

import torch
from bench_common import SHAPES, tiny_model

from xlam.models.components.flops import mfu, peak_flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="qwen2_5_1_5b")
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--vocab", type=int, default=151_665, help="Qwen2.5's by default")
    p.add_argument("--doc", type=int, default=300, help="tokens per packed sample")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    t0 = time.perf_counter()
    model = tiny_model(args.vocab, 0, args.shape, device=device)
    build_s = time.perf_counter() - t0
    params = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, args.vocab, (1, args.seq), device=device)
    whole = torch.arange(args.seq, device=device).view(1, -1)
    packed = (whole % args.doc).view(1, -1)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    peak = peak_flops(torch.cuda.get_device_name(0)) if cuda else None

    def step(pos: torch.Tensor, every_logit: bool, adamw: bool) -> None:
        with autocast:
            out = model(
                input_ids=ids,
                position_ids=pos,
                use_cache=False,
                logits_to_keep=0 if every_logit else 1,
            )
            loss = out.logits.float().mean()
        loss.backward()
        if adamw:
            opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    results: dict[str, Any] = {}
    cases = {
        "one_logit": (whole, False, False),
        "every_logit": (whole, True, False),
        "one_logit_adamw": (whole, False, True),
        "packed_one_logit": (packed, False, False),
    }
    for name, case in cases.items():
        for _ in range(2):
            step(*case)
        sync()
        t = time.perf_counter()
        for _ in range(args.steps):
            step(*case)
        sync()
        s = (time.perf_counter() - t) / args.steps
        util = mfu(args.seq / s, params, None, peak)
        results[name] = {
            "ms": round(s * 1000, 1),
            "tokens_per_s": round(args.seq / s),
            "mfu": round(util, 4) if util else None,
        }
        shown = f"{util:.1%}" if util else "-"
        print(f"{name:<18} {s * 1000:8.1f} ms  {args.seq / s:9.0f} tok/s  MFU {shown}", flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            step(packed, False, True)
            sync()
        key = "cuda_time_total" if cuda else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=60))
    print(
        json.dumps(
            {
                "bench": "bare_step",
                "shape": args.shape,
                "seq": args.seq,
                "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                "params": params,
                "build_s": round(build_s, 1),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
