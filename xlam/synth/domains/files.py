"""Files domain: a small in-memory file system.

State::

    {"dirs": ["/", "/home", "/home/maria", "/home/maria/docs", ...],   # sorted
     "files": {"/home/maria/docs/budget.txt": "apples meeting violet 4821", ...}}

Paths are absolute and normalised (no ``.``, ``..``, ``//`` or trailing ``/``). A missing
file raises :class:`NotFound`; when a file with the same stem sits in the same directory
(``todo.md`` for ``todo.txt``) or one with the same name in another, the message suggests
it (``did you mean ...?``), the way a shell does, so a retry can copy the path from it.
"""

from __future__ import annotations

import posixpath
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
    register_domain,
    template,
)
from xlam.synth.domains.bank import FIRST_NAMES, offer, person_name

# No stem is part of another or of an extension, so a name search finds exactly one file.
STEMS = (
    "budget", "invoice", "itinerary", "minutes", "roadmap", "checklist", "contacts",
    "grocery", "workout", "playlist", "essay", "resume", "inventory", "schedule", "journal",
    "recipe", "passwords", "agenda", "timeline", "wishlist", "receipts", "thesis", "report",
    "outline", "garden", "packing", "chores", "goals", "expenses", "lyrics", "sketches",
    "vocab", "backlog", "birthday", "quotes", "readme", "changelog", "poem", "ledger", "plan",
)  # fmt: skip
EXTENSIONS = (".txt", ".md", ".csv", ".log")
SUBDIRS = (
    "docs", "notes", "projects", "work", "school", "finance", "travel", "personal",
    "archive", "drafts",
)  # fmt: skip
WORDS = (
    "apples", "meeting", "violet", "harbor", "deadline", "parcel", "tuesday", "pasta",
    "rocket", "lantern", "dentist", "museum", "coffee", "piano", "tickets", "rent", "garage",
    "printer", "salmon", "bicycle", "concert", "paint", "server", "holiday", "laptop",
    "carrots", "yoga", "battery", "umbrella", "plumber", "cinema", "passport", "marathon",
    "library", "kitchen", "sunflower", "taxes", "train", "chess", "wallet",
)  # fmt: skip


def _check(path: str) -> str:
    """The path if absolute and normalised; raises :class:`InvalidArgument` otherwise."""
    # normpath keeps a leading "//" (POSIX allows it a meaning), so look for it too
    if not path.startswith("/") or (
        path != "/" and (posixpath.normpath(path) != path or "//" in path)
    ):
        raise InvalidArgument(f"path must be absolute and normalised, got {path!r}")
    return path


def _missing(state: State, path: str) -> NotFound:
    """NotFound for ``path``, with a suggestion when one file is the likely intent."""
    d, name = posixpath.split(path)
    stem = posixpath.splitext(name)[0]
    files = sorted(state["files"])
    near = [p for p in files if posixpath.dirname(p) == d and _stem(p) == stem] or [
        p for p in files if posixpath.basename(p) == name
    ]
    hint = f"; did you mean {near[0]}?" if near else ""
    return NotFound(f"no such file: {path}{hint}")


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


def _file(state: State, path: str) -> str:
    if _check(path) not in state["files"]:
        raise _missing(state, path)
    return state["files"][path]


def _dir(state: State, path: str) -> str:
    if _check(path) not in state["dirs"]:
        raise NotFound(f"no such directory: {path}")
    return path


def _under(root: str, path: str) -> bool:
    return root == "/" or path.startswith(root + "/")


# -- tools ------------------------------------------------------------------------------
def list_dir(state: State, path: str) -> dict[str, Any]:
    _dir(state, path)
    subdirs = [
        posixpath.basename(d) + "/"
        for d in state["dirs"]
        if d != path and posixpath.dirname(d) == path
    ]
    files = [posixpath.basename(f) for f in state["files"] if posixpath.dirname(f) == path]
    return {"path": path, "entries": sorted(subdirs + files)}


def read_file(state: State, path: str) -> dict[str, Any]:
    return {"path": path, "content": _file(state, path)}


def write_file(state: State, path: str, content: str, mode: str = "create") -> dict[str, Any]:
    _check(path)
    if path in state["dirs"]:
        raise Conflict(f"{path} is a directory")
    parent = posixpath.dirname(path)
    if parent not in state["dirs"]:
        raise NotFound(f"no such directory: {parent}")
    old = state["files"].get(path)
    if old is not None and mode == "create":
        raise Conflict(f"file exists: {path}; use mode overwrite or append")
    if mode == "append" and old:
        content = old + "\n" + content
    state["files"][path] = content
    return {"path": path, "size": len(content)}


