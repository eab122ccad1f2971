"""Benchmark the renderer: render + tokenize + mask throughput on one CPU core.

Measures trajectories per second for single-turn and 10-turn trajectories with a real
tokenizer, in ``all_turns`` and ``per_turn`` modes, with and without the piecewise
encoding cache, and the tokens processed per supervised token of each mode (what a
training step pays for each token that carries loss). The last printed line is one JSON
object with every figure.

Usage::

    python scripts/bench_render.py [--tokenizer DIR] [--n 400] [--seconds 2] [--repeats 3]
"""

from __future__ import annotations

import os

# One core: set before tokenizers starts its thread pool.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from xlam.data.render import Renderer, RenderOptions
from xlam.data.schema import Trajectory

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER = ROOT.parent / "shared" / "fixtures" / "tokenizers" / "qwen2_5"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name."},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_flights",
            "description": "Search flights between two airports on a date.",
            "parameters": {
                "type": "object",
                "properties": {
                    "origin": {"type": "string"},
                    "destination": {"type": "string"},
                    "date": {"type": "string", "description": "YYYY-MM-DD"},
                },
                "required": ["origin", "destination", "date"],
            },
        },
    },
]
CITIES = ["Paris", "Rome", "Lagos", "Lima", "Osaka", "Quito", "Oslo", "Delhi", "Perth", "Cairo"]


def make_trajectory(rng: random.Random, idx: int, rounds: int) -> Trajectory:
    """A unique trajectory of ``rounds`` x (user, call, result, answer); 2 turns per round.

    ``rounds=0`` gives the single-turn case: one user message and one call.
    """
    conv: list[dict] = []
    for r in range(max(rounds, 1)):
        city = rng.choice(CITIES)
        temp = rng.randint(-20, 40)
        conv.append({"role": "user", "content": f"Request {idx}.{r}: how warm is {city} now?"})
        cid = f"c{idx}_{r}"
        conv.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": {"city": city, "unit": "celsius"},
                        },
                    }
                ],
            }
        )
        if rounds == 0:
            break
        conv.append(
            {
                "role": "tool",
                "tool_call_id": cid,
                "name": "get_weather",
                "content": json.dumps({"city": city, "temperature": temp, "unit": "celsius"}),
            }
        )
        conv.append(
            {"role": "assistant", "content": f"It is {temp} degrees celsius in {city} right now."}
        )
    return Trajectory.from_dict(
        {
            "unique_trajectory_id": f"bench-{rounds}-{idx}",
            "source": "bench",
            "task_instruction": "You are a travel assistant. Use the tools when needed.",
            "tools": TOOLS,
            "conversation": conv,
        }
    )


def bench(
    tokenizer, trajs: list[Trajectory], mode: str, cache: bool, seconds: float, repeats: int
) -> dict:
    """Render ``trajs`` for about ``seconds``, ``repeats`` times with a fresh renderer
    (so no run reuses another's piece cache); report the median throughput."""
    rates = []
    for _ in range(repeats):
        renderer = Renderer(tokenizer, RenderOptions(mode=mode, strict=True), cache_encodings=cache)
        renderer.render(trajs[0])  # warm the template compile cache
        done = tokens = supervised = samples = 0
        # Unique trajectories only: a repeated one would be served from the piece cache.
        start = time.perf_counter()
        for traj in trajs[1:]:
            for s in renderer.render(traj):
                tokens += len(s)
                supervised += s.num_supervised
                samples += 1
            done += 1
            if time.perf_counter() - start > seconds:
                break
        rates.append(done / (time.perf_counter() - start))
    return {
        "traj_per_s": round(statistics.median(rates), 1),
        "runs": [round(r, 1) for r in rates],
        "trajectories": done,
        "samples": samples,
        "tokens_per_supervised": round(tokens / max(supervised, 1), 2),
        "tokens_per_traj": round(tokens / max(done, 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    parser.add_argument("--n", type=int, default=400, help="unique trajectories per case")
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rng = random.Random(0)
    cases = {"single_turn": 0, "ten_turn": 5}
    results: dict[str, dict] = {}
    for case, rounds in cases.items():
        trajs = [make_trajectory(rng, i, rounds) for i in range(args.n)]
        for mode in ("all_turns", "per_turn"):
            for cache in (True, False):
                key = f"{case}/{mode}/{'piecewise' if cache else 'plain'}"
                results[key] = bench(tokenizer, trajs, mode, cache, args.seconds, args.repeats)
                print(f"{key:36s} {results[key]}")
    figures = {
        "tokenizer": Path(args.tokenizer).name,
        "cores": 1,
        **{k: v["traj_per_s"] for k, v in results.items()},
        "tokens_per_supervised": {
            f"{case}/{mode}": results[f"{case}/{mode}/piecewise"]["tokens_per_supervised"]
            for case in cases
            for mode in ("all_turns", "per_turn")
        },
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
