"""The options that change what the renderer produces, and so the cache key."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from xlam.data.render.report import RenderError

# Bump when a change in this package changes the samples produced for the same options,
# so caches keyed by RenderOptions.key() are invalidated.
RENDERER_VERSION = 2

RenderMode = Literal["all_turns", "per_turn", "auto"]
ToolFormat = Literal["template", "system", "prompt", "auto"]
MODES: tuple[str, ...] = ("all_turns", "per_turn", "auto")
TOOL_FORMATS: tuple[str, ...] = ("template", "system", "prompt", "auto")


@dataclass
class RenderOptions:
    """Options that change what the renderer produces (and so the cache key).

    Attributes:
        mode: ``all_turns``, ``per_turn`` or ``auto`` (``all_turns`` when prefix-stable).
        enable_thinking: Passed to templates that read it (Qwen3). ``False`` also drops
            the reasoning of every turn, since such a model is not meant to think.
        arguments_as_string: Give tool-call arguments to the template as JSON strings;
            ``None`` detects what the template needs (DeepSeek-V3 wants strings).
        max_length: Truncate samples to this many tokens (``None``: no truncation).
        tool_format: ``template`` (tools and calls by the template), ``system`` (tool
            schemas written into the system prompt, calls by the template, for templates
            that render calls but ignore ``tools=``), ``prompt`` (tools and a format
            instruction in the system prompt, calls as a JSON list: the xLAM prompt format,
            for templates without tool support) or ``auto`` (the first that works).
        supervise_reasoning: Whether reasoning tokens of assistant turns are supervised.
        shared_history: Preference pairs only: the history before the compared turn is
            in a pair's sample once, both sides branch off it
            (:func:`~xlam.data.render.pairs.render_pair`; trained with
            ``model.attn_implementation=xlam_segments``).
        strict: Raise :class:`RenderError` instead of skipping and counting a bad
            trajectory. Not part of :meth:`key`: it never changes a produced sample.
    """

    mode: RenderMode = "auto"
    enable_thinking: bool | None = None
    arguments_as_string: bool | None = None
    max_length: int | None = None
    tool_format: ToolFormat = "template"
    supervise_reasoning: bool = True
    shared_history: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RenderError(
                f"mode must be one of {', '.join(MODES)}, got {self.mode!r}", "config"
            )
        if self.tool_format not in TOOL_FORMATS:
            raise RenderError(
                f"tool_format must be one of {', '.join(TOOL_FORMATS)}, got {self.tool_format!r}",
                "config",
            )
        if self.max_length is not None and self.max_length < 1:
            raise RenderError(f"max_length must be positive, got {self.max_length}", "config")

    def key(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k != "strict"}
        d["renderer_version"] = RENDERER_VERSION
        return json.dumps(d, sort_keys=True)
