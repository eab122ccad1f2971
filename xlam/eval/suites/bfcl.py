"""The ``bfcl`` suite: BFCL v4 with its own data and checkers (the ``bfcl-eval`` package).

``bfcl-eval`` pins its own numpy, vendor SDKs and torch, so it lives in its own environment
(``.venv-bfcl/``, made by ``scripts/setup_eval_env.sh``) and runs in a worker process,
:mod:`xlam.eval.bfcl_worker`, that this module starts and talks to (:class:`BfclWorker`).
The worker serves BFCL's questions, possible answers, its AST checker, its simulated
multi-turn backends and its multi-turn checker; nothing of BFCL is copied here.

Items become :class:`~xlam.eval.core.Request` s: BFCL's question as OpenAI chat messages,
its function docs as OpenAI tool schemas converted by BFCL's own ``convert_to_tool`` for
OpenAI models (``dict`` → ``object``, ``float`` → ``number``..., ``.`` in names → ``_``; the
AST checker runs under a BFCL registry model that maps ``_`` back, see the worker).

Scoring, as BFCL scores:

- AST categories: the parsed calls, as BFCL's decoded ``[{name: {arg: value}}]``, go to
  ``ast_checker`` in batches; output that looked like a call but did not parse is BFCL's
  ``ast_decoder:decoder_failed``.
- ``irrelevance``/``live_irrelevance``: valid when no call was made (an unparseable attempt
  is no call, as in BFCL); ``live_relevance``: valid when at least one call was made.
- ``multi_turn_base``: a real episode. Per user turn, up to ``max_steps`` steps of: generate,
  parse, and if there are calls run them on BFCL's backends (state kept per episode), add
  the assistant's calls and the results as ``tool`` messages; a step without calls ends the
  turn. A turn that keeps calling past ``max_steps`` force-quits the episode (BFCL's
  ``MAXIMUM_STEP_LIMIT`` rule). The calls of all turns go to ``multi_turn_checker``.
  Episodes run in lockstep batches, so a batched backend generates one step of every
  active episode at once.

Each verdict keeps BFCL's message (``detail``) and error type (``extra.bfcl_error_type``);
``error_type`` is its :data:`~xlam.eval.core.ERROR_TYPES` counterpart. A handful of BFCL's
possible answers contradict their own function doc, so that no answer passes its checker;
those items carry ``gold_issue`` (and ``extra.gold_issue``) and are scored as BFCL scores
them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One list of categories, the worker's: it runs standalone in BFCL's env, and importing it
# here runs none of BFCL (it imports bfcl_eval only when started).
from xlam.eval.bfcl_worker import CATEGORIES, MULTI_TURN, SINGLE_TURN
from xlam.eval.core import (
    Backend,
    Completion,
    Emit,
    Request,
    Suite,
    Verdict,
    category_table,
    prompt_hash,
)
from xlam.serving.parser import ParseResult

IRRELEVANCE: tuple[str, ...] = ("irrelevance", "live_irrelevance")
RELEVANCE: tuple[str, ...] = ("live_relevance",)

WORKER_SCRIPT = Path(__file__).resolve().parents[1] / "bfcl_worker.py"
REPO_ROOT = Path(__file__).resolve().parents[3]
# The text the oracle answers with when a turn's calls are done.
DONE_TEXT = "Done."

# BFCL error types (their part after ":") → ERROR_TYPES.
_BFCL_ERRORS: dict[str, str] = {
    "wrong_func_name": "wrong_function",
    "wrong_count": "wrong_count",
    "missing_required": "missing_argument",
    "missing_optional": "missing_argument",
    "unexpected_param": "extra_argument",
    "decoder_failed": "parse_error",
    "decoder_wrong_output_format": "parse_error",
    "empty_turn_model_response": "missed_call",
    "instance_state_mismatch": "wrong_value",
    "execution_response_mismatch": "wrong_value",
    "force_terminated": "wrong_count",
}


class BfclEnvMissing(RuntimeError):
    """The BFCL environment (its Python) is not there."""


class BfclWorkerError(RuntimeError):
    """The BFCL worker failed or exited; the message holds its error and stderr tail."""


def default_python() -> Path:
    """``$XLAM_BFCL_PYTHON``, else ``<repo>/.venv-bfcl/bin/python``."""
    env = os.environ.get("XLAM_BFCL_PYTHON")
    return Path(env) if env else REPO_ROOT / ".venv-bfcl" / "bin" / "python"


class BfclWorker:
    """Client of :mod:`xlam.eval.bfcl_worker`, started on the first request.

    Args:
        root: BFCL's project root (its ``result/``, ``score/``, lock files) and the
            worker's working directory; ``worker.log`` there holds its stderr.
        python: The BFCL environment's Python (default: :func:`default_python`).
    """

    def __init__(self, root: str | Path, python: str | Path | None = None) -> None:
        self.root = Path(root).resolve()
        # Absolute but not resolved: a venv's python is a symlink that must stay one.
        self.python = Path(os.path.abspath(Path(python) if python else default_python()))
        self._proc: subprocess.Popen | None = None
        self._versions: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.root / "worker.log"

    def start(self) -> None:
        """Start the worker unless it runs."""
        if self.running:
            return
        if not self.python.is_file():
            raise BfclEnvMissing(
                f"no BFCL environment at {self.python}: run scripts/setup_eval_env.sh "
                "(or point XLAM_BFCL_PYTHON / suite.python at a Python with bfcl-eval)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.pop("VIRTUAL_ENV", None)
        env["BFCL_PROJECT_ROOT"] = str(self.root)
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self.python), str(WORKER_SCRIPT), "--root", str(self.root)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=self.root,
                env=env,
            )

    def request(self, op: str, **fields: Any) -> Any:
        """Send one request and return its result.

        Raises:
            BfclEnvMissing: No BFCL environment.
            BfclWorkerError: The worker reported an error or exited.
        """
        self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        # default=str: Python-literal calls may hold sets or bytes; BFCL then sees text.
        line = json.dumps({"op": op, **fields}, ensure_ascii=False, default=str) + "\n"
        try:
            proc.stdin.write(line.encode())
            proc.stdin.flush()
            reply = proc.stdout.readline()
        except (BrokenPipeError, OSError) as e:
            raise self._died(op, str(e)) from None
        if not reply:
            raise self._died(op, "no reply")
        msg = json.loads(reply)
        if not msg.get("ok"):
            raise BfclWorkerError(
                f"BFCL worker failed on {op!r}: {msg.get('error')}\n{msg.get('traceback', '')}"
                f"--- worker stderr ({self.log_path}) ---\n{self.stderr_tail()}"
            )
        return msg.get("result")

    def _died(self, op: str, why: str) -> BfclWorkerError:
        rc = self._proc.wait(timeout=30) if self._proc is not None else None
        self._proc = None
        return BfclWorkerError(
            f"BFCL worker ({self.python}) exited with code {rc} during {op!r} ({why}); "
            f"its stderr ({self.log_path}):\n{self.stderr_tail()}"
        )

    def stderr_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    @property
    def versions(self) -> dict[str, Any]:
        """Versions the worker reports (``bfcl_eval``, ``python``, ``checker_model``)."""
        if self._versions is None:
            self._versions = self.request("version")
        return self._versions

    def close(self) -> None:
        """Stop the worker (it also exits on its own when stdin closes)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write(b'{"op": "shutdown"}\n')
                proc.stdin.flush()
                proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


