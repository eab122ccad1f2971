"""Model output text → OpenAI ``tool_calls``.

One parser for every call syntax our models are trained to emit:

- the xLAM JSON list ``[{"name": ..., "arguments": {...}}, ...]`` (prompt mode), possibly
  after some text, or a single such object;
- Mistral's ``[TOOL_CALLS]`` prefix followed by that list;
- Hermes/Qwen ``<tool_call>{...}</tool_call>`` tags (JSON, or Python-literal dicts);
- fenced ```` ```json ```` blocks holding a list or an object;
- Llama 3.1 ``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``);
- DeepSeek-V3 ``<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME`` + fenced JSON;
- gpt-oss harmony ``to=functions.NAME ... <|message|>{...}<|call|>`` with analysis and
  final channels.

Arguments may be an object or a JSON string. Text before the calls is the message
content; ``<think>...</think>`` becomes ``reasoning``. Text without calls comes back as
content. Malformed calls give a :class:`ParseResult` with ``error`` set; no exception
escapes :func:`parse_tool_calls`.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from xlam.data.schema import ToolCall

# End-of-turn markers a decoder may leave at the end of the text (special tokens kept).
END_MARKERS: tuple[str, ...] = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|return|>",
    "<|end|>",
    "<｜end▁of▁sentence｜>",
    "</s>",
)
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE_RE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_DEEPSEEK_CALL_RE = re.compile(
    r"<｜tool▁call▁begin｜>(?:[^<]*?)<｜tool▁sep｜>([^\n<]+)\n?(.*?)(?:<｜tool▁call▁end｜>|$)",
    re.DOTALL,
)
_HARMONY_CALL_RE = re.compile(
    r"to=functions\.([^\s<]+)[^<]*(?:<\|channel\|>[^<]*)?<\|message\|>(.*?)"
    r"(?=<\|call\|>|<\|end\|>|<\|start\|>|$)",
    re.DOTALL,
)
_HARMONY_CHANNEL_RE = re.compile(
    r"<\|channel\|>(analysis|final)<\|message\|>(.*?)(?=<\|end\|>|<\|return\|>|<\|start\|>|$)",
    re.DOTALL,
)
_THINK_RE = re.compile(r"^\s*(?:<think>)?(.*?)</think>", re.DOTALL)


class ToolCallParseError(ValueError):
    """A tool call was attempted but could not be parsed (internal; never escapes)."""


class ParsedCall(ToolCall):
    """One parsed call: the trajectory schema's :class:`ToolCall`, served the OpenAI way."""

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``tool_calls`` entry (arguments as a JSON string)."""
        return {
            "id": self.id or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {
                "name": self.name,
                "arguments": json.dumps(self.arguments, ensure_ascii=False),
            },
        }


@dataclass
class ParseResult:
    """What a model output says.

    Attributes:
        content: Text for the user (``None`` when the output is only calls).
        calls: Parsed calls, in order.
        reasoning: Text of a ``<think>`` block or harmony analysis channel, if any.
        error: Why a call-like output could not be parsed (``content`` then holds the
            raw text and ``calls`` is empty).
        syntax: Which syntax was recognised (``json``, ``tool_call_tags``, ...).
    """

    content: str | None
    calls: list[ParsedCall] = field(default_factory=list)
    reasoning: str | None = None
    error: str | None = None
    syntax: str | None = None

    @property
    def tools_called(self) -> bool:
        return bool(self.calls)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """OpenAI ``tool_calls`` (ids generated where the text had none)."""
        return [c.to_openai() for c in self.calls]

    def to_message(self) -> dict[str, Any]:
        """An OpenAI assistant message."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.calls:
            msg["tool_calls"] = self.tool_calls
        if self.reasoning:
            msg["reasoning_content"] = self.reasoning
        return msg


