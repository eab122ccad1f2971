"""Tool-call parser: the shared vectors, every supported syntax, robustness, vLLM plugin."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from xlam.serving import vllm_plugin
from xlam.serving.parser import ParseResult, parse_tool_calls
from xlam.serving.vllm_plugin import StreamingToolCallParser


def vectors(shared_fixtures: Path) -> list[dict]:
    return json.loads((shared_fixtures / "parsers" / "tool_call_vectors.json").read_text())


def as_pairs(result: ParseResult) -> list[dict]:
    return [{"name": c.name, "arguments": c.arguments} for c in result.calls]


def test_all_shared_vectors(shared_fixtures):
    vecs = vectors(shared_fixtures)
    assert len(vecs) >= 13
    for v in vecs:
        result = parse_tool_calls(v["text"])
        assert as_pairs(result) == v["calls"], v["name"]
        if v.get("error"):
            assert result.error, v["name"]
            assert result.content == v["text"]  # nothing is lost
        else:
            assert result.error is None, (v["name"], result.error)
        if "content" in v:
            assert result.content == v["content"], v["name"]


@pytest.mark.parametrize(
    ("text", "calls", "content", "reasoning"),
    [
        # Llama 3.1: "parameters", optional <|python_tag|>, end token kept by the decoder.
        (
            '<|python_tag|>{"name": "f", "parameters": {"a": 1}}<|eot_id|>',
            [("f", {"a": 1})],
            None,
            None,
        ),
        # Text, then the xLAM JSON list on its own line.
        (
            'Let me check.\n[{"name": "f", "arguments": {"a": 1}}]',
            [("f", {"a": 1})],
            "Let me check.",
            None,
        ),
        # OpenAI-shaped entries.
        (
            '[{"type": "function", "function": {"name": "f", "arguments": "{\\"a\\": 1}"}}]',
            [("f", {"a": 1})],
            None,
            None,
        ),
        # Hermes data writes Python-literal dicts.
        (
            "<tool_call>\n{'name': 'f', 'arguments': {'a': 'b'}}\n</tool_call>",
            [("f", {"a": "b"})],
            None,
            None,
        ),
        # Qwen3: an (empty) think block before the calls.
        (
            "<think>\nplan\n</think>\n\n"
            '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call><|im_end|>',
            [("f", {})],
            None,
            "plan",
        ),
        ("<think>\n\n</think>\n\nJust text.<|im_end|>", [], "Just text.", None),
        # DeepSeek-V3.
        (
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n"
            '{"a": 1}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>g\n'
            "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>",
            [("f", {"a": 1}), ("g", {})],
            None,
            None,
        ),
        # gpt-oss harmony: a call, and a final answer with analysis.
        (
            ' to=functions.f<|channel|>commentary json<|message|>{"a": 1}<|call|>',
            [("f", {"a": 1})],
            None,
            None,
        ),
        (
            "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final"
            "<|message|>Done.<|return|>",
            [],
            "Done.",
            "Think.",
        ),
        # Fenced JSON that is not a call is content.
        ('```json\n{"temperature": 21}\n```', [], '```json\n{"temperature": 21}\n```', None),
        ("", [], "", None),
    ],
)
def test_syntaxes(text, calls, content, reasoning):
    result = parse_tool_calls(text)
    assert result.error is None
    assert [(c.name, c.arguments) for c in result.calls] == calls
    assert result.content == content
    assert result.reasoning == reasoning


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "f", "arguments": "{not json"}\n</tool_call>',
        '[{"name": "f", "arguments": [1, 2]}]',
        '<tool_call>\n{"name": "f", "arguments": {"a": 1}\n</tool_call>',
        '[TOOL_CALLS]{"no": "call"}',
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function",
        'I will call it.\n[{"name": "f", "arguments": {"a": ',
        # Python literals JSON cannot hold (a tiny model wrote the first one)
        "<tool_call>\n{'name': 'f', 'arguments': {'year': b'year'}}\n</tool_call>",
        "<tool_call>\n{'name': 'f', 'arguments': {'a': {1, 2}}}\n</tool_call>",
        "<tool_call>\n{'name': 'f', 'arguments': {1: 'a'}}\n</tool_call>",
        '<tool_call>\n{"name": " ", "arguments": {}}\n</tool_call>',  # a tiny model wrote ""
    ],
)
def test_errors_are_reported_not_raised(text):
    result = parse_tool_calls(text)
    assert result.error and result.calls == []
    assert result.content == text


def test_never_raises_on_prefixes_and_noise(shared_fixtures):
    rng = random.Random(0)
    texts = [v["text"] for v in vectors(shared_fixtures)]
    alphabet = "[]{}\"':,<>/\\ntool_call```json<|im_end|>name arguments 1"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(300)]
    texts += ["[" * 5000, "{" * 5000 + '"name"']
    for t in texts:
        for cut in range(0, len(t) + 1, max(1, len(t) // 25)):
            text = t[:cut]
            result = parse_tool_calls(text)
            if result.error:  # reported, and nothing of the output is lost
                assert result.calls == [] and result.content == text, (text, result)
            for call in result.calls:  # a call is a named object, servable as OpenAI JSON
                assert isinstance(call.name, str) and call.name, (text, call)
                assert isinstance(call.arguments, dict), (text, call)
            json.dumps(result.to_message())
            assert result.content is None or result.content in text, (text, result)


def test_openai_output():
    result = parse_tool_calls(
        '[{"name": "f", "arguments": {"q": "東京"}}, {"name": "g", "arguments": {}}]'
    )
    calls = result.tool_calls
    assert [c["type"] for c in calls] == ["function", "function"]
    assert calls[0]["function"] == {"name": "f", "arguments": '{"q": "東京"}'}
    assert calls[0]["id"] != calls[1]["id"]
    msg = result.to_message()
    assert msg["role"] == "assistant" and msg["content"] is None and len(msg["tool_calls"]) == 2
    assert "tool_calls" not in parse_tool_calls("hi").to_message()


def test_streaming_matches_whole_text(shared_fixtures):
    extra = [
        {"text": "Here:\n```python\nprint(1)\n```\nDone.", "calls": []},
        {"text": "Steps:\n[1] do it\n[2] done", "calls": []},
    ]
    for v in [*vectors(shared_fixtures), *extra]:
        if v.get("error"):
            continue
        stream, content, calls = StreamingToolCallParser(), "", []
        for i in range(1, len(v["text"]) + 1):
            delta, new = stream.update(v["text"][:i])
            content += delta
            calls += new
        assert [{"name": c.name, "arguments": c.arguments} for c in calls] == v["calls"]
        if not v["calls"]:
            assert content == v["text"]
        elif v.get("content"):
            assert content.strip() == v["content"]


def test_plugin_imports_without_vllm():
    assert "vllm" not in sys.modules or vllm_plugin.VLLM_AVAILABLE
    if not vllm_plugin.VLLM_AVAILABLE:
        assert vllm_plugin.register() is False
        assert not hasattr(vllm_plugin, "XlamToolParser")


class _Model:
    """Stand-in for vLLM's pydantic protocol models."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def model_dump(self, exclude_none: bool = False) -> dict:
        return {k: v for k, v in self.__dict__.items() if not (exclude_none and v is None)}


