"""BFCL's data and checkers behind a JSON-lines protocol, run in BFCL's own environment.

Standalone: only the standard library and ``bfcl_eval`` (``.venv-bfcl/bin/python``, made by
``scripts/setup_eval_env.sh``), never ``xlam``. :class:`xlam.eval.suites.bfcl.BfclWorker`
starts it and talks to it: one JSON request per line on stdin, one JSON reply per line on
stdout (``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ..., "traceback": ...}``).

Operations (``{"op": NAME, ...}``):

- ``version``: package versions and the checker's model name.
- ``data`` (``category``, ``limit``): the items of a category as requests need them
  (messages, OpenAI tools, one gold answer); the BFCL entries stay here for checking.
- ``check`` (``items``: ``[{"id", "calls", "parse_error"}]``): single-turn verdicts by
  BFCL's ``ast_checker`` (and its relevance rule for ``irrelevance``/``live_relevance``).
- ``episode_start``/``execute``/``episode_end``: a multi-turn episode's calls run by BFCL's
  ``execute_multi_turn_func_call`` against its simulated backends, state kept per episode.
- ``multi_turn_check`` (``id``, ``turns``): BFCL's ``multi_turn_checker`` on the calls.
- ``aggregate`` (``scores``): BFCL's summary figures from per-category accuracies.

Everything BFCL writes lands under ``--root`` (``BFCL_PROJECT_ROOT``, set before
``bfcl_eval`` is imported; the working directory too). Whatever BFCL prints goes to
stderr: replies use a duplicate of the original stdout, and fd 1 is pointed at stderr.

Tool names: BFCL names like ``math.factorial`` are shown to the model as ``math_factorial``
(BFCL's ``convert_to_tool`` for OpenAI models: OpenAI-compatible APIs only accept
``^[a-zA-Z0-9_-]{1,64}$``). The AST checker is therefore given the registry model
:data:`CHECKER_MODEL`, whose ``underscore_to_dot`` tells it to expect exactly those names.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import keyword
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent

# A BFCL registry entry with underscore_to_dot=True: function names are presented with "_"
# for ".", as BFCL does for OpenAI models (checked at start-up).
CHECKER_MODEL = "gpt-4o-2024-11-20-FC"
# The model name under which an episode's backends are kept (BFCL keys them by name + id).
EPISODE_MODEL = "xlam_episode"
SINGLE_TURN = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
    "live_relevance",
)
MULTI_TURN = ("multi_turn_base",)
CATEGORIES = SINGLE_TURN + MULTI_TURN
# Categories without possible answers: scored by whether a call was made.
RELEVANCE = ("irrelevance", "live_irrelevance", "live_relevance")
IRRELEVANCE_TEXT = "None of the available functions can do that."


class WorkerError(Exception):
    """A request the worker cannot serve (bad input); reported, the worker keeps running."""


# ---------------------------------------------------------------------------------------
class Bfcl:
    """The loaded BFCL modules and the entries served so far."""

    def __init__(self) -> None:
        from bfcl_eval.constants.enums import ModelStyle
        from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING
        from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
        from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils
        from bfcl_eval.model_handler.utils import convert_to_tool
        from bfcl_eval.utils import load_dataset_entry, load_ground_truth_entry

        self.load_dataset_entry = load_dataset_entry
        self.load_ground_truth_entry = load_ground_truth_entry
        self.convert_to_tool = convert_to_tool
        self.openai_types = GORILLA_TO_OPENAPI
        self.openai_style = ModelStyle.OPENAI_COMPLETIONS
        self.class_modules = CLASS_FILE_PATH_MAPPING
        self.mt_utils = multi_turn_utils
        self.entries: dict[str, dict[str, Any]] = {}
        self._methods: dict[tuple[str, ...], set[str]] = {}
        self._checkers: dict[str, Any] | None = None

    # -- checkers: imported on first use (the AST checker imports every model handler) --
    @property
    def checkers(self) -> dict[str, Any]:
        if self._checkers is None:
            from bfcl_eval.constants.enums import Language
            from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING
            from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
            from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import (
                multi_turn_checker,
            )
            from bfcl_eval.utils import is_empty_output, is_function_calling_format_output

            config = MODEL_CONFIG_MAPPING[CHECKER_MODEL.replace("_", "/")]
            if not config.underscore_to_dot:
                raise WorkerError(
                    f"BFCL model {CHECKER_MODEL!r} no longer maps '_' back to '.'; "
                    "pick another registry entry with underscore_to_dot=True"
                )
            self._checkers = {
                "ast": ast_checker,
                "multi_turn": multi_turn_checker,
                "python": Language.PYTHON,
                "is_empty": is_empty_output,
                "is_fc_format": is_function_calling_format_output,
            }
        return self._checkers

    # -- data ----------------------------------------------------------------------------
    def data(self, category: str, limit: int | None) -> list[dict[str, Any]]:
        if category not in CATEGORIES:
            raise WorkerError(f"unknown BFCL category {category!r}; valid: {', '.join(CATEGORIES)}")
        entries = self.load_dataset_entry(category)
        if limit is not None:
            entries = entries[:limit]
        answers: dict[str, Any] = {}
        if category not in RELEVANCE:
            answers = {a["id"]: a["ground_truth"] for a in self.load_ground_truth_entry(category)}
        items = []
        for e in entries:
            e["category"] = category
            if category not in RELEVANCE:
                if e["id"] not in answers:
                    raise WorkerError(f"{category}: no possible answer for {e['id']!r}")
                e["possible_answer"] = answers[e["id"]]
            self.entries[e["id"]] = e
            items.append(self._item(e))
        return items

    def _item(self, e: dict[str, Any]) -> dict[str, Any]:
        category = e["category"]
        item: dict[str, Any] = {
            "id": e["id"],
            "category": category,
            "turns": e["question"],
            "tools": self.convert_to_tool(e["function"], self.openai_types, self.openai_style),
        }
        if category in MULTI_TURN:
            item["gold"] = [
                [self._parse_gold_call(e, s) for s in turn] for turn in e["possible_answer"]
            ]
        elif category in ("irrelevance", "live_irrelevance"):
            item["gold"], item["gold_text"] = None, IRRELEVANCE_TEXT
        elif category == "live_relevance":
            item["gold"] = [_some_call(e["function"][0])]
        else:
            docs = {f["name"]: f["parameters"] for f in e["function"]}
            item["gold"], issues = [], []
            for call in e["possible_answer"]:
                for name, params in call.items():
                    args, issue = _gold_arguments(name, params, docs.get(name))
                    item["gold"].append({"name": presented_name(name), "arguments": args})
                    issues += issue
            if issues:
                item["gold_issue"] = "; ".join(issues)
        return item

    def _parse_gold_call(self, e: dict[str, Any], text: str) -> dict[str, Any]:
        """A ground-truth call string (``sort('a.pdf')``) as name and keyword arguments."""
        node = ast.parse(text, mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise WorkerError(f"{e['id']}: ground truth {text!r} is not a plain call")
        name = node.func.id
        args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        if node.args:
            params = self._signature(e, name)
            for p, a in zip(params, node.args):
                args[p] = ast.literal_eval(a)
        return {"name": name, "arguments": args}

    def _classes(self, e: dict[str, Any]) -> list[type]:
        """The backend classes of a multi-turn entry."""
        return [
            getattr(importlib.import_module(self.class_modules[name]), name)
            for name in e["involved_classes"]
        ]

    def _signature(self, e: dict[str, Any], name: str) -> list[str]:
        for cls in self._classes(e):
            method = getattr(cls, name, None)
            if method is not None:
                return [p for p in inspect.signature(method).parameters if p != "self"]
        raise WorkerError(f"{e['id']}: ground-truth function {name!r} is in no involved class")

    def _entry(self, item_id: str) -> dict[str, Any]:
        try:
            return self.entries[item_id]
        except KeyError:
            raise WorkerError(f"unknown item id {item_id!r} (load its category first)") from None

    # -- single-turn ---------------------------------------------------------------------
    def check(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        checkers = self.checkers  # a checker that cannot load fails the request, not items
        return [self._check_one(it, checkers) for it in items]

    def _check_one(self, it: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
        try:
            e = self._entry(it["id"])
            category = e["category"]
            decoded = None if it.get("parse_error") else _decoded(it.get("calls") or [])
            if category in RELEVANCE:
                # BFCL: a failed decode, or an empty decode, is "no function call".
                called = decoded is not None and not c["is_empty"](decoded)
                if "irrelevance" in category:
                    if not called:
                        return {"valid": True}
                    return {
                        "valid": False,
                        "error": ["Valid syntax. Successfully decode AST when it should not."],
                        "error_type": "irrelevance_error:decoder_success",
                    }
                if called:
                    return {"valid": True}
                return {
                    "valid": False,
                    "error": [
                        "Invalid syntax. Failed to decode AST when it should have. "
                        + (it.get("parse_error") or "")
                    ],
                    "error_type": "relevance_error:decoder_failed",
                }
            if decoded is None:
                return {
                    "valid": False,
                    "error": [f"Invalid syntax. Failed to decode AST. {it['parse_error']}"],
                    "error_type": "ast_decoder:decoder_failed",
                }
            if not c["is_fc_format"](decoded):
                return {
                    "valid": False,
                    "error": ["Did not output in the specified format."],
                    "error_type": "ast_decoder:decoder_wrong_output_format",
                }
            result = c["ast"](
                e["function"], decoded, e["possible_answer"], c["python"], category, CHECKER_MODEL
            )
            return _jsonable(result)
        except Exception as ex:  # one bad item must not stop the batch
            return {
                "valid": False,
                "error": [f"{type(ex).__name__}: {ex}"],
                "error_type": "checker_error",
            }

    # -- multi-turn ----------------------------------------------------------------------
    def _instance_names(self, e: dict[str, Any]) -> list[str]:
        """The globals under which BFCL keeps this entry's backend instances."""
        names = []
        for model in (EPISODE_MODEL, f"{CHECKER_MODEL}_eval", f"{CHECKER_MODEL}_ground_truth_eval"):
            for cls in e["involved_classes"]:
                names.append(re.sub(r"[-./:]", "_", f"{model}_{e['id']}_{cls}_instance"))
        return names

    def episode_end(self, ids: list[str]) -> None:
        """Drop the episodes' backend state (BFCL would reuse it for the same id)."""
        store = vars(self.mt_utils)
        for item_id in ids:
            for name in self._instance_names(self._entry(item_id)):
                store.pop(name, None)

    def episode_start(self, ids: list[str]) -> None:
        """Fresh backends, in their initial state, for each episode."""
        self.episode_end(ids)
        for item_id in ids:
            self._execute(self._entry(item_id), [], EPISODE_MODEL, False)

    def _execute(self, e: dict[str, Any], calls: list[str], model: str, is_eval: bool) -> list[str]:
        results, _ = self.mt_utils.execute_multi_turn_func_call(
            func_call_list=calls,
            initial_config=e.get("initial_config", {}),
            involved_classes=e["involved_classes"],
            model_name=model,
            test_entry_id=e["id"],
            long_context="long_context" in e["category"] or "composite" in e["category"],
            is_evaL_run=is_eval,
        )
        return [str(r) for r in results]

    def methods(self, e: dict[str, Any]) -> set[str]:
        """Public method names of the entry's backends: the functions a model may call."""
        key = tuple(e["involved_classes"])
        if key not in self._methods:
            self._methods[key] = {
                n
                for cls in self._classes(e)
                for n, _ in inspect.getmembers(cls, inspect.isfunction)
                if not n.startswith("_")
            }
        return self._methods[key]

    def execute(self, items: list[dict[str, Any]]) -> list[list[str]]:
        """Run each item's calls in order on its episode's backends; one result per call."""
        out = []
        for it in items:
            e = self._entry(it["id"])
            methods = self.methods(e)
            strings = [call_string(c, methods) for c in it["calls"]]
            ran = iter(self._execute(e, [s for s in strings if s], EPISODE_MODEL, False))
            out.append([next(ran) if s else _undefined(c) for s, c in zip(strings, it["calls"])])
        return out

    def multi_turn_check(self, item_id: str, turns: list[list[list[dict]]]) -> dict[str, Any]:
        """BFCL's verdict on an episode: ``turns`` holds, per turn, the steps with calls."""
        e = self._entry(item_id)
        gold = e["possible_answer"]
        try:
            if len(turns) != len(gold):
                # As BFCL's eval runner: a turn count short of the gold means force-quit.
                return {
                    "valid": False,
                    "error_message": [
                        "Model was force-terminated during inference phase. The length of "
                        f"the model result turns ({len(turns)}) does not match the length "
                        f"of the ground truth turns ({len(gold)})."
                    ],
                    "error_type": "multi_turn:force_terminated",
                }
            # Calls that cannot be evaluated change nothing; BFCL's executor would only
            # record an error for them, which the checker never requires.
            methods = self.methods(e)
            decoded = []
            for turn in turns:
                steps = [[call_string(c, methods) for c in step] for step in turn]
                decoded.append([[s for s in step if s] for step in steps if any(step)])
            entry = {k: v for k, v in e.items() if k != "function"}
            result = self.checkers["multi_turn"](decoded, gold, entry, e["category"], CHECKER_MODEL)
            result.pop("details", None)  # executions, states: large and in items.jsonl anyway
            result.pop("execution_result", None)
            return _jsonable(result)
        except Exception as ex:
            return {
                "valid": False,
                "error_message": f"{type(ex).__name__}: {ex}",
                "error_type": "checker_error",
            }
        finally:
            self.episode_end([item_id])

    # -- summary figures -----------------------------------------------------------------
    def aggregate(self, scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """BFCL's summary figures (its ``generate_leaderboard_csv``) from category scores.

        ``scores`` maps a category to ``{"accuracy", "total_count"}``. The formulas and
        helpers are BFCL's: non-live AST = unweighted mean of simple (itself the mean of
        python/java/javascript), multiple, parallel, parallel_multiple; live AST = mean
        weighted by item count of the four live AST categories; irrelevance = unweighted
        mean of irrelevance and live_irrelevance; relevance = live_relevance; multi-turn =
        unweighted mean of the four multi-turn categories; overall = non-live, live,
        irrelevance, multi-turn and agentic weighted 10/10/10/30/40. BFCL counts a category
        that was not run as 0; here a figure covers the categories run (weights
        renormalised) and lists the others under ``missing``.
        """
        from bfcl_eval.eval_checker.eval_runner_helper import (
            calculate_percentage_weighted_accuracy,
            calculate_unweighted_accuracy,
            calculate_weighted_accuracy,
        )

        figures: dict[str, dict[str, Any]] = {}
        for cat, s in scores.items():
            if s.get("total_count"):
                figures[cat] = {
                    "accuracy": s["accuracy"],
                    "total_count": s["total_count"],
                    "display_accuracy": s["accuracy"],
                    "missing": [],
                }

        def combine(name: str, fn: Any, parts: list[str], *weights: list[float]) -> None:
            kept = [(p, figures[p]) for p in parts if p in figures]
            missing = [m for p in parts for m in figures.get(p, {"missing": [p]})["missing"]]
            if not kept:
                return
            args = [[f for _, f in kept]]
            if weights:
                w = dict(zip(parts, weights[0]))
                args.append([w[p] for p, _ in kept])
            res = fn(*args, display_na_if_category_missing=False)
            figures[name] = {
                "accuracy": res["accuracy"],
                "total_count": res["total_count"],
                "display_accuracy": res["accuracy"],
                "missing": missing,
            }

        u, w = calculate_unweighted_accuracy, calculate_weighted_accuracy
        combine("simple_ast", u, ["simple_python", "simple_java", "simple_javascript"])
        combine("non_live_ast", u, ["simple_ast", "multiple", "parallel", "parallel_multiple"])
        live = ["live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]
        combine("live_ast", w, live)
        combine("irrelevance_all", u, ["irrelevance", "live_irrelevance"])
        combine("relevance_all", u, ["live_relevance"])
        multi = ["multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param"]
        combine("multi_turn", u, [*multi, "multi_turn_long_context"])
        combine(
            "overall",
            calculate_percentage_weighted_accuracy,
            ["non_live_ast", "live_ast", "irrelevance_all", "multi_turn", "agentic"],
            [10, 10, 10, 30, 40],
        )
        names = {
            "non_live_ast": "non_live_ast",
            "live_ast": "live_ast",
            "irrelevance_all": "irrelevance",
            "relevance_all": "relevance",
            "multi_turn": "multi_turn",
            "overall": "overall",
        }
        return {
            out: {k: figures[f][k] for k in ("accuracy", "total_count", "missing")}
            for f, out in names.items()
            if f in figures
        }


# ---------------------------------------------------------------------------------------
def presented_name(name: str) -> str:
    """The tool name the model sees (BFCL's ``convert_to_tool`` for OpenAI models)."""
    return re.sub(r"\.", "_", name)


def _first_candidates(
    params: dict[str, list[Any]], declared: dict[str, Any] | None = None, nested: bool = False
) -> dict[str, Any]:
    """One gold argument set: the first given candidate of every parameter, at every level.

    ``""`` among the candidates means the argument may be omitted. It is omitted when it
    has no other candidate, or when the function (``declared``: its parameter properties)
    does not declare it: a few possible answers list such an argument, which BFCL's checker
    would reject.
    """
    out = {}
    for key, candidates in params.items():
        given = [c for c in candidates if c != ""]
        if not given or (declared is not None and key not in declared and "" in candidates):
            continue
        out[key] = given[0] if nested else _first_value(given[0])
    return out


def _first_value(value: Any) -> Any:
    # As BFCL's dict_checker and list_dict_checker read a candidate: a dict maps its keys
    # to candidate lists of plain values; a list holds plain values or such dicts.
    if isinstance(value, dict):
        return _first_candidates(value, nested=True)
    if isinstance(value, list):
        return [_first_value(v) if isinstance(v, dict) else v for v in value]
    return value


def _gold_arguments(
    name: str, params: dict[str, list[Any]], doc: dict[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """A gold call's arguments, and why no answer can pass BFCL's checker (if so).

    A few possible answers contradict their function doc; BFCL's checker, as read in its
    source, then rejects every answer: a required parameter without a usable candidate,
    or a parameter the answer demands (no ``""``) that the function does not declare.
    """
    if doc is None:
        return _first_candidates(params), [f"{name}: not among the item's functions"]
    props = doc.get("properties", {})
    args = _first_candidates(params, props)
    issues = []
    for p in doc.get("required", []):
        cands = params.get(p)
        if p in args:
            continue
        if cands == [""] and props.get(p, {}).get("type") == "string":
            args[p] = ""  # required, and "" is its only candidate: the empty string passes
        elif cands is None:
            issues.append(f"{name}: required {p!r} is not in the possible answer")
        else:
            issues.append(f"{name}: required {p!r} has no usable candidate ({cands!r})")
    for p, cands in params.items():
        if p not in props and "" not in cands:
            issues.append(f"{name}: the possible answer demands {p!r}, which is not a parameter")
    return args, issues


_PLACEHOLDER = {"string": "x", "integer": 1, "float": 1.0, "boolean": True, "array": [], "dict": {}}


def _some_call(function: dict[str, Any]) -> dict[str, Any]:
    """A call of ``function`` (live_relevance has no gold: any call counts)."""
    props = function["parameters"].get("properties", {})
    args = {}
    for p in function["parameters"].get("required", []):
        spec = props.get(p, {})
        args[p] = spec["enum"][0] if spec.get("enum") else _PLACEHOLDER.get(spec.get("type"), "x")
    return {"name": presented_name(function["name"]), "arguments": args}


def _decoded(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parsed calls in BFCL's decoded-AST form ``[{name: {arg: value}}]``."""
    return [{c["name"]: c.get("arguments") or {}} for c in calls]


def call_string(call: dict[str, Any], methods: set[str]) -> str | None:
    """A call as BFCL's ``convert_to_function_call`` writes it, for its executor's ``eval``.

    BFCL evaluates that string. A name that is not a method of the episode's backends, or
    an argument name that is not a plain identifier, could run other code (``open(...)``,
    an injected expression), so such a call gives ``None``: it is not evaluated.
    """
    name, args = call.get("name"), call.get("arguments") or {}
    if not (
        isinstance(name, str)
        and name in methods
        and isinstance(args, dict)
        and all(k.isidentifier() and not keyword.iskeyword(k) for k in args)
    ):
        return None
    return f"{name}({','.join(f'{k}={v!r}' for k, v in args.items())})"


def _undefined(call: dict[str, Any]) -> str:
    """What BFCL's executor answers for a call it cannot evaluate."""
    return f"Error during execution: name {str(call.get('name'))!r} is not defined"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ---------------------------------------------------------------------------------------
def serve(root: Path) -> None:
    """Answer requests from stdin until EOF or ``shutdown``."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything BFCL (or C code) prints goes to stderr
    sys.stdout = sys.stderr
    bfcl = Bfcl()
    handlers = {
        "version": lambda r: _versions(),
        "data": lambda r: bfcl.data(r["category"], r.get("limit")),
        "check": lambda r: bfcl.check(r["items"]),
        "episode_start": lambda r: bfcl.episode_start(r["ids"]),
        "execute": lambda r: bfcl.execute(r["items"]),
        "episode_end": lambda r: bfcl.episode_end(r["ids"]),
        "multi_turn_check": lambda r: bfcl.multi_turn_check(r["id"], r["turns"]),
        "aggregate": lambda r: bfcl.aggregate(r["scores"]),
        "warmup": lambda r: sorted(bfcl.checkers),
    }
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "shutdown":
                out.write(json.dumps({"ok": True, "result": None}) + "\n")
                out.flush()
                return
            if op not in handlers:
                raise WorkerError(f"unknown op {op!r}; known: {', '.join(sorted(handlers))}")
            reply = {"ok": True, "result": handlers[op](req)}
        except Exception as ex:
            reply = {
                "ok": False,
                "error": f"{type(ex).__name__}: {ex}",
                "traceback": traceback.format_exc(),
            }
        out.write(json.dumps(reply, ensure_ascii=False, default=str) + "\n")
        out.flush()


def _versions() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "bfcl_eval": version("bfcl-eval"),
        "python": sys.version.split()[0],
        "checker_model": CHECKER_MODEL,
        "categories": list(CATEGORIES),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="BFCL_PROJECT_ROOT: where BFCL writes")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["BFCL_PROJECT_ROOT"] = str(root)  # before bfcl_eval is imported
    os.chdir(root)
    serve(root)


if __name__ == "__main__":
    # Run as a script, its folder (xlam/eval) is first on sys.path: its modules must not
    # shadow BFCL's dependencies. (Imported by the suite for its constants, it changes nothing.)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]
    main()
