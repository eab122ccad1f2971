"""Eval prompts rendered exactly as training rendered them.

A request's chat goes through the same :class:`~xlam.data.render.Renderer` (tool format,
argument form, reasoning policy) that made the training samples, and the chat template's
generation prompt is appended: the text a trained model sees before its turn.
"""

from __future__ import annotations

from typing import Any

from xlam.data.render import Renderer, RenderOptions
from xlam.data.schema import Trajectory


def to_trajectory(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], tid: str = "eval"
) -> Trajectory:
    """OpenAI chat messages and tools as a unified :class:`Trajectory`.

    A leading system message becomes ``task_instruction``; call arguments may be objects
    or JSON strings.
    """
    msgs = list(messages)
    instruction = ""
    if msgs and msgs[0].get("role") == "system":
        instruction = msgs[0].get("content") or ""
        msgs = msgs[1:]
    conversation = []
    for m in msgs:
        d: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            d["tool_calls"] = m["tool_calls"]
        if m.get("reasoning_content") or m.get("reasoning"):
            d["reasoning"] = m.get("reasoning_content") or m.get("reasoning")
        if m["role"] == "tool":
            d["tool_call_id"] = m.get("tool_call_id") or ""
            d["name"] = m.get("name") or ""
        conversation.append(d)
    return Trajectory.from_dict(
        {
            "unique_trajectory_id": tid,
            "source": "eval",
            "task_instruction": instruction,
            "tools": tools,
            "conversation": conversation,
        }
    )


class PromptBuilder:
    """Renders eval prompts with the training renderer.

    Args:
        tokenizer: The model's tokenizer (with its chat template).
        options: The render options the model was trained with (``data.render``).
    """

    def __init__(self, tokenizer: Any, options: RenderOptions | dict[str, Any] | None = None):
        if isinstance(options, dict):
            known = RenderOptions.__dataclass_fields__
            options = RenderOptions(**{k: v for k, v in options.items() if k in known})
        self.tokenizer = tokenizer
        self.renderer = Renderer(tokenizer, options or RenderOptions())

    @property
    def tool_format(self) -> str:
        """The resolved tool format (``template``, ``system`` or ``prompt``)."""
        return self.renderer.tool_format

    def prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        """The prompt text for the assistant turn that follows ``messages``."""
        chat = self.renderer.chat(to_trajectory(messages, tools))
        return self.renderer.template.apply([chat.messages], chat.tools, gen=True, normalized=True)[
            0
        ]


__all__ = ["PromptBuilder", "to_trajectory"]