def _fake_vllm(monkeypatch) -> type:
    class ToolParser:
        def __init__(self, tokenizer, *args, **kwargs):
            self.prev_tool_call_arr, self.streamed_args_for_tool = [], []
            self.current_tool_id, self.current_tool_name_sent = -1, False
            self.model_tokenizer = tokenizer

        def adjust_request(self, request):
            return request

    class ToolParserManager:
        tool_parsers: ClassVar[dict] = {}

        @classmethod
        def register_module(cls, name=None, force=True, module=None):
            cls.tool_parsers[name] = module
            return module

    parsers = types.ModuleType("vllm.tool_parsers")
    parsers.ToolParser, parsers.ToolParserManager = ToolParser, ToolParserManager
    protocol = types.ModuleType("vllm.entrypoints.openai.protocol")
    for cls in (
        "DeltaFunctionCall",
        "DeltaMessage",
        "DeltaToolCall",
        "ExtractedToolCallInformation",
        "FunctionCall",
        "ToolCall",
    ):
        setattr(protocol, cls, type(cls, (_Model,), {}))
    for name, mod in {
        "vllm": types.ModuleType("vllm"),
        "vllm.tool_parsers": parsers,
        "vllm.entrypoints": types.ModuleType("vllm.entrypoints"),
        "vllm.entrypoints.openai": types.ModuleType("vllm.entrypoints.openai"),
        "vllm.entrypoints.openai.protocol": protocol,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return ToolParserManager


def test_plugin_against_the_vllm_api(monkeypatch):
    manager = _fake_vllm(monkeypatch)
    # Load the plugin file the way vLLM's --tool-parser-plugin does: from its path.
    spec = importlib.util.spec_from_file_location("xlam_plugin_under_test", vllm_plugin.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.VLLM_AVAILABLE
    parser_cls = manager.tool_parsers["xlam"]
    parser = parser_cls(tokenizer=None)

    request = types.SimpleNamespace(tools=[{}], tool_choice="auto", skip_special_tokens=True)
    assert parser.adjust_request(request).skip_special_tokens is False

    info = parser.extract_tool_calls(
        'ok\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>', request
    )
    assert info.tools_called and info.content == "ok"
    assert info.tool_calls[0].function.name == "f"
    assert json.loads(info.tool_calls[0].function.arguments) == {"a": 1}
    plain = parser.extract_tool_calls("Which city?", request)
    assert not plain.tools_called and plain.content == "Which city?"

    text = '[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]'
    deltas = []
    for i in range(1, len(text) + 1):
        d = parser.extract_tool_calls_streaming(
            text[: i - 1], text[:i], text[i - 1], [], [], [], request
        )
        if d is not None:
            deltas.append(d)
    calls = [c for d in deltas for c in d.tool_calls]
    assert [c.index for c in calls] == [0, 1]
    assert [c.function["name"] for c in calls] == ["f", "g"]
    assert parser.streamed_args_for_tool == ['{"a": 1}', "{}"]
    assert parser.prev_tool_call_arr[0] == {"name": "f", "arguments": {"a": 1}}
