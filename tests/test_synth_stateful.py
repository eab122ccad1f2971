"""The stateful synth domains: bank, files, shop, travel.

Tool tests run on hand-written states whose expected results are worked out by hand (a
transfer of 50 from 100.5 leaves 50.5). Template tests build every template for 200 seeds
and check what the task kind promises (the deliberate error of an error-retry task is the
only error; a multi-step call copies a value the user never gave from an earlier result),
that replaying the calls from the recorded initial state gives the recorded observations,
and that the same seed gives the same episode.
"""

from __future__ import annotations

import copy
import json
import random
import re
from typing import Any

import pytest

import xlam.synth.domains  # noqa: F401  (registers every domain and template)
from xlam.synth.core import (
    DOMAINS,
    KINDS,
    TEMPLATES,
    Conflict,
    EpisodeBuilder,
    InvalidArgument,
    NotFound,
    Template,
    ToolError,
)
from xlam.synth.domains import files as files_mod

STATEFUL = ("bank", "files", "shop", "travel")
MINE = sorted(n for n, t in TEMPLATES.items() if t.domain in STATEFUL)
SEEDS = range(200)


def run(domain: str, state: dict[str, Any], tool: str, /, **args: Any) -> Any:
    return DOMAINS[domain].run(state, tool, args)


# -- bank -------------------------------------------------------------------------------
def bank_state() -> dict[str, Any]:
    return {
        "accounts": {
            "AC-11111": {"owner": "Ana Lima", "balance": 100.5},
            "AC-22222": {"owner": "Bo Chen", "balance": 20},
        },
        "transactions": [
            {"id": "TX-7", "account": "AC-11111", "type": "deposit", "amount": 80, "balance": 80},
            {"id": "TX-8", "account": "AC-22222", "type": "deposit", "amount": 20, "balance": 20},
            {
                "id": "TX-9",
                "account": "AC-11111",
                "type": "deposit",
                "amount": 20.5,
                "balance": 100.5,
            },
        ],
        "next_tx": 10,
    }


def test_bank_balance_deposit_withdraw() -> None:
    s = bank_state()
    assert run("bank", s, "get_balance", account_id="AC-11111") == {
        "account_id": "AC-11111",
        "owner": "Ana Lima",
        "balance": 100.5,
    }
    assert run("bank", s, "deposit", account_id="AC-11111", amount=0.25) == {
        "account_id": "AC-11111",
        "balance": 100.75,
        "transaction_id": "TX-10",
    }
    assert run("bank", s, "withdraw", account_id="AC-11111", amount=100.75)["balance"] == 0
    assert s["next_tx"] == 12
    assert s["transactions"][-1] == {
        "id": "TX-11",
        "account": "AC-11111",
        "type": "withdrawal",
        "amount": 100.75,
        "balance": 0,
    }
    with pytest.raises(Conflict, match="insufficient funds in AC-11111: balance 0, requested 1"):
        run("bank", s, "withdraw", account_id="AC-11111", amount=1)


def test_bank_transfer_moves_money() -> None:
    s = bank_state()
    r = run("bank", s, "transfer", from_account="AC-11111", to_account="AC-22222", amount=50)
    assert r == {"transaction_id": "TX-10", "amount": 50, "from_balance": 50.5, "to_balance": 70}
    assert s["accounts"]["AC-11111"]["balance"] == 50.5
    assert s["accounts"]["AC-22222"]["balance"] == 70
    assert [(t["account"], t["type"]) for t in s["transactions"][-2:]] == [
        ("AC-11111", "transfer_out"),
        ("AC-22222", "transfer_in"),
    ]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"amount": 100.51}, Conflict, "balance 100.5, requested 100.51"),
        ({"to_account": "AC-99999"}, NotFound, "no account AC-99999"),
        ({"from_account": "AC-99999"}, NotFound, "no account AC-99999"),
        ({"to_account": "AC-11111"}, InvalidArgument, "must differ"),
        ({"amount": 1.005}, InvalidArgument, "at most two decimals"),
        ({"amount": 0}, InvalidArgument, ">= 0.01"),
        ({"amount": "5"}, InvalidArgument, "type number"),
    ],
)
def test_bank_transfer_errors_leave_state(args: dict, error: type, message: str) -> None:
    s = bank_state()
    before = copy.deepcopy(s)
    call = {"from_account": "AC-11111", "to_account": "AC-22222", "amount": 10, **args}
    with pytest.raises(error, match=re.escape(message)):
        run("bank", s, "transfer", **call)
    assert s == before


