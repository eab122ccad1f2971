"""Executable tools, domains and the episode builder that turns a task into a trajectory.

A :class:`Domain` is a set of :class:`Tool` s over one state (a JSON-able dict; empty for
stateless domains) made by ``initial_state(rng)``. :meth:`Domain.execute` validates a call
against the tool's JSON schema (required arguments, types, enums; defaults filled in) and
runs the deterministic implementation; a :class:`ToolError` (bad input, not found, a
conflict such as insufficient funds) becomes the observation ``{"error": "<Kind>: ..."}``.

Task templates (:data:`TEMPLATES`, registered by each domain module with :func:`template`)
write one episode through an :class:`EpisodeBuilder`: user turns, calls (executed at once,
so later arguments can come from earlier results), text answers. The builder records the
trajectory and its ground truth (``metadata["synth"]``): the initial state, every call and
the values the final answer must carry. See ``docs/synthetic_data.md``.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The kinds of task the generator covers (each template declares one).
KINDS: tuple[str, ...] = (
    "single",  # one call
    "parallel",  # several independent calls in one turn
    "similar_choice",  # the right one among several similar tools
    "multi_step",  # later arguments come from earlier results
    "error_retry",  # a tool error, then a corrected retry
    "ask_missing",  # a required argument is missing: ask, then call
    "refuse",  # no tool applies: say so, no call
    "answer_from_obs",  # a final answer built from the observations
)


class ToolError(Exception):
    """A tool refused its input; the message (with the kind) becomes the observation."""

    kind = "ToolError"

    def observation(self) -> str:
        return json.dumps({"error": f"{self.kind}: {self}"}, ensure_ascii=False)


class InvalidArgument(ToolError):
    """An argument of the wrong type, out of range or not in the enum; a missing one."""

    kind = "InvalidArgument"


class NotFound(ToolError):
    """The named thing (account, file, product, flight...) does not exist."""

    kind = "NotFound"


class Conflict(ToolError):
    """The call cannot be done in this state (insufficient funds, seat taken...)."""

    kind = "Conflict"


State = dict[str, Any]


@dataclass(frozen=True)
class Tool:
    """One executable tool.

    Attributes:
        name: Function name.
        description: What it does (shown to the model).
        parameters: JSON schema of the arguments (``type: object``, ``properties``,
            ``required``; properties may have ``enum``, ``default``, ``minimum``...).
        fn: ``fn(state, **arguments) -> result`` (JSON-able); raises :class:`ToolError`.
            Stateless tools ignore ``state``; stateful ones change it.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]

    def schema(self) -> dict[str, Any]:
        """The OpenAI function schema."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _check_value(tool: str, name: str, value: Any, spec: dict[str, Any]) -> Any:
    t = spec.get("type")
    if t in _JSON_TYPES:
        ok = isinstance(value, _JSON_TYPES[t]) and not (
            isinstance(value, bool) and t in ("integer", "number")
        )
        if t == "integer" and isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
        if not ok:
            raise InvalidArgument(f"{tool}: '{name}' must be of type {t}, got {value!r}")
        # Python's json reads NaN and Infinity, which JSON has no number for
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument(f"{tool}: '{name}' must be a finite number, got {value!r}")
    if "enum" in spec and value not in spec["enum"]:
        raise InvalidArgument(f"{tool}: '{name}' must be one of {spec['enum']}, got {value!r}")
    if "minimum" in spec and value < spec["minimum"]:
        raise InvalidArgument(f"{tool}: '{name}' must be >= {spec['minimum']}, got {value!r}")
    if "maximum" in spec and value > spec["maximum"]:
        raise InvalidArgument(f"{tool}: '{name}' must be <= {spec['maximum']}, got {value!r}")
    return value


def validate_arguments(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """Check ``arguments`` against the tool's schema; return them with defaults filled in.

    Raises:
        InvalidArgument: A missing required argument, an unknown one, a wrong type, a value
            outside the enum or the range.
    """
    if not isinstance(arguments, dict):
        raise InvalidArgument(f"{tool.name}: arguments must be an object")
    props = tool.parameters.get("properties", {})
    unknown = sorted(set(arguments) - set(props))
    if unknown:
        raise InvalidArgument(f"{tool.name}: unknown argument(s) {', '.join(unknown)}")
    missing = [r for r in tool.parameters.get("required", []) if r not in arguments]
    if missing:
        raise InvalidArgument(f"{tool.name}: missing required argument(s) {', '.join(missing)}")
    out = {}
    for name, spec in props.items():
        if name in arguments:
            out[name] = _check_value(tool.name, name, arguments[name], spec)
        elif "default" in spec:
            out[name] = copy.deepcopy(spec["default"])
    return out


class Domain:
    """A set of tools over one state.

    Args:
        name: Domain name.
        tools: Its tools (names unique across all domains).
        initial_state: ``rng -> state`` (JSON-able); ``None`` for a stateless domain.
    """

    def __init__(
        self,
        name: str,
        tools: list[Tool],
        initial_state: Callable[[random.Random], State] | None = None,
    ) -> None:
        self.name = name
        self.tools = {t.name: t for t in tools}
        if len(self.tools) != len(tools):
            raise ValueError(f"domain {name}: duplicate tool names")
        self._initial_state = initial_state

    @property
    def stateful(self) -> bool:
        return self._initial_state is not None

    def initial_state(self, rng: random.Random) -> State:
        """A fresh state (``{}`` for a stateless domain)."""
        return self._initial_state(rng) if self._initial_state else {}

    def schemas(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI schemas of ``names`` (default: all tools), in that order."""
        return [self.tools[n].schema() for n in (names or list(self.tools))]

    def run(self, state: State, name: str, arguments: dict[str, Any]) -> Any:
        """Validate and run one call; raises :class:`ToolError` (an unknown tool included)."""
        tool = self.tools.get(name)
        if tool is None:
            raise NotFound(f"no tool named {name!r} in domain {self.name}")
        return tool.fn(state, **validate_arguments(tool, arguments))

    def execute(self, state: State, name: str, arguments: dict[str, Any]) -> str:
        """One call as the observation text (JSON): the result, or ``{"error": ...}``."""
        try:
            result = self.run(state, name, arguments)
        except ToolError as e:
            return e.observation()
        return json.dumps(result, ensure_ascii=False, sort_keys=True)


