"""Renderer unit tests: options, the report, every failure mode, prompt mode, annotation."""

from __future__ import annotations

import json

import pytest

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.data.render import (
    ERROR_KINDS,
    IGNORE_INDEX,
    PROMPT_FORMAT_INSTRUCTION,
    Renderer,
    RenderError,
    RenderOptions,
    RenderReport,
    call_in_text,
    format_calls_json,
    prompt_mode_messages,
    render_many,
)
from xlam.data.schema import Trajectory, read_trajectories
from xlam.serving.parser import parse_tool_calls

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def traj(conv: list[dict], tid: str = "t1", tools: list | None = None) -> Trajectory:
    return Trajectory.from_dict(
        {
            "unique_trajectory_id": tid,
            "source": "unit",
            "task_instruction": "Be brief.",
            "tools": [TOOL] if tools is None else tools,
            "conversation": conv,
        }
    )


def call(city: str, cid: str = "c1") -> dict:
    return {
        "id": cid,
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": city}},
    }


CALL_THEN_ANSWER = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [call("Paris")]},
    {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": '{"t": 21}'},
    {"role": "assistant", "content": "It is 21 degrees in Paris, sunny and calm today."},
]


@pytest.fixture
def fresh_tiny():
    """A private copy of the tiny tokenizer whose template a test may replace."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)


def supervised_text(tok, sample) -> str:
    return tok.decode([t for t, lab in zip(sample.input_ids, sample.labels) if lab != -100])


# ---------------------------------------------------------------------------------------
def test_options_validate_and_key():
    with pytest.raises(RenderError, match="mode must be one of"):
        RenderOptions(mode="everything")
    with pytest.raises(RenderError, match="tool_format"):
        RenderOptions(tool_format="xml")
    with pytest.raises(RenderError, match="max_length"):
        RenderOptions(max_length=0)
    a, b = RenderOptions(), RenderOptions(strict=True)
    assert a.key() == b.key()  # strict never changes a produced sample
    assert a.key() != RenderOptions(mode="per_turn").key()
    assert "renderer_version" in json.loads(a.key())
    # The datamodule builds options from a config dict.
    assert RenderOptions(**{}).mode == "auto"


def test_no_chat_template(fresh_tiny):
    fresh_tiny.chat_template = None
    with pytest.raises(RenderError, match="no chat template"):
        Renderer(fresh_tiny)


def test_sample_data_renders_exactly(tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer, RenderOptions(strict=True))
    for path in sorted(SAMPLE_DATA_DIR.glob("*.jsonl")):
        samples, report = render_many(renderer, read_trajectories(path))
        assert samples
    assert report.ok and report.skipped == 0
    assert report.samples == report.rendered
    for s in samples:
        assert len(s.labels) == len(s.input_ids)
        assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(s.input_ids, s.labels))
        assert s.num_supervised == sum(b - a for a, b in s.spans)


def test_report_counts_and_strict(tiny_tokenizer):
    no_turn = traj([{"role": "user", "content": "hello?"}], tid="lonely")
    renderer = Renderer(tiny_tokenizer)
    assert renderer.render(no_turn) == []
    report = renderer.report
    assert (report.seen, report.skipped, report.rendered) == (1, 1, 0)
    assert report.errors == {"no_assistant_turn": 1}
    assert report.examples["no_assistant_turn"][0].startswith("lonely: ")
    assert "no_assistant_turn x1" in report.format()
    assert json.loads(json.dumps(report.to_dict()))["errors"] == {"no_assistant_turn": 1}
    assert not report.ok

    strict = Renderer(tiny_tokenizer, RenderOptions(strict=True))
    with pytest.raises(RenderError) as e:
        strict.render(no_turn)
    assert e.value.kind == "no_assistant_turn" and e.value.traj_id == "lonely"
    assert strict.report.errors["no_assistant_turn"] == 1
    assert set(ERROR_KINDS) >= set(report.errors)


def test_shared_report(tiny_tokenizer):
    report = RenderReport(max_examples=1)
    for tid in ("a", "b"):
        Renderer(tiny_tokenizer, report=report).render(
            traj([{"role": "user", "content": "x"}], tid)
        )
    assert report.errors["no_assistant_turn"] == 2
    assert report.examples["no_assistant_turn"] == ["a: no assistant turn to supervise"]


def test_truncation_of_text_is_partial(tiny_tokenizer):
    full = Renderer(tiny_tokenizer, RenderOptions(mode="all_turns")).render(traj(CALL_THEN_ANSWER))[
        0
    ]
    cut = full.spans[1][0] + 3  # three tokens into the final text answer
    renderer = Renderer(tiny_tokenizer, RenderOptions(mode="all_turns", max_length=cut))
    (s,) = renderer.render(traj(CALL_THEN_ANSWER))
    assert len(s) == cut
    assert s.spans == [full.spans[0], (full.spans[1][0], cut)]
    assert s.labels[-3:] == s.input_ids[-3:]
    assert renderer.report.warnings["truncated"] == 1


def test_truncation_through_tool_call_is_refused(tiny_tokenizer):
    full = Renderer(tiny_tokenizer, RenderOptions(mode="all_turns")).render(traj(CALL_THEN_ANSWER))[
        0
    ]
    cut = full.spans[0][0] + 4  # inside the tool call
    renderer = Renderer(tiny_tokenizer, RenderOptions(mode="all_turns", max_length=cut))
    assert renderer.render(traj(CALL_THEN_ANSWER)) == []
    assert renderer.report.errors == {"truncated_tool_call": 1}
    strict = Renderer(tiny_tokenizer, RenderOptions(max_length=cut, strict=True))
    with pytest.raises(RenderError, match="cuts the tool call"):
        strict.render(traj(CALL_THEN_ANSWER))


def test_per_turn_drops_turns_beyond_max_length(tiny_tokenizer):
    samples = Renderer(tiny_tokenizer, RenderOptions(mode="per_turn")).render(
        traj(CALL_THEN_ANSWER)
    )
    second_start = samples[1].spans[0][0]
    renderer = Renderer(tiny_tokenizer, RenderOptions(mode="per_turn", max_length=second_start))
    (s,) = renderer.render(traj(CALL_THEN_ANSWER))
    assert s.id == "t1#0"
    assert renderer.report.warnings["turn_beyond_max_length"] == 1


def test_bos_in_the_middle_is_refused(shared_fixtures):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_fixtures / "tokenizers" / "llama3")
    # A broken template: BOS before every message instead of once.
    tok.chat_template = (
        "{% for m in messages %}{{ bos_token }}<|start_header_id|>{{ m.role }}"
        "<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{% endif %}"
    )
    renderer = Renderer(tok)
    clarify = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Which city?"},
    ]
    assert renderer.render(traj(clarify, tools=[])) == []
    assert renderer.report.errors == {"bos_inside": 1}


def test_template_without_end_of_turn_token(fresh_tiny):
    fresh_tiny.chat_template = (
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    renderer = Renderer(fresh_tiny)
    clarify = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert renderer.render(traj(clarify, tools=[])) == []
    assert renderer.report.errors == {"missing_end_of_turn": 1}


def test_template_that_drops_calls(fresh_tiny):
    # Shows the tools but renders only the text of assistant turns.
    fresh_tiny.chat_template = (
        "{% if tools %}<|im_start|>system\n{{ tools | tojson }}<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    renderer = Renderer(fresh_tiny)
    assert not renderer.capabilities.renders_calls
    assert renderer.render(traj(CALL_THEN_ANSWER)) == []
    assert renderer.report.errors == {"tool_call_dropped": 1}
    assert "get_weather" in renderer.report.examples["tool_call_dropped"][0]


def test_mask_check_catches_a_wrong_mask(tiny_tokenizer):
    from xlam.data.render.report import Problem as _Problem

    renderer = Renderer(tiny_tokenizer)
    (s,) = renderer.render(traj(CALL_THEN_ANSWER))
    labels = list(s.labels)
    labels[0] = s.input_ids[0]  # supervise a system token
    with pytest.raises(_Problem) as e:
        renderer._check(s.id, s.input_ids, labels, s.spans)
    assert e.value.kind == "mask_mismatch"
    labels = list(s.labels)
    labels[s.spans[0][0]] = IGNORE_INDEX  # a hole in an assistant span
    with pytest.raises(_Problem):
        renderer._check(s.id, s.input_ids, labels, s.spans)


def test_end_of_turn_supervised_trailing_newline_not(tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer, RenderOptions(mode="all_turns"))
    (s,) = renderer.render(traj(CALL_THEN_ANSWER))
    for a, b in s.spans:
        assert tiny_tokenizer.decode(s.input_ids[b - 1 : b]) == "<|im_end|>"
        assert s.labels[b - 1] != IGNORE_INDEX
        assert s.labels[b] == IGNORE_INDEX  # the "\n" the template writes between turns
        # The generation header is not supervised.
        assert tiny_tokenizer.decode(s.input_ids[a - 3 : a]).endswith("assistant\n")
        assert s.labels[a - 1] == IGNORE_INDEX


def test_annotate_roles_and_turns(tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer, RenderOptions(mode="all_turns"))
    (s,) = renderer.render(traj(CALL_THEN_ANSWER), annotate=True)
    assert len(s.roles) == len(s.turns) == len(s)
    assert s.roles[0] == "system" and s.turns[0] == -1
    for k, lab in enumerate(s.labels):
        if lab != IGNORE_INDEX:
            assert s.roles[k] == "assistant" and s.turns[k] in (1, 3)
    by_role = {}
    for k, role in enumerate(s.roles):
        by_role.setdefault(role, []).append(s.input_ids[k])
    assert "Weather in Paris?" in tiny_tokenizer.decode(by_role["user"])
    assert '{"t": 21}' in tiny_tokenizer.decode(by_role["tool"])
    assert "get_weather" in tiny_tokenizer.decode(by_role["system"])  # tool schemas
    # Without annotate nothing extra is computed.
    assert renderer.render(traj(CALL_THEN_ANSWER))[0].roles == []


def test_reasoning_masking_on_tiny(tiny_tokenizer):
    conv = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning": "Add two and two carefully."},
    ]
    on = Renderer(tiny_tokenizer).render(traj(conv, tools=[]))[0]
    assert "Add two and two" in supervised_text(tiny_tokenizer, on)
    off = Renderer(tiny_tokenizer, RenderOptions(supervise_reasoning=False)).render(
        traj(conv, tools=[])
    )[0]
    text = supervised_text(tiny_tokenizer, off)
    assert "Add two" not in text and "carefully" not in text
    assert "<think>" in text and "</think>" in text and text.endswith("4<|im_end|>")
    assert off.input_ids == on.input_ids


def test_prompt_mode_messages():
    msgs, tools = traj(
        [
            *CALL_THEN_ANSWER[:2],
            CALL_THEN_ANSWER[2],
            {"role": "tool", "tool_call_id": "c2", "name": "other", "content": "plain text"},
            CALL_THEN_ANSWER[3],
        ]
    ).to_chat()
    out = prompt_mode_messages(msgs, tools)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant"]
    assert out[0]["content"].startswith("Be brief.\n\n")
    assert PROMPT_FORMAT_INSTRUCTION in out[0]["content"]
    assert '"name": "get_weather"' in out[0]["content"]
    assert json.loads(out[2]["content"]) == [
        {"name": "get_weather", "arguments": {"city": "Paris"}}
    ]
    assert "tool_calls" not in out[2]
    results = json.loads(out[3]["content"].split("\n", 1)[1])
    assert results == [
        {"name": "get_weather", "content": {"t": 21}},
        {"name": "other", "content": "plain text"},
    ]
    assert msgs[2]["tool_calls"]  # inputs untouched
    assert format_calls_json([{"name": "f", "arguments": '{"a": 1}'}]) == (
        '[{"name": "f", "arguments": {"a": 1}}]'
    )


def test_prompt_mode_round_trip(tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer, RenderOptions(tool_format="prompt", mode="per_turn"))
    conv = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [call("Paris"), call("Rome", "c2")],
        },
    ]
    (s,) = renderer.render(traj(conv))
    a, b = s.spans[0]
    parsed = parse_tool_calls(tiny_tokenizer.decode(s.input_ids[a:b]))
    assert parsed.content == "Checking both."
    assert [(c.name, c.arguments) for c in parsed.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('{"name": "f", "arguments": {"b": 2, "a": "x"}}', True),
        ('<tool_call>{"name":"f","arguments":{"a":"x","b":2}}</tool_call>', True),
        ('{"name": "f", "parameters": {"a": "\\u0078", "b": 2}}', True),
        ("f(a='x', b=2)", True),  # non-JSON syntax: every key and value shown
        ('{"name": "f", "arguments": {"a": "x"}}', False),  # an argument is missing
        ('{"name": "g", "arguments": {"a": "x", "b": 2}}', False),  # wrong name
        ("", False),
    ],
)
def test_call_in_text(text, found):
    assert call_in_text("f", {"a": "x", "b": 2}, text) is found


def test_truncation_state_left_on_the_tokenizer_is_harmless(fresh_tiny):
    renderer = Renderer(fresh_tiny)
    want = renderer.render(traj(CALL_THEN_ANSWER))
    # Another caller's truncating encode leaves truncation set on the shared backend.
    fresh_tiny(["a b c d e f g"], truncation=True, max_length=3)
    assert fresh_tiny.backend_tokenizer.truncation
    assert renderer.render(traj(CALL_THEN_ANSWER)) == want
