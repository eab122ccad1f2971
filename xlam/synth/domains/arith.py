"""Arithmetic and unit conversion: a stateless domain and its task templates.

Tools compute what a tiny model should not: sums, percentages, unit and currency
conversions (fixed factor and rate tables, no clock, no network). Numeric results are
rounded to 2 decimals and an integral value is an int, so the observation writes a number
exactly as :func:`~xlam.synth.core.format_value` writes it in the answer.

Queries write units and currencies as codes ("26 mi in km"), so arguments are copied
verbatim; only the error-retry template writes full length unit names, which
``convert_length`` rejects (its units are in the description, not an enum, so that such a
call is well-formed and the error comes from the implementation); the retry uses the codes.
"""

from __future__ import annotations

import math
import random
from typing import Any

from xlam.synth.core import (
    Domain,
    EpisodeBuilder,
    InvalidArgument,
    Tool,
    format_value,
    register_domain,
    template,
)

DOMAIN = "arith"

# Metres per unit.
LENGTH: dict[str, float] = {
    "mm": 0.001,
    "cm": 0.01,
    "m": 1.0,
    "km": 1000.0,
    "in": 0.0254,
    "ft": 0.3048,
    "yd": 0.9144,
    "mi": 1609.344,
}
# Grams per unit.
WEIGHT: dict[str, float] = {
    "mg": 0.001,
    "g": 1.0,
    "kg": 1000.0,
    "t": 1_000_000.0,
    "oz": 28.349523125,
    "lb": 453.59237,
}
TEMPERATURE: tuple[str, ...] = ("C", "F", "K")
# Units of each currency per US dollar (a fixed table: the tools never read live rates).
RATES: dict[str, float] = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "JPY": 150.0,
    "CHF": 0.9,
    "CAD": 1.35,
}
LENGTH_NAMES: dict[str, str] = {
    "mm": "millimeters",
    "cm": "centimeters",
    "m": "meters",
    "km": "kilometers",
    "in": "inches",
    "ft": "feet",
    "yd": "yards",
    "mi": "miles",
}


def num(x: float) -> int | float:
    """``x`` rounded to 2 decimals; an int when integral (``12``, never ``12.0``).

    Raises:
        InvalidArgument: The result is not finite (an overflow).
    """
    if not math.isfinite(x):
        raise InvalidArgument("the result is too large")
    r = round(x, 2)
    return int(r) if float(r).is_integer() else r


# -- tools ------------------------------------------------------------------------------
def _add(state: dict, a: float, b: float) -> dict[str, Any]:
    return {"result": num(a + b)}


def _subtract(state: dict, a: float, b: float) -> dict[str, Any]:
    return {"result": num(a - b)}


def _multiply(state: dict, a: float, b: float) -> dict[str, Any]:
    return {"result": num(a * b)}


def _divide(state: dict, a: float, b: float) -> dict[str, Any]:
    if b == 0:
        raise InvalidArgument("divide: 'b' must not be 0")
    return {"result": num(a / b)}


