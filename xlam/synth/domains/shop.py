"""Shop domain: a product catalogue with search, a cart and checkout.

State::

    {"products": {"P-48213": {"name": "bamboo kettle", "category": "kitchen",
                              "price": 34.99, "stock": 12}, ...},
     "cart": {"P-48213": 2, ...},                        # product id -> quantity
     "orders": {"OR-7741": {"items": {"P-48213": 2}, "total": 69.98,
                            "address": "12 Oak Street, Lima"}, ...},
     "next_order": 7742}

Search matches whole words: every word of the query must be a word of the product name
(case-insensitive), so the full name of a product finds exactly that product. The cart
starts with two items. Totals are computed by the tools, in cents.
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
from xlam.synth.domains.bank import money, offer, to_cents
from xlam.synth.domains.travel import CITIES

NOUNS: dict[str, tuple[str, ...]] = {
    "kitchen": ("mug", "kettle", "teapot", "frying pan", "cutting board", "toaster"),
    "electronics": ("headphones", "charger", "speaker", "keyboard", "webcam", "mouse"),
    "garden": ("watering can", "shovel", "planter", "hose", "rake", "lantern"),
    "sports": ("yoga mat", "water bottle", "football", "tennis racket", "dumbbell", "helmet"),
    "books": ("cookbook", "atlas", "novel", "poetry collection", "field guide", "comic"),
    "toys": ("kite", "puzzle", "robot", "yo-yo", "board game", "teddy bear"),
}
CATEGORIES = tuple(NOUNS)
ADJECTIVES = (
    "red", "blue", "green", "black", "white", "silver", "bamboo", "steel", "wooden",
    "compact", "deluxe", "travel", "mini", "classic", "retro", "smart", "foldable", "golden",
    "striped", "vintage",
)  # fmt: skip
STREETS = ("Oak", "Maple", "Harbor", "Mill", "Station", "Church", "Park", "Lake", "Bridge", "Elm")
STREET_KINDS = ("Street", "Road", "Avenue", "Lane")


def _product(state: State, product_id: str) -> dict[str, Any]:
    p = state["products"].get(product_id)
    if p is None:
        raise NotFound(f"no product {product_id}")
    return p


def _total(state: State) -> int | float:
    return money(
        sum(to_cents(state["products"][i]["price"], "price") * q for i, q in state["cart"].items())
    )


# -- tools ------------------------------------------------------------------------------
def search_products(state: State, query: str, category: str | None = None) -> dict[str, Any]:
    words = set(query.lower().split())
    if not words:
        raise InvalidArgument("query must not be empty")
    hits = [
        {"product_id": i, "name": p["name"], "price": p["price"]}
        for i, p in sorted(state["products"].items(), key=lambda kv: (kv[1]["name"], kv[0]))
        if words <= set(p["name"].lower().split()) and category in (None, p["category"])
    ]
    return {"results": hits[:5]}


def get_product(state: State, product_id: str) -> dict[str, Any]:
    return {"product_id": product_id, **_product(state, product_id)}


def add_to_cart(state: State, product_id: str, quantity: int = 1) -> dict[str, Any]:
    p = _product(state, product_id)
    have = state["cart"].get(product_id, 0)
    available = p["stock"] - have
    if quantity > available:
        raise Conflict(f"only {available} of {product_id} available")
    state["cart"][product_id] = have + quantity
    return {"product_id": product_id, "quantity": have + quantity, "cart_total": _total(state)}


def remove_from_cart(state: State, product_id: str) -> dict[str, Any]:
    if product_id not in state["cart"]:
        raise NotFound(f"{product_id} is not in the cart")
    del state["cart"][product_id]
    return {"removed": product_id, "cart_total": _total(state)}


def view_cart(state: State) -> dict[str, Any]:
    items = []
    for i, q in sorted(state["cart"].items()):
        p = state["products"][i]
        sub = money(to_cents(p["price"], "price") * q)
        items.append({"product_id": i, "name": p["name"], "quantity": q, "subtotal": sub})
    return {"items": items, "total": _total(state)}


def checkout(state: State, address: str) -> dict[str, Any]:
    if not address.strip():
        raise InvalidArgument("address must not be empty")
    if not state["cart"]:
        raise Conflict("the cart is empty")
    oid = f"OR-{state['next_order']}"
    state["next_order"] += 1
    total = _total(state)
    for i, q in state["cart"].items():
        state["products"][i]["stock"] -= q
    state["orders"][oid] = {"items": dict(state["cart"]), "total": total, "address": address}
    state["cart"] = {}
    return {"order_id": oid, "total": total, "address": address}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


_S = {"type": "string"}
TOOLS = [
    Tool(
        "search_products",
        "Products whose name has all the query words.",
        _obj({"query": _S, "category": {"type": "string", "enum": list(CATEGORIES)}}, ["query"]),
        search_products,
    ),
    Tool(
        "get_product",
        "Details, price and stock of a product.",
        _obj({"product_id": _S}, ["product_id"]),
        get_product,
    ),
    Tool(
        "add_to_cart",
        "Add a product to the cart.",
        _obj(
            {"product_id": _S, "quantity": {"type": "integer", "minimum": 1, "default": 1}},
            ["product_id"],
        ),
        add_to_cart,
    ),
    Tool(
        "remove_from_cart",
        "Remove a product from the cart.",
        _obj({"product_id": _S}, ["product_id"]),
        remove_from_cart,
    ),
    Tool("view_cart", "Cart items and total.", _obj({}, []), view_cart),
    Tool(
        "checkout",
        "Order the cart, shipped to an address.",
        _obj({"address": _S}, ["address"]),
        checkout,
    ),
]
NAMES = [t.name for t in TOOLS]


def address(rng: random.Random) -> str:
    """A street address such as ``12 Oak Street, Lima``."""
    street = f"{rng.choice(STREETS)} {rng.choice(STREET_KINDS)}"
    return f"{rng.randint(1, 999)} {street}, {rng.choice(CITIES)}"


def initial_state(rng: random.Random) -> State:
    """Eight products of distinct names, two of them in the cart."""
    state: State = {"products": {}, "cart": {}, "orders": {}, "next_order": rng.randint(1000, 8999)}
    names: set[str] = set()
    while len(state["products"]) < 8:
        cat = rng.choice(CATEGORIES)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS[cat])}"
        pid = f"P-{rng.randint(10000, 99999)}"
        if name in names or pid in state["products"]:
            continue
        names.add(name)
        state["products"][pid] = {
            "name": name,
            "category": cat,
            "price": money(rng.randint(1_99, 499_99)),
            "stock": rng.randint(2, 40),
        }
    for pid in rng.sample(sorted(state["products"]), 2):
        state["cart"][pid] = rng.randint(1, min(3, state["products"][pid]["stock"] - 1))
    return state


DOMAIN = register_domain(Domain("shop", TOOLS, initial_state))


# -- templates --------------------------------------------------------------------------
def _pick(b: EpisodeBuilder, rng: random.Random, n: int) -> list[str]:
    return rng.sample(sorted(b.state["products"]), n)


def _f(v: Any) -> str:
    return format_value(v)


@template("shop.product", "shop", "single", 13, combo=("get_product",))
def _product_info(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (pid,) = _pick(b, rng, 1)
    offer(b, rng, ["get_product"], ["search_products", "add_to_cart", "view_cart"])
    b.user(
        (
            f"How much is {pid}, and is it in stock?",
            f"What's the price and stock level of product {pid}?",
            f"Check {pid} for me: cost and availability.",
            f"Give me the price of item {pid} and how many are left.",
            f"Can you check the price and stock of {pid}?",
            f"I'd like the price of {pid} and how many are in stock.",
            f"{pid}: what does it cost, and how many are left?",
            f"Please look up product {pid}: price and stock.",
            f"Is item {pid} in stock, and what is its price?",
            f"What does product {pid} cost, and how many are in stock?",
            f"Tell me the price of {pid} and whether it is in stock.",
            f"How many of {pid} are left, and what's the price?",
            f"What's the price of product {pid}, and is it in stock?",
        )[phrasing]
    )
    r = b.call("get_product", {"product_id": pid})
    b.say(
        f"{pid} is the {r['name']}: it costs {_f(r['price'])} and {r['stock']} are in stock.",
        [r["price"], r["stock"]],
    )


@template("shop.compare", "shop", "parallel", 17, combo=("get_product",))
def _compare(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    p1, p2 = _pick(b, rng, 2)
    offer(b, rng, ["get_product"], ["search_products", "view_cart", "add_to_cart"])
    b.user(
        (
            f"What do {p1} and {p2} cost?",
            f"Compare the prices of {p1} and {p2}.",
            f"Look up {p1} and {p2} and tell me their prices.",
            f"I'm torn between {p1} and {p2}; how much is each?",
            f"Price check on {p1} and {p2}, please.",
            f"Tell me the price of {p1} and the price of {p2}.",
            f"Which costs more, {p1} or {p2}?",
            f"Get me the prices for {p1} and {p2}.",
            f"How much are {p1} and {p2}?",
            f"Can you look up the prices of {p1} and {p2}?",
            f"Please check what {p1} and {p2} cost.",
            f"{p1} or {p2}: what does each one cost?",
            f"I want the price of {p1} as well as {p2}.",
            f"Show me what {p1} costs and what {p2} costs.",
            f"Find the prices of {p1} and of {p2} for me.",
            f"What is the price of {p1}, and of {p2}?",
            f"Compare {p1} and {p2}; how much is each?",
        )[phrasing]
    )
    r1, r2 = b.calls([("get_product", {"product_id": p1}), ("get_product", {"product_id": p2})])
    b.say(
        f"{p1} ({r1['name']}) costs {_f(r1['price'])} and {p2} ({r2['name']}) costs "
        f"{_f(r2['price'])}.",
        [r1["price"], r2["price"]],
    )


@template(
    "shop.lookup_choice", "shop", "similar_choice", 5, combo=("get_product", "search_products")
)
def _lookup_choice(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (pid,) = _pick(b, rng, 1)
    offer(b, rng, ["get_product", "search_products"], ["add_to_cart", "view_cart"])
    if rng.random() < 0.5:
        b.user(
            (
                f"Show me the details of product {pid}.",
                f"Look up item {pid}.",
                f"What is {pid}?",
                f"Pull up the product page for {pid}.",
                f"Pull up the details of item {pid}.",
            )[phrasing]
        )
        r = b.call("get_product", {"product_id": pid})
        b.say(
            f"{pid} is the {r['name']} ({r['category']}), {_f(r['price'])}, {r['stock']} in stock.",
            [r["name"], r["price"], r["stock"]],
        )
        return
    noun = b.state["products"][pid]["name"].split(" ", 1)[1]
    b.user(
        (
            f"Search the catalogue for {noun}.",
            f"Do you sell any {noun}?",
            f"Find me products matching '{noun}'.",
            f"What kinds of {noun} do you have?",
            f"Search the catalogue for products matching '{noun}'.",
        )[phrasing]
    )
    r = b.call("search_products", {"query": noun})
    items = "; ".join(f"{x['name']} ({x['product_id']}) at {_f(x['price'])}" for x in r["results"])
    b.say(f"Found: {items}.", [v for x in r["results"] for v in (x["product_id"], x["price"])])


@template("shop.search_add", "shop", "multi_step", 5, combo=("add_to_cart", "search_products"))
def _search_add(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (pid,) = _pick(b, rng, 1)
    p = b.state["products"][pid]
    q = rng.randint(1, p["stock"] - b.state["cart"].get(pid, 0))
    offer(b, rng, ["search_products", "add_to_cart"], ["get_product", "view_cart"])
    b.user(
        (
            f"Find the {p['name']} and add {q} to my cart.",
            f"Put {q} of the {p['name']} in my basket.",
            f"I want {q} x {p['name']}; add them to the cart.",
            f"Search for the {p['name']} and order {q} into my cart.",
            f"Search for the {p['name']} and put {q} in my basket.",
        )[phrasing]
    )
    r = b.call("search_products", {"query": p["name"]})
    found = r["results"][0]["product_id"]
    a = b.call("add_to_cart", {"product_id": found, "quantity": q})
    b.say(
        f"Added {q} x {p['name']} ({found}); your cart total is now {_f(a['cart_total'])}.",
        [found, a["cart_total"]],
    )


@template("shop.add_short", "shop", "error_retry", 5, combo=("add_to_cart",))
def _add_short(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (pid,) = _pick(b, rng, 1)
    left = b.state["products"][pid]["stock"] - b.state["cart"].get(pid, 0)
    q = left + rng.randint(1, 30)
    offer(b, rng, ["add_to_cart"], ["get_product", "remove_from_cart", "view_cart"])
    b.user(
        (
            f"Add {q} of {pid} to my cart; if there aren't that many, take all that are left.",
            f"Put {q} x {pid} in the cart, or as many as you can get.",
            f"I need {q} units of {pid} in my basket. If stock is short, grab whatever remains.",
            f"Order {q} of {pid} into the cart, falling back to the remaining stock.",
            f"Put {q} of {pid} in my cart; if stock is short, take all that are left.",
        )[phrasing]
    )
    err = b.call("add_to_cart", {"product_id": pid, "quantity": q})
    if "error" not in err:  # the premise: more than the stock is refused
        raise RuntimeError(f"shop.add_short: {q} of {pid} was not refused")
    a = b.call("add_to_cart", {"product_id": pid, "quantity": left})
    b.say(
        f"Only {left} were available, so I added {left}; your cart total is now "
        f"{_f(a['cart_total'])}.",
        [left, a["cart_total"]],
    )


@template("shop.checkout_ask", "shop", "ask_missing", 5, combo=("checkout",))
def _checkout_ask(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    addr = address(rng)
    offer(b, rng, ["checkout"], ["view_cart", "remove_from_cart", "add_to_cart"])
    b.user(
        (
            "Please check out my cart.",
            "I'm ready to place the order.",
            "Go ahead and buy what's in my basket.",
            "Complete my purchase, please.",
            "I'm ready to check out my basket.",
        )[phrasing]
    )
    b.say("Where should the order be shipped? Please give me the delivery address.")
    b.user(
        (
            f"Ship it to {addr}.",
            f"{addr}.",
            f"Send it to {addr}, please.",
            f"To {addr}.",
            f"Please ship it to {addr}.",
        )[phrasing]
    )
    r = b.call("checkout", {"address": addr})
    b.say(
        f"Order {r['order_id']} is placed: {_f(r['total'])} in total, shipping to {addr}.",
        [r["order_id"], r["total"]],
    )


@template("shop.refuse", "shop", "refuse", 5)
def _refuse(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (pid,) = _pick(b, rng, 1)
    offer(b, rng, ["search_products"], ["get_product", "add_to_cart", "view_cart", "checkout"])
    b.user(
        (
            f"Where is my parcel from order OR-{rng.randint(1000, 9999)}?",
            f"I want to return {pid} and get my money back.",
            f"Write a five-star review for {pid}.",
            f"Gift-wrap {pid} and add a card for {rng.choice(CITIES)}.",
            f"I want to write a five-star review for {pid}.",
        )[phrasing]
    )
    b.say(
        "Sorry, I can't do that: the available tools only search products, manage the cart "
        "and check out."
    )


@template("shop.cart", "shop", "answer_from_obs", 5, combo=("view_cart",))
def _cart(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, ["view_cart"], ["checkout", "add_to_cart", "remove_from_cart"])
    b.user(
        (
            "What's in my cart?",
            "Show me my basket and its total.",
            "How much does my cart come to?",
            "List the items I'm about to buy.",
            "Show me the items in my cart.",
        )[phrasing]
    )
    r = b.call("view_cart", {})
    items = "; ".join(f"{x['quantity']} x {x['name']} ({_f(x['subtotal'])})" for x in r["items"])
    b.say(
        f"Your cart: {items}. Total: {_f(r['total'])}.",
        [v for x in r["items"] for v in (x["name"], x["subtotal"])] + [r["total"]],
    )


@template("shop.remove", "shop", "single", 13, combo=("remove_from_cart",))
def _remove(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    pid = rng.choice(sorted(b.state["cart"]))
    offer(b, rng, ["remove_from_cart"], ["add_to_cart", "view_cart", "checkout"])
    b.user(
        (
            f"Remove {pid} from my cart.",
            f"Take {pid} out of the basket, please.",
            f"I changed my mind about {pid}; drop it from the cart.",
            f"Delete item {pid} from my shopping cart.",
            f"Can you remove {pid} from my cart?",
            f"I'd like {pid} taken out of my basket.",
            f"{pid} should not be in my cart; remove it.",
            f"Please take item {pid} out of my cart.",
            f"Drop item {pid} from the basket.",
            f"Remove product {pid} from my basket.",
            f"Could you take {pid} out of my shopping cart?",
            f"I don't want {pid} any more; drop it.",
            f"Please drop {pid} from my basket.",
        )[phrasing]
    )
    r = b.call("remove_from_cart", {"product_id": pid})
    b.say(f"Removed {pid}; your cart total is now {_f(r['cart_total'])}.", [r["cart_total"]])
