"""Calendar and time zones: a stateless domain and its task templates.

Dates are ISO strings (``YYYY-MM-DD``), times ``HH:MM``; time zones are codes with a fixed
UTC offset (:data:`ZONES`, standard time, no daylight saving), so every answer is the same
on every machine and day. Nothing reads the clock: "today" is never a tool input.

Queries write dates in ISO form and zones as codes, so arguments are copied verbatim; only
the error-retry template writes a US date (``MM/DD/YYYY``), which the tool rejects, and
the retry rewrites it as ISO.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from typing import Any

from xlam.synth.core import (
    Domain,
    EpisodeBuilder,
    InvalidArgument,
    NotFound,
    Tool,
    format_value,
    register_domain,
    template,
)
from xlam.synth.domains.arith import REFUSAL, num, offer

DOMAIN = "calendar"

# UTC offsets in minutes (standard time all year).
ZONES: dict[str, int] = {
    "UTC": 0,
    "CET": 60,
    "EET": 120,
    "MSK": 180,
    "GST": 240,
    "IST": 330,
    "ICT": 420,
    "JST": 540,
    "AEST": 600,
    "NZST": 720,
    "BRT": -180,
    "EST": -300,
    "MST": -420,
    "PST": -480,
    "HST": -600,
}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_date(tool: str, name: str, s: str) -> dt.date:
    """``s`` as a date.

    Raises:
        InvalidArgument: Not ``YYYY-MM-DD``, or no such day (``2025-02-30``).
    """
    if not _ISO.fullmatch(s):
        raise InvalidArgument(f"{tool}: '{name}' must be a date as YYYY-MM-DD, got {s!r}")
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise InvalidArgument(f"{tool}: '{name}' is not a real date: {s!r}") from None


def _zone(tool: str, name: str, code: str) -> int:
    if code not in ZONES:
        raise NotFound(f"{tool}: unknown time zone {code!r} in '{name}'; known: {', '.join(ZONES)}")
    return ZONES[code]


# -- tools ------------------------------------------------------------------------------
def _day_of_week(state: dict, date: str) -> dict[str, Any]:
    return {"date": date, "weekday": WEEKDAYS[parse_date("day_of_week", "date", date).weekday()]}


def _add_days(state: dict, date: str, days: int) -> dict[str, Any]:
    d = parse_date("add_days", "date", date)
    try:
        return {"date": (d + dt.timedelta(days=days)).isoformat()}
    except OverflowError:
        raise InvalidArgument(f"add_days: {date} + {days} days is out of range") from None


def _days_between(state: dict, start: str, end: str) -> dict[str, Any]:
    s, e = parse_date("days_between", "start", start), parse_date("days_between", "end", end)
    return {"days": (e - s).days}


def _is_leap_year(state: dict, year: int) -> dict[str, Any]:
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return {"year": year, "leap": leap, "days": 366 if leap else 365}


def _days_in_month(state: dict, year: int, month: int) -> dict[str, Any]:
    first = dt.date(year, month, 1)
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    return {"days": (nxt - first).days}


def _date_info(state: dict, date: str) -> dict[str, Any]:
    d = parse_date("date_info", "date", date)
    return {
        "weekday": WEEKDAYS[d.weekday()],
        "day_of_year": d.timetuple().tm_yday,
        "week": d.isocalendar()[1],
        "quarter": (d.month - 1) // 3 + 1,
    }


def _convert_time(state: dict, time: str, from_zone: str, to_zone: str) -> dict[str, Any]:
    m = _HHMM.fullmatch(time)
    if not m:
        raise InvalidArgument(f"convert_time: 'time' must be HH:MM (00:00-23:59), got {time!r}")
    minutes = int(m[1]) * 60 + int(m[2])
    minutes += _zone("convert_time", "to_zone", to_zone) - _zone(
        "convert_time", "from_zone", from_zone
    )
    return {"time": f"{minutes % 1440 // 60:02d}:{minutes % 60:02d}", "day_offset": minutes // 1440}


def _time_difference(state: dict, from_zone: str, to_zone: str) -> dict[str, Any]:
    diff = _zone("time_difference", "to_zone", to_zone) - _zone(
        "time_difference", "from_zone", from_zone
    )
    return {"hours": num(diff / 60)}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props)}


_DATE = {"type": "string", "description": "YYYY-MM-DD"}
_ZONE = {"type": "string", "description": "code, e.g. UTC, JST"}
_YEAR = {"type": "integer", "minimum": 1, "maximum": 9999}

TOOLS: list[Tool] = [
    Tool("day_of_week", "The weekday of a date.", _obj({"date": _DATE}), _day_of_week),
    Tool(
        "add_days",
        "Date plus days (negative: minus).",
        _obj({"date": _DATE, "days": {"type": "integer"}}),
        _add_days,
    ),
    Tool(
        "days_between",
        "Days from start to end.",
        _obj({"start": _DATE, "end": _DATE}),
        _days_between,
    ),
    Tool("is_leap_year", "Whether a year is a leap year.", _obj({"year": _YEAR}), _is_leap_year),
    Tool(
        "days_in_month",
        "Days in a month (1-12) of a year.",
        _obj({"year": _YEAR, "month": {"type": "integer", "minimum": 1, "maximum": 12}}),
        _days_in_month,
    ),
    Tool(
        "date_info",
        "Weekday, day of year, ISO week and quarter of a date.",
        _obj({"date": _DATE}),
        _date_info,
    ),
    Tool(
        "convert_time",
        "Convert a time between zones.",
        _obj(
            {
                "time": {"type": "string", "description": "HH:MM"},
                "from_zone": _ZONE,
                "to_zone": _ZONE,
            }
        ),
        _convert_time,
    ),
    Tool(
        "time_difference",
        "Hours from one zone to another.",
        _obj({"from_zone": _ZONE, "to_zone": _ZONE}),
        _time_difference,
    ),
]

CALENDAR = register_domain(Domain(DOMAIN, TOOLS))


# -- value drawing ----------------------------------------------------------------------
def draw_date(rng: random.Random, lo: int = 1950, hi: int = 2060) -> dt.date:
    """A day between ``lo``-01-01 and ``hi``-12-31."""
    return dt.date.fromordinal(
        rng.randint(dt.date(lo, 1, 1).toordinal(), dt.date(hi, 12, 31).toordinal())
    )


def draw_time(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.choice(range(0, 60, 5)):02d}"


def _f(v: Any) -> str:
    return format_value(v)


_DAY_NOTE = {-1: " (the previous day)", 0: "", 1: " (the next day)"}

# -- templates --------------------------------------------------------------------------
_WEEKDAY_Q = [
    "What day of the week is {d}?",
    "Which weekday does {d} fall on?",
    "Tell me the weekday of {d}.",
    "{d}: what day of the week is that?",
    "Can you tell me the weekday of {d}?",
    "I'd like to know what day of the week {d} is.",
    "On which weekday does {d} fall?",
    "Please tell me the day of the week for {d}.",
    "What weekday is {d}?",
    "{d} falls on which day of the week?",
    "Which weekday is {d}?",
    "Tell me what day {d} is.",
    "Which day of the week is {d}?",
]


@template("calendar.weekday", DOMAIN, "single", len(_WEEKDAY_Q), combo=("day_of_week",))
def _t_weekday(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "day_of_week", rng.choice(["add_days", "days_between", "is_leap_year"]))
    d = draw_date(rng).isoformat()
    b.user(_WEEKDAY_Q[phrasing].format(d=d))
    r = b.call("day_of_week", {"date": d})
    b.say(f"{d} is a {r['weekday']}.", values=[r["weekday"]])


_ADD_Q = [
    "What date is {n} days after {d}?",
    "Add {n} days to {d}.",
    "Which date comes {n} days after {d}?",
    "Starting on {d}, what is the date {n} days later?",
    "Starting on {d}, which date comes {n} days later?",
]
_BETWEEN_Q = [
    "How many days are there between {d1} and {d2}?",
    "Count the days from {d1} to {d2}.",
    "How many days separate {d1} and {d2}?",
    "From {d1} until {d2}, how many days is that?",
    "How many days are there from {d1} to {d2}?",
]


@template("calendar.choose_add_days", DOMAIN, "similar_choice", len(_ADD_Q), combo=("add_days",))
def _t_choose_add_days(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "add_days", "days_between", *rng.sample(["day_of_week", "date_info"], 1))
    d, n = draw_date(rng).isoformat(), rng.randint(1, 2000)
    b.user(_ADD_Q[phrasing].format(n=n, d=d))
    r = b.call("add_days", {"date": d, "days": n})
    b.say(f"{n} days after {d} is {r['date']}.", values=[r["date"]])


def _two_dates(rng: random.Random) -> tuple[str, str]:
    d1 = draw_date(rng)
    return d1.isoformat(), (d1 + dt.timedelta(days=rng.randint(1, 3000))).isoformat()


@template(
    "calendar.choose_days_between",
    DOMAIN,
    "similar_choice",
    len(_BETWEEN_Q),
    combo=("days_between",),
)
def _t_choose_days_between(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "days_between", "add_days", *rng.sample(["day_of_week", "date_info"], 1))
    d1, d2 = _two_dates(rng)
    b.user(_BETWEEN_Q[phrasing].format(d1=d1, d2=d2))
    r = b.call("days_between", {"start": d1, "end": d2})
    b.say(f"There are {r['days']} days from {d1} to {d2}.", values=[r["days"]])


_LEAP_Q = [
    "Is {y} a leap year?",
    "Does {y} have a February 29?",
    "Tell me whether {y} is a leap year.",
    "Is {y} a leap year or a common year?",
    "Tell me whether {y} is a leap year or a common year.",
]
_MONTH_Q = [
    "How many days are in {m} {y}?",
    "How long is {m} {y} in days?",
    "Count the days of {m} {y}.",
    "What's the number of days in {m} {y}?",
    "Count the number of days in {m} {y}.",
]


@template(
    "calendar.choose_leap_year", DOMAIN, "similar_choice", len(_LEAP_Q), combo=("is_leap_year",)
)
def _t_choose_leap_year(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "is_leap_year", "days_in_month", rng.choice(["day_of_week", "date_info"]))
    # Half the years are multiples of 4, so both answers (and the century rule) occur.
    y = rng.randint(1600, 2400)
    if rng.random() < 0.5:
        y -= y % 4
    b.user(_LEAP_Q[phrasing].format(y=y))
    r = b.call("is_leap_year", {"year": y})
    verdict = "a leap year" if r["leap"] else "not a leap year"
    b.say(f"{y} has {r['days']} days, so it is {verdict}.", values=[r["days"]])


@template(
    "calendar.choose_days_in_month",
    DOMAIN,
    "similar_choice",
    len(_MONTH_Q),
    combo=("days_in_month",),
)
def _t_choose_days_in_month(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "days_in_month", "is_leap_year", rng.choice(["day_of_week", "date_info"]))
    y, month = rng.randint(1600, 2400), rng.randint(1, 12)
    m = MONTHS[month - 1]
    b.user(_MONTH_Q[phrasing].format(m=m, y=y))
    r = b.call("days_in_month", {"year": y, "month": month})
    b.say(f"{m} {y} has {r['days']} days.", values=[r["days"]])


_DIFF_Q = [
    "What is the time difference from {z1} to {z2}?",
    "How many hours lie between {z1} and {z2}?",
    "By how many hours does {z2} differ from {z1}?",
    "Tell me the offset in hours going from {z1} to {z2}.",
    "Tell me the time difference from {z1} to {z2}.",
]


@template(
    "calendar.choose_time_difference",
    DOMAIN,
    "similar_choice",
    len(_DIFF_Q),
    combo=("time_difference",),
)
def _t_choose_time_difference(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "time_difference", "convert_time", rng.choice(["days_between", "add_days"]))
    z1, z2 = rng.sample(sorted(ZONES), 2)
    b.user(_DIFF_Q[phrasing].format(z1=z1, z2=z2))
    r = b.call("time_difference", {"from_zone": z1, "to_zone": z2})
    b.say(f"{z2} is {_f(r['hours'])} hours from {z1}.", values=[r["hours"]])


_ZONES_Q = [
    "It's {t} in {z}. What time is it in {z1} and in {z2}?",
    "When it is {t} {z}, what are the local times in {z1} and {z2}?",
    "Convert {t} {z} to both {z1} and {z2}.",
    "A call starts at {t} {z}; what time is that for people in {z1} and in {z2}?",
    "At {t} {z}, what is the hour in {z1} and in {z2}?",
    "Tell me what {t} {z} is in {z1} and in {z2}.",
    "If it's {t} in {z}, what times do {z1} and {z2} show?",
    "Convert {t} {z} into {z1} time and into {z2} time.",
    "Can you convert {t} {z} to {z1} and to {z2}?",
    "{t} in {z}: what are the times in {z1} and {z2}?",
    "Please give me {t} {z} in both {z1} and {z2}.",
    "I have {t} {z}. Show it in {z1} and in {z2}.",
    "Show {t} {z} as {z1} time and as {z2} time.",
    "What would {t} {z} be in {z1} and in {z2}?",
    "For a meeting at {t} {z}, give me the times in {z1} and {z2}.",
    "Find the {z1} and {z2} times for {t} {z}.",
    "When it is {t} {z}, what time is it in {z1} and in {z2}?",
]


@template("calendar.two_zones", DOMAIN, "parallel", len(_ZONES_Q), combo=("convert_time",))
def _t_two_zones(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "convert_time", "time_difference", rng.choice(["day_of_week", "add_days"]))
    z, z1, z2 = rng.sample(sorted(ZONES), 3)
    t = draw_time(rng)
    b.user(_ZONES_Q[phrasing].format(t=t, z=z, z1=z1, z2=z2))
    r1, r2 = b.calls(
        [
            ("convert_time", {"time": t, "from_zone": z, "to_zone": z1}),
            ("convert_time", {"time": t, "from_zone": z, "to_zone": z2}),
        ]
    )
    b.say(
        f"It is {r1['time']} in {z1}{_DAY_NOTE[r1['day_offset']]} "
        f"and {r2['time']} in {z2}{_DAY_NOTE[r2['day_offset']]}.",
        values=[r1["time"], r2["time"]],
    )


_AFTER_Q = [
    "What weekday will it be {n} days after {d}?",
    "Which day of the week falls {n} days after {d}?",
    "If I count {n} days forward from {d}, what weekday do I land on?",
    "{n} days on from {d}: which date is that, and what day of the week?",
    "If I count {n} days forward from {d}, which day of the week is it?",
]


@template(
    "calendar.weekday_after",
    DOMAIN,
    "multi_step",
    len(_AFTER_Q),
    combo=("add_days", "day_of_week"),
)
def _t_weekday_after(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "add_days", "day_of_week", rng.choice(["days_between", "date_info"]))
    d, n = draw_date(rng).isoformat(), rng.randint(1, 1000)
    b.user(_AFTER_Q[phrasing].format(n=n, d=d))
    r = b.call("add_days", {"date": d, "days": n})
    w = b.call("day_of_week", {"date": r["date"]})
    b.say(f"{n} days after {d} is {r['date']}, a {w['weekday']}.", values=[r["date"], w["weekday"]])


_US_Q = [
    "What day of the week was {us}?",
    "Which weekday is {us}?",
    "Tell me the day of the week for {us}.",
    "{us} - do you know which weekday that is?",
    "Do you know what day of the week {us} was?",
]


@template("calendar.us_date", DOMAIN, "error_retry", len(_US_Q), combo=("day_of_week",))
def _t_us_date(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "day_of_week", rng.choice(["add_days", "days_between"]))
    d = draw_date(rng)
    us = f"{d.month:02d}/{d.day:02d}/{d.year}"
    b.user(_US_Q[phrasing].format(us=us))
    err = b.call("day_of_week", {"date": us})
    if "error" not in err:  # the tool takes ISO dates only
        raise RuntimeError(f"calendar.us_date: expected an error, got {err}")
    r = b.call("day_of_week", {"date": d.isoformat()})
    b.say(f"{us} ({d.isoformat()}) is a {r['weekday']}.", values=[r["weekday"]])


_EVENTS = ["birthday", "wedding", "exam", "vacation", "move", "concert", "interview", "trip"]
_ASK_END = [
    ("How many days are there from {d1} until my {e}?", "It is on {d2}."),
    ("Count the days between {d1} and my {e}, please.", "My {e} is on {d2}."),
    ("Starting {d1}, how long do I have to wait for my {e}?", "The date is {d2}."),
    ("I want to know how many days remain from {d1} to my {e}.", "{d2}."),
    ("How many days remain from {d1} until my {e}, please?", "The {e} is on {d2}."),
]


@template("calendar.ask_end_date", DOMAIN, "ask_missing", len(_ASK_END), combo=("days_between",))
def _t_ask_end_date(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "days_between", rng.choice(["add_days", "day_of_week"]))
    d1, d2 = _two_dates(rng)
    e = rng.choice(_EVENTS)
    first, answer = _ASK_END[phrasing]
    b.user(first.format(d1=d1, e=e))
    b.say(f"What is the date of your {e}?")
    b.user(answer.format(d2=d2, e=e))
    r = b.call("days_between", {"start": d1, "end": d2})
    b.say(f"There are {r['days']} days from {d1} to {d2}.", values=[r["days"]])


_PEOPLE = ["Ana", "Ben", "Chloe", "Dmitri", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Jun"]
_REFUSE_Q = [
    "Set an alarm for {t} tomorrow.",
    "Remind me to call {p} on {d}.",
    "Add a meeting with {p} to my calendar on {d}.",
    "What public holidays are there in {m} {y}?",
    "What will the weather be like on {d}?",
    "Set an alarm for {t} on {d}.",
]


@template("calendar.refuse", DOMAIN, "refuse", len(_REFUSE_Q))
def _t_refuse(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, *rng.sample([t.name for t in TOOLS], rng.randint(2, 4)))
    b.user(
        _REFUSE_Q[phrasing].format(
            t=draw_time(rng),
            p=rng.choice(_PEOPLE),
            d=draw_date(rng, 2020, 2040).isoformat(),
            m=rng.choice(MONTHS),
            y=rng.randint(2020, 2040),
        )
    )
    b.say(REFUSAL)


# Per field of date_info: the questions asking for it, and the answer.
_FACTS: dict[str, tuple[list[str], str]] = {
    "day_of_year": (
        [
            "Which day of the year is {d}?",
            "What is the day-of-year number of {d}?",
            "Counting from January 1, what day number is {d}?",
            "Give me the ordinal day within the year for {d}.",
            "Give me the day-of-year number for {d}.",
        ],
        "{d} is day {v} of the year.",
    ),
    "week": (
        [
            "Which ISO week is {d} in?",
            "What is the week number of {d}?",
            "Tell me the calendar week of {d}.",
            "{d} belongs to which numbered week?",
            "Tell me the ISO week number of {d}.",
        ],
        "{d} is in ISO week {v}.",
    ),
    "quarter": (
        [
            "Which quarter of the year is {d} in?",
            "What quarter does {d} belong to?",
            "Tell me the quarter for {d}.",
            "{d} falls in which quarter?",
            "Which quarter of the year does {d} belong to?",
        ],
        "{d} is in quarter {v}.",
    ),
}


@template("calendar.date_facts", DOMAIN, "answer_from_obs", 5, combo=("date_info",))
def _t_date_facts(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "date_info", rng.choice(["days_between", "add_days", "is_leap_year"]))
    field = rng.choice(sorted(_FACTS))
    questions, answer = _FACTS[field]
    d = draw_date(rng).isoformat()
    b.user(questions[phrasing].format(d=d))
    r = b.call("date_info", {"date": d})
    b.say(answer.format(d=d, v=r[field]), values=[r[field]])
