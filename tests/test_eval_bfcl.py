"""The ``bfcl`` suite against BFCL's own data and checkers (``bfcl-eval`` in ``.venv-bfcl``).

Proofs that the chain is right: gold answers rendered by every fixture chat template, cut
at the supervised assistant span, decoded as the model emits them, parsed by our parser
and scored by BFCL's AST checker are all valid, and perturbed ones are not; multi-turn
gold trajectories driven through the suite's episode loop pass BFCL's multi-turn checker;
the oracle backend scores 100% and a backend that never calls scores 0% except on
irrelevance; garbage and failures are counted, never raised; BFCL's files stay in the
suite's root. BFCL runs from its own environment (``scripts/setup_eval_env.sh``).
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from xlam.data.render import Renderer, RenderError, RenderOptions
from xlam.eval.backends.oracle import ConstantBackend, OracleBackend
from xlam.eval.core import ERROR_TYPES, Backend, Completion, Request, Verdict
from xlam.eval.prompt import to_trajectory
from xlam.eval.suites.bfcl import (
    CATEGORIES,
    SINGLE_TURN,
    BfclEnvMissing,
    BfclSuite,
    BfclWorkerError,
    default_python,
    error_type,
)
from xlam.serving import parse_tool_calls

ROOT = Path(__file__).resolve().parents[1]
# How each fixture template is used: its own tool support where it has it (as in
# test_render_templates.py); parallel calls only where the renderer accepts them.
TOOL_FORMAT = {
    "qwen2_5": "template",
    "qwen3": "template",
    "llama3_1": "template",  # one call per turn only
    "deepseek_v3": "system",  # renders calls but ignores tools=
    "gpt_oss": "template",  # one call per turn only
    "llama3": "prompt",  # no tool support: the xLAM JSON-list prompt format
}


# The gpt-oss (harmony) template writes `", // default: " + default` for a parameter with
# an enum or oneOf: a non-string default raises. Such tools cannot be shown to that model.
def _gpt_oss_cannot_render(tools: list[dict]) -> bool:
    def bad(props: dict) -> bool:
        return any(
            isinstance(spec, dict)
            and (
                (
                    ("enum" in spec or "oneOf" in spec)
                    and not isinstance(spec.get("default", ""), str)
                )
                or bad(spec.get("properties", {}))
            )
            for spec in props.values()
        )

    return any(bad(t["function"]["parameters"].get("properties", {})) for t in tools)


PER_CATEGORY = 60  # round trip: items per category, evenly spread over its file
PERTURBED = 6  # perturbation: AST items per category and template


def _bfcl_python() -> Path:
    path = default_python()
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"no BFCL env at {path}: CI runs scripts/setup_eval_env.sh first")
        pytest.skip(f"no BFCL env at {path} (run scripts/setup_eval_env.sh)")
    return path


def _bfcl_default_roots() -> list[Path]:
    """Where BFCL puts result/ and score/ without BFCL_PROJECT_ROOT (the folder holding the
    bfcl_eval package), and the working directories."""
    venv = _bfcl_python().parents[1]
    return [*venv.glob("lib/python3*/site-packages"), ROOT, Path.cwd()]


def _stray(dirs: list[Path]) -> set[Path]:
    return {d / n for d in dirs for n in ("result", "score", ".file_locks") if (d / n).exists()}


@pytest.fixture(scope="module")
def stray_before() -> set[Path]:
    """BFCL folders outside any suite root before the module's worker starts."""
    return _stray(_bfcl_default_roots())


@pytest.fixture(scope="module")
def suite(tmp_path_factory, stray_before) -> BfclSuite:
    """Every category, every item; one worker for the module."""
    s = BfclSuite(root=tmp_path_factory.mktemp("run") / "bfcl")
    s.ids()
    yield s
    s.close()


@pytest.fixture(scope="module")
def items(suite) -> dict[str, list[dict[str, Any]]]:
    return {c: suite.items(c) for c in CATEGORIES}


class Recorder(Backend):
    """Wraps a backend and keeps every batch of requests it was given."""

    def __init__(self, inner: Backend, batch_size: int = 8) -> None:
        self.inner, self.batch_size, self.name = inner, batch_size, f"recorded-{inner.name}"
        self.batches: list[list[Request]] = []

    def generate(self, requests: list[Request]) -> list[Completion]:
        self.batches.append(requests)
        return self.inner.generate(requests)


class Scripted(Backend):
    """Answers each request with ``answer(request)`` (a text or a Completion)."""

    name = "scripted"

    def __init__(self, answer, batch_size: int = 16) -> None:
        self.answer, self.batch_size = answer, batch_size

    def generate(self, requests: list[Request]) -> list[Completion]:
        out = []
        for r in requests:
            a = self.answer(r)
            out.append(a if isinstance(a, Completion) else Completion(text=a))
        return out