def _integer_divide(state: dict, a: int, b: int) -> dict[str, Any]:
    if b == 0:
        raise InvalidArgument("integer_divide: 'b' must not be 0")
    return {"quotient": a // b, "remainder": a % b}


def _percentage(state: dict, value: float, percent: float) -> dict[str, Any]:
    return {"result": num(value * percent / 100)}


def _convert_length(state: dict, value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    for name, unit in (("from_unit", from_unit), ("to_unit", to_unit)):
        if unit not in LENGTH:
            raise InvalidArgument(
                f"convert_length: unknown unit {unit!r} in '{name}'; use one of {', '.join(LENGTH)}"
            )
    return {"value": num(value * LENGTH[from_unit] / LENGTH[to_unit]), "unit": to_unit}


def _convert_weight(state: dict, value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    if value < 0:
        raise InvalidArgument(f"convert_weight: 'value' must be >= 0, got {value!r}")
    return {"value": num(value * WEIGHT[from_unit] / WEIGHT[to_unit]), "unit": to_unit}


def _convert_temperature(state: dict, value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    celsius = {"C": value, "F": (value - 32) * 5 / 9, "K": value - 273.15}[from_unit]
    if celsius < -273.15 - 1e-9:
        raise InvalidArgument(f"convert_temperature: {value} {from_unit} is below absolute zero")
    out = {"C": celsius, "F": celsius * 9 / 5 + 32, "K": celsius + 273.15}[to_unit]
    return {"value": num(out), "unit": to_unit}


def _convert_currency(
    state: dict, amount: float, from_currency: str, to_currency: str
) -> dict[str, Any]:
    return {
        "amount": num(amount / RATES[from_currency] * RATES[to_currency]),
        "currency": to_currency,
    }


def _ab(t: str) -> dict[str, Any]:
    props = {"a": {"type": t}, "b": {"type": t}}
    return {"type": "object", "properties": props, "required": ["a", "b"]}


def _conversion(
    units: list[str],
    value: str = "value",
    unit: str = "unit",
    minimum: float | None = None,
    enum: bool = True,
) -> dict[str, Any]:
    """Schema of ``(value, from_<unit>, to_<unit>)``; ``units`` as the enum, or (``enum``
    false) named in the description."""
    u = (
        {"type": "string", "enum": units}
        if enum
        else {"type": "string", "description": ", ".join(units)}
    )
    v: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        v["minimum"] = minimum
    keys = [value, f"from_{unit}", f"to_{unit}"]
    return {"type": "object", "properties": dict(zip(keys, [v, u, u])), "required": keys}


TOOLS: list[Tool] = [
    Tool("add", "Add two numbers: a + b.", _ab("number"), _add),
    Tool("subtract", "Subtract: a - b.", _ab("number"), _subtract),
    Tool("multiply", "Multiply: a * b.", _ab("number"), _multiply),
    Tool("divide", "Divide: a / b.", _ab("number"), _divide),
    Tool(
        "integer_divide",
        "Quotient and remainder of a / b.",
        _ab("integer"),
        _integer_divide,
    ),
    Tool(
        "percentage",
        "Compute percent % of value.",
        {
            "type": "object",
            "properties": {"value": {"type": "number"}, "percent": {"type": "number"}},
            "required": ["value", "percent"],
        },
        _percentage,
    ),
    # Length units are checked by the implementation, not by a schema enum: a call with a
    # unit name ("miles") is well-formed and gets a real InvalidArgument to retry from.
    Tool(
        "convert_length",
        "Convert a length.",
        _conversion(list(LENGTH), enum=False),
        _convert_length,
    ),
    Tool(
        "convert_weight", "Convert a weight.", _conversion(list(WEIGHT), minimum=0), _convert_weight
    ),
    Tool(
        "convert_temperature",
        "Convert a temperature.",
        _conversion(list(TEMPERATURE)),
        _convert_temperature,
    ),
    Tool(
        "convert_currency",
        "Convert money at fixed rates.",
        _conversion(list(RATES), "amount", "currency", minimum=0),
        _convert_currency,
    ),
]

ARITH = register_domain(Domain(DOMAIN, TOOLS))


# -- value drawing ----------------------------------------------------------------------
def draw_number(rng: random.Random, lo: int, hi: int, decimals: bool = True) -> int | float:
    """A number in ``[lo, hi]``: an int, or (a third of the time) one decimal place."""
    if decimals and rng.random() < 1 / 3:
        return num(rng.randint(lo * 10, hi * 10) / 10)
    return rng.randint(lo, hi)


def offer(b: EpisodeBuilder, rng: random.Random, *names: str) -> None:
    """Offer ``names`` in a random order (the model must not learn a position)."""
    names_l = list(names)
    rng.shuffle(names_l)
    b.offer(*names_l)


def _f(v: Any) -> str:
    return format_value(v)


# (from, to, lo, hi): pairs whose results stay readable at 2 decimals.
LENGTH_PAIRS = [
    ("km", "mi", 1, 900), ("mi", "km", 1, 600), ("m", "ft", 1, 500), ("ft", "m", 1, 2000),
    ("cm", "in", 1, 300), ("in", "cm", 1, 120), ("yd", "m", 1, 400), ("m", "yd", 1, 400),
    ("km", "m", 1, 50), ("mm", "cm", 5, 2000), ("ft", "in", 1, 40), ("mi", "ft", 1, 20),
]  # fmt: skip
WEIGHT_PAIRS = [
    ("kg", "lb", 1, 300), ("lb", "kg", 1, 600), ("g", "oz", 10, 2000), ("oz", "g", 1, 80),
    ("t", "kg", 1, 40), ("kg", "g", 1, 60), ("lb", "oz", 1, 50), ("mg", "g", 100, 9000),
    ("oz", "lb", 1, 200), ("g", "kg", 50, 9000),
]  # fmt: skip
TEMP_PAIRS = [
    ("C", "F", -40, 120), ("F", "C", -40, 250), ("C", "K", -60, 120),
    ("K", "C", 200, 400), ("F", "K", -40, 250), ("K", "F", 200, 400),
]  # fmt: skip


# -- templates --------------------------------------------------------------------------
_CURRENCY_Q = [
    "How much is {a} {f} in {t}?",
    "Convert {a} {f} to {t}, please.",
    "I have {a} {f}. What is that worth in {t}?",
    "What do {a} {f} come to in {t}?",
    "Can you convert {a} {f} into {t}?",
    "I'd like {a} {f} converted to {t}.",
    "{a} {f}: how much is that in {t}?",
    "Please convert {a} {f} to {t}.",
    "What are {a} {f} worth in {t}?",
    "How much {t} do I get for {a} {f}?",
    "Change {a} {f} into {t} for me.",
    "What would {a} {f} be in {t}?",
    "What is {a} {f} worth in {t}, please?",
]


def _currency_pair(rng: random.Random) -> tuple[int | float, str, str]:
    f, t = rng.sample(sorted(RATES), 2)
    hi = 500_000 if f == "JPY" else 5000
    return draw_number(rng, 5 if hi == 5000 else 500, hi), f, t


@template("arith.currency", DOMAIN, "single", len(_CURRENCY_Q), combo=("convert_currency",))
def _t_currency(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    a, f, t = _currency_pair(rng)
    offer(b, rng, "convert_currency", rng.choice(["percentage", "multiply", "convert_weight"]))
    b.user(_CURRENCY_Q[phrasing].format(a=_f(a), f=f, t=t))
    r = b.call("convert_currency", {"amount": a, "from_currency": f, "to_currency": t})
    b.say(f"{_f(a)} {f} is {_f(r['amount'])} {t}.", values=[r["amount"]])


_OPS: dict[str, list[str]] = {
    "add": [
        "What is {a} plus {b}?",
        "Add {a} and {b}.",
        "Give me the sum of {a} and {b}.",
        "Could you total {a} with {b}?",
        "Could you give me the sum of {a} and {b}?",
    ],
    "subtract": [
        "What is {a} minus {b}?",
        "Subtract {b} from {a}.",
        "Take {b} away from {a}: what's left?",
        "How much remains when {b} is deducted from {a}?",
        "What is left when {b} is deducted from {a}?",
    ],
    "multiply": [
        "What is {a} times {b}?",
        "Multiply {a} by {b}.",
        "Give me the product of {a} and {b}.",
        "How much is {a} multiplied by {b}?",
        "What is the product of {a} and {b}?",
    ],
    "divide": [
        "What is {a} divided by {b}?",
        "Divide {a} by {b}.",
        "Give me the quotient of {a} over {b}.",
        "How much is {a} split {b} ways?",
        "How much is {a} divided by {b}?",
    ],
}
_OP_WORD = {"add": "sum", "subtract": "difference", "multiply": "product", "divide": "quotient"}


def _op_template(op: str) -> None:
    phrases = _OPS[op]

    @template(f"arith.choose_{op}", DOMAIN, "similar_choice", len(phrases), combo=(op,))
    def build(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
        others = [o for o in _OPS if o != op]
        offer(b, rng, op, *rng.sample(others, rng.randint(1, 3)))
        a, x = draw_number(rng, 1, 9999), draw_number(rng, 1, 999)
        if op == "divide" and a < x:  # a quotient below 0.01 would round to 0
            a, x = x, a
        b.user(phrases[phrasing].format(a=_f(a), b=_f(x)))
        r = b.call(op, {"a": a, "b": x})
        b.say(f"The {_OP_WORD[op]} is {_f(r['result'])}.", values=[r["result"]])


for _op in _OPS:
    _op_template(_op)


_CONVERT_Q = [
    "Convert {v} {f} to {t}.",
    "How many {t} is {v} {f}?",
    "What is {v} {f} in {t}?",
    "Express {v} {f} in {t}, please.",
    "Please express {v} {f} in {t}.",
]
_QUANTITIES = {
    "length": ("convert_length", LENGTH_PAIRS),
    "weight": ("convert_weight", WEIGHT_PAIRS),
    "temperature": ("convert_temperature", TEMP_PAIRS),
}


def _convert_template(quantity: str) -> None:
    tool, pairs = _QUANTITIES[quantity]

    @template(f"arith.choose_{quantity}", DOMAIN, "similar_choice", len(_CONVERT_Q), combo=(tool,))
    def build(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
        others = [t for t, _ in _QUANTITIES.values() if t != tool]
        offer(b, rng, tool, *others, *(["convert_currency"] if rng.random() < 0.5 else []))
        f, t, lo, hi = rng.choice(pairs)
        v = draw_number(rng, lo, hi)
        b.user(_CONVERT_Q[phrasing].format(v=_f(v), f=f, t=t))
        r = b.call(tool, {"value": v, "from_unit": f, "to_unit": t})
        b.say(f"{_f(v)} {f} is {_f(r['value'])} {t}.", values=[r["value"]])


for _q in _QUANTITIES:
    _convert_template(_q)


_PARALLEL_Q = [
    "What is {p1}% of {v1}, and what is {p2}% of {v2}?",
    "Work out {p1} percent of {v1} and {p2} percent of {v2}.",
    "I need two numbers: {p1}% of {v1} and {p2}% of {v2}.",
    "Calculate both {p1} percent of {v1} and {p2} percent of {v2} for me.",
    "Give me {p1}% of {v1} and also {p2}% of {v2}.",
    "Calculate {p1} percent of {v1}, then {p2} percent of {v2}.",
    "Find {p1}% of {v1} as well as {p2}% of {v2}.",
    "Two percentages, please: {p1}% of {v1} and {p2}% of {v2}.",
    "Can you compute {p1}% of {v1} and {p2}% of {v2}?",
    "Please find {p1} percent of {v1} and {p2} percent of {v2}.",
    "How much is {p1}% of {v1}? And {p2}% of {v2}?",
    "{p1}% of {v1} and {p2}% of {v2}: what are they?",
    "I'd like {p1} percent of {v1} and {p2} percent of {v2}.",
    "Tell me {p1}% of {v1}, and separately {p2}% of {v2}.",
    "Compute {p1} percent of {v1} as well as {p2} percent of {v2}.",
    "What do {p1}% of {v1} and {p2}% of {v2} come to?",
    "Work out both {p1}% of {v1} and {p2}% of {v2} for me.",
]


@template("arith.two_percentages", DOMAIN, "parallel", len(_PARALLEL_Q), combo=("percentage",))
def _t_two_percentages(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "percentage", *rng.sample(["multiply", "divide", "add"], rng.randint(1, 2)))
    p1, p2 = rng.randint(1, 99), rng.randint(1, 99)
    v1, v2 = draw_number(rng, 10, 99999), draw_number(rng, 10, 99999)
    b.user(_PARALLEL_Q[phrasing].format(p1=p1, v1=_f(v1), p2=p2, v2=_f(v2)))
    r1, r2 = b.calls(
        [("percentage", {"value": v1, "percent": p1}), ("percentage", {"value": v2, "percent": p2})]
    )
    b.say(
        f"{p1}% of {_f(v1)} is {_f(r1['result'])}, and {p2}% of {_f(v2)} is {_f(r2['result'])}.",
        values=[r1["result"], r2["result"]],
    )


_SUM_Q = [
    "I have {a1} {c1} and {a2} {c2}. How much is that in {c2} altogether?",
    "My wallet holds {a1} {c1} plus {a2} {c2}; what's the total in {c2}?",
    "Add {a1} {c1} to {a2} {c2} and tell me the sum in {c2}.",
    "Combining {a1} {c1} with {a2} {c2}, how many {c2} do I have?",
    "Add {a1} {c1} to {a2} {c2}: how much is that in {c2} altogether?",
]


@template(
    "arith.convert_then_add", DOMAIN, "multi_step", len(_SUM_Q), combo=("add", "convert_currency")
)
def _t_convert_then_add(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "convert_currency", "add", rng.choice(["multiply", "subtract", "percentage"]))
    a1, c1, c2 = _currency_pair(rng)
    a2 = draw_number(rng, 1, 5000)
    b.user(_SUM_Q[phrasing].format(a1=_f(a1), c1=c1, a2=_f(a2), c2=c2))
    r = b.call("convert_currency", {"amount": a1, "from_currency": c1, "to_currency": c2})
    s = b.call("add", {"a": r["amount"], "b": a2})
    b.say(
        f"{_f(a1)} {c1} is {_f(r['amount'])} {c2}, so the total is {_f(s['result'])} {c2}.",
        values=[r["amount"], s["result"]],
    )


_NAMES_Q = [
    "How many {T} are in {v} {F}?",
    "Convert {v} {F} into {T}.",
    "Please turn {v} {F} into {T}.",
    "What's {v} {F} expressed in {T}?",
    "Convert {v} {F} into {T}, please.",
]


@template("arith.unit_names", DOMAIN, "error_retry", len(_NAMES_Q), combo=("convert_length",))
def _t_unit_names(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "convert_length", rng.choice(["convert_weight", "convert_temperature"]))
    f, t, lo, hi = rng.choice(LENGTH_PAIRS)
    v = draw_number(rng, lo, hi)
    F, T = LENGTH_NAMES[f], LENGTH_NAMES[t]
    b.user(_NAMES_Q[phrasing].format(v=_f(v), F=F, T=T))
    err = b.call("convert_length", {"value": v, "from_unit": F, "to_unit": T})
    if "error" not in err:  # the tool takes codes, not names
        raise RuntimeError(f"arith.unit_names: expected an error, got {err}")
    r = b.call("convert_length", {"value": v, "from_unit": f, "to_unit": t})
    b.say(f"{_f(v)} {F} is {_f(r['value'])} {t}.", values=[r["value"]])


_ASK_CURRENCY = [
    ("I'd like to convert {a} {f}.", "Into {t}."),
    ("Can you change {a} {f} into another currency?", "Make it {t}."),
    ("Please exchange {a} {f} for me.", "I want {t}."),
    ("Help me convert {a} {f}, would you?", "To {t}, thanks."),
    ("Can you convert {a} {f} for me?", "Make it {t}, thanks."),
]


@template(
    "arith.ask_currency", DOMAIN, "ask_missing", len(_ASK_CURRENCY), combo=("convert_currency",)
)
def _t_ask_currency(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "convert_currency", rng.choice(["percentage", "add", "convert_length"]))
    a, f, t = _currency_pair(rng)
    first, answer = _ASK_CURRENCY[phrasing]
    b.user(first.format(a=_f(a), f=f))
    b.say("Which currency should I convert it to?")
    b.user(answer.format(t=t))
    r = b.call("convert_currency", {"amount": a, "from_currency": f, "to_currency": t})
    b.say(f"{_f(a)} {f} is {_f(r['amount'])} {t}.", values=[r["amount"]])


_CITIES = ["Paris", "Lagos", "Lima", "Osaka", "Denver", "Oslo", "Cairo", "Perth", "Quito", "Hanoi"]
_REFUSE_Q = [
    "What is the square root of {n}?",
    "Is {n} a prime number?",
    "What's the weather like in {city} today?",
    "What is the current share price of {company}?",
    "Find me a flight to {city} for under {n} dollars.",
    "What is the current weather in {city}?",
]
_COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay"]
REFUSAL = "Sorry, none of the tools I have can do that."


@template("arith.refuse", DOMAIN, "refuse", len(_REFUSE_Q))
def _t_refuse(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, *rng.sample([t.name for t in TOOLS], rng.randint(2, 4)))
    n = rng.randint(2, 99999)
    b.user(
        _REFUSE_Q[phrasing].format(n=n, city=rng.choice(_CITIES), company=rng.choice(_COMPANIES))
    )
    b.say(REFUSAL)


_GROUPS_Q = [
    "I have {a} eggs and boxes that hold {b} each. How many full boxes, and how many eggs left?",
    "Split {a} chairs into rows of {b}: how many complete rows, and how many chairs remain?",
    "If {a} students form teams of {b}, how many full teams are there, and how many spare?",
    "Packing {a} books {b} per crate: how many crates are full and how many books remain?",
    "Split {a} books into crates of {b}: how many full crates, and how many books remain?",
]


@template("arith.full_groups", DOMAIN, "answer_from_obs", len(_GROUPS_Q), combo=("integer_divide",))
def _t_full_groups(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "integer_divide", "divide", rng.choice(["multiply", "subtract"]))
    x = rng.randint(2, 60)
    a = rng.randint(x + 1, 5000)
    b.user(_GROUPS_Q[phrasing].format(a=a, b=x))
    r = b.call("integer_divide", {"a": a, "b": x})
    b.say(
        f"That makes {r['quotient']} full groups of {x}, with {r['remainder']} left over.",
        values=[r["quotient"], r["remainder"]],
    )
