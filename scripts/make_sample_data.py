"""Generate the embedded sample mixture (deterministic; no network).

Writes three sources in the unified trajectory format into ``xlam/assets/data/``:

* ``fc_single``: single-turn function calling, often with parallel calls;
* ``multi_turn``: multi-turn tool use with tool results (and an error then a retry);
* ``chat``: plain chat and clarification questions without tool calls.

Usage:
    python scripts/make_sample_data.py [--out xlam/assets/data] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Cairo", "Oslo", "Delhi", "Quito", "Rome", "Seoul"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "INR", "CHF"]
TOPICS = ["jazz", "volcanoes", "chess", "rust", "tea", "rivers", "owls", "bridges"]

TOOLS = {
    "get_weather": {
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
    "convert_currency": {
        "description": "Convert an amount between currencies.",
        "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "from_currency": {"type": "string"},
                "to_currency": {"type": "string"},
            },
            "required": ["amount", "from_currency", "to_currency"],
        },
    },
    "search_web": {
        "description": "Search the web and return the top results.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
            },
            "required": ["query"],
        },
    },
    "add_numbers": {
        "description": "Add a list of numbers.",
        "parameters": {
            "type": "object",
            "properties": {"numbers": {"type": "array", "items": {"type": "number"}}},
            "required": ["numbers"],
        },
    },
}


def tool_schema(name: str) -> dict:
    return {"type": "function", "function": {"name": name, **TOOLS[name]}}


def call(name: str, args: dict, cid: str) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def fc_single(rng: random.Random, i: int) -> dict:
    kind = rng.choice(["weather", "currency", "search", "add"])
    if kind == "weather":
        tools = [tool_schema("get_weather"), tool_schema("search_web")]
        cities = rng.sample(CITIES, rng.choice([1, 2, 3]))
        unit = rng.choice(["celsius", "fahrenheit"])
        query = f"What is the weather in {' and '.join(cities)} in {unit}?"
        calls = [
            call("get_weather", {"city": c, "unit": unit}, f"call_{i}_{k}")
            for k, c in enumerate(cities)
        ]
    elif kind in ("currency", "search"):
        tools = [tool_schema("convert_currency"), tool_schema("search_web")]
        if kind == "currency":
            amount = rng.randint(1, 500)
            a, b, c = rng.sample(CURRENCIES, 3)
            query = f"Convert {amount} {a} to {b} and to {c}."
            calls = [
                call(
                    "convert_currency",
                    {"amount": amount, "from_currency": a, "to_currency": t},
                    f"call_{i}_{k}",
                )
                for k, t in enumerate([b, c])
            ]
        else:
            topic = rng.choice(TOPICS)
            n = rng.randint(1, 5)
            query = f"Find {n} articles about {topic}."
            calls = [call("search_web", {"query": topic, "max_results": n}, f"call_{i}_0")]
    else:
        tools = [tool_schema("add_numbers"), tool_schema("get_weather")]
        nums = [rng.randint(1, 99) for _ in range(rng.randint(2, 5))]
        query = f"What is {' + '.join(map(str, nums))}?"
        calls = [call("add_numbers", {"numbers": nums}, f"call_{i}_0")]
    return {
        "unique_trajectory_id": f"fc_single-{i:04d}",
        "source": "fc_single",
        "task_instruction": "You are a helpful assistant that calls functions when needed.",
        "tools": tools,
        "conversation": [
            {"role": "user", "content": query},
            {"role": "assistant", "content": "", "tool_calls": calls},
        ],
        "metadata": {},
    }


def multi_turn(rng: random.Random, i: int) -> dict:
    city = rng.choice(CITIES)
    temp = rng.randint(-5, 35)
    amount = rng.randint(5, 900)
    a, b = rng.sample(CURRENCIES, 2)
    rate = round(rng.uniform(0.5, 150.0), 2)
    conv = [{"role": "user", "content": f"How warm is it in {city} right now?"}]
    if rng.random() < 0.3:
        # A tool error, then a retry with corrected arguments.
        conv += [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    call("get_weather", {"city": city.lower(), "unit": "kelvin"}, f"c{i}a")
                ],
            },
            {
                "role": "tool",
                "tool_call_id": f"c{i}a",
                "name": "get_weather",
                "content": json.dumps({"error": "unit must be celsius or fahrenheit"}),
            },
        ]
    conv += [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [call("get_weather", {"city": city, "unit": "celsius"}, f"c{i}b")],
        },
        {
            "role": "tool",
            "tool_call_id": f"c{i}b",
            "name": "get_weather",
            "content": json.dumps({"city": city, "temperature": temp, "unit": "celsius"}),
        },
        {"role": "assistant", "content": f"It is {temp} degrees celsius in {city}."},
        {"role": "user", "content": f"And how much is {amount} {a} in {b}?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                call(
                    "convert_currency",
                    {"amount": amount, "from_currency": a, "to_currency": b},
                    f"c{i}c",
                )
            ],
        },
        {
            "role": "tool",
            "tool_call_id": f"c{i}c",
            "name": "convert_currency",
            "content": json.dumps({"result": round(amount * rate, 2), "currency": b}),
        },
        {"role": "assistant", "content": f"{amount} {a} is {round(amount * rate, 2)} {b}."},
    ]
    return {
        "unique_trajectory_id": f"multi_turn-{i:04d}",
        "source": "multi_turn",
        "task_instruction": "You are a travel assistant. Use the tools to answer.",
        "tools": [tool_schema("get_weather"), tool_schema("convert_currency")],
        "conversation": conv,
        "metadata": {},
    }


def chat(rng: random.Random, i: int) -> dict:
    if i % 2 == 0:
        topic = rng.choice(TOPICS)
        conv = [
            {"role": "user", "content": f"Tell me one fact about {topic}."},
            {
                "role": "assistant",
                "content": f"Here is a fact about {topic}: people have "
                f"studied {topic} for a long time.",
            },
        ]
        tools: list = []
    else:
        conv = [
            {"role": "user", "content": "What is the weather like?"},
            {"role": "assistant", "content": "Which city do you mean?"},
        ]
        tools = [tool_schema("get_weather")]
        if rng.random() < 0.5:
            city = rng.choice(CITIES)
            conv += [
                {"role": "user", "content": f"{city}, please."},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [call("get_weather", {"city": city}, f"k{i}")],
                },
            ]
    return {
        "unique_trajectory_id": f"chat-{i:04d}",
        "source": "chat",
        "task_instruction": "",
        "tools": tools,
        "conversation": conv,
        "metadata": {},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "xlam/assets/data")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn, n in (
        ("fc_single", fc_single, 160),
        ("multi_turn", multi_turn, 100),
        ("chat", chat, 100),
    ):
        rng = random.Random(f"{args.seed}-{name}")
        path = args.out / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for i in range(n):
                f.write(json.dumps(fn(rng, i), ensure_ascii=False) + "\n")
        print(f"wrote {n} trajectories to {path}")


if __name__ == "__main__":
    main()
