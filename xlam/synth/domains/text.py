"""Text utilities: a stateless domain and its task templates.

Queries quote the text they are about (``'the red fox'``), so the ``text`` argument is
copied verbatim; the texts are drawn from a small word list so that a tiny tokenizer
covers them. Searches are case-sensitive: the error-retry template asks to replace a
capitalised word in a lower-case text, gets ``NotFound`` and retries in lower case.
"""

from __future__ import annotations

import random
import re
import string
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
from xlam.synth.domains.arith import REFUSAL, offer

DOMAIN = "text"


# -- tools ------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    """Whitespace-separated words without surrounding punctuation (empty ones dropped)."""
    return [w for w in (t.strip(string.punctuation) for t in text.split()) if w]


def _word_count(state: dict, text: str) -> dict[str, Any]:
    words = _words(text)
    return {
        "words": len(words),
        "unique_words": len({w.lower() for w in words}),
        # max() keeps the first of equally long words.
        "longest": max(words, key=len) if words else "",
    }


def _count_char(state: dict, text: str, char: str, ignore_case: bool) -> dict[str, Any]:
    if len(char) != 1:
        raise InvalidArgument(f"count_char: 'char' must be a single character, got {char!r}")
    if ignore_case:
        text, char = text.lower(), char.lower()
    return {"count": text.count(char)}


def _reverse_text(state: dict, text: str) -> dict[str, Any]:
    return {"text": text[::-1]}


def _to_upper(state: dict, text: str) -> dict[str, Any]:
    return {"text": text.upper()}


def _to_lower(state: dict, text: str) -> dict[str, Any]:
    return {"text": text.lower()}


def _slugify(state: dict, text: str, separator: str) -> dict[str, Any]:
    slug = re.sub(r"[^a-z0-9]+", separator, text.lower()).strip(separator)
    if not slug:
        raise InvalidArgument(f"slugify: the text has no letters or digits: {text!r}")
    return {"slug": slug}


def _find_replace(state: dict, text: str, old: str, new: str) -> dict[str, Any]:
    if not old:
        raise InvalidArgument("find_replace: 'old' must not be empty")
    n = text.count(old)
    if n == 0:
        raise NotFound(f"find_replace: {old!r} does not occur in the text (case-sensitive)")
    return {"text": text.replace(old, new), "replacements": n}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props)}


_TEXT = {"type": "string"}

TOOLS: list[Tool] = [
    Tool(
        "word_count",
        "Count words; also unique words and the longest word.",
        _obj({"text": _TEXT}),
        _word_count,
    ),
    Tool(
        "count_char",
        "How often one character occurs in a text.",
        _obj(
            {
                "text": _TEXT,
                "char": _TEXT,
                "ignore_case": {"type": "boolean", "default": False},
            },
            ["text", "char"],
        ),
        _count_char,
    ),
    Tool("reverse_text", "Reverse a text.", _obj({"text": _TEXT}), _reverse_text),
    Tool("to_upper", "Text in upper case.", _obj({"text": _TEXT}), _to_upper),
    Tool("to_lower", "Text in lower case.", _obj({"text": _TEXT}), _to_lower),
    Tool(
        "slugify",
        "Make a URL slug of a text.",
        _obj(
            {"text": _TEXT, "separator": {"type": "string", "enum": ["-", "_"], "default": "-"}},
            ["text"],
        ),
        _slugify,
    ),
    Tool(
        "find_replace",
        "Replace every occurrence of old with new (case-sensitive).",
        _obj({"text": _TEXT, "old": _TEXT, "new": _TEXT}),
        _find_replace,
    ),
]

TEXT = register_domain(Domain(DOMAIN, TOOLS))


# -- value drawing ----------------------------------------------------------------------
WORDS: tuple[str, ...] = (
    "the", "a", "red", "blue", "green", "old", "new", "small", "big", "quick", "lazy", "happy",
    "quiet", "bright", "dark", "cold", "warm", "fox", "dog", "cat", "bird", "fish", "horse",
    "garden", "river", "city", "house", "road", "tree", "book", "song", "ship", "train", "runs",
    "jumps", "sings", "reads", "walks", "sleeps", "waits", "shines", "falls", "grows", "over",
    "under", "near", "into", "with", "and", "from", "after", "before", "morning", "night",
    "summer", "winter", "market", "letter", "window", "paper",
)  # fmt: skip
_OLD = [w for w in WORDS if len(w) >= 3]


