"""Bank domain: accounts with balances, deposits, withdrawals, transfers and a history.

State::

    {"accounts": {"AC-40718": {"owner": "Maria Lopez", "balance": 4821.37}, ...},
     "transactions": [{"id": "TX-10423", "account": "AC-40718", "type": "deposit",
                       "amount": 120.5, "balance": 4821.37}, ...],   # oldest first
     "next_tx": 10424}

Money has at most two decimals; the arithmetic runs in integer cents so results are exact,
and amounts are written as :func:`money` gives them (``250`` rather than ``250.0``) so a
query, a call and an observation spell a value the same way.

Also the helpers the other stateful domains share (:func:`person_name`, :func:`to_cents`,
:func:`money`, :func:`offer`).
"""

from __future__ import annotations

import random
from typing import Any

from xlam.synth.core import (
    Conflict,
    Domain,
    EpisodeBuilder,
    InvalidArgument,
    NotFound,
    State,
    Tool,
    format_value,
    register_domain,
    template,
)

FIRST_NAMES = (
    "Maria", "James", "Aisha", "Chen", "Olga", "Diego", "Priya", "Tomas", "Fatima", "Lukas",
    "Yuki", "Amara", "Noah", "Ingrid", "Ravi", "Sofia", "Kwame", "Elena", "Mateo", "Hana",
    "Omar", "Clara", "Ivan", "Leila", "Pablo", "Greta", "Samir", "Nora", "Felix", "Zara",
    "Hugo", "Mei", "Anton", "Lucia", "Tariq", "Freya", "Jonas", "Ayla", "Marco", "Selin",
)  # fmt: skip
LAST_NAMES = (
    "Lopez", "Smith", "Okafor", "Wang", "Ivanova", "Garcia", "Patel", "Novak", "Haddad",
    "Becker", "Tanaka", "Mensah", "Brown", "Larsen", "Iyer", "Rossi", "Boateng", "Petrova",
    "Silva", "Kim", "Farouk", "Meyer", "Kowalski", "Nasser", "Torres", "Lindqvist", "Aziz",
    "Dubois", "Fischer", "Osei", "Moreau", "Chen", "Horvat", "Romero", "Khan", "Nilsen",
    "Weber", "Yilmaz", "Costa", "Sato",
)  # fmt: skip


def person_name(rng: random.Random) -> str:
    """A "First Last" name (1,600 combinations)."""
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def to_cents(amount: float, what: str) -> int:
    """``amount`` in cents; raises :class:`InvalidArgument` for more than two decimals."""
    cents = round(amount * 100)
    if abs(amount * 100 - cents) > 1e-6:
        raise InvalidArgument(f"{what} must have at most two decimals, got {amount!r}")
    return cents


def money(cents: int) -> int | float:
    """Cents as the number a query, a call and an observation all write (``250``, ``12.5``)."""
    return cents // 100 if cents % 100 == 0 else cents / 100


def offer(b: EpisodeBuilder, rng: random.Random, needed: list[str], others: list[str]) -> None:
    """Offer ``needed`` plus one or two distractors from ``others``, in a random order."""
    pool = [t for t in others if t not in needed]
    k = min(len(pool), rng.randint(1, 2), 4 - len(needed))
    names = list(needed) + rng.sample(pool, max(k, 0))
    rng.shuffle(names)
    b.offer(*names)


# -- tools ------------------------------------------------------------------------------
_ACCOUNT = {"type": "string"}
_AMOUNT = {"type": "number", "minimum": 0.01}


def _account(state: State, account_id: str) -> dict[str, Any]:
    acc = state["accounts"].get(account_id)
    if acc is None:
        raise NotFound(f"no account {account_id}")
    return acc


def _record(state: State, account_id: str, kind: str, cents: int) -> str:
    """Append a transaction (the account's balance already updated); returns its id."""
    tx = f"TX-{state['next_tx']}"
    state["next_tx"] += 1
    state["transactions"].append(
        {
            "id": tx,
            "account": account_id,
            "type": kind,
            "amount": money(cents),
            "balance": state["accounts"][account_id]["balance"],
        }
    )
    return tx