# ---------------------------------------------------------------------------------------
def _categories(categories: list[str] | str | None) -> list[str]:
    if categories is None:
        return list(CATEGORIES)
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    cats = list(dict.fromkeys(str(c) for c in categories))
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown or not cats:
        what = "no BFCL category given"
        if unknown:
            what = f"unknown BFCL categor{'y' if len(unknown) == 1 else 'ies'} {unknown}"
        raise ValueError(f"{what}; valid: {', '.join(CATEGORIES)}")
    return cats


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _calls(parsed: ParseResult) -> list[dict[str, Any]]:
    """The parsed calls as JSON data (Python-literal calls may hold sets or bytes: text)."""
    calls = [{"name": c.name, "arguments": c.arguments} for c in parsed.calls]
    try:
        json.dumps(calls)
        return calls
    except (TypeError, ValueError):
        return json.loads(json.dumps(calls, default=str))


def _message(error: Any) -> str:
    if isinstance(error, list):
        return "; ".join(e if isinstance(e, str) else json.dumps(e, default=str) for e in error)
    return str(error) if error is not None else ""


def error_type(bfcl: dict[str, Any], category: str, parsed: ParseResult) -> str:
    """The :data:`ERROR_TYPES` name of a failed BFCL single-turn result."""
    if parsed.error:
        return "parse_error"
    if category in IRRELEVANCE:
        return "hallucinated_call"
    if not parsed.calls:
        return "missed_call"
    return bfcl_error_type(bfcl.get("error_type"), bfcl.get("error"))


