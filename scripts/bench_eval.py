"""Benchmark the eval: scoring throughput and ``hf`` generation speed, on one CPU core.

1. BFCL scoring: every single-turn BFCL v4 item's gold answer, written as a model would emit
   it (an xLAM JSON list), parsed by ``xlam.serving`` and checked by BFCL's own AST checker
   in the BFCL worker (batched), both processes pinned to one core: items/s (target
   >= 10,000, so scoring never limits an eval). The worker's start-up (importing BFCL's
   model handlers) is reported apart.
2. Trajectories scoring: every assistant turn of the embedded samples through the suite
   with the oracle backend (parse + typed comparison): items/s.
3. ``hf`` generation on the tiny model (the default ``model=tiny`` shape, random weights,
   so it runs to ``max_new_tokens``): generated tokens/s at batch 1 and batch 8.

The last printed line is one JSON object with every figure.

Usage::

    python scripts/bench_eval.py [--repeats 3] [--batch 512] [--gen-requests 16] [--new-tokens 64]
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def bench_bfcl(repeats: int, batch: int, root: Path) -> dict[str, float]:
    from xlam.data.render import format_calls_json
    from xlam.eval.suites.bfcl import SINGLE_TURN, BfclSuite, _calls
    from xlam.serving.parser import parse_tool_calls

    suite = BfclSuite(categories=list(SINGLE_TURN), root=root)
    try:
        t0 = time.perf_counter()
        items = [it for c in SINGLE_TURN for it in suite.items(c)]
        suite.worker.request("check", items=[])  # imports the checker
        startup = time.perf_counter() - t0
        texts = [format_calls_json(it["gold"]) if it.get("gold") else "No." for it in items]
        rates, valid = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            valid = 0
            for start in range(0, len(items), batch):
                chunk = []
                for it, text in zip(items[start : start + batch], texts[start : start + batch]):
                    p = parse_tool_calls(text)
                    chunk.append({"id": it["id"], "calls": _calls(p), "parse_error": p.error})
                valid += sum(r["valid"] for r in suite.worker.request("check", items=chunk))
            rates.append(len(items) / (time.perf_counter() - t0))
        return {
            "bfcl_items": len(items),
            "bfcl_valid": valid,
            "bfcl_scoring_items_per_s": statistics.median(rates),
            "bfcl_worker_startup_s": startup,
        }
    finally:
        suite.close()


def bench_trajectories(repeats: int) -> dict[str, float]:
    from xlam import SAMPLE_DATA_DIR
    from xlam.eval.backends.oracle import OracleBackend
    from xlam.eval.suites.trajectories import TrajectorySuite

    paths = [SAMPLE_DATA_DIR / f"{n}.jsonl" for n in ("fc_single", "multi_turn", "chat")]
    suite = TrajectorySuite(path=paths)
    rates = []
    n = 0
    for _ in range(repeats):
        out: list = []
        t0 = time.perf_counter()
        suite.run(OracleBackend(batch_size=256), set(), out.append)
        rates.append(len(out) / (time.perf_counter() - t0))
        n = len(out)
    return {"trajectory_items": n, "trajectory_scoring_items_per_s": statistics.median(rates)}


def bench_generation(requests: int, new_tokens: int, tmp: Path) -> dict[str, float]:
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
    from xlam.eval.backends.hf import HFBackend
    from xlam.eval.suites.trajectories import TrajectorySuite
    from xlam.models.components.build import build_causal_lm
    from xlam.models.export import export_hf
    from xlam.utils.hydra import CONF_DIR

    torch.set_num_threads(1)
    shape = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "default.yaml"))
    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    model = build_causal_lm(None, len(tok), from_config=shape["from_config"], seed=0)
    export = export_hf(model, tok, tmp / "tiny")
    reqs = TrajectorySuite(path=SAMPLE_DATA_DIR / "fc_single.jsonl").requests()[:requests]
    out = {"gen_requests": len(reqs), "gen_max_new_tokens": new_tokens}
    for bs in (1, 8):
        backend = HFBackend(str(export), batch_size=bs, max_new_tokens=new_tokens, device="cpu")
        backend.generate(reqs[:bs])  # warm-up
        t0 = time.perf_counter()
        done = backend.generate(reqs)
        dt = time.perf_counter() - t0
        out[f"gen_tokens_per_s_batch{bs}"] = sum(c.num_tokens for c in done) / dt
        backend.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=512, help="items per checker request")
    parser.add_argument("--gen-requests", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--skip-bfcl", action="store_true", help="no BFCL env: skip part 1")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        # One core for this process and the BFCL worker it starts (inherited).
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="xlam-bench-eval-") as tmp:
        if not args.skip_bfcl:
            results |= bench_bfcl(args.repeats, args.batch, Path(tmp) / "bfcl")
            print(
                f"BFCL scoring: {results['bfcl_scoring_items_per_s']:,.0f} items/s over "
                f"{results['bfcl_items']} items ({results['bfcl_valid']} valid), worker "
                f"start-up {results['bfcl_worker_startup_s']:.1f} s"
            )
        results |= bench_trajectories(args.repeats)
        print(
            f"trajectories scoring: {results['trajectory_scoring_items_per_s']:,.0f} items/s "
            f"over {results['trajectory_items']} turns"
        )
        results |= bench_generation(args.gen_requests, args.new_tokens, Path(tmp))
        print(
            f"hf generation (tiny): {results['gen_tokens_per_s_batch1']:,.0f} tokens/s at "
            f"batch 1, {results['gen_tokens_per_s_batch8']:,.0f} at batch 8"
        )
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