def draw_text(rng: random.Random, lo: int = 3, hi: int = 7, title: float = 0.0) -> str:
    """``lo``-``hi`` words from :data:`WORDS` (repeats allowed); each capitalised with
    probability ``title``."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    return " ".join(w.capitalize() if rng.random() < title else w for w in words)


def _f(v: Any) -> str:
    return format_value(v)


# -- templates --------------------------------------------------------------------------
_REVERSE_Q = [
    "Reverse the text '{s}'.",
    "Write '{s}' backwards.",
    "What is '{s}' spelled in reverse?",
    "Flip '{s}' so that it reads back to front.",
    "Can you reverse '{s}'?",
    "I'd like '{s}' written backwards.",
    "'{s}': what is it in reverse?",
    "Please spell '{s}' backwards.",
    "Reverse '{s}' for me.",
    "Spell the text '{s}' back to front.",
    "How does '{s}' read backwards?",
    "Write '{s}' in reverse order.",
    "Write the text '{s}' in reverse.",
]


@template("text.reverse", DOMAIN, "single", len(_REVERSE_Q), combo=("reverse_text",))
def _t_reverse(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "reverse_text", rng.choice(["word_count", "count_char"]))
    s = draw_text(rng, 2, 5)
    b.user(_REVERSE_Q[phrasing].format(s=s))
    r = b.call("reverse_text", {"text": s})
    b.say(f"Reversed: '{r['text']}'.", values=[r["text"]])


_CASE_Q: dict[str, list[str]] = {
    "to_upper": [
        "Convert '{s}' to upper case.",
        "Make '{s}' all capitals.",
        "Write '{s}' in capital letters.",
        "Turn '{s}' into uppercase, please.",
        "Make '{s}' all upper case, please.",
    ],
    "to_lower": [
        "Convert '{s}' to lower case.",
        "Make '{s}' all small letters.",
        "Write '{s}' without any capital letters.",
        "Turn '{s}' into lowercase, please.",
        "Make '{s}' all lower case, please.",
    ],
}


def _case_template(tool: str) -> None:
    phrases = _CASE_Q[tool]

    @template(f"text.choose_{tool}", DOMAIN, "similar_choice", len(phrases), combo=(tool,))
    def build(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
        other = "to_lower" if tool == "to_upper" else "to_upper"
        offer(b, rng, tool, other, *rng.sample(["reverse_text", "slugify"], rng.randint(0, 1)))
        s = draw_text(rng, 2, 6, title=0.5)
        b.user(phrases[phrasing].format(s=s))
        r = b.call(tool, {"text": s})
        b.say(f"Here it is: '{r['text']}'.", values=[r["text"]])


for _tool in _CASE_Q:
    _case_template(_tool)


_SLUG_Q = [
    "Make a URL slug from '{s}'{sep}.",
    "Turn the title '{s}' into a slug{sep}.",
    "I need a web address slug for '{s}'{sep}.",
    "Slugify '{s}'{sep}, please.",
    "Turn '{s}' into a URL slug{sep}, please.",
]
_SEP_WORDS = {"-": "", "_": " with '_' between words"}


@template("text.choose_slugify", DOMAIN, "similar_choice", len(_SLUG_Q), combo=("slugify",))
def _t_choose_slugify(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "slugify", "to_lower", rng.choice(["find_replace", "reverse_text"]))
    s = draw_text(rng, 2, 5, title=0.7)
    if rng.random() < 0.4:
        s += f" {rng.randint(1, 2099)}"
    sep = rng.choice(sorted(_SEP_WORDS))
    b.user(_SLUG_Q[phrasing].format(s=s, sep=_SEP_WORDS[sep]))
    # The default separator is left out, as a caller would.
    r = b.call("slugify", {"text": s, **({"separator": sep} if sep != "-" else {})})
    b.say(f"The slug is {r['slug']}.", values=[r["slug"]])


_TWO_CHARS_Q = [
    "How many times do '{c1}' and '{c2}' appear in '{s}'?",
    "Count the letters '{c1}' and '{c2}' in '{s}'.",
    "In '{s}', how often does '{c1}' occur, and how often '{c2}'?",
    "Tell me the number of '{c1}' characters and of '{c2}' characters in '{s}'.",
    "Count how often '{c1}' and '{c2}' show up in '{s}'.",
    "For '{s}', give me the counts of '{c1}' and of '{c2}'.",
    "How many '{c1}' and how many '{c2}' are there in '{s}'?",
    "Find the number of '{c1}' and '{c2}' characters in '{s}'.",
    "Count '{c1}' and '{c2}' in '{s}' for me.",
    "What are the counts of '{c1}' and '{c2}' in '{s}'?",
    "Please count how many '{c1}' and '{c2}' characters '{s}' has.",
    "In '{s}', count the '{c1}' and the '{c2}' characters.",
    "I'd like the number of '{c1}' and of '{c2}' in '{s}'.",
    "How often do '{c1}' and '{c2}' appear in '{s}'?",
    "Can you count both '{c1}' and '{c2}' in '{s}'?",
    "Give me the count of '{c1}' and the count of '{c2}' in '{s}'.",
    "Tell me how many times '{c1}' and '{c2}' occur in '{s}'.",
]


@template("text.two_chars", DOMAIN, "parallel", len(_TWO_CHARS_Q), combo=("count_char",))
def _t_two_chars(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "count_char", rng.choice(["word_count", "find_replace"]))
    s = draw_text(rng, 3, 7)
    # Mostly letters of the text; sometimes one it lacks (a count of 0).
    c1, c2 = rng.sample(sorted(set(s.replace(" ", "")) | {rng.choice("xzqjvk")}), 2)
    b.user(_TWO_CHARS_Q[phrasing].format(c1=c1, c2=c2, s=s))
    r1, r2 = b.calls(
        [("count_char", {"text": s, "char": c1}), ("count_char", {"text": s, "char": c2})]
    )
    b.say(
        f"Counts: '{c1}' {r1['count']}, '{c2}' {r2['count']}.",
        values=[r1["count"], r2["count"]],
    )


_REPLACE_SLUG_Q = [
    "Replace '{old}' with '{new}' in '{s}', then make a slug of the result.",
    "In '{s}', swap '{old}' for '{new}' and give me the URL slug of that.",
    "Take '{s}', change '{old}' to '{new}', and slugify what you get.",
    "Slug please: first put '{new}' where '{old}' is in '{s}'.",
    "In '{s}', replace '{old}' with '{new}', then give me the URL slug of the result.",
]


def _replace_case(rng: random.Random) -> tuple[str, str, str]:
    """A lower-case text, a word of it (>= 3 letters) and a different new word."""
    while True:
        s = draw_text(rng, 3, 7)
        olds = [w for w in s.split() if w in _OLD]
        if olds:
            old = rng.choice(olds)
            new = rng.choice([w for w in _OLD if w != old])
            return s, old, new


@template(
    "text.replace_then_slug",
    DOMAIN,
    "multi_step",
    len(_REPLACE_SLUG_Q),
    combo=("find_replace", "slugify"),
)
def _t_replace_then_slug(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "find_replace", "slugify", rng.choice(["to_lower", "reverse_text"]))
    s, old, new = _replace_case(rng)
    b.user(_REPLACE_SLUG_Q[phrasing].format(s=s, old=old, new=new))
    r = b.call("find_replace", {"text": s, "old": old, "new": new})
    g = b.call("slugify", {"text": r["text"]})
    b.say(f"The text becomes '{r['text']}', and its slug is {g['slug']}.", values=[g["slug"]])


_CASE_RETRY_Q = [
    "In '{s}', replace '{W}' with '{new}'.",
    "Swap '{W}' for '{new}' in the text '{s}'.",
    "Change every '{W}' to '{new}' in '{s}'.",
    "Take '{s}' and put '{new}' in place of '{W}'.",
    "In the text '{s}', change every '{W}' to '{new}'.",
]


@template("text.replace_case", DOMAIN, "error_retry", len(_CASE_RETRY_Q), combo=("find_replace",))
def _t_replace_case(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "find_replace", rng.choice(["to_lower", "count_char"]))
    s, old, new = _replace_case(rng)
    cap = old.capitalize()
    b.user(_CASE_RETRY_Q[phrasing].format(s=s, W=cap, new=new))
    err = b.call("find_replace", {"text": s, "old": cap, "new": new})
    if "error" not in err:  # the text is lower case, the search case-sensitive
        raise RuntimeError(f"text.replace_case: expected an error, got {err}")
    r = b.call("find_replace", {"text": s, "old": old, "new": new})
    b.say(
        f"'{cap}' is written '{old}' in the text; the result is '{r['text']}'.",
        values=[r["text"]],
    )


_ASK_TEXT = [
    ("Can you make a URL slug for me?", "Use '{s}'."),
    ("I need a slug for a page title.", "The title is '{s}'."),
    ("Please turn my heading into a slug.", "My heading is '{s}'."),
    ("Slugify something for me, would you?", "This one: '{s}'."),
    ("Can you turn my page title into a slug?", "Use this one: '{s}'."),
]


@template("text.ask_slug_text", DOMAIN, "ask_missing", len(_ASK_TEXT), combo=("slugify",))
def _t_ask_slug_text(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "slugify", rng.choice(["to_lower", "find_replace", "word_count"]))
    s = draw_text(rng, 2, 5, title=0.7)
    first, answer = _ASK_TEXT[phrasing]
    b.user(first)
    b.say("Which text should I turn into a slug?")
    b.user(answer.format(s=s))
    r = b.call("slugify", {"text": s})
    b.say(f"The slug is {r['slug']}.", values=[r["slug"]])


_REFUSE_Q = [
    "Translate '{s}' into French.",
    "Check '{s}' for spelling mistakes.",
    "Is '{s}' a positive or a negative review?",
    "Read '{s}' aloud to me.",
    "Which language is '{s}' written in?",
    "Translate '{s}' into French for me.",
]


@template("text.refuse", DOMAIN, "refuse", len(_REFUSE_Q))
def _t_refuse(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, *rng.sample([t.name for t in TOOLS], rng.randint(2, 4)))
    b.user(_REFUSE_Q[phrasing].format(s=draw_text(rng, 2, 6)))
    b.say(REFUSAL)


# Per field of word_count: the questions asking for it, and the answer.
_FACTS: dict[str, tuple[list[str], str]] = {
    "words": (
        [
            "How many words are in '{s}'?",
            "Count the words of '{s}'.",
            "What's the word count of '{s}'?",
            "'{s}': how many words is that?",
            "Count how many words are in '{s}'.",
        ],
        "'{s}' has {v} words.",
    ),
    "unique_words": (
        [
            "How many distinct words does '{s}' contain?",
            "Count the different words in '{s}'.",
            "How many unique words are there in '{s}'?",
            "'{s}' uses how many different words?",
            "How many different words does '{s}' contain?",
        ],
        "'{s}' has {v} different words.",
    ),
    "longest": (
        [
            "Which is the longest word in '{s}'?",
            "Find the longest word of '{s}'.",
            "What's the longest word used in '{s}'?",
            "'{s}': which word there is the longest?",
            "Find the longest word used in '{s}'.",
        ],
        "The longest word is '{v}'.",
    ),
}


@template("text.word_facts", DOMAIN, "answer_from_obs", 5, combo=("word_count",))
def _t_word_facts(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    offer(b, rng, "word_count", rng.choice(["count_char", "reverse_text"]))
    field = rng.choice(sorted(_FACTS))
    questions, answer = _FACTS[field]
    s = draw_text(rng, 3, 8)
    b.user(questions[phrasing].format(s=s))
    r = b.call("word_count", {"text": s})
    b.say(answer.format(s=s, v=r[field]), values=[r[field]])