def test_bank_history_and_find_account() -> None:
    s = bank_state()
    assert run("bank", s, "list_transactions", account_id="AC-11111", limit=1) == {
        "account_id": "AC-11111",
        "transactions": [{"id": "TX-9", "type": "deposit", "amount": 20.5}],
    }
    ids = [
        t["id"] for t in run("bank", s, "list_transactions", account_id="AC-11111")["transactions"]
    ]
    assert ids == ["TX-9", "TX-7"]  # newest first; the default limit 3 is more than it has
    assert run("bank", s, "find_account", owner="bo chen") == {
        "owner": "bo chen",
        "account_ids": ["AC-22222"],
    }
    with pytest.raises(NotFound):
        run("bank", s, "find_account", owner="Cy Doe")
    with pytest.raises(InvalidArgument, match="<= 10"):
        run("bank", s, "list_transactions", account_id="AC-11111", limit=11)
    # the domain turns the typed error into the observation
    obs = DOMAINS["bank"].execute(s, "get_balance", {"account_id": "AC-3"})
    assert json.loads(obs) == {"error": "NotFound: no account AC-3"}


# -- files ------------------------------------------------------------------------------
def fs_state() -> dict[str, Any]:
    return {
        "dirs": ["/", "/home", "/home/ana", "/home/ana/docs", "/home/ana/old"],
        "files": {
            "/home/ana/docs/todo.md": "buy milk",
            "/home/ana/docs/plan.txt": "Run 5k",
            "/home/ana/old/plan.txt": "walk",
        },
    }


def test_files_list_read_find_search() -> None:
    s = fs_state()
    assert run("files", s, "list_dir", path="/home/ana") == {
        "path": "/home/ana",
        "entries": ["docs/", "old/"],
    }
    assert run("files", s, "list_dir", path="/home/ana/docs")["entries"] == ["plan.txt", "todo.md"]
    assert run("files", s, "read_file", path="/home/ana/old/plan.txt")["content"] == "walk"
    assert run("files", s, "find_files", name="PLAN") == {
        "matches": ["/home/ana/docs/plan.txt", "/home/ana/old/plan.txt"]
    }
    assert run("files", s, "find_files", name="plan", path="/home/ana/old") == {
        "matches": ["/home/ana/old/plan.txt"]
    }
    assert run("files", s, "search_files", text="run") == {"matches": ["/home/ana/docs/plan.txt"]}
    with pytest.raises(NotFound, match="no such directory: /home/bob"):
        run("files", s, "list_dir", path="/home/bob")


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("/home/ana/docs/todo.txt", "; did you mean /home/ana/docs/todo.md?"),  # same stem
        ("/home/ana/todo.md", "; did you mean /home/ana/docs/todo.md?"),  # same name elsewhere
        ("/home/ana/docs/nope.txt", ""),
    ],
)
def test_files_not_found_suggests(path: str, hint: str) -> None:
    with pytest.raises(NotFound) as e:
        run("files", fs_state(), "read_file", path=path)
    assert str(e.value) == f"no such file: {path}{hint}"


@pytest.mark.parametrize("path", ["notes.txt", "/home/ana/../x", "/home/ana/docs/", "//x"])
def test_files_bad_path(path: str) -> None:
    with pytest.raises(InvalidArgument, match="absolute and normalised"):
        run("files", fs_state(), "read_file", path=path)


def test_files_write_modes() -> None:
    s = fs_state()
    p = "/home/ana/docs/new.txt"
    assert run("files", s, "write_file", path=p, content="abc") == {"path": p, "size": 3}
    with pytest.raises(Conflict, match="file exists"):
        run("files", s, "write_file", path=p, content="x")
    assert run("files", s, "write_file", path=p, content="de", mode="append")["size"] == 6
    assert s["files"][p] == "abc\nde"
    run("files", s, "write_file", path=p, content="z", mode="overwrite")
    assert s["files"][p] == "z"
    with pytest.raises(NotFound, match="no such directory: /home/ana/tmp"):
        run("files", s, "write_file", path="/home/ana/tmp/a.txt", content="x")
    with pytest.raises(Conflict, match="is a directory"):
        run("files", s, "write_file", path="/home/ana/old", content="x")
    with pytest.raises(InvalidArgument, match="one of"):
        run("files", s, "write_file", path=p, content="x", mode="prepend")


