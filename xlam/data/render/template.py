"""The chat template: rendering conversations with it, and probing what it can render.

:class:`ChatTemplate` renders through ``apply_chat_template`` or, when it gives the same
text on probe conversations, straight through the compiled template.
:func:`probe_capabilities` renders small probe conversations to learn whether the template
shows tools, calls (and in which argument form), parallel calls and reasoning;
:func:`resolve_tool_format` picks the tool format that works from that.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from xlam.data.render.calls import call_in_text

log = logging.getLogger(__name__)

_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "xlam_probe_tool",
        "description": "Probe tool.",
        "parameters": {
            "type": "object",
            "properties": {"xlam_probe_arg": {"type": "string"}},
            "required": ["xlam_probe_arg"],
        },
    },
}


@dataclass
class TemplateCapabilities:
    """What a chat template can render, found by rendering probe conversations.

    Attributes:
        renders_tools: The schemas passed as ``tools=`` appear in the render.
        renders_calls: Tool calls appear in the render (with the arguments form below).
        arguments_as_string: The template needs arguments as a JSON string.
        parallel_calls: Two calls in one turn both appear (no raise, no drop).
        renders_reasoning: Reasoning of the final assistant turn appears in the render.
    """

    renders_tools: bool = False
    renders_calls: bool = False
    arguments_as_string: bool = False
    parallel_calls: bool = False
    renders_reasoning: bool = False

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)


class DirectTemplate:
    """Renders with the compiled chat template, skipping per-call input copying.

    ``apply_chat_template`` deep-copies and normalises every conversation it is given;
    prefix rendering hands it the same messages once per turn, so that copying grows with
    the square of the length. Here the messages are normalised once per trajectory in the
    same way (``None`` values dropped, reasoning aliases filled) and every prefix is a
    slice of that list. :class:`ChatTemplate` compares this path with
    ``apply_chat_template`` on probe conversations and falls back when they differ.
    """

    def __init__(self, tokenizer: Any, template_kwargs: dict[str, Any]) -> None:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        self._compile = _compile_jinja_template
        self.tokenizer = tokenizer
        self.kwargs = {**tokenizer.special_tokens_map, **template_kwargs}
        self._templates: dict[bool, Any] = {}

    def template(self, has_tools: bool) -> Any:
        tpl = self._templates.get(has_tools)
        if tpl is None:
            source = self.tokenizer.get_chat_template(None, [{}] if has_tools else None)
            tpl = self._templates[has_tools] = self._compile(source)
        return tpl

    @staticmethod
    def normalize(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for m in messages:
            m = {k: v for k, v in m.items() if v is not None}
            reasoning = next(
                (m[k] for k in ("reasoning_content", "thinking", "reasoning") if k in m), None
            )
            if reasoning is not None:
                m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
            out.append(m)
        return out

    def render(
        self, convs: list[list[dict[str, Any]]], tools: list[dict[str, Any]] | None, gen: bool
    ) -> list[str]:
        tpl = self.template(bool(tools))
        return [
            tpl.render(
                messages=c,
                tools=tools or None,
                documents=None,
                add_generation_prompt=gen,
                **self.kwargs,
            )
            for c in convs
        ]


class ChatTemplate:
    """Renders conversations with a tokenizer's chat template, by the fastest exact path.

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template.
        template_kwargs: Extra template variables (``enable_thinking``).
        direct: Render with the compiled template directly when it renders the probe
            conversations exactly like ``apply_chat_template``.
    """

    def __init__(self, tokenizer: Any, template_kwargs: dict[str, Any], direct: bool = True):
        self.tokenizer = tokenizer
        self.template_kwargs = template_kwargs
        self.direct: DirectTemplate | None = None
        if direct:
            self.direct = self._setup_direct()

    def apply(
        self,
        convs: list[list[dict[str, Any]]],
        tools: list[dict[str, Any]] | None,
        gen: bool,
        normalized: bool = False,
    ) -> list[str]:
        """Render conversations; ``normalized`` when they come from :meth:`normalize`."""
        if not convs:
            return []
        if self.direct is not None:
            if not normalized:
                convs = [self.direct.normalize(c) for c in convs]
            return self.direct.render(convs, tools, gen)
        out = self.tokenizer.apply_chat_template(
            convs,
            tools=tools or None,
            tokenize=False,
            add_generation_prompt=gen,
            **self.template_kwargs,
        )
        return [out] if isinstance(out, str) else list(out)

    def try_render(
        self, msgs: list[dict[str, Any]], tools: list[dict] | None, normalized: bool = False
    ) -> str | None:
        """The render of one conversation, or ``None`` if the template raises."""
        try:
            return self.apply([msgs], tools, False, normalized)[0]
        except Exception:
            return None

    def normalize(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Messages as the direct path wants them, once per trajectory (as they are
        without the direct path, where ``apply_chat_template`` normalises each call)."""
        return self.direct.normalize(messages) if self.direct is not None else messages

    def _setup_direct(self) -> DirectTemplate | None:
        """The direct template path, if it renders exactly like ``apply_chat_template``."""
        try:
            direct = DirectTemplate(self.tokenizer, self.template_kwargs)
        except Exception:
            return None
        args = {"xlam_probe_arg": "xlam_probe_value"}
        convs = [
            [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
            [
                {"role": "user", "content": "U"},
                {"role": "assistant", "content": "A", "reasoning_content": "R"},
                {"role": "user", "content": "V"},
            ],
            [
                {"role": "user", "content": "U"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "xlam_probe_tool", "arguments": args},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "name": "xlam_probe_tool", "content": "1"},
            ],
        ]
        for tools in (None, [_PROBE_TOOL]):
            for conv in convs:
                for gen in (False, True):
                    try:
                        want: Any = self.apply([conv], tools, gen)[0]
                    except Exception as e:
                        want = type(e)
                    try:
                        got: Any = direct.render([direct.normalize(conv)], tools, gen)[0]
                    except Exception as e:
                        got = type(e)
                    if got != want:
                        log.info("direct template rendering differs; using apply_chat_template")
                        return None
        return direct