def bfcl_error_type(bfcl_type: str | None, errors: Any = None) -> str:
    """Map a BFCL ``error_type`` (``simple_function_checker:missing_required``...)."""
    t = bfcl_type or ""
    if t.endswith(":cannot_find_match") and isinstance(errors, list):
        # Parallel calls, order-free: the sub-errors say why no output call matched; one
        # against a call of the right function says more than a name mismatch.
        subs = [
            s.get("sub_error_type", "")
            for e in errors
            if isinstance(e, dict)
            for s in e.values()
            if isinstance(s, dict)
        ]
        named = [s for s in subs if not s.endswith("wrong_func_name")]
        t = (named or subs or [t])[0]
    if t == "checker_error":
        return "checker_error"
    head, _, tail = t.partition(":")
    if tail in _BFCL_ERRORS:
        return _BFCL_ERRORS[tail]
    if head == "type_error":
        return "wrong_type"
    return "wrong_value"  # value_error:*, dict_checker:*, list_dict_checker:*...


@dataclass
class _Episode:
    """A multi-turn item in progress."""

    item: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    turn: int = -1
    step: int = 0
    steps: list[list[list[dict[str, Any]]]] = field(default_factory=list)  # turn/step/calls
    raw: list[list[str]] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    prompt_hash: str | None = None
    done: bool = False
    force_terminated: bool = False
    backend_error: str | None = None

    @property
    def id(self) -> str:
        return self.item["id"]

    def next_turn(self) -> None:
        self.turn += 1
        self.step = 0
        if self.turn >= len(self.item["turns"]):
            self.done = True
            return
        self.messages.extend(dict(m) for m in self.item["turns"][self.turn])
        self.steps.append([])
        self.raw.append([])

    def request(self) -> Request:
        gold = self.item["gold"][self.turn] if self.step == 0 else None
        return Request(
            id=f"{self.id}#{self.turn}.{self.step}",
            messages=[dict(m) for m in self.messages],
            tools=self.item["tools"],
            gold=gold or None,
            gold_text=DONE_TEXT,
        )


