"""Render a :class:`Trajectory` with the model's own chat template into ids and labels.

Masks are never found by searching role markers. For every assistant turn ``i`` the
renderer renders two prefixes with the template itself: the history with a generation
prompt (``prompt_i``) and the history including turn ``i`` (``end_i``). When each is a
token prefix of the next render, the tokens between them are exactly what the model must
emit for that turn (content, reasoning, tool calls and the end-of-turn token).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from xlam.data.schema import Trajectory

IGNORE_INDEX = -100
RenderMode = Literal["all_turns", "per_turn", "auto"]


class RenderError(ValueError):
    """A trajectory cannot be rendered with an exact mask."""


@dataclass
class RenderedSample:
    """One training sample.

    Attributes:
        id: Trajectory id (suffixed with ``#turn`` in ``per_turn`` mode).
        source: Source name of the trajectory.
        input_ids: Token ids.
        labels: Same length as ``input_ids``; ``IGNORE_INDEX`` where not supervised.
        mode: The mode that produced the sample.
    """

    id: str
    source: str
    input_ids: list[int]
    labels: list[int]
    mode: str = "all_turns"
    spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def num_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class RenderOptions:
    """Options that change what the renderer produces (and so the cache key)."""

    mode: RenderMode = "auto"
    enable_thinking: bool | None = None
    arguments_as_string: bool = False
    max_length: int | None = None

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def _chat_messages(traj: Trajectory, arguments_as_string: bool) -> tuple[list[dict], list[dict]]:
    msgs, tools = traj.to_chat()
    if arguments_as_string:
        for m in msgs:
            for c in m.get("tool_calls", []):
                c["function"] = {
                    "name": c["function"]["name"],
                    "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False),
                }
    return msgs, tools


class Renderer:
    """Turns trajectories into token ids and assistant-only labels for one tokenizer.

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template.
        options: Render options.
    """

    def __init__(self, tokenizer: Any, options: RenderOptions | None = None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise RenderError(f"tokenizer {tokenizer.name_or_path!r} has no chat template")
        self.tokenizer = tokenizer
        self.options = options or RenderOptions()

    def _template(self, msgs: list[dict], tools: list[dict], gen: bool) -> str:
        kwargs: dict[str, Any] = {}
        if self.options.enable_thinking is not None:
            kwargs["enable_thinking"] = self.options.enable_thinking
        return self.tokenizer.apply_chat_template(
            msgs,
            tools=tools or None,
            tokenize=False,
            add_generation_prompt=gen,
            **kwargs,
        )

    def _encode(self, texts: list[str]) -> list[list[int]]:
        # The template already carries BOS where the model wants it.
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def turn_boundaries(self, traj: Trajectory) -> tuple[list[dict], list[dict], list[int]]:
        msgs, tools = _chat_messages(traj, self.options.arguments_as_string)
        idx = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        if not idx:
            raise RenderError(f"{traj.id}: no assistant turn to supervise")
        return msgs, tools, idx

    def render(self, traj: Trajectory) -> list[RenderedSample]:
        """Render one trajectory into one (``all_turns``) or several (``per_turn``) samples."""
        msgs, tools, idx = self.turn_boundaries(traj)
        texts: list[str] = []
        for i in idx:
            texts.append(self._template(msgs[:i], tools, gen=True))
            texts.append(self._template(msgs[: i + 1], tools, gen=False))
        full = self._template(msgs, tools, gen=False)
        ids = self._encode([*texts, full])
        full_ids = ids[-1]
        mode = self.options.mode
        if mode in ("all_turns", "auto"):
            stable = all(_is_prefix(p, full_ids) for p in ids[:-1])
            if stable:
                labels = [IGNORE_INDEX] * len(full_ids)
                spans = []
                for k in range(len(idx)):
                    a, b = len(ids[2 * k]), len(ids[2 * k + 1])
                    labels[a:b] = full_ids[a:b]
                    spans.append((a, b))
                return [RenderedSample(traj.id, traj.source, full_ids, labels, "all_turns", spans)]
            if mode == "all_turns":
                raise RenderError(
                    f"{traj.id}: template is not prefix-stable for this trajectory; "
                    "use mode=per_turn or auto"
                )
        out = []
        for k in range(len(idx)):
            prompt, end = ids[2 * k], ids[2 * k + 1]
            if not _is_prefix(prompt, end):
                raise RenderError(
                    f"{traj.id}: assistant turn {k}: the generation prompt is not a token "
                    "prefix of the rendered turn"
                )
            labels = [IGNORE_INDEX] * len(prompt) + end[len(prompt) :]
            out.append(
                RenderedSample(f"{traj.id}#{k}", traj.source, end, labels, "per_turn",
                               [(len(prompt), len(end))])
            )
        return out


def _is_prefix(a: list[int], b: list[int]) -> bool:
    return len(a) <= len(b) and b[: len(a)] == a
