"""Benchmark the streaming convert + verify path on xlam-function-calling-60k-like records.

Generates ``--n`` records (default 1,000,000) shaped like xlam-60k (``query``, and
``tools``/``answers`` as JSON strings with Python-ish parameter types) into a temporary
folder, then runs the same functions as ``xlam-data convert --format xlam_fc_60k`` and
``xlam-data verify`` on one core, streaming. About 1% of the records are made bad
(arguments of the wrong type, undeclared tools, broken JSON lines) so the reject path is
timed too. Prints figures, then exactly one JSON line as the last line of output::

    {"records_per_s": ..., "peak_rss_mb": ..., ...}

Rates are per second of CPU time of this one process (``time.process_time``), i.e. per
core: on a shared machine wall time also counts other people's work. ``records_per_s`` is
the one-pass rate (``convert --verify``: native -> verified JSONL, no intermediate file);
``two_stage_records_per_s`` is ``convert`` then ``verify`` through a unified file.

Usage:
    python scripts/bench_convert.py [--n 1000000] [--seed 0] [--dir DIR] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from xlam.data.formats import convert_file
from xlam.data.verify import Verifier, verify_file

WORDS = [
    "get",
    "fetch",
    "list",
    "search",
    "find",
    "create",
    "update",
    "delete",
    "compute",
    "convert",
    "calculate",
    "check",
    "weather",
    "stock",
    "price",
    "order",
    "user",
    "movie",
    "title",
    "cast",
    "recipe",
    "flight",
    "hotel",
    "city",
    "country",
    "currency",
    "amount",
    "date",
    "time",
    "range",
    "page",
    "limit",
    "query",
    "symbol",
    "market",
    "news",
    "score",
    "team",
]

# (Python-ish type, JSON value maker, weight): xlam-60k's common spellings.
TYPES = [
    ("str", lambda r: " ".join(r.choices(WORDS, k=r.randint(1, 3))), 40),
    ("int", lambda r: r.randint(0, 1000), 15),
    ("float", lambda r: round(r.uniform(-180, 180), 4), 6),
    ("bool", lambda r: r.random() < 0.5, 5),
    ("str, optional", lambda r: r.choice(WORDS), 14),
    ("int, optional", lambda r: r.randint(1, 50), 8),
    ("float, optional", lambda r: round(r.random(), 3), 3),
    ("List[int]", lambda r: [r.randint(0, 99) for _ in range(r.randint(1, 6))], 3),
    ("List[str]", lambda r: r.choices(WORDS, k=r.randint(1, 4)), 3),
    ("List", lambda r: [r.randint(0, 9) for _ in range(3)], 1),
    ("Dict[str, Any]", lambda r: {"k": r.choice(WORDS)}, 1),
    ("Union[int, float]", lambda r: r.choice([3, 2.5]), 1),
]


def make_tool_pool(rng: random.Random, size: int) -> list[dict]:
    """Distinct tools: name, description, 1-5 typed parameters (xlam-60k flat map)."""
    pool = []
    weights = [w for _, _, w in TYPES]
    for i in range(size):
        params = {}
        makers = {}
        for j in range(rng.randint(1, 5)):
            tname, maker, _ = rng.choices(TYPES, weights=weights)[0]
            pname = f"{rng.choice(WORDS)}_{j}"
            spec = {"description": f"The {pname.replace('_', ' ')} to use.", "type": tname}
            if "optional" in tname or rng.random() < 0.3:
                spec["default"] = maker(rng)
            params[pname] = spec
            makers[pname] = (maker, tname)
        name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{i}"
        tool = {
            "name": name,
            "description": f"{' '.join(rng.choices(WORDS, k=8)).capitalize()}.",
            "parameters": params,
        }
        pool.append({"tool": tool, "json": json.dumps(tool), "makers": makers})
    return pool


def generate(path: Path, n: int, seed: int) -> int:
    """Write ``n`` xlam-60k-like JSONL records; returns the number of deliberately bad ones."""
    rng = random.Random(seed)
    pool = make_tool_pool(rng, 3000)
    bad = 0
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            chosen = rng.sample(pool, rng.randint(1, 5))
            answers = []
            for t in rng.sample(chosen, rng.randint(1, min(3, len(chosen)))):
                args = {
                    p: maker(rng)
                    for p, (maker, tname) in t["makers"].items()
                    if "optional" not in tname or rng.random() < 0.3
                }
                answers.append({"name": t["tool"]["name"], "arguments": args})
            kind = rng.random()
            if kind < 0.008:
                # Half wrong argument types (a list where a string or integer is declared),
                # half undeclared tools (also when no argument has such a type).
                makers = next(t for t in chosen if t["tool"]["name"] == answers[0]["name"])[
                    "makers"
                ]
                scalar = [p for p, (_, tn) in makers.items() if tn in ("str", "int")]
                if kind < 0.004 and scalar:
                    answers[0]["arguments"][scalar[0]] = [1, 2]
                else:
                    answers[0]["name"] = "no_such_tool"
                bad += 1
            elif kind < 0.009:  # broken JSON line
                f.write(f'{{"id": {i}, "query": "truncated\n')
                bad += 1
                continue
            record = {
                "id": i,
                "query": " ".join(rng.choices(WORDS, k=rng.randint(8, 25))).capitalize() + "?",
                "answers": json.dumps(answers),
                "tools": "[" + ", ".join(t["json"] for t in chosen) + "]",
            }
            f.write(json.dumps(record) + "\n")
    return bad


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="records to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--profile", action="store_true", help="cProfile convert and verify")
    args = parser.parse_args(argv)

    work = args.dir or Path(tempfile.mkdtemp(prefix="xlam-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    raw, unified = work / "xlam60k.jsonl", work / "unified.jsonl"
    try:
        t0 = time.perf_counter()
        planted = generate(raw, args.n, args.seed)
        t_gen = time.perf_counter() - t0
        size_mb = raw.stat().st_size / 2**20
        print(
            f"generated {args.n:,} records ({size_mb:,.0f} MiB) in {t_gen:.1f}s; "
            f"{planted:,} planted bad; rss {peak_rss_mb():.0f} MiB",
            file=sys.stderr,
        )

        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        conv = convert_file(raw, "xlam_fc_60k", unified, work / "convert.rejects.jsonl")
        t_convert, c_convert = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"convert: {conv.read:,} read, {conv.converted:,} ok, {conv.rejected:,} rejected "
            f"in {t_convert:.1f}s = {conv.read / t_convert:,.0f} rec/s; "
            f"rss {peak_rss_mb():.0f} MiB",
            file=sys.stderr,
        )

        t0, c0 = time.perf_counter(), time.process_time()
        verifier = Verifier()
        rep = verify_file(unified, work / "good.jsonl", work / "verify.rejects.jsonl", verifier)
        t_verify, c_verify = time.perf_counter() - t0, time.process_time() - c0
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        print(
            f"verify: {rep.read:,} read, {rep.good:,} good, {rep.rejected:,} rejected "
            f"in {t_verify:.1f}s = {rep.read / t_verify:,.0f} rec/s; "
            f"schema cache {verifier.schemas.hits:,} hits / {verifier.schemas.misses:,} misses; "
            f"rss {peak_rss_mb():.0f} MiB",
            file=sys.stderr,
        )
        assert conv.read == args.n and conv.read == conv.converted + conv.rejected
        assert rep.read == conv.converted and rep.read == rep.good + rep.rejected
        assert conv.rejected + rep.rejected == planted, (conv.rejected, rep.rejected, planted)
        unified.unlink()

        # One pass, native -> verified (xlam-data convert --verify): no intermediate file.
        t0, c0 = time.perf_counter(), time.process_time()
        fused = verify_file(
            raw, work / "good1.jsonl", work / "rejects1.jsonl", Verifier(), fmt="xlam_fc_60k"
        )
        t_fused, c_fused = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"convert --verify (one pass): {fused.read:,} read, {fused.good:,} good, "
            f"{fused.rejected:,} rejected in {t_fused:.1f}s = {fused.read / t_fused:,.0f} "
            f"rec/s; rss {peak_rss_mb():.0f} MiB",
            file=sys.stderr,
        )
        assert fused.read == args.n and fused.good == rep.good and fused.rejected == planted
        result = {
            "records_per_s": round(args.n / c_fused),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "n": args.n,
            "records_per_wall_s": round(args.n / t_fused),
            "two_stage_records_per_s": round(args.n / (c_convert + c_verify)),
            "convert_records_per_s": round(args.n / c_convert),
            "verify_records_per_s": round(rep.read / c_verify),
            "one_pass_cpu_s": round(c_fused, 2),
            "one_pass_wall_s": round(t_fused, 2),
            "convert_cpu_s": round(c_convert, 2),
            "verify_cpu_s": round(c_verify, 2),
            "input_mib": round(size_mb, 1),
            "good": rep.good,
            "rejected": conv.rejected + rep.rejected,
            "cpu_count": os.cpu_count(),
        }
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
