"""Benchmark the data path: packing efficiency, throughput, cache start-up and resume time.

Usage::

    python scripts/bench_data.py [--work DIR] [--copies 17] [--resume-at 1000000]

- ``packing_efficiency_{4096,8192}``: real tokens / tokens processed when every packed row
  is ``seq_length`` long, on the shipped mixture (``conf/data/default.yaml``: 2 epochs of
  each embedded source).
- ``samples_per_s``: samples through the whole train path (sampler, packing, Arrow fetch,
  packed collate) on one core, from a warm cache.
- ``cache_start_s``: a fresh datamodule's ``prepare()`` + ``setup()`` + first batch when the
  cache holds the rendered data (``cache_build_s`` is the cold build it replaces;
  ``cache_start_process_s`` is the same in a new Python process, imports included).
- ``resume_s``: a fresh datamodule restored at ``--resume-at`` samples into its stream
  (construction, cache load, state, the seek and the first batch; the plan's bin count is
  memoised on disk by an earlier start, its cold cost is ``plan_count_s``).

The larger dataset is the shipped one replicated ``--copies`` times with fresh ids. Ends with
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.data.datamodule import TrajectoryDataModule

NAMES = ("fc_single", "multi_turn", "chat")


def shipped_sources(epochs: float = 2.0) -> dict[str, Any]:
    return {n: {"path": str(SAMPLE_DATA_DIR / f"{n}.jsonl"), "epochs": epochs} for n in NAMES}


def make_big(folder: Path, copies: int) -> dict[str, Any]:
    """The shipped sources replicated ``copies`` times (fresh ids, same content)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in NAMES:
        path = folder / f"{n}.jsonl"
        if not path.exists():
            lines = (SAMPLE_DATA_DIR / f"{n}.jsonl").read_text().splitlines()
            with path.open("w") as f:
                for c in range(copies):
                    for line in lines:
                        rec = json.loads(line)
                        rec["unique_trajectory_id"] = f"{rec['unique_trajectory_id']}-c{c}"
                        f.write(json.dumps(rec) + "\n")
        out[n] = {"path": str(path)}
    return out


def dm(sources: dict[str, Any], cache: Path, seq: int, **kw: Any) -> TrajectoryDataModule:
    return TrajectoryDataModule(
        sources,
        str(TINY_TOKENIZER_DIR),
        cache_dir=str(cache),
        packing={"enabled": True, "seq_length": seq, "window": 1000},
        **kw,
    )


def packing_efficiency(cache: Path, seq: int) -> dict[str, float]:
    d = dm(shipped_sources(), cache, seq, batch_size=8)
    d.prepare()
    d.setup()
    assert d.stream is not None
    s = d.stream.sampler
    real = sum(d.store.lengths(s.refs(0, s.total)))
    bins = d.total_rows()
    # Also as collated: rows padded to the longest of each micro-batch of 8.
    got = processed = 0
    for batch in d.train_dataloader():
        got += int(batch["attention_mask"].sum())
        processed += batch["attention_mask"].numel()
    return {
        "fixed": real / (bins * seq),
        "batched": got / max(processed, 1),
        "bins": bins,
        "tokens": real,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="data and cache folder")
    ap.add_argument("--copies", type=int, default=17)
    ap.add_argument("--resume-at", type=int, default=1_000_000)
    ap.add_argument("--num-proc", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="xlam-bench-"))
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # cold numbers need a cold cache
    res: dict[str, Any] = {}

    for seq in (4096, 8192):
        eff = packing_efficiency(cache, seq)
        res[f"packing_efficiency_{seq}"] = round(eff["fixed"], 4)
        res[f"packing_efficiency_{seq}_batched"] = round(eff["batched"], 4)
        res[f"bins_{seq}"] = eff["bins"]
    res["shipped_tokens"] = eff["tokens"]

    big = make_big(work / "data", args.copies)
    t0 = time.perf_counter()
    d = dm(big, cache, 4096, batch_size=8, num_proc=args.num_proc)
    d.prepare()
    res["cache_build_s"] = round(time.perf_counter() - t0, 3)
    res["big_samples"] = sum(src.size for src in d.sources.values())

    t0 = time.perf_counter()
    d = dm(big, cache, 4096, batch_size=8)
    d.prepare()
    d.setup()
    next(iter(d.train_dataloader()))
    res["cache_start_s"] = round(time.perf_counter() - t0, 3)
    assert all(i.hit for i in d.cache_info.values())

    # The same start in a fresh process, imports (torch, transformers, datasets) included.
    code = (
        "import time; t=time.perf_counter(); import json, sys;"
        "from xlam.data.datamodule import TrajectoryDataModule as D;"
        f"d=D(json.loads(sys.argv[1]), {str(TINY_TOKENIZER_DIR)!r}, cache_dir={str(cache)!r},"
        "batch_size=8, packing={'enabled': True, 'seq_length': 4096, 'window': 1000});"
        "d.prepare(); d.setup(); next(iter(d.train_dataloader()));"
        "assert all(i.hit for i in d.cache_info.values()); print(time.perf_counter()-t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(big)], capture_output=True, text=True, check=True
    ).stdout
    res["cache_start_process_s"] = round(float(out.strip().splitlines()[-1]), 3)

    # Throughput of the whole train path, one core, one pass over the stream.
    n = 0
    t0 = time.perf_counter()
    for batch in d.train_dataloader():
        n += len(batch["ids"])
    res["samples_per_s"] = round(n / (time.perf_counter() - t0), 1)

    # Resume deep into a long run: epochs so that the stream passes --resume-at.
    epochs = (args.resume_at * 1.2) / res["big_samples"]
    long = {k: {**v, "epochs": epochs} for k, v in big.items()}
    t0 = time.perf_counter()
    d = dm(long, cache, 4096, batch_size=8)
    d.prepare()
    res["plan_count_s"] = round(time.perf_counter() - t0 + _time(d.total_rows), 3)
    window = d.packing.window
    state = d.state_dict()
    state["stream"].update(position=args.resume_at // window * window, bins_done=3)

    t0 = time.perf_counter()
    d = dm(long, cache, 4096, batch_size=8)
    d.load_state_dict(state)
    d.prepare()
    d.setup()
    first = next(iter(d.train_dataloader()))
    res["resume_s"] = round(time.perf_counter() - t0, 3)
    res["resume_position"] = min(first["positions"])
    res["stream_samples"] = d.total_samples
    print(json.dumps(res))


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
