"""Message preparation: the tool formats, prompt mode and the argument forms templates want.

``template`` hands tools and calls to the chat template; ``system`` writes the tool schemas
into the system prompt and leaves calls to the template; ``prompt`` (the xLAM prompt
format) also writes calls as a JSON list, for templates without tool support. The same
functions serve inference, so the model sees the prompt it was trained on.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from xlam.data.schema import Trajectory, parse_arguments

# The format instruction of prompt mode (tools in the system prompt, calls as a JSON list).
PROMPT_FORMAT_INSTRUCTION = (
    "To use tools, answer with only a JSON list of calls and nothing else, for example "
    '[{"name": "tool_name", "arguments": {"argument_name": "value"}}]. Each call names one '
    'of the tools above in "name" and gives its arguments as a JSON object in "arguments"; '
    "list several calls to run them in parallel. When no tool is needed, or you need more "
    "information from the user, answer in plain text."
)
TOOLS_HEADER = "# Available tools\nThe tools you can call, as JSON schemas:"
TOOL_RESULTS_HEADER = "Tool results:"


@dataclass
class Chat:
    """A trajectory as the template sees it, with where each message came from."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    origin: list[tuple[str, int]]  # per message: (role in the trajectory, conversation index)
    # Per assistant message (in order): the calls the render must show, as (name, args).
    # Kept apart from the messages because prompt mode turns calls into text.
    calls: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)


def format_calls_json(calls: list[dict[str, Any]]) -> str:
    """The prompt-mode target: a JSON list of ``{"name", "arguments"}`` objects.

    Args:
        calls: OpenAI-style tool calls (``{"function": {"name", "arguments"}}``) or bare
            ``{"name", "arguments"}`` dicts; string arguments are parsed.

    Raises:
        SchemaError: Arguments that are not an object or its JSON text
            (:func:`~xlam.data.schema.parse_arguments`).
    """
    out = []
    for c in calls:
        fn = c.get("function", c)
        name = fn["name"]
        out.append({"name": name, "arguments": parse_arguments(fn.get("arguments"), name)})
    return json.dumps(out, ensure_ascii=False)


def _tool_lines(tools: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)


def _with_system(messages: list[dict[str, Any]], extra: str) -> list[dict[str, Any]]:
    """Append ``extra`` to the system message, creating one when there is none."""
    msgs = list(messages)
    if msgs and msgs[0]["role"] == "system":
        base = msgs[0].get("content") or ""
        msgs[0] = {**msgs[0], "content": f"{base}\n\n{extra}" if base else extra}
    else:
        msgs.insert(0, {"role": "system", "content": extra})
    return msgs


def system_mode_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Write the tool schemas into the system prompt; calls stay structured.

    For templates that render tool calls natively but ignore ``tools=`` (DeepSeek-V3).
    Use the same function at inference so the model sees the prompt it was trained on.
    """
    if not tools:
        return list(messages)
    return _with_system(messages, f"{TOOLS_HEADER}\n{_tool_lines(tools)}")


def prompt_mode_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rewrite HF-style chat messages into the xLAM prompt format.

    Tools and :data:`PROMPT_FORMAT_INSTRUCTION` go into the system prompt; an assistant
    turn with calls becomes its text (if any) followed by the JSON list of calls; a run of
    tool results becomes one user turn holding a JSON list of ``{"name", "content"}``. The
    result needs no tool support from the template. Use it at inference too.

    Args:
        messages: Chat messages as produced by :meth:`Trajectory.to_chat`.
        tools: OpenAI-style function schemas.

    Returns:
        New messages; the inputs are not modified.
    """
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if pending:
            body = json.dumps(pending, ensure_ascii=False)
            out.append({"role": "user", "content": f"{TOOL_RESULTS_HEADER}\n{body}"})
            pending.clear()

    for m in messages:
        if m["role"] == "tool":
            content: Any = m.get("content") or ""
            # Results that are JSON stay structured so the list is valid JSON of JSON.
            with contextlib.suppress(TypeError, ValueError):
                content = json.loads(content)
            pending.append({"name": m.get("name") or "", "content": content})
            continue
        flush()
        if m["role"] == "assistant" and m.get("tool_calls"):
            d = {k: v for k, v in m.items() if k != "tool_calls"}
            text = (m.get("content") or "").strip()
            calls = format_calls_json(m["tool_calls"])
            d["content"] = f"{text}\n{calls}" if text else calls
            out.append(d)
        else:
            out.append(dict(m))
    flush()
    if tools:
        out = _with_system(
            out, f"{TOOLS_HEADER}\n{_tool_lines(tools)}\n\n{PROMPT_FORMAT_INSTRUCTION}"
        )
    return out


def _arguments_to_strings(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m.get("tool_calls"):
            m = dict(m)
            m["tool_calls"] = [
                {
                    **c,
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": c["function"]["arguments"]
                        if isinstance(c["function"]["arguments"], str)
                        else json.dumps(c["function"]["arguments"], ensure_ascii=False),
                    },
                }
                for c in m["tool_calls"]
            ]
        out.append(m)
    return out


def _strip_reasoning(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("reasoning_content", "thinking", "reasoning")
    return [{k: v for k, v in m.items() if k not in keys} for m in messages]


def _prompt_origin(
    after: list[dict[str, Any]], origin: list[tuple[str, int]], had_system: bool
) -> list[tuple[str, int]]:
    """Map prompt-mode messages back to trajectory roles (tool runs became user turns)."""
    out: list[tuple[str, int]] = []
    if after and after[0]["role"] == "system":
        out.append(("system", -1))
    src = origin[1:] if had_system else origin
    k = 0
    while k < len(src):
        out.append(src[k])
        if src[k][0] == "tool":
            while k + 1 < len(src) and src[k + 1][0] == "tool":
                k += 1
        k += 1
    return out


def prepare_chat(
    traj: Trajectory, tool_format: str, arguments_as_string: bool, drop_reasoning: bool
) -> Chat:
    """The messages and tools a template gets for ``traj`` in ``tool_format``.

    Args:
        traj: The trajectory.
        tool_format: ``template``, ``system`` or ``prompt`` (``auto`` already resolved).
        arguments_as_string: Give call arguments as JSON strings (``template``/``system``).
        drop_reasoning: Remove the reasoning of every turn (``enable_thinking=False``).
    """
    msgs, tools = traj.to_chat()
    calls = [
        [(c.name, c.arguments) for c in m.tool_calls]
        for m in traj.conversation
        if m.role == "assistant"
    ]
    had_system = bool(msgs) and msgs[0]["role"] == "system"
    origin: list[tuple[str, int]] = [("system", -1)] if had_system else []
    origin.extend((m.role, i) for i, m in enumerate(traj.conversation))
    if drop_reasoning:
        msgs = _strip_reasoning(msgs)
    if tool_format == "prompt":
        new = prompt_mode_messages(msgs, tools)
        return Chat(new, [], _prompt_origin(new, origin, had_system), calls)
    if tool_format == "system" and tools:
        msgs = system_mode_messages(msgs, tools)
        if not had_system:
            origin.insert(0, ("system", -1))
        tools = []
    if arguments_as_string:
        msgs = _arguments_to_strings(msgs)
    return Chat(msgs, tools, origin, calls)