def test_files_move_and_delete_change_the_tree() -> None:
    s = fs_state()
    r = run("files", s, "move_file", source="/home/ana/docs/todo.md", destination="/home/ana/old")
    assert r["destination"] == "/home/ana/old/todo.md"
    assert run("files", s, "read_file", path="/home/ana/old/todo.md")["content"] == "buy milk"
    with pytest.raises(NotFound):
        run("files", s, "read_file", path="/home/ana/docs/todo.md")
    with pytest.raises(Conflict, match="destination exists"):
        run("files", s, "move_file", source="/home/ana/docs/plan.txt", destination="/home/ana/old")
    run("files", s, "move_file", source="/home/ana/docs/plan.txt", destination="/home/ana/p2.txt")
    assert run("files", s, "list_dir", path="/home/ana/docs")["entries"] == []
    assert run("files", s, "delete_file", path="/home/ana/p2.txt") == {
        "deleted": "/home/ana/p2.txt"
    }
    with pytest.raises(NotFound):
        run("files", s, "read_file", path="/home/ana/p2.txt")
    with pytest.raises(NotFound):
        run("files", s, "delete_file", path="/home/ana/p2.txt")


# -- shop -------------------------------------------------------------------------------
def shop_state() -> dict[str, Any]:
    return {
        "products": {
            "P-1": {"name": "red mug", "category": "kitchen", "price": 19.99, "stock": 5},
            "P-2": {"name": "blue mug", "category": "kitchen", "price": 5.5, "stock": 2},
            "P-3": {"name": "red kite", "category": "toys", "price": 12, "stock": 9},
        },
        "cart": {"P-1": 2},
        "orders": {},
        "next_order": 500,
    }


def test_shop_search_is_by_whole_words() -> None:
    s = shop_state()
    ids = [r["product_id"] for r in run("shop", s, "search_products", query="MUG")["results"]]
    assert ids == ["P-2", "P-1"]  # sorted by name
    assert run("shop", s, "search_products", query="red mug")["results"] == [
        {"product_id": "P-1", "name": "red mug", "price": 19.99}
    ]
    assert run("shop", s, "search_products", query="mu")["results"] == []
    assert [
        r["product_id"]
        for r in run("shop", s, "search_products", query="red", category="toys")["results"]
    ] == ["P-3"]
    with pytest.raises(InvalidArgument, match="must not be empty"):
        run("shop", s, "search_products", query="  ")
    with pytest.raises(InvalidArgument, match="one of"):
        run("shop", s, "search_products", query="mug", category="food")


def test_shop_cart_totals_and_stock() -> None:
    s = shop_state()
    assert run("shop", s, "view_cart") == {
        "items": [{"product_id": "P-1", "name": "red mug", "quantity": 2, "subtotal": 39.98}],
        "total": 39.98,
    }
    assert run("shop", s, "add_to_cart", product_id="P-2") == {
        "product_id": "P-2",
        "quantity": 1,
        "cart_total": 45.48,
    }
    before = copy.deepcopy(s)
    with pytest.raises(Conflict, match="only 3 of P-1 available"):  # 5 in stock, 2 in cart
        run("shop", s, "add_to_cart", product_id="P-1", quantity=4)
    assert s == before
    assert run("shop", s, "add_to_cart", product_id="P-1", quantity=3)["cart_total"] == 105.45
    assert run("shop", s, "remove_from_cart", product_id="P-1") == {
        "removed": "P-1",
        "cart_total": 5.5,
    }
    with pytest.raises(NotFound, match="not in the cart"):
        run("shop", s, "remove_from_cart", product_id="P-1")
    with pytest.raises(NotFound, match="no product P-9"):
        run("shop", s, "get_product", product_id="P-9")
    with pytest.raises(InvalidArgument, match=">= 1"):
        run("shop", s, "add_to_cart", product_id="P-3", quantity=0)


def test_shop_checkout_orders_the_cart() -> None:
    s = shop_state()
    run("shop", s, "add_to_cart", product_id="P-3", quantity=2)
    r = run("shop", s, "checkout", address="1 Elm Lane, Oslo")
    assert r == {"order_id": "OR-500", "total": 63.98, "address": "1 Elm Lane, Oslo"}
    assert s["cart"] == {}
    assert (s["products"]["P-1"]["stock"], s["products"]["P-3"]["stock"]) == (3, 7)
    assert s["orders"]["OR-500"]["items"] == {"P-1": 2, "P-3": 2}
    with pytest.raises(Conflict, match="cart is empty"):
        run("shop", s, "checkout", address="1 Elm Lane, Oslo")
    with pytest.raises(InvalidArgument, match="missing required argument"):
        run("shop", s, "checkout")


