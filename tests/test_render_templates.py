"""The renderer on every real chat template in the shared fixtures.

For each tokenizer, trajectory and mode the expected supervised spans are computed here
independently, by string operations on ``apply_chat_template`` outputs, and compared with
the decoded supervised tokens of the renderer. Known template quirks are listed in
``EXPECTED_ERRORS`` and must be refused with the right problem kind.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from xlam.data.render import (
    IGNORE_INDEX,
    Renderer,
    RenderOptions,
    prompt_mode_messages,
    system_mode_messages,
)
from xlam.data.schema import Trajectory
from xlam.serving.parser import parse_tool_calls

TOKENIZERS = ["tiny", "qwen2_5", "qwen3", "llama3", "llama3_1", "deepseek_v3", "gpt_oss"]
# How each template is used: its own tool support where it has it.
TOOL_FORMAT = {
    "tiny": "template",
    "qwen2_5": "template",
    "qwen3": "template",
    "llama3": "prompt",  # no tool support at all
    "llama3_1": "template",
    "deepseek_v3": "system",  # renders calls but ignores tools=
    "gpt_oss": "template",
}
# The string each supervised span must end with (the end-of-turn token).
END_OF_TURN = {
    "tiny": ("<|im_end|>",),
    "qwen2_5": ("<|im_end|>",),
    "qwen3": ("<|im_end|>",),
    "llama3": ("<|eot_id|>",),
    "llama3_1": ("<|eot_id|>",),
    "deepseek_v3": ("<｜end▁of▁sentence｜>",),
    "gpt_oss": ("<|call|>", "<|return|>", "<|end|>"),
}
# (tokenizer, trajectory) -> problem kind the renderer must report, in every mode.
EXPECTED_ERRORS = {
    ("llama3_1", "parallel"): "template_error",  # raises: one call per turn only
    ("gpt_oss", "parallel"): "tool_call_dropped",  # silently renders only the first call
    # Reasoning of a tool-call turn disappears once a final answer follows.
    ("gpt_oss", "reasoning"): "history_mismatch",
    # No header between the user text and a later call: "it.\n" merges across the turn.
    ("deepseek_v3", "multi"): "history_mismatch",
    # A second call after tool outputs loses the "tool outputs end" marker.
    ("deepseek_v3", "retry"): "history_mismatch",
}

W = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
S = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}


def _call(name: str, args: dict, cid: str) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def _traj(tid: str, conv: list[dict], tools: tuple = (W, S)) -> Trajectory:
    return Trajectory.from_dict(
        {
            "unique_trajectory_id": tid,
            "source": "test",
            "task_instruction": "You are a helpful agent.",
            "tools": list(tools),
            "conversation": conv,
        }
    )


def _tool(cid: str, name: str, content: str) -> dict:
    return {"role": "tool", "tool_call_id": cid, "name": name, "content": content}


LONG = "東京へ行く 🚀 « ça » " + 'x"{}\\n ' * 300
TRAJS = {
    "single": _traj(
        "single",
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [_call("get_weather", {"city": "Paris"}, "c1")]},
        ],
    ),
    "parallel": _traj(
        "parallel",
        [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "tool_calls": [
                    _call("get_weather", {"city": "Paris"}, "c1"),
                    _call("get_weather", {"city": "Rome", "unit": "celsius"}, "c2"),
                ],
            },
        ],
    ),
    "multi": _traj(
        "multi",
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [_call("get_weather", {"city": "Paris"}, "c1")]},
            _tool("c1", "get_weather", '{"temp": 21}'),
            {"role": "assistant", "content": "It is 21 degrees in Paris."},
            {"role": "user", "content": "And search news about it."},
            {"role": "assistant", "tool_calls": [_call("search", {"query": "Paris news"}, "c2")]},
            _tool("c2", "search", "Nothing new."),
            {"role": "assistant", "content": "Nothing new today."},
        ],
    ),
    "retry": _traj(
        "retry",
        [
            {"role": "user", "content": "Weather in Delhi in kelvin?"},
            {
                "role": "assistant",
                "tool_calls": [_call("get_weather", {"city": "Delhi", "unit": "kelvin"}, "c1")],
            },
            _tool("c1", "get_weather", '{"error": "unit must be celsius or fahrenheit"}'),
            {
                "role": "assistant",
                "tool_calls": [_call("get_weather", {"city": "Delhi", "unit": "celsius"}, "c2")],
            },
            _tool("c2", "get_weather", '{"temp": 30}'),
            {"role": "assistant", "content": "It is 30 C; kelvin is not supported."},
        ],
    ),
    "clarify": _traj(
        "clarify",
        [
            {"role": "user", "content": "What's the weather?"},
            {"role": "assistant", "content": "Which city do you mean?"},
        ],
    ),
    "reasoning": _traj(
        "reasoning",
        [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "reasoning": "The user wants Oslo weather; call the tool.",
                "tool_calls": [_call("get_weather", {"city": "Oslo"}, "c1")],
            },
            _tool("c1", "get_weather", '{"temp": -3}'),
            {
                "role": "assistant",
                "content": "It is -3 degrees in Oslo.",
                "reasoning": "The tool says -3.",
            },
        ],
    ),
    "unicode_long": _traj(
        "unicode_long",
        [
            {"role": "user", "content": "Traduis « 東京へ行く » et cherche 🚀"},
            {"role": "assistant", "tool_calls": [_call("search", {"query": LONG}, "c1")]},
        ],
    ),
    "chat_only": _traj(
        "chat_only",
        [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Tell me a joke."},
            {"role": "assistant", "content": "Why did the GPU cross the road? To cache up."},
        ],
        tools=(),
    ),
}


@pytest.fixture(scope="module")
def tokenizers(shared_fixtures, tiny_tokenizer) -> dict[str, Any]:
    from transformers import AutoTokenizer

    toks = {"tiny": tiny_tokenizer}
    for name in TOKENIZERS[1:]:
        toks[name] = AutoTokenizer.from_pretrained(shared_fixtures / "tokenizers" / name)
    return toks


@pytest.fixture(scope="module")
def renderers(tokenizers) -> dict[tuple[str, str], Renderer]:
    """One renderer per (tokenizer, mode), built once for the module."""
    return {
        (name, mode): Renderer(tok, RenderOptions(mode=mode, tool_format=TOOL_FORMAT[name]))
        for name, tok in tokenizers.items()
        for mode in ("all_turns", "per_turn", "auto")
    }


# ---------------------------------------------------------------------------------------
# The independent expectation: string operations on apply_chat_template outputs.
# ---------------------------------------------------------------------------------------
def template_messages(name: str, traj: Trajectory) -> tuple[list[dict], list[dict] | None]:
    """What the template must be given for this tokenizer's tool format."""
    msgs, tools = traj.to_chat()
    fmt = TOOL_FORMAT[name]
    if fmt == "prompt":
        return prompt_mode_messages(msgs, tools), None
    if fmt == "system":
        msgs = system_mode_messages(msgs, tools)
        tools = []
    if name == "deepseek_v3":
        for m in msgs:
            for c in m.get("tool_calls", []):
                c["function"]["arguments"] = json.dumps(
                    c["function"]["arguments"], ensure_ascii=False
                )
    return msgs, tools or None