class BfclSuite(Suite):
    """BFCL v4 categories scored by BFCL's own checkers.

    Args:
        categories: BFCL categories (:data:`CATEGORIES`; a list or a comma-separated
            string); ``None``: all of them.
        limit: The first ``limit`` items of each category (``None``: all).
        root: Where BFCL's files go (its ``result/``/``score/`` folders, lock files, the
            worker log); relative to the working directory.
        python: The BFCL environment's Python (default ``$XLAM_BFCL_PYTHON`` or
            ``<repo>/.venv-bfcl/bin/python``).
        batch_size: Requests per backend call (default: the backend's ``batch_size``);
            multi-turn episodes run this many at a time.
        max_steps: Calling steps allowed per user turn: one more force-quits the episode
            (BFCL's ``MAXIMUM_STEP_LIMIT`` rule, 20 there).

    Raises:
        ValueError: An unknown category (the message lists the valid ones), a limit or
            ``max_steps`` below 1.
    """

    name = "bfcl"

    def __init__(
        self,
        categories: list[str] | None = None,
        limit: int | None = None,
        root: str | Path = "bfcl",
        python: str | None = None,
        batch_size: int | None = None,
        max_steps: int = 20,
    ) -> None:
        self.categories = _categories(categories)
        if limit is not None and int(limit) < 1:
            raise ValueError(f"limit must be at least 1 (or null for all), got {limit}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1 (or null), got {batch_size}")
        self.limit = None if limit is None else int(limit)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.max_steps = int(max_steps)
        self.worker = BfclWorker(root, python)
        self._items: dict[str, list[dict[str, Any]]] = {}

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"bfcl-eval {self.worker.versions['bfcl_eval']}"

    def items(self, category: str) -> list[dict[str, Any]]:
        """The items of one category: ``id``, ``turns``, ``tools``, ``gold`` (worker-made)."""
        if category not in self._items:
            self._items[category] = self.worker.request("data", category=category, limit=self.limit)
        return self._items[category]

    def ids(self) -> list[str]:
        return [it["id"] for c in self.categories for it in self.items(c)]

    def close(self) -> None:
        self.worker.close()

    # -- running -------------------------------------------------------------------------
    def run(self, backend: Backend, skip: set[str], emit: Emit) -> None:
        size = self.batch_size or backend.batch_size or 1
        single = [
            it
            for c in self.categories
            if c in SINGLE_TURN
            for it in self.items(c)
            if it["id"] not in skip
        ]
        for chunk in _chunks(single, size):
            self._run_single(chunk, backend, emit)
        multi = [
            it
            for c in self.categories
            if c in MULTI_TURN
            for it in self.items(c)
            if it["id"] not in skip
        ]
        for chunk in _chunks(multi, size):
            self._run_episodes(chunk, backend, emit)

    def _generate(self, backend: Backend, requests: list[Request]) -> list[Completion]:
        out = backend.generate(requests)
        if len(out) != len(requests):
            raise RuntimeError(
                f"backend {backend.name!r} returned {len(out)} completions for "
                f"{len(requests)} requests"
            )
        return out

    def _run_single(self, chunk: list[dict[str, Any]], backend: Backend, emit: Emit) -> None:
        requests = [
            Request(
                id=it["id"],
                messages=[dict(m) for m in it["turns"][0]],
                tools=it["tools"],
                gold=it.get("gold"),
                gold_text=it.get("gold_text"),
            )
            for it in chunk
        ]
        completions = self._generate(backend, requests)
        parsed = [None if c.error else c.parse() for c in completions]
        to_check = [
            {"id": it["id"], "calls": _calls(p), "parse_error": p.error}
            for it, p in zip(chunk, parsed)
            if p is not None
        ]
        results = iter(self.worker.request("check", items=to_check) if to_check else [])
        for it, req, comp, p in zip(chunk, requests, completions, parsed):
            category = it["category"]
            phash = prompt_hash(comp.prompt or [*req.messages, {"tools": req.tools}])
            if p is None:
                emit(
                    Verdict(
                        id=it["id"],
                        category=category,
                        valid=False,
                        error_type="backend_error",
                        detail=comp.error,
                        prompt_hash=phash,
                        raw=comp.text,
                    )
                )
                continue
            res = next(results)
            valid = bool(res.get("valid"))
            extra: dict[str, Any] = {}
            if res.get("error_type"):
                extra["bfcl_error_type"] = res["error_type"]
            if p.error:
                extra["parse_error"] = p.error
            if it.get("gold_issue"):
                extra["gold_issue"] = it["gold_issue"]  # no answer can pass (BFCL data)
            emit(
                Verdict(
                    id=it["id"],
                    category=category,
                    valid=valid,
                    error_type=None if valid else error_type(res, category, p),
                    detail=None if valid else _message(res.get("error")),
                    prompt_hash=phash,
                    raw=comp.text,
                    calls=_calls(p),
                    extra=extra,
                )
            )

    def _run_episodes(self, chunk: list[dict[str, Any]], backend: Backend, emit: Emit) -> None:
        episodes = [_Episode(it) for it in chunk]
        self.worker.request("episode_start", ids=[e.id for e in episodes])
        try:
            for e in episodes:
                e.next_turn()
            while active := [e for e in episodes if not e.done]:
                self._step(active, backend)
                for e in active:
                    if e.done:
                        emit(self._score_episode(e))
        finally:
            # An interrupted batch: free the episodes' backend state (best effort).
            left = [e.id for e in episodes if not e.done]
            if left and self.worker.running:
                with contextlib.suppress(BfclWorkerError):
                    self.worker.request("episode_end", ids=left)

    def _step(self, active: list[_Episode], backend: Backend) -> None:
        """One generation for every active episode; run the calls; advance turns."""
        requests = [e.request() for e in active]
        completions = self._generate(backend, requests)
        calling: list[tuple[_Episode, ParseResult]] = []
        for e, req, comp in zip(active, requests, completions):
            if e.prompt_hash is None:
                e.prompt_hash = prompt_hash(comp.prompt or [*req.messages, {"tools": req.tools}])
            if comp.error:
                e.backend_error, e.done = comp.error, True
                continue
            e.raw[-1].append(comp.text)
            p = comp.parse()
            if p.error:
                e.parse_errors.append(f"turn {e.turn} step {e.step}: {p.error}")
            if p.calls:
                calling.append((e, p))
                continue
            msg: dict[str, Any] = {"role": "assistant", "content": p.content or ""}
            if p.reasoning:
                msg["reasoning_content"] = p.reasoning
            e.messages.append(msg)
            e.next_turn()
        if not calling:
            return
        results = self.worker.request(
            "execute", items=[{"id": e.id, "calls": _calls(p)} for e, p in calling]
        )
        for (e, p), outputs in zip(calling, results):
            ids = [f"call_{uuid.uuid4().hex[:24]}" for _ in p.calls]
            msg = {
                "role": "assistant",
                "content": p.content or "",
                "tool_calls": [
                    {
                        "id": i,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for i, c in zip(ids, p.calls)
                ],
            }
            if p.reasoning:
                msg["reasoning_content"] = p.reasoning
            e.messages.append(msg)
            for i, c, out in zip(ids, p.calls, outputs):
                tool = {"role": "tool", "tool_call_id": i, "name": c.name, "content": out}
                e.messages.append(tool)
            e.steps[-1].append(_calls(p))
            e.step += 1
            if e.step > self.max_steps:
                # BFCL: more than MAXIMUM_STEP_LIMIT steps force-quits the whole entry.
                e.force_terminated, e.done = True, True

    def _score_episode(self, e: _Episode) -> Verdict:
        extra: dict[str, Any] = {
            "turns": len(e.steps),
            "steps": sum(len(t) for t in e.steps),
            "force_terminated": e.force_terminated,
        }
        base = {"id": e.id, "category": e.item["category"], "prompt_hash": e.prompt_hash}
        if e.backend_error:
            self.worker.request("episode_end", ids=[e.id])
            return Verdict(
                **base,
                valid=False,
                error_type="backend_error",
                detail=e.backend_error,
                raw=e.raw,
                calls=e.steps,
                extra=extra,
            )
        res = self.worker.request("multi_turn_check", id=e.id, turns=e.steps)
        valid = bool(res.get("valid"))
        if e.parse_errors:
            extra["parse_errors"] = e.parse_errors
        if not valid:
            extra["bfcl_error_type"] = res.get("error_type")
        etype = None
        if not valid:
            etype = "parse_error" if e.parse_errors else bfcl_error_type(res.get("error_type"))
        return Verdict(
            **base,
            valid=valid,
            error_type=etype,
            detail=None if valid else _message(res.get("error_message")),
            raw=e.raw,
            calls=e.steps,
            extra=extra,
        )

    # -- summary -------------------------------------------------------------------------
    def summarize(self, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
        """:func:`category_table` plus ``metrics``: BFCL's summary figures.

        ``metrics`` holds ``non_live_ast``, ``live_ast``, ``irrelevance``, ``relevance``,
        ``multi_turn`` and ``overall`` (each ``{accuracy, total_count, missing}``) where
        their categories were run, computed by BFCL's own helpers in the worker (formulas
        in :meth:`xlam.eval.bfcl_worker.Bfcl.aggregate`).
        """
        table = category_table(verdicts)
        scores = {
            c: {"accuracy": t["accuracy"], "total_count": t["n"]}
            for c, t in table["categories"].items()
            if c in CATEGORIES
        }
        table["metrics"] = self.worker.request("aggregate", scores=scores) if scores else {}
        return table


__all__ = [
    "CATEGORIES",
    "MULTI_TURN",
    "SINGLE_TURN",
    "BfclEnvMissing",
    "BfclSuite",
    "BfclWorker",
    "BfclWorkerError",
    "bfcl_error_type",
    "default_python",
    "error_type",
]
