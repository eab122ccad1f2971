"""A small domain with one template per task kind, for the tests of the synth machinery.

It does not register at import: :func:`registered` adds the domain and its templates to
the registries and removes them after, so other tests never see them. Expected values in
the tests come from the hand-written rules below (a sum is a sum, a deposit adds), not from
running the generator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from xlam.synth.core import (
    DOMAINS,
    TEMPLATES,
    Domain,
    EpisodeBuilder,
    InvalidArgument,
    NotFound,
    Template,
    Tool,
)

NAME = "testdom"
NAMES = ("ana", "bob", "cyd", "dee", "eve", "fay")


def _num(a: float) -> float:
    return round(a, 2)


def _add(state: dict, a: float, b: float) -> dict:
    return {"result": _num(a + b)}


def _sub(state: dict, a: float, b: float) -> dict:
    return {"result": _num(a - b)}


def _account(state: dict, account: str) -> dict:
    if account not in state["accounts"]:
        raise NotFound(f"no account {account!r}")
    return state["accounts"][account]


def _find(state: dict, owner: str) -> dict:
    for acc_id, acc in sorted(state["accounts"].items()):
        if acc["owner"] == owner:
            return {"account": acc_id}
    raise NotFound(f"no account owned by {owner!r} (owner names are lower case)")


def _balance(state: dict, account: str) -> dict:
    return {"account": account, "balance": _account(state, account)["balance"]}


def _deposit(state: dict, account: str, amount: int) -> dict:
    acc = _account(state, account)
    acc["balance"] += amount
    return {"account": account, "balance": acc["balance"]}


def _convert(state: dict, value: float, unit: str) -> dict:
    factor = {"km": 0.621371, "mi": 1.609344}
    if value < 0:
        raise InvalidArgument("value must be >= 0")
    return {"value": _num(value * factor[unit]), "unit": "mi" if unit == "km" else "km"}


def _initial(rng: random.Random) -> dict[str, Any]:
    owners = rng.sample(NAMES, 3)
    return {
        "accounts": {
            f"A{rng.randint(100, 999)}{k}": {"owner": o, "balance": rng.randint(0, 500)}
            for k, o in enumerate(owners)
        }
    }


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props)}


_NUM = {"type": "number"}
_ACC = {"type": "string", "description": "account id"}
DOMAIN = Domain(
    NAME,
    [
        Tool("td_add", "Add two numbers.", _obj({"a": _NUM, "b": _NUM}), _add),
        Tool("td_sub", "Subtract b from a.", _obj({"a": _NUM, "b": _NUM}), _sub),
        Tool("td_find", "Account id of an owner.", _obj({"owner": {"type": "string"}}), _find),
        Tool("td_balance", "Balance of an account.", _obj({"account": _ACC}), _balance),
        Tool(
            "td_deposit",
            "Deposit into an account.",
            _obj({"account": _ACC, "amount": {"type": "integer", "minimum": 1}}),
            _deposit,
        ),
        Tool(
            "td_convert",
            "Convert a distance.",
            _obj(
                {"value": _NUM, "unit": {"type": "string", "enum": ["km", "mi"], "default": "km"}},
                ["value"],
            ),
            _convert,
        ),
    ],
    _initial,
)


# -- templates (one per kind, four phrasings each) --------------------------------------------
def _single(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    a, c = rng.randint(1, 999), rng.randint(1, 999)
    b.offer("td_add", "td_sub")
    b.user(
        [
            f"What is {a} plus {c}?",
            f"Add {a} and {c}.",
            f"Compute the sum of {a} and {c}.",
            f"I need {a} + {c}, please.",
        ][p]
    )
    r = b.call("td_add", {"a": a, "b": c})
    b.say(f"The sum is {r['result']}.", values=[r["result"]])


def _parallel(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    a, c = rng.randint(1, 999), rng.randint(1, 999)
    b.offer("td_add", "td_sub")
    b.user(
        [
            f"Give me {a} plus {c} and {a} minus {c}.",
            f"Both the sum and the difference of {a} and {c}, please.",
            f"Work out {a}+{c} as well as {a}-{c}.",
            f"I want to know {a} added to {c} and {c} taken from {a}.",
        ][p]
    )
    s, d = b.calls([("td_add", {"a": a, "b": c}), ("td_sub", {"a": a, "b": c})])
    b.say(f"Sum {s['result']}, difference {d['result']}.", values=[s["result"], d["result"]])


def _convert_sub(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    v, a, c = rng.randint(1, 900), rng.randint(100, 199), rng.randint(1, 99)
    b.offer("td_convert", "td_add", "td_sub")
    b.user(
        [
            f"Convert {v} km to miles, and subtract {c} from {a}.",
            f"Two things: {v} kilometers in miles, and {a} minus {c}.",
            f"How far is {v} km in miles? Also, what is {a} - {c}?",
            f"Tell me {v} km expressed in miles and the difference of {a} and {c}.",
        ][p]
    )
    m, s = b.calls([("td_convert", {"value": v, "unit": "km"}), ("td_sub", {"a": a, "b": c})])
    b.say(f"{v} km is {m['value']} mi; {a} - {c} = {s['result']}.", [m["value"], s["result"]])


def _choice(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    a, c = rng.randint(500, 999), rng.randint(1, 499)
    b.offer("td_add", "td_sub")
    b.user(
        [
            f"What is {a} minus {c}?",
            f"Subtract {c} from {a}.",
            f"Take {c} away from {a}.",
            f"How much is left of {a} after removing {c}?",
        ][p]
    )
    r = b.call("td_sub", {"a": a, "b": c})
    b.say(f"That leaves {r['result']}.", values=[r["result"]])


def _multi(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    owner = rng.choice([a["owner"] for a in b.state["accounts"].values()])
    b.offer("td_find", "td_balance", "td_deposit")
    b.user(
        [
            f"What is the balance of {owner}'s account?",
            f"How much money does {owner} have?",
            f"Look up the balance for the account owned by {owner}.",
            f"Tell me {owner}'s current balance.",
        ][p]
    )
    acc = b.call("td_find", {"owner": owner})["account"]
    r = b.call("td_balance", {"account": acc})
    b.say(f"{owner} ({acc}) has {r['balance']}.", values=[acc, r["balance"]])


def _retry(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    owner = rng.choice([a["owner"] for a in b.state["accounts"].values()])
    name = owner.capitalize()
    b.offer("td_find", "td_balance")
    b.user(
        [
            f"Which account belongs to {name}?",
            f"Find the account id of {name}.",
            f"I need {name}'s account number.",
            f"Look up the account held by {name}.",
        ][p]
    )
    b.call("td_find", {"owner": name})
    r = b.call("td_find", {"owner": owner})
    b.say(f"{name}'s account is {r['account']}.", values=[r["account"]])


def _ask(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    acc = rng.choice(sorted(b.state["accounts"]))
    amount = rng.randint(1, 5000)
    b.offer("td_deposit", "td_balance")
    b.user(
        [
            f"Deposit money into account {acc}.",
            f"Please put some cash into {acc}.",
            f"I want to make a deposit to {acc}.",
            f"Add funds to account {acc}.",
        ][p]
    )
    b.say("How much would you like to deposit?")
    b.user(f"{amount}")
    r = b.call("td_deposit", {"account": acc, "amount": amount})
    b.say(f"Done: {acc} now holds {r['balance']}.", values=[r["balance"]])


def _refuse(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    city = rng.choice(["Paris", "Lima", "Oslo", "Kyoto", "Accra"])
    b.offer("td_add", "td_balance")
    b.user(
        [
            f"Book me a flight to {city}.",
            f"What is the weather in {city}?",
            f"Find a hotel in {city}.",
            f"Order a taxi to {city} airport.",
        ][p]
    )
    b.say("Sorry, I cannot do that with the tools I have.")


def _obs(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    acc = rng.choice(sorted(b.state["accounts"]))
    amount = rng.randint(1, 5000)
    b.offer("td_deposit", "td_balance")
    b.user(
        [
            f"Deposit {amount} into {acc} and tell me the new balance.",
            f"Put {amount} in account {acc}; what is the balance after?",
            f"After adding {amount} to {acc}, how much is there?",
            f"Credit {acc} with {amount} and report its balance.",
        ][p]
    )
    b.call("td_deposit", {"account": acc, "amount": amount})
    r = b.call("td_balance", {"account": acc})
    b.say(f"{acc} holds {r['balance']} now.", values=[r["balance"]])


TEMPLATES_ = [
    Template("testdom.single", NAME, "single", 4, _single, ("td_add",)),
    Template("testdom.parallel", NAME, "parallel", 4, _parallel, ("td_add", "td_sub")),
    Template("testdom.convert_sub", NAME, "parallel", 4, _convert_sub, ("td_convert", "td_sub")),
    Template("testdom.choice", NAME, "similar_choice", 4, _choice, ("td_sub",)),
    Template("testdom.multi", NAME, "multi_step", 4, _multi, ("td_balance", "td_find")),
    Template("testdom.retry", NAME, "error_retry", 4, _retry, ("td_find",)),
    Template("testdom.ask", NAME, "ask_missing", 4, _ask, ("td_deposit",)),
    Template("testdom.refuse", NAME, "refuse", 4, _refuse, ()),
    Template("testdom.obs", NAME, "answer_from_obs", 4, _obs, ("td_balance", "td_deposit")),
]


# -- templates whose episodes fail a check on purpose -------------------------------------
def _bad_format(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    acc = rng.choice(sorted(b.state["accounts"]))
    b.offer("td_deposit")
    b.user(["Deposit nothing into " + acc, "Put 0 in " + acc, "Add zero to " + acc][p])
    b.call("td_deposit", {"account": acc, "amount": 0})  # below the schema's minimum
    b.say("Done.")


def _bad_semantic(b: EpisodeBuilder, rng: random.Random, p: int) -> None:
    a = rng.randint(1, 99)
    b.offer("td_add")
    b.user([f"{a} plus 1?", f"Add 1 to {a}.", f"{a} + 1 = ?"][p])
    b.call("td_add", {"a": a, "b": 1})
    b.say("It is 424242.", values=[424242])  # a value no observation holds


BAD_TEMPLATES = [
    Template("testdom.bad_format", NAME, "single", 3, _bad_format, ("td_deposit",)),
    Template("testdom.bad_semantic", NAME, "single", 3, _bad_semantic, ("td_add",)),
]


@contextmanager
def registered(bad: bool = False) -> Iterator[list[Template]]:
    """The test domain and its templates in the registries, for the ``with`` block.

    Args:
        bad: Add :data:`BAD_TEMPLATES` (their episodes fail the format and semantic checks).
    """
    if NAME in DOMAINS:
        raise RuntimeError(f"domain {NAME} is already registered")
    templates = TEMPLATES_ + (BAD_TEMPLATES if bad else [])
    DOMAINS[NAME] = DOMAIN
    TEMPLATES.update({t.name: t for t in templates})
    try:
        yield list(templates)
    finally:
        DOMAINS.pop(NAME, None)
        for t in templates:
            TEMPLATES.pop(t.name, None)
