"""Benchmark the data path: packing efficiency, throughput, cache start-up and resume time.

Usage::

    python scripts/bench_data.py [--work DIR] [--copies 17] [--resume-at 1000000]

- ``packing_efficiency_{4096,8192}``: real tokens / tokens processed when every packed row
  is ``seq_length`` long, on the shipped mixture (``conf/data/default.yaml``: 2 epochs of
  each embedded source).
- ``unpacked_efficiency_b16`` / ``grouped_efficiency_b16``: the same ratio unpacked, every
  sample its own row padded to the longest of its micro-batch of 16, in stream order and
  grouped by length (``data.packing.group_by_length``).
- ``samples_per_s``: samples through the whole train path (sampler, packing, Arrow fetch,
  packed collate) on one core, from a warm cache.
- ``cache_start_s``: a fresh datamodule's ``prepare()`` + ``setup()`` + first batch when the
  cache holds the rendered data (``cache_build_s`` is the cold build it replaces;
  ``cache_start_process_s`` is the same in a new Python process, imports included).
- ``token_ratio``: tokens processed per supervised token on a real dataset and tokenizer
  (default: the glaive sample with Qwen2.5's tokenizer from ``../shared/fixtures``) at
  ``--ratio-seq``, beside its limit: every trajectory rendered whole (``all_turns``) and
  packed without a token of padding. ``achieved_batch_1`` is one packed row per micro-batch,
  ``achieved_batch_B`` rows padded to the longest of each micro-batch of ``--ratio-batch``;
  the breakdown names where the gap comes from (samples rendered per turn, padding, samples
  dropped as overlong, validation samples).
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
from xlam.data.labels import IGNORE_INDEX
from xlam.data.mixture import SourceSpec
from xlam.data.render import Renderer, RenderOptions
from xlam.data.sources import load_source

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
GLAIVE = FIXTURES / "datasets/sharegpt_glaive/glaive_toolcall_en_demo.json"
QWEN2_5 = FIXTURES / "tokenizers/qwen2_5"

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


def collated_efficiency(d: TrajectoryDataModule) -> float:
    """Real tokens / tokens processed over the train loader's micro-batches."""
    real = processed = 0
    for batch in d.train_dataloader():
        real += int(batch["attention_mask"].sum())
        processed += batch["attention_mask"].numel()
    return real / max(processed, 1)


def packing_efficiency(cache: Path, seq: int) -> dict[str, float]:
    d = dm(shipped_sources(), cache, seq, batch_size=8)
    d.prepare()
    d.setup()
    assert d.stream is not None
    s = d.stream.sampler
    real = sum(d.store.lengths(s.refs(0, s.total)))
    bins = d.total_rows()
    return {
        "fixed": real / (bins * seq),
        # as collated: rows padded to the longest of each micro-batch of 8
        "batched": collated_efficiency(d),
        "bins": bins,
        "tokens": real,
    }


def padding_efficiency(cache: Path, batch: int) -> dict[str, float]:
    """Real tokens / tokens processed, unpacked: in stream order and grouped by length."""
    out = {}
    for name, grouped in (("unpacked", False), ("grouped", True)):
        d = TrajectoryDataModule(
            shipped_sources(),
            str(TINY_TOKENIZER_DIR),
            cache_dir=str(cache),
            batch_size=batch,
            packing={"enabled": False, "group_by_length": grouped, "window": 1000},
        )
        out[name] = collated_efficiency(d)
    return out


def token_ratio(
    source: Path, fmt: str, tokenizer: Path, seq: int, batch: int, val_size: int = 8
) -> dict[str, Any]:
    """Tokens processed per supervised token, achieved through the train path and its limit."""
    from transformers import AutoTokenizer

    spec = SourceSpec(name="ratio", path=str(source), format=fmt)
    renderer = Renderer(AutoTokenizer.from_pretrained(tokenizer), RenderOptions(mode="all_turns"))
    tokens = supervised = 0
    for traj in load_source(spec):
        for s in renderer.render(traj):
            tokens += len(s)
            supervised += s.num_supervised
    res: dict[str, Any] = {
        "trajectories": renderer.report.seen,
        # these render per turn in training (mode auto), repeating their history per turn
        "not_prefix_stable": renderer.report.skipped,
        "limit": round(tokens / supervised, 4),
    }
    for b in sorted({1, batch}):
        d = TrajectoryDataModule(
            {"ratio": {"path": str(source), "format": fmt}},
            str(tokenizer),
            batch_size=b,
            val_size=val_size,
            packing={"enabled": True, "seq_length": seq, "window": 1000},
        )
        d.prepare()
        d.setup()
        real = processed = sup = 0
        for x in d.train_dataloader():
            real += int((x["sample_index"] >= 0).sum())
            processed += x["input_ids"].numel()
            sup += int((x["labels"] != IGNORE_INDEX).sum())
        res[f"achieved_batch_{b}"] = round(processed / sup, 4)
        # the limit of the very samples trained (overlong and validation ones left out)
        res[f"trained_limit_batch_{b}"] = round(real / sup, 4)
        res[f"padding_batch_{b}"] = round(1 - real / processed, 4)
    report = d.mixture_report()["ratio"]
    res.update(
        dropped=report.get("dropped", {}),
        val=report.get("val", 0),
        within_5pct=res[f"achieved_batch_{batch}"] <= 1.05 * res["limit"],
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="data and cache folder")
    ap.add_argument("--copies", type=int, default=17)
    ap.add_argument("--resume-at", type=int, default=1_000_000)
    ap.add_argument("--num-proc", type=int, default=None)
    ap.add_argument("--ratio-source", type=Path, default=GLAIVE)
    ap.add_argument("--ratio-format", default="sharegpt")
    ap.add_argument("--ratio-tokenizer", type=Path, default=QWEN2_5)
    ap.add_argument("--ratio-seq", type=int, default=4096)
    ap.add_argument("--ratio-batch", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="xlam-bench-"))
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # cold numbers need a cold cache
    res: dict[str, Any] = {}

    if args.ratio_source.exists() and args.ratio_tokenizer.exists():
        res["token_ratio"] = token_ratio(
            args.ratio_source,
            args.ratio_format,
            args.ratio_tokenizer,
            args.ratio_seq,
            args.ratio_batch,
        )
        print(json.dumps({"token_ratio": res["token_ratio"]}), flush=True)

    for seq in (4096, 8192):
        eff = packing_efficiency(cache, seq)
        res[f"packing_efficiency_{seq}"] = round(eff["fixed"], 4)
        res[f"packing_efficiency_{seq}_batched"] = round(eff["batched"], 4)
        res[f"bins_{seq}"] = eff["bins"]
    res["shipped_tokens"] = eff["tokens"]
    for name, value in padding_efficiency(cache, 16).items():
        res[f"{name}_efficiency_b16"] = round(value, 4)

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