def _units(text: str, added: list[str]) -> list[str]:
    """Split text into added tokens (atomic) and single characters."""
    out, i = [], 0
    while i < len(text):
        tok = next((a for a in added if text.startswith(a, i)), None)
        out.append(tok or text[i])
        i += len(tok) if tok else 1
    return out


def expected_turns(tok, name: str, msgs: list[dict], tools) -> list[dict]:
    """Per assistant turn: its own render, where its supervised text starts and the text."""

    def render(m, gen=False):
        return tok.apply_chat_template(m, tools=tools, tokenize=False, add_generation_prompt=gen)

    added = sorted(tok.get_added_vocab(), key=len, reverse=True)
    out = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        gen, end = render(msgs[:i], gen=True), render(msgs[: i + 1])
        if end.startswith(gen):
            start, mismatch = len(gen), False
        else:
            # Only DeepSeek's generation prompt ("<think>\n") differs from its turns.
            hist = render(msgs[:i])
            assert name == "deepseek_v3", (name, gen[-40:], end[len(hist) - 5 :][:60])
            assert gen.startswith(hist) and end.startswith(hist)
            a, b = _units(gen[len(hist) :], added), _units(end[len(hist) :], added)
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            start, mismatch = len(hist) + len("".join(a[:k])), True
        body = end[start:].rstrip()
        assert body.endswith(END_OF_TURN[name]), (name, body[-30:])
        out.append({"end": end, "start": start, "text": body, "gen": gen, "mismatch": mismatch})
    return out


def supervised_runs(tok, ids: list[int], labels: list[int]) -> list[tuple[int, str]]:
    """(character offset, decoded text) of each run of supervised tokens."""
    runs, k = [], 0
    while k < len(ids):
        if labels[k] == IGNORE_INDEX:
            k += 1
            continue
        j = k
        while j < len(ids) and labels[j] != IGNORE_INDEX:
            assert labels[j] == ids[j]
            j += 1
        runs.append((len(tok.decode(ids[:k])), tok.decode(ids[k:j])))
        k = j
    return runs