def _move(state: State, account_id: str, cents: int) -> None:
    """Add ``cents`` (negative: take) to the balance; Conflict if it would go below zero."""
    acc = _account(state, account_id)
    bal = to_cents(acc["balance"], "balance")
    if bal + cents < 0:
        raise Conflict(
            f"insufficient funds in {account_id}: balance {format_value(money(bal))}, "
            f"requested {format_value(money(-cents))}"
        )
    acc["balance"] = money(bal + cents)


def get_balance(state: State, account_id: str) -> dict[str, Any]:
    acc = _account(state, account_id)
    return {"account_id": account_id, "owner": acc["owner"], "balance": acc["balance"]}


def find_account(state: State, owner: str) -> dict[str, Any]:
    ids = [i for i, a in state["accounts"].items() if a["owner"].lower() == owner.lower()]
    if not ids:
        raise NotFound(f"no account owned by {owner}")
    return {"owner": owner, "account_ids": sorted(ids)}


def deposit(state: State, account_id: str, amount: float) -> dict[str, Any]:
    cents = to_cents(amount, "amount")
    _move(state, account_id, cents)
    tx = _record(state, account_id, "deposit", cents)
    bal = state["accounts"][account_id]["balance"]
    return {"account_id": account_id, "balance": bal, "transaction_id": tx}


def withdraw(state: State, account_id: str, amount: float) -> dict[str, Any]:
    cents = to_cents(amount, "amount")
    _move(state, account_id, -cents)
    tx = _record(state, account_id, "withdrawal", cents)
    bal = state["accounts"][account_id]["balance"]
    return {"account_id": account_id, "balance": bal, "transaction_id": tx}


def transfer(state: State, from_account: str, to_account: str, amount: float) -> dict[str, Any]:
    cents = to_cents(amount, "amount")
    if from_account == to_account:
        raise InvalidArgument("from_account and to_account must differ")
    _account(state, to_account)  # before any change: a missing target leaves the state as is
    _move(state, from_account, -cents)
    _move(state, to_account, cents)
    tx = _record(state, from_account, "transfer_out", cents)
    _record(state, to_account, "transfer_in", cents)
    return {
        "transaction_id": tx,
        "amount": money(cents),
        "from_balance": state["accounts"][from_account]["balance"],
        "to_balance": state["accounts"][to_account]["balance"],
    }


def list_transactions(state: State, account_id: str, limit: int = 3) -> dict[str, Any]:
    _account(state, account_id)
    mine = [t for t in state["transactions"] if t["account"] == account_id][::-1][:limit]
    return {
        "account_id": account_id,
        "transactions": [{"id": t["id"], "type": t["type"], "amount": t["amount"]} for t in mine],
    }


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


TOOLS = [
    Tool(
        "get_balance",
        "Current balance of an account.",
        _obj({"account_id": _ACCOUNT}, ["account_id"]),
        get_balance,
    ),
    Tool(
        "find_account",
        "Account ids of an owner, by full name.",
        _obj({"owner": {"type": "string"}}, ["owner"]),
        find_account,
    ),
    Tool(
        "deposit",
        "Pay money into an account.",
        _obj({"account_id": _ACCOUNT, "amount": _AMOUNT}, ["account_id", "amount"]),
        deposit,
    ),
    Tool(
        "withdraw",
        "Take money out of an account.",
        _obj({"account_id": _ACCOUNT, "amount": _AMOUNT}, ["account_id", "amount"]),
        withdraw,
    ),
    Tool(
        "transfer",
        "Move money between two accounts.",
        _obj(
            {
                "from_account": {"type": "string"},
                "to_account": {"type": "string"},
                "amount": _AMOUNT,
            },
            ["from_account", "to_account", "amount"],
        ),
        transfer,
    ),
    Tool(
        "list_transactions",
        "Latest transactions of an account, newest first.",
        _obj(
            {
                "account_id": _ACCOUNT,
                "limit": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
            },
            ["account_id"],
        ),
        list_transactions,
    ),
]
NAMES = [t.name for t in TOOLS]