# -- templates --------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """One task template.

    Attributes:
        name: Unique id (``<domain>.<what>``).
        domain: The domain whose tools it uses.
        kind: One of :data:`KINDS`.
        phrasings: How many phrasings it has; the last is held out for the test split
            (written only with words of the others: see :mod:`xlam.synth.generate`).
        build: ``build(b: EpisodeBuilder, rng, phrasing: int)`` writes the episode.
        combo: The tools it calls, sorted (the test split holds out some combinations).
    """

    name: str
    domain: str
    kind: str
    phrasings: int
    build: Callable[..., None]
    combo: tuple[str, ...] = ()


TEMPLATES: dict[str, Template] = {}
DOMAINS: dict[str, Domain] = {}


def register_domain(domain: Domain) -> Domain:
    """Add a domain (its tool names must be new)."""
    for d in DOMAINS.values():
        clash = set(d.tools) & set(domain.tools)
        if clash:
            raise ValueError(f"tool names {sorted(clash)} in both {d.name} and {domain.name}")
    DOMAINS[domain.name] = domain
    return domain


def template(
    name: str, domain: str, kind: str, phrasings: int, combo: tuple[str, ...] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a template function ``build(b, rng, phrasing)`` (a decorator)."""
    if kind not in KINDS:
        raise ValueError(f"template {name}: kind must be one of {KINDS}, got {kind!r}")
    if phrasings < 2:
        raise ValueError(f"template {name}: needs >= 2 phrasings (one is held out for test)")

    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        if name in TEMPLATES:
            raise ValueError(f"template {name} registered twice")
        TEMPLATES[name] = Template(name, domain, kind, phrasings, fn, tuple(sorted(combo)))
        return fn

    return deco


