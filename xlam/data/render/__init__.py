"""Render a :class:`Trajectory` with the model's own chat template into ids and labels.

Masks are never found by searching role markers. For every assistant turn ``i`` the
renderer renders prefixes with the template itself: the history with a generation prompt
(``prompt_i``) and the history including turn ``i`` (``end_i``). When ``prompt_i`` is a
token prefix of ``end_i``, the tokens between them are exactly what the model must emit
for that turn (content, reasoning, tool calls and the end-of-turn token). When every
``end_i`` is also a token prefix of the full render, the whole trajectory is one sample
(``all_turns``); otherwise each assistant turn becomes its own sample (``per_turn``).

Every render is checked before it becomes a sample: the template must show the tools and
every call, each supervised span must end with an end-of-turn token, no BOS may appear
mid-sequence and truncation may not cut a tool call. Problems are counted in a
:class:`RenderReport` with example trajectory ids; ``strict`` turns them into
:class:`RenderError`. See ``docs/rendering.md``.

The package, one job a module: :mod:`.report` (problems and the report), :mod:`.options`,
:mod:`.sample` (the sample and its data-side cut), :mod:`.tool_format` (tool formats and
prompt mode), :mod:`.calls` (finding a call in rendered text), :mod:`.encoder` (the
piecewise token encoder), :mod:`.template` (rendering with and probing the chat template),
:mod:`.core` (the masking core) and :mod:`.annotate` (per-token roles for ``inspect``).
"""

from __future__ import annotations

from xlam.data.render.calls import call_in_text
from xlam.data.render.core import LOGGED_PER_KIND, Renderer, render_many
from xlam.data.render.encoder import TokenEncoder
from xlam.data.render.options import (
    MODES,
    RENDERER_VERSION,
    TOOL_FORMATS,
    RenderMode,
    RenderOptions,
    ToolFormat,
)
from xlam.data.render.report import ERROR_KINDS, WARNING_KINDS, RenderError, RenderReport
from xlam.data.render.sample import IGNORE_INDEX, RenderedSample, Truncation, truncate_sample
from xlam.data.render.template import TemplateCapabilities
from xlam.data.render.tool_format import (
    PROMPT_FORMAT_INSTRUCTION,
    TOOL_RESULTS_HEADER,
    TOOLS_HEADER,
    format_calls_json,
    prompt_mode_messages,
    system_mode_messages,
)

__all__ = [
    "ERROR_KINDS",
    "IGNORE_INDEX",
    "LOGGED_PER_KIND",
    "MODES",
    "PROMPT_FORMAT_INSTRUCTION",
    "RENDERER_VERSION",
    "TOOLS_HEADER",
    "TOOL_FORMATS",
    "TOOL_RESULTS_HEADER",
    "WARNING_KINDS",
    "RenderError",
    "RenderMode",
    "RenderOptions",
    "RenderReport",
    "RenderedSample",
    "Renderer",
    "TemplateCapabilities",
    "TokenEncoder",
    "ToolFormat",
    "Truncation",
    "call_in_text",
    "format_calls_json",
    "prompt_mode_messages",
    "render_many",
    "system_mode_messages",
    "truncate_sample",
]
