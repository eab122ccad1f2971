"""What can go wrong in a render and the report that counts it.

:data:`ERROR_KINDS` make a trajectory unusable (skipped and counted, or
:class:`RenderError` in strict mode); :data:`WARNING_KINDS` still give exact samples.
:class:`RenderReport` counts both, with example trajectory ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Problems that make a trajectory unusable: skipped and counted, or RenderError if strict.
ERROR_KINDS: dict[str, str] = {
    "no_assistant_turn": "the trajectory has no assistant turn to supervise",
    "template_error": "the chat template raised while rendering",
    "tools_not_rendered": "the template does not show the tool schemas to the model",
    "tool_call_dropped": "the template dropped a tool call (name or arguments) from the render",
    "history_mismatch": "adding the turn changed the rendered history: no exact mask exists",
    "not_prefix_stable": "mode=all_turns but the template is not prefix-stable here",
    "missing_end_of_turn": "a supervised span does not end with an end-of-turn token",
    "empty_turn": "an assistant turn rendered to no tokens",
    "no_supervised_tokens": "the sample has no supervised token",
    "mask_mismatch": "the mask does not cover exactly the assistant spans",
    "bos_inside": "a BOS token appears after the start of the sequence",
    "truncated_tool_call": "max_length cuts through a tool call",
}
# Facts worth knowing that still give exact samples; counted, never fatal.
WARNING_KINDS: dict[str, str] = {
    "per_turn_fallback": "auto mode: not prefix-stable, rendered one sample per turn",
    "gen_prompt_mismatch": "the generation prompt differs from the rendered turn header; "
    "the prompt is their common prefix",
    "content_dropped": "the template did not render an assistant turn's text",
    "reasoning_dropped": "the template did not render an assistant turn's reasoning",
    "truncated": "max_length cut the sample (no tool call was cut)",
    "turn_beyond_max_length": "per_turn: a turn starts after max_length; its sample is dropped",
}


class RenderError(ValueError):
    """A trajectory cannot be rendered with an exact mask.

    Attributes:
        kind: One of :data:`ERROR_KINDS` (or ``"config"`` for bad options).
        traj_id: The trajectory concerned, when there is one.
    """

    def __init__(self, message: str, kind: str = "template_error", traj_id: str | None = None):
        super().__init__(f"{traj_id}: {message}" if traj_id else message)
        self.kind = kind
        self.traj_id = traj_id
        self.detail = message


class Problem(Exception):
    """A kind of :data:`ERROR_KINDS` met while rendering one trajectory (internal: the
    renderer counts it, or raises it as :class:`RenderError` in strict mode)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass
class RenderReport:
    """Counts of what the renderer did and of every problem, with example ids.

    Attributes:
        seen: Trajectories given to :meth:`Renderer.render`.
        rendered: Trajectories that produced samples.
        skipped: Trajectories skipped because of an error (non-strict mode).
        samples: Samples produced.
        tokens: Tokens in the samples.
        supervised_tokens: Supervised tokens in the samples.
        modes: Trajectories per mode used (``all_turns`` / ``per_turn``).
        errors: Count per error kind (see :data:`ERROR_KINDS`).
        warnings: Count per warning kind (see :data:`WARNING_KINDS`).
        examples: Per kind, up to ``max_examples`` ``"id: detail"`` strings.
    """

    seen: int = 0
    rendered: int = 0
    skipped: int = 0
    samples: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5

    def _example(self, kind: str, traj_id: str, detail: str) -> None:
        ex = self.examples.setdefault(kind, [])
        if len(ex) < self.max_examples:
            ex.append(f"{traj_id}: {detail}")

    def add_error(self, kind: str, traj_id: str, detail: str) -> None:
        self.errors[kind] += 1
        self._example(kind, traj_id, detail)

    def add_warning(self, kind: str, traj_id: str, detail: str) -> None:
        self.warnings[kind] += 1
        self._example(kind, traj_id, detail)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "rendered": self.rendered,
            "skipped": self.skipped,
            "samples": self.samples,
            "tokens": self.tokens,
            "supervised_tokens": self.supervised_tokens,
            "modes": dict(self.modes),
            "errors": dict(self.errors),
            "warnings": dict(self.warnings),
            "examples": {k: list(v) for k, v in self.examples.items()},
        }

    def format(self) -> str:
        """A short human-readable summary (one line per problem kind)."""
        lines = [
            f"rendered {self.rendered}/{self.seen} trajectories, skipped {self.skipped}; "
            f"{self.samples} samples, {self.tokens} tokens, "
            f"{self.supervised_tokens} supervised; modes {dict(self.modes)}"
        ]
        for title, counts, docs in (
            ("error", self.errors, ERROR_KINDS),
            ("warning", self.warnings, WARNING_KINDS),
        ):
            for kind, n in counts.most_common():
                lines.append(f"  {title} {kind} x{n}: {docs.get(kind, '')}")
                lines.extend(f"    e.g. {e}" for e in self.examples.get(kind, []))
        return "\n".join(lines)