# -- travel -----------------------------------------------------------------------------
def travel_state() -> dict[str, Any]:
    def fl(o: str, d: str, day: str, dep: str, price: float, seats: int) -> dict[str, Any]:
        return {
            "origin": o,
            "destination": d,
            "date": day,
            "departs": dep,
            "arrives": "23:00",
            "price": price,
            "seats_left": seats,
        }

    return {
        "flights": {
            "AX2": fl("Oslo", "Lima", "2025-03-04", "18:05", 200, 1),
            "AX1": fl("Oslo", "Lima", "2025-03-04", "07:30", 150.25, 0),
            "BR7": fl("Oslo", "Lima", "2025-03-05", "09:00", 99, 4),
        },
        "bookings": {
            "BK-10": {"flight_id": "BR7", "passenger": "Ana Lima", "cabin": "economy", "price": 99}
        },
        "next_booking": 11,
    }


def test_travel_search() -> None:
    s = travel_state()
    r = run("travel", s, "search_flights", origin="oslo", destination="Lima", date="2025-03-04")
    assert [f["flight_id"] for f in r["flights"]] == ["AX1", "AX2"]  # by departure time
    assert r["flights"][0] == {
        "flight_id": "AX1",
        "departs": "07:30",
        "arrives": "23:00",
        "price": 150.25,
        "seats_left": 0,
    }
    assert run(
        "travel", s, "search_flights", origin="Lima", destination="Oslo", date="2025-03-04"
    ) == {"flights": []}
    for bad in ("2025-13-01", "04/03/2025", "2025-3-4"):
        with pytest.raises(InvalidArgument, match="YYYY-MM-DD"):
            run("travel", s, "search_flights", origin="Oslo", destination="Lima", date=bad)
    with pytest.raises(NotFound, match="no airport for Atlantis"):
        run("travel", s, "search_flights", origin="Atlantis", destination="Lima", date="2025-03-04")


def test_travel_booking_takes_a_seat_and_cancel_gives_it_back() -> None:
    s = travel_state()
    r = run("travel", s, "book_flight", flight_id="AX2", passenger="Bo Chen")
    assert r == {
        "booking_id": "BK-11",
        "flight_id": "AX2",
        "passenger": "Bo Chen",
        "cabin": "economy",
        "price": 200,
    }
    assert s["flights"]["AX2"]["seats_left"] == 0
    with pytest.raises(Conflict, match="flight AX2 is full"):  # the booked seat is gone
        run("travel", s, "book_flight", flight_id="AX2", passenger="Cy Doe")
    biz = run("travel", s, "book_flight", flight_id="BR7", passenger="Cy Doe", cabin="business")
    assert (biz["booking_id"], biz["price"]) == ("BK-12", 297)
    assert s["flights"]["BR7"]["seats_left"] == 3
    assert run("travel", s, "cancel_booking", booking_id="BK-11") == {
        "cancelled": "BK-11",
        "refund": 200,
    }
    assert s["flights"]["AX2"]["seats_left"] == 1
    with pytest.raises(NotFound, match="no booking BK-11"):
        run("travel", s, "cancel_booking", booking_id="BK-11")
    assert run("travel", s, "list_bookings", passenger="ana lima")["bookings"] == [
        {"booking_id": "BK-10", "flight_id": "BR7", "date": "2025-03-05"}
    ]
    with pytest.raises(InvalidArgument, match="one of"):
        run("travel", s, "book_flight", flight_id="BR7", passenger="Cy Doe", cabin="first")
    with pytest.raises(NotFound, match="no flight ZZ1"):
        run("travel", s, "get_flight", flight_id="ZZ1")


# -- domains and initial states ---------------------------------------------------------
@pytest.mark.parametrize("domain", STATEFUL)
def test_domain_shape(domain: str) -> None:
    d = DOMAINS[domain]
    assert d.stateful and len(d.tools) >= 4
    for s in d.schemas():
        params = s["function"]["parameters"]
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
        assert len(json.dumps(s)) <= 350, s["function"]["name"]  # a tiny model's context
    kinds = {t.kind for t in TEMPLATES.values() if t.domain == domain}
    assert kinds == set(KINDS)