def encode(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["all_turns", "per_turn", "auto"])
@pytest.mark.parametrize("traj_name", list(TRAJS))
@pytest.mark.parametrize("name", TOKENIZERS)
def test_masks_match_template(tokenizers, renderers, name, traj_name, mode):
    tok, renderer, traj = tokenizers[name], renderers[(name, mode)], TRAJS[traj_name]
    before = renderer.report.errors.copy()
    samples = renderer.render(traj)
    errors = renderer.report.errors - before

    expected_error = EXPECTED_ERRORS.get((name, traj_name))
    if expected_error:
        assert samples == []
        assert errors == {expected_error: 1}
        return

    msgs, tools = template_messages(name, traj)
    turns = expected_turns(tok, name, msgs, tools)
    full = tok.apply_chat_template(msgs, tools=tools, tokenize=False)
    stable = all(full.startswith(t["end"]) for t in turns)
    if mode == "all_turns" and not stable:
        assert samples == []
        assert errors == {"not_prefix_stable": 1}
        return
    assert not errors, renderer.report.format()
    used = "all_turns" if mode == "auto" and stable else ("per_turn" if mode == "auto" else mode)
    assert {s.mode for s in samples} == {used}

    if used == "all_turns":
        (sample,) = samples
        assert sample.input_ids == encode(tok, full)
        want = [(t["start"], t["text"]) for t in turns]
        assert supervised_runs(tok, sample.input_ids, sample.labels) == want
    else:
        assert len(samples) == len(turns)
        for s, t in zip(samples, turns):
            assert s.input_ids == encode(tok, t["end"])
            assert supervised_runs(tok, s.input_ids, s.labels) == [(t["start"], t["text"])]
            prompt = s.input_ids[: s.spans[0][0]]
            if t["mismatch"]:
                assert prompt == encode(tok, t["end"][: t["start"]])
            else:
                assert prompt == encode(tok, t["gen"])
    for s in samples:
        for _, b in s.spans:
            # The end-of-turn token itself is the last supervised token of every span.
            assert tok.decode(s.input_ids[b - 1 : b]) in END_OF_TURN[name]
            assert s.labels[b - 1] == s.input_ids[b - 1]


ROUND_TRIP = ["single", "parallel", "multi", "retry", "reasoning", "unicode_long"]


@pytest.mark.parametrize("traj_name", ROUND_TRIP)
@pytest.mark.parametrize("name", TOKENIZERS)
def test_round_trip_through_parser(tokenizers, renderers, name, traj_name):
    """The supervised span of each tool-call turn parses back to the original calls."""
    if (name, traj_name) in EXPECTED_ERRORS:
        pytest.skip("refused by design for this template")
    tok, traj = tokenizers[name], TRAJS[traj_name]
    samples = renderers[(name, "per_turn")].render(traj)
    turns = [m for m in traj.conversation if m.role == "assistant"]
    assert len(samples) == len(turns)
    for s, turn in zip(samples, turns):
        (a, b) = s.spans[0]
        result = parse_tool_calls(tok.decode(s.input_ids[a:b]))
        assert result.error is None
        got = [(c.name, c.arguments) for c in result.calls]
        assert got == [(c.name, c.arguments) for c in turn.tool_calls]
        if not turn.tool_calls:
            assert result.content == turn.content


@pytest.mark.parametrize("name", ["llama3", "deepseek_v3"])
def test_template_without_tool_support_is_refused(tokenizers, name):
    renderer = Renderer(tokenizers[name], RenderOptions(tool_format="template"))
    assert not renderer.capabilities.renders_tools
    for traj_name in ("single", "clarify"):
        assert renderer.render(TRAJS[traj_name]) == []
    assert renderer.report.errors["tools_not_rendered"] == 2
    assert "single" in renderer.report.examples["tools_not_rendered"][0]
    # Plain chat needs no tool support.
    assert renderer.render(TRAJS["chat_only"])


def test_llama3_drops_calls_is_detected(tokenizers):
    """Even with tools shown in the system prompt, llama3 silently drops structured calls."""
    renderer = Renderer(tokenizers["llama3"], RenderOptions(tool_format="system"))
    assert renderer.render(TRAJS["single"]) == []
    assert renderer.report.errors["tool_call_dropped"] == 1


def test_llama3_1_parallel_strict_error(tokenizers):
    from xlam.data.render import RenderError

    renderer = Renderer(tokenizers["llama3_1"], RenderOptions(strict=True))
    with pytest.raises(RenderError, match="single tool-calls") as e:
        renderer.render(TRAJS["parallel"])
    assert e.value.kind == "template_error"
    assert e.value.traj_id == "parallel"


