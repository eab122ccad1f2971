"""vLLM tool-parser plugin: serve our models' tool calls as OpenAI ``tool_calls``.

Usage::

    PLUGIN=$(python -c 'import xlam.serving.vllm_plugin as m; print(m.__file__)')
    vllm serve MODEL --enable-auto-tool-choice --tool-parser-plugin "$PLUGIN" \\
        --tool-call-parser xlam_plugin

Loading the file registers :class:`XlamToolParser` under the name ``xlam``, replacing
vLLM's own ``xlam`` parser (which knows fewer syntaxes), and under ``xlam_plugin``, which
fails loudly where ``xlam`` would fall back to vLLM's parser if the plugin did not load.
Served with vLLM 0.32 (CPU) in ``tests/test_serving.py``. The parsing itself is
:func:`xlam.serving.parser.parse_tool_calls`; streaming emits each call whole once it is
complete, and content before the calls as it arrives.

vLLM is optional: without it this module still imports (``VLLM_AVAILABLE`` is False) and
:class:`StreamingToolCallParser` can be used and tested on its own.
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from xlam.serving.parser import ParsedCall, parse_tool_calls

PARSER_NAME = "xlam"
# Also registered under a name vLLM does not ship: asking for it fails loudly if the plugin
# did not load, where ``xlam`` would quietly fall back to vLLM's own parser.
PLUGIN_PARSER_NAME = "xlam_plugin"

# vLLM moves these classes between releases; each layout is tried, newest first.
_PARSER_MODULES = ("vllm.tool_parsers", "vllm.entrypoints.openai.tool_parsers")
_PROTOCOL_MODULES = (
    "vllm.entrypoints.generate.base.protocol",  # 0.3x
    "vllm.entrypoints.openai.engine.protocol",
    "vllm.entrypoints.openai.protocol",
)
_PROTOCOL_NAMES = (
    "DeltaFunctionCall",
    "DeltaMessage",
    "DeltaToolCall",
    "ExtractedToolCallInformation",
    "FunctionCall",
    "ToolCall",
)


def _import_first(modules: tuple[str, ...], names: tuple[str, ...]) -> tuple[Any, ...] | None:
    for name in modules:
        try:
            module = importlib.import_module(name)
            return tuple(getattr(module, n) for n in names)
        except (ImportError, AttributeError):
            continue
    return None


_parsers = _import_first(_PARSER_MODULES, ("ToolParser", "ToolParserManager"))
_protocol = _import_first(_PROTOCOL_MODULES, _PROTOCOL_NAMES)
VLLM_AVAILABLE = _parsers is not None and _protocol is not None
if VLLM_AVAILABLE:
    ToolParser, ToolParserManager = _parsers
    (
        DeltaFunctionCall,
        DeltaMessage,
        DeltaToolCall,
        ExtractedToolCallInformation,
        FunctionCall,
        ToolCall,
    ) = _protocol
else:  # vLLM absent (or too different): the plugin stays inert.
    ToolParser = object  # type: ignore[assignment,misc]

# Where tool calls may begin in a stream; content is only released before these.
CALL_MARKERS: tuple[str, ...] = (
    "<tool_call>",
    "[TOOL_CALLS]",
    "```",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁call▁begin｜>",
    "to=functions.",
    "<|python_tag|>",
)
_JSON_LINE_START = re.compile(r"(?:^|\n)[ \t]*(?=[\[{])")


def _call_start(text: str) -> int | None:
    found = [i for i in (text.find(m) for m in CALL_MARKERS) if i >= 0]
    m = _JSON_LINE_START.search(text)
    if m:
        found.append(m.end())
    return min(found) if found else None


def _held_tail(text: str) -> int:
    """Length of a tail that may still grow into a call marker (kept back from content)."""
    longest = max(len(m) for m in CALL_MARKERS)
    for k in range(min(len(text), longest), 0, -1):
        tail = text[-k:]
        if any(m.startswith(tail) for m in CALL_MARKERS):
            return k
    # A line break may be followed by a JSON list of calls.
    return len(text) - len(text.rstrip())


def _may_be_call(region: str) -> bool:
    """Whether a region that does not parse as calls yet may still become one."""
    r = region.lstrip()
    if r.startswith("```"):
        lang, newline, inner = r[3:].partition("\n")
        if not newline:
            return "json".startswith(lang.strip().lower())
        if lang.strip().lower() not in ("", "json") or "```" in inner:
            return False
        return _may_be_call(inner)
    if not r or r.startswith(CALL_MARKERS) or any(m.startswith(r) for m in CALL_MARKERS):
        return True
    try:
        json.loads(r)
        return False  # complete JSON that did not parse as calls: plain content
    except ValueError:
        pass
    compact = re.sub(r"\s+", "", r)
    return compact in ("[", "{") or compact.startswith(("[{", '{"', "{'"))


class StreamingToolCallParser:
    """Incremental parsing of a growing model output (no vLLM needed).

    Each :meth:`update` gets the whole text so far and returns the new content delta and
    the calls completed since the last update.
    """

    def __init__(self) -> None:
        self.content_sent = 0
        self.calls_sent = 0
        self.region_start: int | None = None
        self.released = False  # the "call" region turned out to be plain text

    def update(self, text: str) -> tuple[str, list[ParsedCall]]:
        if self.region_start is None:
            self.region_start = _call_start(text)
        if self.region_start is None or self.released:
            stop = len(text) if self.released else len(text) - _held_tail(text)
            return self._content(text, stop), []
        content = self._content(text, self.region_start)
        region = text[self.region_start :]
        result = parse_tool_calls(region)
        if result.error or not result.calls:
            if not result.error and not _may_be_call(region):
                self.released = True
                return content + self._content(text, len(text) - _held_tail(text)), []
            return content, []
        new = result.calls[self.calls_sent :]
        self.calls_sent = len(result.calls)
        return content, new

    def _content(self, text: str, stop: int) -> str:
        if stop <= self.content_sent:
            return ""
        out = text[self.content_sent : stop]
        self.content_sent = stop
        return out


def _call_id() -> str:
    return f"chatcmpl-tool-{uuid.uuid4().hex[:24]}"


if VLLM_AVAILABLE:

    class XlamToolParser(ToolParser):  # type: ignore[valid-type,misc]
        """vLLM ``ToolParser`` backed by :func:`parse_tool_calls`."""

        def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(tokenizer, *args, **kwargs)
            self._stream = StreamingToolCallParser()

        def adjust_request(self, request: Any) -> Any:
            request = super().adjust_request(request)
            if getattr(request, "tools", None) and getattr(request, "tool_choice", None) != "none":
                # Call markers are special tokens in some vocabularies; keep them in the text.
                request.skip_special_tokens = False
            return request

        def extract_tool_calls(self, model_output: str, request: Any) -> Any:
            result = parse_tool_calls(model_output)
            if not result.calls:
                return ExtractedToolCallInformation(
                    tools_called=False, tool_calls=[], content=result.content
                )
            calls = [
                ToolCall(
                    id=c.id or _call_id(),
                    type="function",
                    function=FunctionCall(
                        name=c.name, arguments=json.dumps(c.arguments, ensure_ascii=False)
                    ),
                )
                for c in result.calls
            ]
            return ExtractedToolCallInformation(
                tools_called=True, tool_calls=calls, content=result.content
            )

        def extract_tool_calls_streaming(
            self,
            previous_text: str,
            current_text: str,
            delta_text: str,
            previous_token_ids: Sequence[int],
            current_token_ids: Sequence[int],
            delta_token_ids: Sequence[int],
            request: Any,
        ) -> Any:
            content, calls = self._stream.update(current_text)
            deltas = []
            for c in calls:
                args = json.dumps(c.arguments, ensure_ascii=False)
                index = len(self.prev_tool_call_arr)
                # vLLM compares these with what was streamed to finish the last call.
                self.prev_tool_call_arr.append({"name": c.name, "arguments": c.arguments})
                self.streamed_args_for_tool.append(args)
                self.current_tool_id = index
                self.current_tool_name_sent = True
                deltas.append(
                    DeltaToolCall(
                        index=index,
                        id=c.id or _call_id(),
                        type="function",
                        function=DeltaFunctionCall(name=c.name, arguments=args).model_dump(
                            exclude_none=True
                        ),
                    )
                )
            if not content and not deltas:
                return None
            if deltas:
                return DeltaMessage(content=content or None, tool_calls=deltas)
            return DeltaMessage(content=content)


def register(name: str = PARSER_NAME) -> bool:
    """Register :class:`XlamToolParser` with vLLM under ``name``.

    Returns:
        Whether vLLM was found (nothing happens without it).
    """
    if not VLLM_AVAILABLE:
        return False
    ToolParserManager.register_module(name=name, force=True, module=XlamToolParser)
    return True


# vLLM imports this file for --tool-parser-plugin; registering here is the plugin protocol.
register()
register(PLUGIN_PARSER_NAME)

__all__ = [
    "CALL_MARKERS",
    "PARSER_NAME",
    "PLUGIN_PARSER_NAME",
    "VLLM_AVAILABLE",
    "StreamingToolCallParser",
    "register",
]
