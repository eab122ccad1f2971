"""Travel domain: booking against a fixed timetable.

State::

    {"flights": {"BR4821": {"origin": "Lisbon", "destination": "Oslo",
                            "date": "2025-07-14", "departs": "08:35", "arrives": "12:50",
                            "price": 182.4, "seats_left": 3}, ...},
     "bookings": {"BK-5123": {"flight_id": "BR4821", "passenger": "Maria Lopez",
                              "cabin": "economy", "price": 182.4}, ...},
     "next_booking": 5124}

The timetable (six flights on four routes) always holds one route and date with two
flights of which the first is full, so a booking can be refused (:class:`Conflict`) and
retried on the other. A business seat costs three times the economy fare.
"""

from __future__ import annotations

import datetime as dt
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
from xlam.synth.domains.bank import money, offer, person_name, to_cents

CITIES = (
    "Lisbon", "Oslo", "Nairobi", "Lima", "Hanoi", "Denver", "Porto", "Dakar", "Quito",
    "Perth", "Krakow", "Cairo", "Seoul", "Dublin", "Austin", "Bergen", "Accra", "Osaka",
    "Zurich", "Havana", "Tunis", "Riga", "Manila", "Calgary", "Seville", "Mumbai", "Boston",
    "Tbilisi", "Bogota", "Vienna", "Athens", "Kyoto", "Santiago", "Helsinki", "Lagos",
    "Hobart", "Marseille", "Montreal", "Tallinn", "Muscat",
)  # fmt: skip
AIRLINES = ("AX", "BR", "CQ", "DF", "EV", "FJ", "GK", "HL")
CABINS = ("economy", "business")
_CABIN_FACTOR = {"economy": 1, "business": 3}


def _date(date: str) -> str:
    try:
        ok = len(date) == 10 and dt.date.fromisoformat(date).isoformat() == date
    except ValueError:
        ok = False
    if not ok:
        raise InvalidArgument(f"date must be YYYY-MM-DD, got {date!r}")
    return date


def _city(city: str) -> str:
    for c in CITIES:
        if c.lower() == city.lower():
            return c
    raise NotFound(f"no airport for {city}")


def _flight(state: State, flight_id: str) -> dict[str, Any]:
    f = state["flights"].get(flight_id)
    if f is None:
        raise NotFound(f"no flight {flight_id}")
    return f


# -- tools ------------------------------------------------------------------------------
def search_flights(state: State, origin: str, destination: str, date: str) -> dict[str, Any]:
    o, d, day = _city(origin), _city(destination), _date(date)
    hits = [
        {"flight_id": i, **{k: f[k] for k in ("departs", "arrives", "price", "seats_left")}}
        for i, f in state["flights"].items()
        if (f["origin"], f["destination"], f["date"]) == (o, d, day)
    ]
    return {"flights": sorted(hits, key=lambda h: (h["departs"], h["flight_id"]))}


def get_flight(state: State, flight_id: str) -> dict[str, Any]:
    return {"flight_id": flight_id, **_flight(state, flight_id)}


def book_flight(
    state: State, flight_id: str, passenger: str, cabin: str = "economy"
) -> dict[str, Any]:
    f = _flight(state, flight_id)
    if not passenger.strip():
        raise InvalidArgument("passenger must not be empty")
    if f["seats_left"] <= 0:
        raise Conflict(f"flight {flight_id} is full")
    f["seats_left"] -= 1
    bid = f"BK-{state['next_booking']}"
    state["next_booking"] += 1
    price = money(to_cents(f["price"], "price") * _CABIN_FACTOR[cabin])
    state["bookings"][bid] = {
        "flight_id": flight_id,
        "passenger": passenger,
        "cabin": cabin,
        "price": price,
    }
    return {"booking_id": bid, **state["bookings"][bid]}


def cancel_booking(state: State, booking_id: str) -> dict[str, Any]:
    bk = state["bookings"].pop(booking_id, None)
    if bk is None:
        raise NotFound(f"no booking {booking_id}")
    state["flights"][bk["flight_id"]]["seats_left"] += 1
    return {"cancelled": booking_id, "refund": bk["price"]}


def list_bookings(state: State, passenger: str) -> dict[str, Any]:
    mine = [
        {
            "booking_id": i,
            "flight_id": b["flight_id"],
            "date": state["flights"][b["flight_id"]]["date"],
        }
        for i, b in sorted(state["bookings"].items())
        if b["passenger"].lower() == passenger.lower()
    ]
    return {"passenger": passenger, "bookings": mine}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