@pytest.mark.parametrize("domain", STATEFUL)
def test_initial_state_is_seeded_and_json(domain: str) -> None:
    d = DOMAINS[domain]
    states = [d.initial_state(random.Random(seed)) for seed in range(50)]
    assert json.loads(json.dumps(states[0])) == states[0]
    assert d.initial_state(random.Random(0)) == states[0]
    assert len({json.dumps(s, sort_keys=True) for s in states}) == 50  # values vary by seed


def test_initial_state_premises() -> None:
    """What the templates rely on, checked without the tools."""
    for stem in files_mod.STEMS:  # a stem search finds one file
        others = [s for s in files_mod.STEMS if s != stem]
        assert not any(stem in o for o in others + [e[1:] for e in files_mod.EXTENSIONS]), stem
    for seed in range(200):
        rng = random.Random(seed)
        fs = DOMAINS["files"].initial_state(rng)
        stems = [p.rsplit("/", 1)[1].split(".")[0] for p in fs["files"]]
        assert len(set(stems)) == len(stems) == 7
        shop = DOMAINS["shop"].initial_state(rng)
        names = [set(p["name"].split()) for p in shop["products"].values()]
        assert all(sum(n <= m for m in names) == 1 for n in names)  # full name: one match
        assert all(shop["products"][i]["stock"] > q for i, q in shop["cart"].items())
        tr = DOMAINS["travel"].initial_state(rng)
        full = [f for f in tr["flights"].values() if f["seats_left"] == 0]
        assert len(full) == 1
        key = (full[0]["origin"], full[0]["destination"], full[0]["date"])
        same = [
            f for f in tr["flights"].values() if (f["origin"], f["destination"], f["date"]) == key
        ]
        assert len(same) == 2
        bank = DOMAINS["bank"].initial_state(rng)
        for acc_id, acc in bank["accounts"].items():
            txs = [t for t in bank["transactions"] if t["account"] == acc_id]
            assert len(txs) == 3 and txs[-1]["balance"] == acc["balance"] > 0
            # the history adds up: each balance is the previous one plus or minus the amount
            prev = 0
            for t in txs:
                sign = 1 if t["type"] == "deposit" else -1
                assert round(prev + sign * t["amount"], 2) == t["balance"]
                prev = t["balance"]


# -- templates --------------------------------------------------------------------------
def build(name: str, seed: int, phrasing: int | None = None) -> tuple[EpisodeBuilder, dict]:
    t = TEMPLATES[name]
    rng = random.Random(seed)
    b = EpisodeBuilder(DOMAINS[t.domain], DOMAINS[t.domain].initial_state(rng))
    t.build(b, rng, seed % t.phrasings if phrasing is None else phrasing)
    return b, b.trajectory(f"{name}-{seed}", "synth", {"template": name})