def move_file(state: State, source: str, destination: str) -> dict[str, Any]:
    content = _file(state, source)
    _check(destination)
    if destination in state["dirs"]:
        destination = posixpath.join(destination, posixpath.basename(source))
    elif posixpath.dirname(destination) not in state["dirs"]:
        raise NotFound(f"no such directory: {posixpath.dirname(destination)}")
    if destination in state["files"] or destination in state["dirs"]:
        raise Conflict(f"destination exists: {destination}")
    del state["files"][source]
    state["files"][destination] = content
    return {"source": source, "destination": destination}


def delete_file(state: State, path: str) -> dict[str, Any]:
    _file(state, path)
    del state["files"][path]
    return {"deleted": path}


def find_files(state: State, name: str, path: str = "/") -> dict[str, Any]:
    _dir(state, path)
    if not name:
        raise InvalidArgument("name must not be empty")
    n = name.lower()
    hits = [f for f in state["files"] if _under(path, f) and n in posixpath.basename(f).lower()]
    return {"matches": sorted(hits)}


def search_files(state: State, text: str, path: str = "/") -> dict[str, Any]:
    _dir(state, path)
    if not text:
        raise InvalidArgument("text must not be empty")
    t = text.lower()
    hits = [f for f, c in state["files"].items() if _under(path, f) and t in c.lower()]
    return {"matches": sorted(hits)}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


_S = {"type": "string"}
_ROOT = {"type": "string", "default": "/"}
TOOLS = [
    Tool(
        "list_dir",
        "Entries of a directory (subdirectories end with /).",
        _obj({"path": _S}, ["path"]),
        list_dir,
    ),
    Tool("read_file", "Content of a file.", _obj({"path": _S}, ["path"]), read_file),
    Tool(
        "write_file",
        "Write text to a file.",
        _obj(
            {
                "path": _S,
                "content": _S,
                "mode": {
                    "type": "string",
                    "enum": ["create", "overwrite", "append"],
                    "default": "create",
                },
            },
            ["path", "content"],
        ),
        write_file,
    ),
    Tool(
        "move_file",
        "Move a file to a new path or into a directory.",
        _obj({"source": _S, "destination": _S}, ["source", "destination"]),
        move_file,
    ),
    Tool("delete_file", "Delete a file.", _obj({"path": _S}, ["path"]), delete_file),
    Tool(
        "find_files",
        "Files whose name contains a text.",
        _obj({"name": _S, "path": _ROOT}, ["name"]),
        find_files,
    ),
    Tool(
        "search_files",
        "Files whose content contains a text.",
        _obj({"text": _S, "path": _ROOT}, ["text"]),
        search_files,
    ),
]
NAMES = [t.name for t in TOOLS]


def initial_state(rng: random.Random) -> State:
    """A home directory with three subdirectories and seven short files of unique stems."""
    home = f"/home/{rng.choice(FIRST_NAMES).lower()}"
    subdirs = [f"{home}/{d}" for d in rng.sample(SUBDIRS, 3)]
    files: dict[str, str] = {}
    stems = rng.sample(STEMS, 7)
    for i, stem in enumerate(stems):
        d = subdirs[i % 3] if i < 6 else rng.choice(subdirs)
        words = " ".join(rng.sample(WORDS, 3))
        files[f"{d}/{stem}{rng.choice(EXTENSIONS)}"] = f"{words} {rng.randint(10, 99999)}"
    return {"dirs": sorted(["/", "/home", home, *subdirs]), "files": files}


DOMAIN = register_domain(Domain("files", TOOLS, initial_state))


# -- templates --------------------------------------------------------------------------
def _files(b: EpisodeBuilder, rng: random.Random, n: int) -> list[str]:
    return rng.sample(sorted(b.state["files"]), n)


def _leaf_dirs(b: EpisodeBuilder) -> list[str]:
    home = next(d for d in b.state["dirs"] if d.count("/") == 2)
    return [d for d in b.state["dirs"] if posixpath.dirname(d) == home]