# ---------------------------------------------------------------------------------------
def _loads(text: str) -> Any:
    """JSON, or a Python literal (Hermes data writes dicts with single quotes)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        try:
            obj = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            raise ToolCallParseError(f"invalid JSON: {e.msg} at char {e.pos}") from None
        # a literal may hold what JSON cannot (b'x', {1, 2}, 1j, ...): a call's arguments are
        # re-serialised as JSON downstream (prompts, OpenAI messages), so refuse them here
        bad = _non_json(obj)
        if bad is not None:
            raise ToolCallParseError(f"invalid JSON: a Python {bad} literal") from None
        return obj


def _non_json(obj: Any) -> str | None:
    """The type name of the first value JSON cannot hold in ``obj`` (``None`` if none)."""
    if obj is None or isinstance(obj, str | int | float | bool):
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                return f"{type(k).__name__} key"
            if (bad := _non_json(v)) is not None:
                return bad
        return None
    if isinstance(obj, list | tuple):
        return next((b for b in map(_non_json, obj) if b is not None), None)
    return type(obj).__name__


def _is_call(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("function"), dict) and isinstance(obj["function"].get("name"), str):
        return True
    return isinstance(obj.get("name"), str) and ("arguments" in obj or "parameters" in obj)


def _is_calls(obj: Any) -> bool:
    if isinstance(obj, list):
        return bool(obj) and all(_is_call(x) for x in obj)
    return _is_call(obj)


def _arguments(name: str, args: Any) -> dict[str, Any]:
    if args is None:
        return {}
    if isinstance(args, str):
        if not args.strip():
            return {}
        try:
            args = json.loads(args)
        except json.JSONDecodeError as e:
            raise ToolCallParseError(f"arguments of {name!r} are not valid JSON: {e.msg}") from None
    if not isinstance(args, dict):
        raise ToolCallParseError(f"arguments of {name!r} must be a JSON object")
    return args


def _call(obj: Any) -> ParsedCall:
    if not _is_call(obj):
        raise ToolCallParseError(f"not a tool call: {json.dumps(obj, ensure_ascii=False)[:80]}")
    fn = obj["function"] if isinstance(obj.get("function"), dict) else obj
    name = fn["name"]
    if not name.strip():  # no tool has it; the conversation could not be rendered with it
        raise ToolCallParseError("a tool call with an empty name")
    args = fn.get("arguments", fn.get("parameters"))
    return ParsedCall(name=name, arguments=_arguments(name, args), id=str(obj.get("id") or ""))


def _calls(obj: Any) -> list[ParsedCall]:
    items = obj if isinstance(obj, list) else [obj]
    return [_call(x) for x in items]


def _strip_end(text: str) -> str:
    changed = True
    while changed:
        changed = False
        stripped = text.rstrip()
        for marker in END_MARKERS:
            if stripped.endswith(marker):
                text, changed = stripped[: -len(marker)], True
    return text


def _content(text: str) -> str | None:
    text = text.strip()
    return text or None


def _looks_like_call(text: str) -> bool:
    """A failed parse of this text is an error, not plain content."""
    t = text.lstrip()
    return t.startswith(("[{", "{")) and ('"name"' in t or "'name'" in t)


# ---------------------------------------------------------------------------------------
def _parse_tags(text: str) -> ParseResult:
    head = text[: text.index("<tool_call>")]
    calls: list[ParsedCall] = []
    for block in _TOOL_CALL_RE.findall(text):
        calls.extend(_calls(_loads(block)))
    return ParseResult(_content(head), calls, syntax="tool_call_tags")


def _parse_deepseek(text: str) -> ParseResult:
    head = text[: text.index("<｜tool▁calls▁begin｜>")] if "<｜tool▁calls▁begin｜>" in text else ""
    calls = []
    for name, body in _DEEPSEEK_CALL_RE.findall(text):
        fenced = _FENCE_RE.search(body)
        raw = fenced.group(1) if fenced else body
        calls.append(ParsedCall(name.strip(), _arguments(name, _loads(raw) if raw.strip() else {})))
    if not calls:
        raise ToolCallParseError("DeepSeek tool-call markers without a complete call")
    return ParseResult(_content(head), calls, syntax="deepseek")


def _parse_harmony(text: str) -> ParseResult:
    calls = []
    for name, body in _HARMONY_CALL_RE.findall(text):
        calls.append(ParsedCall(name, _arguments(name, _loads(body) if body.strip() else {})))
    reasoning, final = [], []
    for channel, body in _HARMONY_CHANNEL_RE.findall(text):
        (reasoning if channel == "analysis" else final).append(body)
    return ParseResult(
        _content("".join(final)),
        calls,
        reasoning=_content("\n".join(reasoning)),
        syntax="harmony",
    )


def _parse_prefixed(text: str, marker: str, syntax: str) -> ParseResult:
    head, _, body = text.partition(marker)
    obj = _loads(body)
    if not _is_calls(obj):
        raise ToolCallParseError(f"{marker} is not followed by tool calls")
    return ParseResult(_content(head), _calls(obj), syntax=syntax)


def _parse_fenced(text: str) -> ParseResult | None:
    m = _FENCE_RE.search(text)
    if m is None:
        return None
    try:
        obj = _loads(m.group(1))
    except ToolCallParseError:
        if _looks_like_call(m.group(1)):
            raise
        return None
    if not _is_calls(obj):
        return None
    rest = text[: m.start()] + text[m.end() :]
    return ParseResult(_content(rest), _calls(obj), syntax="fenced_json")


def _parse_trailing_json(text: str) -> ParseResult | None:
    """Calls as a JSON list or object that runs to the end, after optional text."""
    stripped = text.strip()
    if stripped[:1] in "[{":
        try:
            obj = _loads(stripped)
        except ToolCallParseError:
            if _looks_like_call(stripped):
                raise
            return None
        if _is_calls(obj):
            return ParseResult(None, _calls(obj), syntax="json")
        return None
    # Text first, then the calls on a line of their own.
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\n\s*(?=[\[{])", text):
        start = m.end()
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            if _looks_like_call(text[start:]) and not text[start:].rstrip().endswith(("]", "}")):
                raise ToolCallParseError("truncated JSON tool call after the text") from None
            continue
        if text[end:].strip() == "" and _is_calls(obj):
            return ParseResult(_content(text[:start]), _calls(obj), syntax="json")
    return None


def parse_tool_calls(text: str | None) -> ParseResult:
    """Parse a model output into content, reasoning and tool calls.

    Args:
        text: The generated text (special tokens may be kept or skipped).

    Returns:
        A :class:`ParseResult`; on malformed calls ``error`` says why, ``calls`` is empty
        and ``content`` holds the raw text.
    """
    if not text:
        return ParseResult(content=None if text is None else "")
    raw = text
    try:
        text = _strip_end(text)
        reasoning = None
        if "<|channel|>" in text or "to=functions." in text:
            return _parse_harmony(text)
        m = _THINK_RE.match(text)
        if m:
            reasoning = _content(m.group(1))
            text = text[m.end() :]
        # Llama 3.1 may open a JSON call with <|python_tag|>; it carries no content.
        text = text.replace("<|python_tag|>", "\n")
        result: ParseResult | None
        if "<tool_call>" in text:
            result = _parse_tags(text)
        elif "<｜tool▁call▁begin｜>" in text:
            result = _parse_deepseek(text)
        elif "[TOOL_CALLS]" in text:
            result = _parse_prefixed(text, "[TOOL_CALLS]", "tool_calls_prefix")
        else:
            result = _parse_fenced(text) or _parse_trailing_json(text)
        if result is None:
            result = ParseResult(_content(text) if text.strip() else text, syntax=None)
        result.reasoning = reasoning
        return result
    except (ToolCallParseError, RecursionError) as e:
        return ParseResult(content=raw, error=str(e) or type(e).__name__)


__all__ = ["END_MARKERS", "ParseResult", "ParsedCall", "parse_tool_calls"]