def run(suite: BfclSuite, backend: Backend, only: set[str] | None = None) -> list[dict]:
    """Verdict dicts of ``suite.run`` over ``only`` (the rest skipped, as on resume)."""
    skip = set(suite.ids()) - only if only is not None else set()
    out: list[Verdict] = []
    suite.run(backend, skip, out.append)
    return [v.to_dict() for v in out]


def spread(rows: list[Any], n: int) -> list[Any]:
    """``n`` rows evenly spread over ``rows`` (all when fewer): a deterministic subset."""
    if len(rows) <= n:
        return list(rows)
    return [rows[(i * len(rows)) // n] for i in range(n)]


def first_ids(items: dict[str, list[dict]], n: int) -> set[str]:
    """The first ``n`` answerable items of each category."""
    return {it["id"] for c in CATEGORIES for it in items[c][:n] if not it.get("gold_issue")}


# ---------------------------------------------------------------------------------------
def test_unknown_category_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown BFCL category") as e:
        BfclSuite(categories=["simple_python", "simple_cobol"])
    for c in CATEGORIES:
        assert c in str(e.value)
    with pytest.raises(ValueError, match="limit"):
        BfclSuite(limit=0)
    assert BfclSuite(categories="multiple, parallel").categories == ["multiple", "parallel"]


def test_missing_env_is_a_clear_error(tmp_path):
    s = BfclSuite(categories=["multiple"], root=tmp_path, python=str(tmp_path / "no" / "python"))
    with pytest.raises(BfclEnvMissing, match=r"setup_eval_env\.sh"):
        s.ids()


def test_worker_errors_carry_the_reason(suite):
    with pytest.raises(BfclWorkerError, match="unknown BFCL category 'simple_cobol'; valid:"):
        suite.worker.request("data", category="simple_cobol")
    with pytest.raises(BfclWorkerError, match="unknown item id"):
        suite.worker.request("execute", items=[{"id": "nope", "calls": []}])
    # The worker survives its errors.
    assert suite.version.startswith("bfcl-eval 2026.")


# ---------------------------------------------------------------------------------------
def _assistant(calls: list[dict] | None, text: str | None) -> dict:
    if not calls:
        return {"role": "assistant", "content": text or ""}
    tool_calls = [
        {"id": f"call_{k}", "type": "function", "function": dict(c)} for k, c in enumerate(calls)
    ]
    return {"role": "assistant", "content": "", "tool_calls": tool_calls}


def _emitted(renderer: Renderer, tok, item: dict, calls: list[dict] | None) -> str:
    """The supervised span of the answer turn, decoded with its special tokens."""
    msgs = [*item["turns"][0], _assistant(calls, item.get("gold_text"))]
    (sample,) = renderer.render(to_trajectory(msgs, item["tools"], item["id"]))[-1:]
    a, b = sample.spans[-1]
    return tok.decode(sample.input_ids[a:b], skip_special_tokens=False)


def _check(suite: BfclSuite, rows: list[tuple[dict, str]]) -> list[tuple[dict, Any, dict]]:
    """(item, parse result, BFCL result) for texts scored by the worker."""
    parsed = [parse_tool_calls(text) for _, text in rows]
    req = [
        {
            "id": it["id"],
            "calls": [{"name": c.name, "arguments": c.arguments} for c in p.calls],
            "parse_error": p.error,
        }
        for (it, _), p in zip(rows, parsed)
    ]
    res = suite.worker.request("check", items=req)
    return [(it, p, r) for (it, _), p, r in zip(rows, parsed, res)]


def _perturb(item: dict, how: str) -> list[dict] | None:
    """The gold with one argument's value changed, or one required argument dropped."""
    gold = copy.deepcopy(item["gold"])
    args = gold[0]["arguments"]
    if how == "wrong_value":
        scalars = [k for k, v in args.items() if isinstance(v, (str, int, float))]
        # A flipped boolean may be another candidate; prefer strings and numbers.
        keys = [k for k in scalars if not isinstance(args[k], bool)] or scalars
        if not keys:
            return None
        v = args[keys[0]]
        if isinstance(v, bool):
            args[keys[0]] = not v
        elif isinstance(v, str):
            args[keys[0]] = v + " zq"
        else:
            args[keys[0]] = v + 1000003
        return gold
    tool = next(t["function"] for t in item["tools"] if t["function"]["name"] == gold[0]["name"])
    required = [p for p in tool["parameters"].get("required", []) if p in args]
    if not required:
        return None
    del args[required[0]]
    return gold


@pytest.mark.parametrize("name", list(TOOL_FORMAT))
def test_round_trip_through_templates(suite, items, shared_fixtures, name):
    """Gold answers → template → supervised span → our parser → BFCL's checker: all valid."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_fixtures / "tokenizers" / name)
    renderer = Renderer(tok, RenderOptions(tool_format=TOOL_FORMAT[name], strict=True))
    parallel = renderer.tool_format == "prompt" or renderer.capabilities.parallel_calls
    rows, perturbed, covered, refused = [], [], Counter(), 0
    for cat in SINGLE_TURN:
        answerable = [it for it in items[cat] if not it.get("gold_issue")]
        for it in spread(answerable, PER_CATEGORY):
            if it["gold"] and len(it["gold"]) > 1 and not parallel:
                continue  # the template cannot show this call shape
            if name == "gpt_oss" and _gpt_oss_cannot_render(it["tools"]):
                with pytest.raises(RenderError) as e:
                    _emitted(renderer, tok, it, it["gold"])
                assert e.value.kind == "template_error"
                refused += 1
                continue
            rows.append((it, _emitted(renderer, tok, it, it["gold"])))
            covered[cat] += 1
            if it["gold"] and cat not in ("live_relevance",) and covered[cat] <= PERTURBED:
                for how in ("wrong_value", "missing_argument"):
                    bad = _perturb(it, how)
                    if bad is not None:
                        perturbed.append((how, it, _emitted(renderer, tok, it, bad)))
    # Every category is covered, except the parallel ones on single-call templates.
    multi_call = {"parallel", "parallel_multiple", "live_parallel", "live_parallel_multiple"}
    want = set(SINGLE_TURN) if parallel else set(SINGLE_TURN) - multi_call
    assert set(covered) == want
    assert refused < len(rows) / 10

    failed = [(it["id"], p.error, r) for it, p, r in _check(suite, rows) if not r["valid"]]
    assert not failed, failed[:5]

    results = _check(suite, [(it, text) for _, it, text in perturbed])
    kinds = Counter(how for how, _, _ in perturbed)
    assert kinds["wrong_value"] >= 20 and kinds["missing_argument"] >= 20, kinds
    for (how, it, text), (_, p, r) in zip(perturbed, results):
        assert p.error is None, (it["id"], text)
        assert not r["valid"], (how, it["id"], text)
        assert error_type(r, it["category"], p) == how, (how, it["id"], r)


# ---------------------------------------------------------------------------------------
def test_oracle_100_and_never_calling_0(suite, items):
    """Through BfclSuite.run: the oracle passes every item, a backend that never calls only
    irrelevance; BFCL's summary figures follow."""
    only = first_ids(items, 12)
    oracle = run(suite, OracleBackend(batch_size=32), only)
    assert {v["id"] for v in oracle} == only
    assert [v["id"] for v in oracle if not v["valid"]] == []
    summary = suite.summarize(oracle)
    assert summary["accuracy"] == 1.0 and set(summary["categories"]) == set(CATEGORIES)
    metrics = summary["metrics"]
    assert set(metrics) == {
        "non_live_ast",
        "live_ast",
        "irrelevance",
        "relevance",
        "multi_turn",
        "overall",
    }
    assert all(m["accuracy"] == 1.0 for m in metrics.values())
    assert "agentic" in metrics["overall"]["missing"]

    never = run(suite, ConstantBackend(batch_size=32), only)
    table = suite.summarize(never)
    for cat, row in table["categories"].items():
        if cat in ("irrelevance", "live_irrelevance"):
            assert row["accuracy"] == 1.0, cat
        else:
            assert row["accuracy"] == 0.0 and set(row["errors"]) == {"missed_call"}, cat
    m = table["metrics"]
    assert m["irrelevance"]["accuracy"] == 1.0 and m["relevance"]["accuracy"] == 0.0
    assert m["non_live_ast"]["accuracy"] == m["live_ast"]["accuracy"] == 0.0
    # BFCL's weights: non-live, live, irrelevance, multi-turn = 10/10/10/30 (agentic absent).
    assert m["overall"]["accuracy"] == pytest.approx(10 / 60)


def test_unanswerable_gold_is_flagged_not_hidden(suite, items):
    """A few BFCL possible answers contradict their function doc: flagged, and failed by
    the checker as BFCL fails them (the oracle passes everything else: round trip)."""
    flagged = {it["id"] for c in SINGLE_TURN for it in items[c] if it.get("gold_issue")}
    total = sum(len(items[c]) for c in SINGLE_TURN)
    assert 0 < len(flagged) < 0.005 * total
    verdicts = run(suite, OracleBackend(), flagged)
    assert all(not v["valid"] and v["extra"]["gold_issue"] for v in verdicts)


def test_multi_turn_episodes_pass_bfcl_checker(tmp_path):
    """multi_turn_base gold trajectories driven through the episode loop: 100%."""
    _bfcl_python()
    mt = BfclSuite(categories=["multi_turn_base"], limit=8, root=tmp_path / "bfcl")
    try:
        assert len(mt.ids()) == 8
        rec = Recorder(OracleBackend(), batch_size=4)
        verdicts = run(mt, rec)
        assert [v["id"] for v in verdicts if not v["valid"]] == []
        assert len(verdicts) == 8
        by_id = {it["id"]: it for it in mt.items("multi_turn_base")}
        for v in verdicts:
            turns = by_id[v["id"]]["turns"]
            assert v["extra"]["turns"] == len(turns) and not v["extra"]["force_terminated"]
            assert all(turn for turn in v["calls"])  # every turn made its calls
        # Lockstep: each backend call carries one step of every active episode.
        assert max(len(b) for b in rec.batches) == 4
        # Calls were executed by BFCL's backends and fed back as tool messages.
        second = next(r for b in rec.batches for r in b if r.id.endswith("#0.1"))
        call_msg = next(m for m in reversed(second.messages) if m.get("tool_calls"))
        results = second.messages[second.messages.index(call_msg) + 1 :]
        assert [m["tool_call_id"] for m in results] == [c["id"] for c in call_msg["tool_calls"]]
        assert all(m["role"] == "tool" and m["content"] for m in results)
        assert not any(m["content"].startswith("Error during execution") for m in results)

        never = run(mt, ConstantBackend())
        assert {v["error_type"] for v in never} == {"missed_call"}

        # An interrupted run (the backend raises in turn 1) leaves no state behind either.
        def crash(r: Request) -> str:
            if "#1." in r.id:
                raise RuntimeError("backend crashed")
            return OracleBackend().generate([r])[0].text

        with pytest.raises(RuntimeError, match="backend crashed"):
            run(mt, Scripted(crash, batch_size=8))
        # Backend state is per episode and fresh each run: the oracle scores the same again.
        again = run(mt, OracleBackend(batch_size=3))
        assert [v["id"] for v in again if not v["valid"]] == []

        # A model that keeps calling is stopped after max_steps calling steps per turn.
        mt.max_steps = 2
        first = {i: it["gold"][0][:1] for i, it in by_id.items()}
        looping = Scripted(lambda r: json.dumps(first[r.id.split("#")[0]]))
        stuck = run(mt, looping, {"multi_turn_base_0"})
        (v,) = stuck
        assert not v["valid"] and v["extra"]["force_terminated"]
        assert v["error_type"] == "wrong_count" and len(v["calls"][-1]) == mt.max_steps + 1
    finally:
        mt.close()


def test_garbage_outputs_are_counted_parse_errors(suite, items):
    only = first_ids(items, 3)
    garbage = [
        '[{"name": "f", "arguments": {"a": 1',  # truncated call
        '<tool_call>\n{"name": "f", "arguments": {"a": ',
        '{"name": "f", "arguments": "{not json"}',
        '[{"name": "f", "arguments": [1, 2]}]',
    ]
    seen: Counter = Counter()

    def answer(r: Request) -> str | Completion:
        k = seen[r.id.split("#")[0]]
        seen[r.id.split("#")[0]] += 1
        if r.id.startswith("live_multiple") and k == 0:
            return Completion(error="HTTP 500 after 3 retries")
        if k > 0:
            return "I give up."
        return garbage[len(seen) % len(garbage)]

    verdicts = run(suite, Scripted(answer), only)
    assert len(verdicts) == len(only)
    by_cat: dict[str, Counter] = {}
    for v in verdicts:
        assert v["error_type"] in ERROR_TYPES or v["valid"]
        by_cat.setdefault(v["category"], Counter())[v["error_type"]] += 1
    assert by_cat["live_multiple"] == {"backend_error": 3}
    for cat in SINGLE_TURN:
        if cat in ("irrelevance", "live_irrelevance"):
            # BFCL: output that does not decode is no call, which is right here.
            assert by_cat[cat] == {None: 3}, cat
        elif cat != "live_multiple":
            assert by_cat[cat] == {"parse_error": 3}, (cat, by_cat[cat])
    assert by_cat["multi_turn_base"] == {"parse_error": 3}
    mt = [v for v in verdicts if v["category"] == "multi_turn_base"]
    assert all(v["extra"]["parse_errors"] for v in mt)

    # A Python-literal call (Hermes style) with values JSON has no form for: no tool API
    # could carry it (the OpenAI response could not even be written), so it does not parse.
    odd = "<tool_call>{'name': 'f', 'arguments': {'a': {1, 2}, 'b': b'x'}}</tool_call>"
    (v,) = run(suite, Scripted(lambda r: odd), {items["simple_python"][0]["id"]})
    assert v["error_type"] == "parse_error"
    json.dumps(v)  # the verdict can be written


def test_bfcl_files_stay_in_root(suite, stray_before):
    assert _stray(_bfcl_default_roots()) == stray_before
    root = suite.worker.root
    assert (root / "result").is_dir() and (root / "score").is_dir()
    assert (root / "worker.log").is_file()