@template("files.read", "files", "answer_from_obs", 5, combo=("read_file",))
def _read(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (p,) = _files(b, rng, 1)
    offer(b, rng, ["read_file"], ["list_dir", "write_file", "search_files"])
    b.user(
        (
            f"What does {p} say?",
            f"Open {p} and show me its contents.",
            f"Read the file {p} for me.",
            f"Print out what is written in {p}.",
            f"Show me what is written in {p}.",
        )[phrasing]
    )
    r = b.call("read_file", {"path": p})
    b.say(f"{p} says: {r['content']}", [r["content"]])


@template("files.delete", "files", "single", 13, combo=("delete_file",))
def _delete(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (p,) = _files(b, rng, 1)
    offer(b, rng, ["delete_file"], ["move_file", "read_file", "write_file"])
    b.user(
        (
            f"Delete {p}.",
            f"Please remove the file {p}.",
            f"I no longer need {p}; get rid of it.",
            f"Erase {p} from my files.",
            f"Can you delete the file {p}?",
            f"I'd like {p} erased.",
            f"{p} can go; please delete it.",
            f"Please get rid of the file {p}.",
            f"Remove {p} from my files.",
            f"Could you erase {p} for me?",
            f"The file {p} is no longer needed; delete it.",
            f"Erase the old file {p}.",
            f"Please erase the file {p}.",
        )[phrasing]
    )
    r = b.call("delete_file", {"path": p})
    b.say(f"Deleted {r['deleted']}.", [r["deleted"]])


@template("files.append", "files", "single", 13, combo=("write_file",))
def _append(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (p,) = _files(b, rng, 1)
    line = f"{' '.join(rng.sample(WORDS, 2))} {rng.randint(1, 9999)}"
    offer(b, rng, ["write_file"], ["read_file", "delete_file", "move_file"])
    b.user(
        (
            f"Add the line '{line}' to {p}.",
            f"Append '{line}' at the end of {p}.",
            f"Please put '{line}' on a new line in {p}.",
            f"Tack '{line}' onto {p}.",
            f"Can you append the line '{line}' to {p}?",
            f"I'd like '{line}' added at the end of {p}.",
            f"{p} needs one more line: '{line}'.",
            f"Please write '{line}' at the end of {p}.",
            f"Put the line '{line}' at the end of {p}.",
            f"Could you add '{line}' to {p}?",
            f"Append the line '{line}' to the file {p}.",
            f"At the end of {p}, add '{line}'.",
            f"Please add the line '{line}' at the end of {p}.",
        )[phrasing]
    )
    r = b.call("write_file", {"path": p, "content": line, "mode": "append"})
    b.say(f"Added it; {p} is now {r['size']} characters long.", [r["size"]])


@template("files.list_two", "files", "parallel", 17, combo=("list_dir",))
def _list_two(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    d1, d2 = rng.sample(_leaf_dirs(b), 2)
    offer(b, rng, ["list_dir"], ["find_files", "read_file"])
    b.user(
        (
            f"What is in {d1} and in {d2}?",
            f"List the contents of both {d1} and {d2}.",
            f"Show me the files in {d1}, then the ones in {d2}.",
            f"Which entries do {d1} and {d2} each hold?",
            f"List {d1} and {d2} for me.",
            f"What files does {d1} have, and what files does {d2} have?",
            f"Give me a listing of {d1} and one of {d2}.",
            f"Tell me what {d1} and {d2} contain.",
            f"Can you list {d1} and {d2}?",
            f"What do {d1} and {d2} contain?",
            f"Please list what is in {d1} and what is in {d2}.",
            f"I'd like a listing of both {d1} and {d2}.",
            f"{d1} and {d2}: which files are in each?",
            f"Show what {d1} holds and what {d2} holds.",
            f"List the files of {d1} and of {d2}.",
            f"Which files are in {d1}, and which are in {d2}?",
            f"Show me the contents of both {d1} and {d2}.",
        )[phrasing]
    )
    r1, r2 = b.calls([("list_dir", {"path": d1}), ("list_dir", {"path": d2})])
    b.say(
        f"{d1} contains {', '.join(r1['entries'])}; {d2} contains {', '.join(r2['entries'])}.",
        r1["entries"] + r2["entries"],
    )


@template("files.find_choice", "files", "similar_choice", 5, combo=("find_files", "search_files"))
def _find_choice(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (p,) = _files(b, rng, 1)
    offer(b, rng, ["find_files", "search_files"], ["list_dir", "read_file"])
    if rng.random() < 0.5:
        w = _stem(p)
        tool, args = "find_files", {"name": w}
        texts = (
            f"Which files have '{w}' in their name?",
            f"Find the files named like {w}.",
            f"Locate any file whose name contains {w}.",
            f"Are there files called something like {w}?",
            f"Are there files whose name contains {w}?",
        )
    else:
        w = rng.choice(b.state["files"][p].split()[:3])
        tool, args = "search_files", {"text": w}
        texts = (
            f"Which files mention '{w}'?",
            f"Search the file contents for {w}.",
            f"Find the files that contain the word {w}.",
            f"Is {w} written in any of my files?",
            f"Which of my files contain the word {w}?",
        )
    b.user(texts[phrasing])
    r = b.call(tool, args)
    b.say(f"Found: {', '.join(r['matches'])}.", r["matches"])


@template("files.find_read", "files", "multi_step", 5, combo=("find_files", "read_file"))
def _find_read(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (p,) = _files(b, rng, 1)
    w = _stem(p)
    offer(b, rng, ["find_files", "read_file"], ["search_files", "list_dir"])
    b.user(
        (
            f"Find my {w} file and tell me what it says.",
            f"There's a file called {w} somewhere; what's in it?",
            f"Look for the {w} file and read it to me.",
            f"Where is {w} kept, and what does it contain?",
            f"Look for my {w} file and tell me what it says.",
        )[phrasing]
    )
    r = b.call("find_files", {"name": w})
    found = r["matches"][0]
    c = b.call("read_file", {"path": found})
    b.say(f"{found} says: {c['content']}", [found, c["content"]])


@template("files.read_suggest", "files", "error_retry", 5, combo=("read_file",))
def _read_suggest(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (p,) = _files(b, rng, 1)
    root, ext = posixpath.splitext(p)
    wrong = root + rng.choice([e for e in EXTENSIONS if e != ext])
    offer(b, rng, ["read_file"], ["find_files", "list_dir", "delete_file"])
    b.user(
        (
            f"Show me {wrong}.",
            f"Can you read {wrong} to me?",
            f"I need the text of {wrong}.",
            f"Fetch the contents of {wrong}.",
            f"Can you show me the contents of {wrong}?",
        )[phrasing]
    )
    err = b.call("read_file", {"path": wrong})
    if p not in err.get("error", ""):  # the premise: refused, with the real file suggested
        raise RuntimeError(f"files.read_suggest: reading {wrong} did not suggest {p}: {err}")
    r = b.call("read_file", {"path": p})
    b.say(f"There is no {wrong}, but {p} says: {r['content']}", [p, r["content"]])


@template("files.move_ask", "files", "ask_missing", 5, combo=("move_file",))
def _move_ask(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (p,) = _files(b, rng, 1)
    dest = rng.choice([d for d in _leaf_dirs(b) if d != posixpath.dirname(p)])
    offer(b, rng, ["move_file"], ["write_file", "delete_file", "list_dir"])
    b.user(
        (
            f"Please move {p}.",
            f"I'd like to relocate {p}.",
            f"Can you move the file {p} for me?",
            f"{p} is in the wrong place, shift it.",
            f"I'd like to move the file {p}.",
        )[phrasing]
    )
    b.say("Where should I move it? Please give me the destination folder or path.")
    b.user(
        (
            f"Put it in {dest}.",
            f"Into {dest}, please.",
            f"{dest}",
            f"Move it to {dest}.",
            f"Please put it in {dest}.",
        )[phrasing]
    )
    r = b.call("move_file", {"source": p, "destination": dest})
    b.say(f"Moved {p} to {r['destination']}.", [r["destination"]])


@template("files.refuse", "files", "refuse", 5)
def _refuse(b: EpisodeBuilder, rng: random.Random, phrasing: int) -> None:
    (p,) = _files(b, rng, 1)
    offer(b, rng, ["read_file"], ["list_dir", "write_file", "move_file", "delete_file"])
    b.user(
        (
            f"Email {p} to {person_name(rng)}.",
            f"Print {p} on the office printer.",
            f"Compress {posixpath.dirname(p)} into a zip archive.",
            f"Make {p} read-only for everyone except me.",
            f"Compress {p} into a zip archive for me.",
        )[phrasing]
    )
    b.say(
        "Sorry, I can't do that: the available tools can only list, read, write, move, "
        "delete and search files."
    )