def turns(traj: dict) -> tuple[list[dict], list[dict], list[dict]]:
    conv = traj["conversation"]
    calls = [c for m in conv if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    return conv, calls, [m for m in conv if m["role"] == "tool"]


def check_episode(t: Template, b: EpisodeBuilder, traj: dict) -> None:
    conv, calls, obs = turns(traj)
    results = [json.loads(o["content"]) for o in obs]
    errors = [i for i, r in enumerate(results) if "error" in r]
    users = " ".join(m["content"] for m in conv if m["role"] == "user")
    assistant = [m for m in conv if m["role"] == "assistant"]
    assert 2 <= len(traj["tools"]) <= 4
    assert sum(m["role"] == "user" for m in conv) <= 3 and len(assistant) <= 4
    assert {c["function"]["name"] for c in calls} <= set(t.combo)
    assert conv[-1]["role"] == "assistant" and not conv[-1].get("tool_calls")
    if t.kind == "refuse":
        assert not calls and not traj["metadata"]["synth"]["answer_values"]
        return
    assert calls and traj["metadata"]["synth"]["answer_values"]
    if t.kind == "error_retry":
        assert errors == [0] and len(results) == 2
        assert calls[0]["function"]["name"] == calls[1]["function"]["name"]
        assert calls[0]["function"]["arguments"] != calls[1]["function"]["arguments"]
    else:
        assert errors == []
    if t.kind == "parallel":
        assert any(len(m.get("tool_calls", [])) >= 2 for m in assistant)
    if t.kind == "ask_missing":
        assert not assistant[0].get("tool_calls") and "?" in assistant[0]["content"]
        # the answer to the question supplies an argument the first request did not have
        first, second = (m["content"] for m in conv if m["role"] == "user")
        args = [str(v) for v in calls[0]["function"]["arguments"].values()]
        assert any(a in second and a not in first for a in args)
    if t.kind == "multi_step":
        # a later call copies a value that only an earlier observation gave
        later = [str(v) for c in calls[1:] for v in c["function"]["arguments"].values()]
        assert any(v in obs[0]["content"] and v not in users for v in later)


@pytest.mark.parametrize("name", MINE)
def test_template_builds_for_200_seeds(name: str) -> None:
    t = TEMPLATES[name]
    domain = DOMAINS[t.domain]
    for seed in SEEDS:
        b, traj = build(name, seed)
        check_episode(t, b, traj)
        # replay from the recorded initial state: every observation comes back the same
        state = copy.deepcopy(traj["metadata"]["synth"]["initial_state"])
        _, calls, obs = turns(traj)
        for c, o in zip(calls, obs, strict=True):
            assert (
                domain.execute(state, c["function"]["name"], c["function"]["arguments"])
                == o["content"]
            )
        assert state == b.state


@pytest.mark.parametrize("name", MINE)
def test_template_is_deterministic_and_phrasings_differ(name: str) -> None:
    t = TEMPLATES[name]
    assert t.phrasings >= 4
    assert json.dumps(build(name, 7)[1]) == json.dumps(build(name, 7)[1])
    firsts = [build(name, 7, p)[1]["conversation"][0]["content"] for p in range(t.phrasings)]
    words = [frozenset(re.findall(r"[a-z]+", f.lower())) for f in firsts]
    assert len(set(words)) == t.phrasings, firsts  # not just punctuation apart


def test_templates_change_the_state() -> None:
    """The episodes' calls act: money moves, a booked seat is gone, a deleted file is too."""
    for seed in range(20):
        b, traj = build("bank.move_all", seed)
        init = traj["metadata"]["synth"]["initial_state"]["accounts"]
        args = turns(traj)[1][1]["function"]["arguments"]
        src, dst = args["from_account"], args["to_account"]
        assert b.state["accounts"][src]["balance"] == 0
        moved = round(b.state["accounts"][dst]["balance"] - init[dst]["balance"], 2)
        assert moved == init[src]["balance"]

        b, traj = build("travel.search_book", seed)
        fid = turns(traj)[1][1]["function"]["arguments"]["flight_id"]
        before = traj["metadata"]["synth"]["initial_state"]["flights"][fid]["seats_left"]
        assert b.state["flights"][fid]["seats_left"] == before - 1
        assert (
            len(b.state["bookings"])
            == len(traj["metadata"]["synth"]["initial_state"]["bookings"]) + 1
        )

        b, traj = build("files.delete", seed)
        path = turns(traj)[1][0]["function"]["arguments"]["path"]
        with pytest.raises(NotFound):
            run("files", b.state, "read_file", path=path)

        b, traj = build("shop.checkout_ask", seed)
        assert b.state["cart"] == {} and len(b.state["orders"]) == 1


# What a model may write where the schema wants something else (json.loads reads NaN).
_GARBAGE: list[Any] = [
    None, True, -1, 0, 10**30, -1e308, 1.5, float("nan"), float("inf"), "", "x" * 5000,
    "../../etc", "/", "AC-00000", "P-00000", "2023-02-30", "25:61", "-5", "1e400", "\u0000",
    [], [1], {}, {"a": 1},
]  # fmt: skip


def test_garbage_arguments_get_typed_errors_never_a_crash() -> None:
    """Every tool of every domain, 40 random calls each from its initial state: the
    observation is a result or a typed error: nothing else raised (the env would report it
    as an ``InternalError`` and go on)."""
    kinds = {c.kind for c in (ToolError, *ToolError.__subclasses__())}
    rng = random.Random(0)
    calls = 0
    for domain in DOMAINS.values():
        for tool in domain.tools.values():
            for _ in range(40):
                state = domain.initial_state(random.Random(1)) if domain.stateful else None
                props = tool.parameters.get("properties", {})
                args = {k: rng.choice(_GARBAGE) for k in props if rng.random() < 0.8}
                obs = json.loads(domain.execute(state, tool.name, args))
                if isinstance(obs, dict) and "error" in obs:
                    kind = obs["error"].split(":")[0]
                    assert kind in kinds, (tool.name, args, obs)
                calls += 1
    assert calls >= 30 * 40