def test_capabilities(tokenizers):
    caps = {n: Renderer(t).capabilities for n, t in tokenizers.items()}
    assert caps["deepseek_v3"].arguments_as_string
    assert not any(c.arguments_as_string for n, c in caps.items() if n != "deepseek_v3")
    assert not caps["llama3"].renders_calls and not caps["llama3"].renders_tools
    assert not caps["llama3_1"].parallel_calls and not caps["gpt_oss"].parallel_calls
    assert caps["qwen2_5"].parallel_calls and caps["tiny"].parallel_calls
    assert caps["qwen3"].renders_reasoning and caps["gpt_oss"].renders_reasoning
    assert not caps["qwen2_5"].renders_reasoning
    auto = {
        n: Renderer(t, RenderOptions(tool_format="auto")).tool_format for n, t in tokenizers.items()
    }
    assert auto["llama3"] == "prompt" and auto["deepseek_v3"] == "system"
    assert auto["qwen2_5"] == "template"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_piecewise_encoding_is_exact(tokenizers, name):
    """The piecewise encoder agrees with the tokenizer on every prefix render."""
    tok = tokenizers[name]
    renderer = Renderer(tok, RenderOptions(tool_format=TOOL_FORMAT[name]))
    assert renderer.encoder.piecewise
    texts = []
    for traj in TRAJS.values():
        msgs, tools = template_messages(name, traj)
        for i in range(1, len(msgs) + 1):
            for gen in (False, True):
                # Some prefixes cannot be rendered alone (Llama 3.1 needs a user turn).
                with contextlib.suppress(Exception):
                    texts.append(
                        tok.apply_chat_template(
                            msgs[:i], tools=tools, tokenize=False, add_generation_prompt=gen
                        )
                    )
    texts += ["<|im_end|><|im_end|>x", "", " \n\n ", "<tool_call><think>\n", "<｜User｜>a\n"]
    assert renderer.encoder.encode(texts) == renderer.encoder.encode_exact(texts)


def test_qwen3_thinking_modes(tokenizers):
    tok = tokenizers["qwen3"]
    off = Renderer(tok, RenderOptions(enable_thinking=False, mode="per_turn"))
    (s,) = off.render(TRAJS["clarify"])
    a, b = s.spans[0]
    # With thinking off the empty think block is part of the prompt, not supervised.
    assert "<think>" in tok.decode(s.input_ids[:a])
    assert tok.decode(s.input_ids[a:b]) == "Which city do you mean?<|im_end|>"
    off.render(TRAJS["reasoning"])
    assert not off.report.warnings.get("reasoning_dropped")

    on = Renderer(tok, RenderOptions(mode="all_turns"))
    (s,) = on.render(TRAJS["reasoning"])
    text = "".join(tok.decode(s.input_ids[a:b]) for a, b in s.spans)
    assert "The user wants Oslo weather" in text and "The tool says -3." in text


def test_reasoning_not_supervised(tokenizers):
    tok = tokenizers["qwen3"]
    renderer = Renderer(tok, RenderOptions(mode="all_turns", supervise_reasoning=False))
    (s,) = renderer.render(TRAJS["reasoning"])
    sup = tok.decode([t for t, lab in zip(s.input_ids, s.labels) if lab != IGNORE_INDEX])
    assert "Oslo weather" not in sup and "The tool says" not in sup
    assert "<think>" in sup and "get_weather" in sup and "It is -3 degrees" in sup


def test_gpt_oss_reasoning_on_final_turn_only(tokenizers):
    traj = _traj(
        "final_reasoning",
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!", "reasoning": "Greet back."},
        ],
    )
    tok = tokenizers["gpt_oss"]
    (s,) = Renderer(tok).render(traj)
    a, b = s.spans[0]
    assert tok.decode(s.input_ids[a:b]) == (
        "<|channel|>analysis<|message|>Greet back.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hello!<|return|>"
    )


@pytest.mark.parametrize("name", TOKENIZERS)
def test_fast_paths_change_nothing(tokenizers, name):
    """Direct template rendering and piecewise encoding give the same samples."""
    options = RenderOptions(tool_format=TOOL_FORMAT[name])
    fast = Renderer(tokenizers[name], options)
    slow = Renderer(tokenizers[name], options, cache_encodings=False, fast_templates=False)
    assert fast._direct is not None and slow._direct is None
    for traj in TRAJS.values():
        assert fast.render(traj, annotate=True) == slow.render(traj, annotate=True)
    assert fast.report.to_dict() == slow.report.to_dict()