def probe_capabilities(template: ChatTemplate) -> TemplateCapabilities:
    """Render small probe conversations to learn what the template supports."""
    caps = TemplateCapabilities()
    user = {"role": "user", "content": "xlam probe question"}
    try:
        prompt = template.apply([[user]], [_PROBE_TOOL], gen=True)[0]
        caps.renders_tools = "xlam_probe_tool" in prompt
    except Exception:
        caps.renders_tools = False
    args = {"xlam_probe_arg": "xlam_probe_value"}

    def turn(n_calls: int, as_string: bool) -> dict[str, Any]:
        a: Any = json.dumps(args) if as_string else args
        calls = [
            {
                "id": f"call_{k}",
                "type": "function",
                "function": {"name": "xlam_probe_tool", "arguments": a},
            }
            for k in range(n_calls)
        ]
        return {"role": "assistant", "content": "", "tool_calls": calls}

    for as_string in (False, True):
        text = template.try_render([user, turn(1, as_string)], [_PROBE_TOOL])
        # The value is only in the call, so the schema in the prompt cannot match.
        if text is not None and call_in_text("xlam_probe_tool", args, text):
            caps.renders_calls, caps.arguments_as_string = True, as_string
            break
    if caps.renders_calls:
        text = template.try_render([user, turn(2, caps.arguments_as_string)], [_PROBE_TOOL])
        caps.parallel_calls = text is not None and text.count("xlam_probe_value") >= 2
    thought = "xlam probe thought"
    text = template.try_render(
        [
            user,
            {
                "role": "assistant",
                "content": "xlam probe answer",
                "reasoning_content": thought,
                "thinking": thought,
            },
        ],
        None,
    )
    caps.renders_reasoning = text is not None and thought in text
    return caps


def resolve_tool_format(requested: str, caps: TemplateCapabilities, name: str) -> str:
    """``requested``, or for ``auto`` the first tool format the template supports."""
    fmt = requested
    if fmt == "auto":
        if caps.renders_calls and caps.renders_tools:
            fmt = "template"
        elif caps.renders_calls:
            fmt = "system"
        else:
            fmt = "prompt"
        log.info("tool_format=auto resolved to %r for %s", fmt, name)
    return fmt