def initial_state(rng: random.Random) -> State:
    """Four accounts of four owners, each with three past transactions."""
    owners: list[str] = []
    while len(owners) < 4:
        name = person_name(rng)
        if name not in owners:
            owners.append(name)
    ids: list[str] = []
    while len(ids) < 4:
        i = f"AC-{rng.randint(10000, 99999)}"
        if i not in ids:
            ids.append(i)
    state: State = {"accounts": {}, "transactions": [], "next_tx": rng.randint(10000, 89999)}
    for i, owner in zip(ids, owners, strict=True):
        state["accounts"][i] = {"owner": owner, "balance": 0}
        bal = rng.randint(200_00, 20_000_00)
        ops = [("deposit", bal)]
        for _ in range(2):
            if rng.random() < 0.5:
                c = rng.randint(1_00, 2_000_00)
                ops.append(("deposit", c))
                bal += c
            else:
                c = rng.randint(1_00, bal // 2)
                ops.append(("withdrawal", c))
                bal -= c
        for kind, c in ops:
            _move(state, i, c if kind == "deposit" else -c)
            _record(state, i, kind, c)
    return state


DOMAIN = register_domain(Domain("bank", TOOLS, initial_state))


# -- templates --------------------------------------------------------------------------
def _pick(b: EpisodeBuilder, rng: random.Random, n: int) -> list[str]:
    return rng.sample(sorted(b.state["accounts"]), n)


def _amount(rng: random.Random, lo: int, hi: int) -> int | float:
    """A random amount in cents in ``[lo, hi]``, as :func:`money`; whole units half the time."""
    c = rng.randint(lo, hi)
    if rng.random() < 0.5 and c - c % 100 >= lo:
        c -= c % 100
    return money(c)


def _f(v: Any) -> str:
    return format_value(v)


@template("bank.balance", "bank", "single", 13, combo=("get_balance",))
def _balance(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (a,) = _pick(b, rng, 1)
    offer(b, rng, ["get_balance"], ["deposit", "list_transactions", "withdraw"])
    b.user(
        (
            f"What is the balance of account {a}?",
            f"How much money is in {a} right now?",
            f"Check the current balance on account {a} for me.",
            f"Tell me how much account {a} holds.",
            f"Can you tell me the balance of account {a}?",
            f"I'd like to know the balance on {a}.",
            f"{a}: how much money does it hold?",
            f"Please check the balance of account {a}.",
            f"What is the current balance on {a}?",
            f"How much does account {a} hold right now?",
            f"Look up the balance of account {a} for me.",
            f"Show me how much money is in account {a}.",
            f"Check how much money account {a} holds right now.",
        )[phrasing]
    )
    r = b.call("get_balance", {"account_id": a})
    b.say(f"Account {a} has a balance of {_f(r['balance'])}.", [r["balance"]])


@template("bank.two_balances", "bank", "parallel", 17, combo=("get_balance",))
def _two_balances(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    a, c = _pick(b, rng, 2)
    offer(b, rng, ["get_balance"], ["transfer", "list_transactions", "find_account"])
    b.user(
        (
            f"What are the balances of accounts {a} and {c}?",
            f"How much is in {a}, and how much is in {c}?",
            f"Look up both {a} and {c} and give me their balances.",
            f"I need the current figures for {a} as well as {c}.",
            f"Give me the balance of {a} and the balance of {c}.",
            f"Tell me what {a} and {c} each hold.",
            f"Show the money on {a} and on {c}.",
            f"{a} and {c}: how much is in each account?",
            f"Can you check the balances of {a} and {c}?",
            f"How much money do {a} and {c} hold?",
            f"Please show me the balance of {a} and of {c}.",
            f"Balances for {a} and {c}, please.",
            f"I'd like to know what is in {a} and what is in {c}.",
            f"Check both accounts, {a} and {c}, and report the balances.",
            f"What do {a} and {c} have in them right now?",
            f"Find out how much {a} has and how much {c} has.",
            f"Look up the balances of {a} and {c} for me.",
        )[phrasing]
    )
    ra, rc = b.calls([("get_balance", {"account_id": a}), ("get_balance", {"account_id": c})])
    b.say(
        f"{a} has {_f(ra['balance'])} and {c} has {_f(rc['balance'])}.",
        [ra["balance"], rc["balance"]],
    )


@template("bank.deposit_or_withdraw", "bank", "similar_choice", 5, combo=("deposit", "withdraw"))
def _deposit_or_withdraw(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (a,) = _pick(b, rng, 1)
    bal = to_cents(b.state["accounts"][a]["balance"], "balance")
    offer(b, rng, ["deposit", "withdraw"], ["transfer", "get_balance"])
    if rng.random() < 0.5:
        tool, m = "deposit", _amount(rng, 1_00, 5_000_00)
        texts = (
            f"Deposit {_f(m)} into account {a}.",
            f"Put {_f(m)} in {a}, please.",
            f"Please add {_f(m)} to account {a}.",
            f"Pay {_f(m)} into {a}.",
            f"Please put {_f(m)} into account {a}.",
        )
    else:
        tool, m = "withdraw", _amount(rng, 1_00, bal)
        texts = (
            f"Withdraw {_f(m)} from account {a}.",
            f"Take {_f(m)} out of {a}, please.",
            f"Please remove {_f(m)} from account {a}.",
            f"Cash out {_f(m)} from {a}.",
            f"Please take {_f(m)} out of account {a}.",
        )
    b.user(texts[phrasing])
    r = b.call(tool, {"account_id": a, "amount": m})
    b.say(
        f"Done: account {a} now has a balance of {_f(r['balance'])} "
        f"(transaction {r['transaction_id']}).",
        [r["balance"], r["transaction_id"]],
    )


@template("bank.move_all", "bank", "multi_step", 5, combo=("get_balance", "transfer"))
def _move_all(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    a, c = _pick(b, rng, 2)
    offer(b, rng, ["get_balance", "transfer"], ["deposit", "withdraw"])
    b.user(
        (
            f"Move everything in {a} over to {c}.",
            f"Empty account {a} into {c}: transfer its whole balance.",
            f"Transfer the full balance of {a} to account {c}.",
            f"Sweep all the money from {a} into {c}, please.",
            f"Transfer the whole balance of account {a} over to {c}.",
        )[phrasing]
    )
    r = b.call("get_balance", {"account_id": a})
    t = b.call("transfer", {"from_account": a, "to_account": c, "amount": r["balance"]})
    b.say(
        f"Transferred {_f(t['amount'])} from {a} to {c}; {c} now holds {_f(t['to_balance'])}.",
        [t["amount"], t["to_balance"]],
    )


@template("bank.owner_balance", "bank", "multi_step", 5, combo=("find_account", "get_balance"))
def _owner_balance(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (a,) = _pick(b, rng, 1)
    owner = b.state["accounts"][a]["owner"]
    offer(b, rng, ["find_account", "get_balance"], ["list_transactions", "deposit"])
    b.user(
        (
            f"How much money does {owner} have?",
            f"What's the balance of {owner}'s account?",
            f"Look up {owner} and tell me their balance.",
            f"Find the account belonging to {owner} and check how much is in it.",
            f"Look up {owner}'s account and tell me how much money is in it.",
        )[phrasing]
    )
    r = b.call("find_account", {"owner": owner})
    acc = r["account_ids"][0]
    g = b.call("get_balance", {"account_id": acc})
    b.say(f"{owner}'s account {acc} has a balance of {_f(g['balance'])}.", [acc, g["balance"]])


@template("bank.transfer_short", "bank", "error_retry", 5, combo=("transfer",))
def _transfer_short(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    a, c = _pick(b, rng, 2)
    bal = b.state["accounts"][a]["balance"]
    m = _amount(rng, to_cents(bal, "balance") + 1, to_cents(bal, "balance") * 3)
    offer(b, rng, ["transfer"], ["get_balance", "withdraw", "deposit"])
    b.user(
        (
            f"Send {_f(m)} from {a} to {c}; if there isn't enough, send whatever is in {a}.",
            f"Transfer {_f(m)} from account {a} to account {c}. If {a} is short, just "
            f"transfer all it has.",
            f"Please pay {_f(m)} from {a} into {c}, or the whole balance of {a} if that is less.",
            f"Move {_f(m)} out of {a} into {c}; should the funds fall short, move everything "
            f"it holds.",
            f"Please transfer {_f(m)} from {a} to {c}. If {a} is short, send whatever is in {a}.",
        )[phrasing]
    )
    err = b.call("transfer", {"from_account": a, "to_account": c, "amount": m})
    if "error" not in err:  # the template's premise: the first transfer is refused
        raise RuntimeError(f"bank.transfer_short: {m} from {a} was not refused")
    t = b.call("transfer", {"from_account": a, "to_account": c, "amount": bal})
    b.say(
        f"{a} only had {_f(t['amount'])}, so I transferred that to {c}; {c} now has "
        f"{_f(t['to_balance'])}.",
        [t["amount"], t["to_balance"]],
    )


@template("bank.deposit_ask", "bank", "ask_missing", 5, combo=("deposit",))
def _deposit_ask(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (a,) = _pick(b, rng, 1)
    m = _amount(rng, 1_00, 5_000_00)
    offer(b, rng, ["deposit"], ["get_balance", "withdraw", "find_account"])
    b.user(
        (
            f"Please deposit {_f(m)} into my account.",
            f"I want to pay in {_f(m)}.",
            f"Can you put {_f(m)} into my account for me?",
            f"Credit {_f(m)} to my account.",
            f"I want to deposit {_f(m)} into my account.",
        )[phrasing]
    )
    b.say("Which account should the deposit go to? Please give me the account id.")
    b.user(
        (f"It's {a}.", f"Account {a}.", f"Use {a}.", f"The number is {a}.", f"Use account {a}.")[
            phrasing
        ]
    )
    r = b.call("deposit", {"account_id": a, "amount": m})
    b.say(f"Deposited {_f(m)} into {a}; the new balance is {_f(r['balance'])}.", [r["balance"]])


@template("bank.refuse", "bank", "refuse", 5)
def _refuse(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (a,) = _pick(b, rng, 1)
    offer(b, rng, ["get_balance"], ["deposit", "withdraw", "transfer", "list_transactions"])
    loan, owner = _f(_amount(rng, 1000_00, 90_000_00)), person_name(rng)
    b.user(
        (
            f"Apply for a loan of {loan} on account {a}.",
            f"Open a new savings account for {owner}.",
            f"Order a replacement debit card for account {a}.",
            f"What interest rate would I get on a {rng.randint(2, 30)}-year mortgage?",
            f"Open a new debit card account for {owner}.",
        )[phrasing]
    )
    b.say(
        "Sorry, I can't do that: the available tools only handle balances, deposits, "
        "withdrawals, transfers and transaction history."
    )


@template("bank.history", "bank", "answer_from_obs", 5, combo=("list_transactions",))
def _history(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (a,) = _pick(b, rng, 1)
    n = rng.randint(2, 3)
    offer(b, rng, ["list_transactions"], ["get_balance", "transfer", "deposit"])
    b.user(
        (
            f"Show me the last {n} transactions on {a}.",
            f"What were the {n} most recent movements in account {a}?",
            f"List the latest {n} transactions for {a}.",
            f"Give me {a}'s {n} newest transactions.",
            f"Show me the {n} most recent transactions for account {a}.",
        )[phrasing]
    )
    r = b.call("list_transactions", {"account_id": a, "limit": n})
    txs = r["transactions"]
    items = "; ".join(f"{t['type']} of {_f(t['amount'])} ({t['id']})" for t in txs)
    b.say(
        f"The last {n} transactions on {a}: {items}.",
        [v for t in txs for v in (t["amount"], t["id"])],
    )