_S = {"type": "string"}
TOOLS = [
    Tool(
        "search_flights",
        "Flights on a route and date (YYYY-MM-DD).",
        _obj({"origin": _S, "destination": _S, "date": _S}, ["origin", "destination", "date"]),
        search_flights,
    ),
    Tool("get_flight", "Details of a flight.", _obj({"flight_id": _S}, ["flight_id"]), get_flight),
    Tool(
        "book_flight",
        "Book a seat for a passenger.",
        _obj(
            {
                "flight_id": _S,
                "passenger": _S,
                "cabin": {"type": "string", "enum": list(CABINS), "default": "economy"},
            },
            ["flight_id", "passenger"],
        ),
        book_flight,
    ),
    Tool(
        "cancel_booking",
        "Cancel a booking and refund it.",
        _obj({"booking_id": _S}, ["booking_id"]),
        cancel_booking,
    ),
    Tool(
        "list_bookings",
        "Bookings of a passenger.",
        _obj({"passenger": _S}, ["passenger"]),
        list_bookings,
    ),
]
NAMES = [t.name for t in TOOLS]


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def initial_state(rng: random.Random) -> State:
    """Six flights on four routes (one route and date with a full flight and an
    alternative), three bookings of two passengers."""
    cities = rng.sample(CITIES, 8)
    routes = [(cities[2 * i], cities[2 * i + 1]) for i in range(4)]
    dates = sorted(
        {
            (dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 729))).isoformat()
            for _ in range(5)
        }
    )
    while len(dates) < 5:  # a collision among the five draws: top up deterministically
        dates.append((dt.date.fromisoformat(dates[-1]) + dt.timedelta(days=1)).isoformat())
    rng.shuffle(dates)
    # (route, date, seats_left): the first two share a route and date, the first is full
    plan = [
        (routes[0], dates[0], 0),
        (routes[0], dates[0], rng.randint(1, 9)),
        (routes[1], dates[1], rng.randint(1, 9)),
        (routes[1], dates[2], rng.randint(1, 9)),
        (routes[2], dates[3], rng.randint(1, 9)),
        (routes[3], dates[4], rng.randint(1, 9)),
    ]
    state: State = {"flights": {}, "bookings": {}, "next_booking": rng.randint(1000, 8999)}
    departs = rng.sample(range(5 * 12, 23 * 12), len(plan))  # distinct 5-minute slots
    for ((o, d), day, seats), slot in zip(plan, departs, strict=True):
        fid = f"{rng.choice(AIRLINES)}{rng.randint(100, 9999)}"
        while fid in state["flights"]:
            fid = f"{rng.choice(AIRLINES)}{rng.randint(100, 9999)}"
        dep = slot * 5
        state["flights"][fid] = {
            "origin": o,
            "destination": d,
            "date": day,
            "departs": _hhmm(dep),
            "arrives": _hhmm(dep + rng.randint(9, 140) * 5),
            "price": money(rng.randint(39_00, 1_500_00)),
            "seats_left": seats,
        }
    ids = list(state["flights"])
    rng.shuffle(ids)  # the full flight is not always first in the dict
    state["flights"] = {i: state["flights"][i] for i in ids}
    p1 = person_name(rng)
    p2 = person_name(rng)
    while p2 == p1:
        p2 = person_name(rng)
    open_ = sorted(i for i, f in state["flights"].items() if f["seats_left"] > 0)
    for passenger, fid in zip([p1, p1, p2], rng.sample(open_, 3), strict=True):
        bid = f"BK-{state['next_booking']}"
        state["next_booking"] += 1
        price = state["flights"][fid]["price"]
        state["bookings"][bid] = {
            "flight_id": fid,
            "passenger": passenger,
            "cabin": "economy",
            "price": price,
        }
    return state


DOMAIN = register_domain(Domain("travel", TOOLS, initial_state))