# -- the episode builder ----------------------------------------------------------------
@dataclass
class EpisodeBuilder:
    """Writes one episode: the conversation as it happens, and its ground truth.

    Calls run at once against the domain's state, so a template reads a result
    (:meth:`call` returns it) to build the next call or the answer.

    Args:
        domain: The domain.
        state: Its initial state (copied; the builder works on its own).
    """

    domain: Domain
    state: State
    system: str = ""
    tools: list[str] = field(default_factory=list)
    conversation: list[dict[str, Any]] = field(default_factory=list)
    answer_values: list[str] = field(default_factory=list)
    _initial: State = field(default_factory=dict)
    _n_calls: int = 0

    def __post_init__(self) -> None:
        self._initial = copy.deepcopy(self.state)
        self.state = copy.deepcopy(self.state)

    def offer(self, *names: str) -> None:
        """The tools shown to the model (the needed ones and distractors), in order."""
        for n in names:
            if n not in self.domain.tools:
                raise KeyError(f"{n} is not a tool of domain {self.domain.name}")
            if n not in self.tools:
                self.tools.append(n)

    def user(self, text: str) -> None:
        self.conversation.append({"role": "user", "content": text})

    def calls(self, calls: list[tuple[str, dict[str, Any]]], text: str = "") -> list[Any]:
        """One assistant turn making ``calls`` (in parallel); returns each parsed result
        (the result object, or ``{"error": ...}`` for a tool error)."""
        tool_calls = []
        for name, args in calls:
            if name not in self.tools:
                raise KeyError(f"call to {name}, which the episode does not offer")
            self._n_calls += 1
            tool_calls.append(
                {
                    "id": f"call_{self._n_calls}",
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }
            )
        self.conversation.append({"role": "assistant", "content": text, "tool_calls": tool_calls})
        results = []
        for c in tool_calls:
            fn = c["function"]
            obs = self.domain.execute(self.state, fn["name"], fn["arguments"])
            self.conversation.append(
                {"role": "tool", "tool_call_id": c["id"], "name": fn["name"], "content": obs}
            )
            results.append(json.loads(obs))
        return results

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """One assistant turn with one call; returns its result."""
        return self.calls([(name, arguments)])[0]

    def say(self, text: str, values: list[Any] | None = None) -> None:
        """An assistant text turn; ``values`` must appear in it (and come from results)."""
        for v in values or []:
            s = format_value(v)
            if s not in text:
                raise ValueError(f"answer {text!r} does not contain {s!r}")
            self.answer_values.append(s)
        self.conversation.append({"role": "assistant", "content": text})

    def trajectory(self, tid: str, source: str, meta: dict[str, Any]) -> dict[str, Any]:
        """The unified trajectory with ``metadata["synth"]`` (the ground truth)."""
        return {
            "unique_trajectory_id": tid,
            "source": source,
            "task_instruction": self.system,
            "tools": self.domain.schemas(self.tools),
            "conversation": self.conversation,
            "metadata": {
                "synth": {
                    **meta,
                    "domain": self.domain.name,
                    "initial_state": self._initial,
                    "answer_values": self.answer_values,
                }
            },
        }


def format_value(v: Any) -> str:
    """How a value is written in answers (and looked for by the semantic check)."""
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".") if not v.is_integer() else str(int(v))
    return str(v)


__all__ = [
    "DOMAINS",
    "KINDS",
    "TEMPLATES",
    "Conflict",
    "Domain",
    "EpisodeBuilder",
    "InvalidArgument",
    "NotFound",
    "State",
    "Template",
    "Tool",
    "ToolError",
    "format_value",
    "register_domain",
    "template",
    "validate_arguments",
]