# -- templates --------------------------------------------------------------------------
def _groups(state: State) -> dict[tuple[str, str, str], list[str]]:
    """Flight ids by (origin, destination, date), each list sorted by departure."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for i, f in sorted(state["flights"].items(), key=lambda kv: (kv[1]["departs"], kv[0])):
        out.setdefault((f["origin"], f["destination"], f["date"]), []).append(i)
    return out


def _open(state: State) -> list[str]:
    return sorted(i for i, f in state["flights"].items() if f["seats_left"] > 0)


@template("travel.cancel", "travel", "single", 13, combo=("cancel_booking",))
def _cancel(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    bid = rng.choice(sorted(b.state["bookings"]))
    offer(b, rng, ["cancel_booking"], ["list_bookings", "book_flight", "get_flight"])
    b.user(
        (
            f"Cancel booking {bid}.",
            f"I can't travel any more, please cancel {bid}.",
            f"Please call off my reservation {bid}.",
            f"Drop booking {bid} and refund me.",
            f"Can you cancel booking {bid}?",
            f"I'd like to cancel my booking {bid}.",
            f"{bid} is off; please cancel it.",
            f"Please cancel the reservation {bid}.",
            f"Call off booking {bid} and refund me.",
            f"Cancel my booking {bid}, please.",
            f"Could you cancel reservation {bid} for me?",
            f"I no longer need booking {bid}; cancel it and refund me.",
            f"Please cancel my reservation {bid} and refund me.",
        )[phrasing]
    )
    r = b.call("cancel_booking", {"booking_id": bid})
    b.say(
        f"Booking {bid} is cancelled; {format_value(r['refund'])} will be refunded.", [r["refund"]]
    )


@template("travel.two_flights", "travel", "parallel", 17, combo=("get_flight",))
def _two_flights(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    f1, f2 = rng.sample(sorted(b.state["flights"]), 2)
    offer(b, rng, ["get_flight"], ["search_flights", "book_flight", "list_bookings"])
    b.user(
        (
            f"When do flights {f1} and {f2} leave?",
            f"What are the departure times of {f1} and {f2}?",
            f"Check {f1} and {f2} for me: when do they take off?",
            f"Tell me the departure time for {f1} and also for {f2}.",
            f"Look up {f1} and {f2}: when does each depart?",
            f"I need to know when {f1} leaves and when {f2} leaves.",
            f"At what time do {f1} and {f2} take off?",
            f"Find the times {f1} and {f2} depart.",
            f"Can you tell me when {f1} and {f2} depart?",
            f"Departure times for {f1} and {f2}, please.",
            f"Please look up when {f1} and {f2} leave.",
            f"{f1} and {f2}: what time does each leave?",
            f"What time do {f1} and {f2} depart?",
            f"I'd like the departure times of flights {f1} and {f2}.",
            f"Show me when {f1} takes off and when {f2} takes off.",
            f"Get the departure time of {f1} and of {f2}.",
            f"Check flights {f1} and {f2} for me: what are the departure times?",
        )[phrasing]
    )
    r1, r2 = b.calls([("get_flight", {"flight_id": f1}), ("get_flight", {"flight_id": f2})])
    b.say(
        f"{f1} departs at {r1['departs']} on {r1['date']} and {f2} departs at {r2['departs']} "
        f"on {r2['date']}.",
        [r1["departs"], r1["date"], r2["departs"], r2["date"]],
    )


@template(
    "travel.lookup_choice", "travel", "similar_choice", 5, combo=("get_flight", "search_flights")
)
def _lookup_choice(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, ["get_flight", "search_flights"], ["book_flight", "list_bookings"])
    if rng.random() < 0.5:
        f = rng.choice(sorted(b.state["flights"]))
        b.user(
            (
                f"Give me the details of flight {f}.",
                f"Look up flight {f}.",
                f"What do you have on flight {f}?",
                f"Show me everything about {f}.",
                f"Show me the details of flight {f}.",
            )[phrasing]
        )
        r = b.call("get_flight", {"flight_id": f})
        b.say(
            f"{f} flies {r['origin']} to {r['destination']} on {r['date']}, departing "
            f"{r['departs']}, for {format_value(r['price'])}; {r['seats_left']} seats left.",
            [r["departs"], r["price"], r["seats_left"]],
        )
        return
    o, d, day = rng.choice(sorted(_groups(b.state)))
    b.user(
        (
            f"Which flights go from {o} to {d} on {day}?",
            f"Find me flights {o} to {d} for {day}.",
            f"Are there any flights from {o} to {d} on {day}?",
            f"Search {o} to {d}, {day}.",
            f"Find me any flights from {o} to {d} on {day}.",
        )[phrasing]
    )
    r = b.call("search_flights", {"origin": o, "destination": d, "date": day})
    fl = r["flights"]
    items = "; ".join(
        f"{x['flight_id']} at {x['departs']} for {format_value(x['price'])}" for x in fl
    )
    b.say(f"Flights: {items}.", [v for x in fl for v in (x["flight_id"], x["departs"], x["price"])])


@template("travel.search_book", "travel", "multi_step", 5, combo=("book_flight", "search_flights"))
def _search_book(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    groups = {k: v for k, v in _groups(b.state).items() if len(v) == 1}
    o, d, day = rng.choice(sorted(k for k, v in groups.items() if v[0] in _open(b.state)))
    p = person_name(rng)
    business = rng.random() < 0.3
    cls = " in business class" if business else ""
    offer(b, rng, ["search_flights", "book_flight"], ["get_flight", "cancel_booking"])
    b.user(
        (
            f"Book {p} on the flight from {o} to {d} on {day}{cls}.",
            f"Find the {o} to {d} flight on {day} and reserve a seat{cls} for {p}.",
            f"{p} needs to fly from {o} to {d} on {day}{cls}; please book it.",
            f"Get {p} a seat{cls} on the {day} flight from {o} to {d}.",
            f"Please reserve a seat{cls} for {p} on the flight from {o} to {d} on {day}.",
        )[phrasing]
    )
    r = b.call("search_flights", {"origin": o, "destination": d, "date": day})
    f = r["flights"][0]
    args = {"flight_id": f["flight_id"], "passenger": p}
    if business:
        args["cabin"] = "business"
    k = b.call("book_flight", args)
    b.say(
        f"Booked {p} on {k['flight_id']}, departing {f['departs']}: booking {k['booking_id']}, "
        f"price {format_value(k['price'])}.",
        [k["flight_id"], k["booking_id"], k["price"]],
    )


@template("travel.book_full", "travel", "error_retry", 5, combo=("book_flight",))
def _book_full(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    full = next(i for i, f in sorted(b.state["flights"].items()) if f["seats_left"] == 0)
    f0 = b.state["flights"][full]
    key = (f0["origin"], f0["destination"], f0["date"])
    alt = next(i for i in _groups(b.state)[key] if i != full)
    p = person_name(rng)
    offer(b, rng, ["book_flight"], ["search_flights", "get_flight", "cancel_booking"])
    b.user(
        (
            f"Book {p} on {full}; if it's full, {alt} is fine too.",
            f"Reserve a seat for {p} on flight {full}, or on {alt} if {full} has no room.",
            f"Please put {p} on {full}. Should that be sold out, use {alt}.",
            f"Get {p} onto {full}, falling back to {alt} when it's full.",
            f"Please book {p} on flight {full}, or on {alt} if it's full.",
        )[phrasing]
    )
    err = b.call("book_flight", {"flight_id": full, "passenger": p})
    if "error" not in err:  # the premise: the first flight is full
        raise RuntimeError(f"travel.book_full: {full} was not refused")
    k = b.call("book_flight", {"flight_id": alt, "passenger": p})
    b.say(
        f"{full} is full, so I booked {p} on {alt}: booking {k['booking_id']}, "
        f"price {format_value(k['price'])}.",
        [k["booking_id"], k["price"]],
    )


@template("travel.book_ask", "travel", "ask_missing", 5, combo=("book_flight",))
def _book_ask(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    f = rng.choice(_open(b.state))
    p = person_name(rng)
    offer(b, rng, ["book_flight"], ["get_flight", "search_flights", "list_bookings"])
    b.user(
        (
            f"Book a seat on {f}.",
            f"I'd like a ticket for flight {f}.",
            f"Reserve flight {f}, please.",
            f"Can you get me onto {f}?",
            f"Can you book a seat on flight {f}, please?",
        )[phrasing]
    )
    b.say("Who is travelling? Please tell me the passenger's full name.")
    b.user(
        (
            f"The passenger is {p}.",
            f"It's for {p}.",
            f"{p}.",
            f"Put it under {p}.",
            f"Please put it under {p}.",
        )[phrasing]
    )
    k = b.call("book_flight", {"flight_id": f, "passenger": p})
    b.say(
        f"Booked {p} on {f}: booking {k['booking_id']}, price {format_value(k['price'])}.",
        [k["booking_id"], k["price"]],
    )


@template("travel.refuse", "travel", "refuse", 5)
def _refuse(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    city = rng.choice(CITIES)
    day = rng.choice(sorted({f["date"] for f in b.state["flights"].values()}))
    offer(b, rng, ["search_flights"], ["get_flight", "book_flight", "cancel_booking"])
    nights = rng.randint(2, 14)
    b.user(
        (
            f"Book a hotel in {city} for {nights} nights.",
            f"Rent me a car at the {city} airport on {day}.",
            f"What will the weather be like in {city} on {day}?",
            f"Do I need a visa to visit {city}?",
            f"Book a hotel at the {city} airport on {day} for {nights} nights.",
        )[phrasing]
    )
    b.say(
        "Sorry, I can't help with that: the available tools only search, show, book and "
        "cancel flights."
    )


@template("travel.bookings", "travel", "answer_from_obs", 5, combo=("list_bookings",))
def _bookings(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    p = rng.choice(sorted({bk["passenger"] for bk in b.state["bookings"].values()}))
    offer(b, rng, ["list_bookings"], ["get_flight", "cancel_booking", "search_flights"])
    b.user(
        (
            f"What trips has {p} booked?",
            f"List the bookings under the name {p}.",
            f"Show me every reservation for {p}.",
            f"Which flights is {p} booked on?",
            f"List every reservation under the name {p}.",
        )[phrasing]
    )
    r = b.call("list_bookings", {"passenger": p})
    items = "; ".join(f"{x['booking_id']} on {x['flight_id']} ({x['date']})" for x in r["bookings"])
    b.say(
        f"{p} has these bookings: {items}.",
        [v for x in r["bookings"] for v in (x["booking_id"], x["flight_id"], x["date"])],
    )
