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
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

from xlam.data.schema import Trajectory

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Bump when a change in this module changes the samples produced for the same options,
# so caches keyed by RenderOptions.key() are invalidated.
RENDERER_VERSION = 2
# Skipped trajectories logged per problem kind before only counting them.
LOGGED_PER_KIND = 5

RenderMode = Literal["all_turns", "per_turn", "auto"]
ToolFormat = Literal["template", "system", "prompt", "auto"]
MODES: tuple[str, ...] = ("all_turns", "per_turn", "auto")
TOOL_FORMATS: tuple[str, ...] = ("template", "system", "prompt", "auto")

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


@dataclass
class RenderedSample:
    """One training sample.

    Attributes:
        id: Trajectory id (suffixed with ``#k`` for assistant turn ``k`` in ``per_turn``).
        source: Source name of the trajectory.
        input_ids: Token ids.
        labels: Same length as ``input_ids``; ``IGNORE_INDEX`` where not supervised.
        mode: The mode that produced the sample (``all_turns`` or ``per_turn``).
        spans: Half-open ``[start, end)`` token ranges of the supervised assistant spans.
        roles: Per-token role (``system``/``user``/``assistant``/``tool``), only when
            rendered with ``annotate=True``.
        turns: Per-token index of the message in ``Trajectory.conversation`` (``-1`` for
            the system preamble and tool schemas), only with ``annotate=True``.
    """

    id: str
    source: str
    input_ids: list[int]
    labels: list[int]
    mode: str = "all_turns"
    spans: list[tuple[int, int]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)

    @property
    def num_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


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
        strict: Raise :class:`RenderError` instead of skipping and counting a bad
            trajectory. Not part of :meth:`key`: it never changes a produced sample.
    """

    mode: RenderMode = "auto"
    enable_thinking: bool | None = None
    arguments_as_string: bool | None = None
    max_length: int | None = None
    tool_format: ToolFormat = "template"
    supervise_reasoning: bool = True
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


# ---------------------------------------------------------------------------------------
# Message preparation: tool formats and argument forms
# ---------------------------------------------------------------------------------------
def format_calls_json(calls: list[dict[str, Any]]) -> str:
    """The prompt-mode target: a JSON list of ``{"name", "arguments"}`` objects.

    Args:
        calls: OpenAI-style tool calls (``{"function": {"name", "arguments"}}``) or bare
            ``{"name", "arguments"}`` dicts; string arguments are parsed.
    """
    out = []
    for c in calls:
        fn = c.get("function", c)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        out.append({"name": fn["name"], "arguments": args})
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


# ---------------------------------------------------------------------------------------
# Finding calls in rendered text (the "did the template drop it" check)
# ---------------------------------------------------------------------------------------
_DECODER = json.JSONDecoder()


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _leaves(v)]
    return [obj]


def call_in_text(name: str, arguments: dict[str, Any], text: str) -> bool:
    """Whether ``text`` shows the call: its name and its arguments.

    Arguments count as shown when some JSON object in the text equals them (or holds them
    as a direct value, e.g. ``{"name": ..., "arguments": {...}}``), whatever the spacing,
    key order or escaping; for templates that render arguments in another syntax, every
    key and scalar value must appear.
    """
    if name not in text:
        return False
    pos = text.find("{")
    while pos != -1:
        try:
            obj, _ = _DECODER.raw_decode(text, pos)
        except ValueError:
            obj = None
        if obj == arguments or (
            isinstance(obj, dict) and any(v == arguments for v in obj.values())
        ):
            return True
        pos = text.find("{", pos + 1)
    if not arguments:
        return False
    keys = _keys(arguments)
    vals = [v for v in _leaves(arguments) if v is not None]
    return all(k in text for k in keys) and all(
        (v if isinstance(v, str) else json.dumps(v)) in text for v in vals
    )


def _keys(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [k for k, v in obj.items() for k in [k, *_keys(v)]]
    if isinstance(obj, list):
        return [k for v in obj for k in _keys(v)]
    return []


# ---------------------------------------------------------------------------------------
# Token helpers
# ---------------------------------------------------------------------------------------
def _is_prefix(a: list[int], b: list[int]) -> bool:
    return len(a) <= len(b) and b[: len(a)] == a


def _lcp(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix (binary search on C-speed slice compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


_PIECEWISE_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "Replace"}
_PIECEWISE_PRETOKENIZERS = {
    "ByteLevel",
    "Split",
    "Digits",
    "Punctuation",
    "Whitespace",
    "WhitespaceSplit",
}


def _components_ok(spec: dict[str, Any] | None, allowed: set[str]) -> bool:
    if spec is None:
        return True
    if spec.get("type") == "Sequence":
        parts = spec.get("normalizers", spec.get("pretokenizers", []))
        return all(_components_ok(p, allowed) for p in parts)
    return spec.get("type") in allowed


def _spec_parts(serialized: str) -> tuple[Any, Any]:
    """The normalizer and pre-tokenizer of a serialized tokenizer, without parsing the
    (large) vocabulary: top-level keys come before ``model`` in the library's output."""
    decoder = json.JSONDecoder()
    pos = serialized.index('"added_tokens"')
    _, pos = decoder.raw_decode(serialized, serialized.index("[", pos))
    parts = []
    for key in ('"normalizer"', '"pre_tokenizer"'):
        at = serialized.index(key, pos)
        value, _ = decoder.raw_decode(serialized, serialized.index(":", at) + 1)
        parts.append(value)
    return parts[0], parts[1]


def _alternation(tokens: list[str]) -> re.Pattern[str] | None:
    # Longest first: at one position Python's alternation takes the first branch that
    # matches, which then is the longest, as in the library's leftmost-longest matching.
    toks = sorted(set(tokens), key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in toks)) if toks else None


def _split_setup(backend: Any) -> tuple[Any, Any, dict[str, int]] | None:
    """Split patterns and ids of the added tokens, or None if piecewise is unsafe."""
    try:
        normalizer, pre_tokenizer = _spec_parts(backend.to_str())
    except (ValueError, AttributeError):
        return None
    if not _components_ok(normalizer, _PIECEWISE_NORMALIZERS):
        return None
    if not _components_ok(pre_tokenizer, _PIECEWISE_PRETOKENIZERS):
        return None
    identity = normalizer is None or (
        normalizer.get("type") == "Sequence" and not normalizer.get("normalizers")
    )
    raw, normalized, ids = [], [], {}
    for tid, tok in backend.get_added_tokens_decoder().items():
        if tok.lstrip or tok.rstrip or tok.single_word:
            return None
        if not tok.content:
            continue
        # The library matches normalized added tokens in a second pass, on normalized
        # text; mirrored only where normalizing changes nothing.
        if tok.normalized:
            if not identity:
                return None
            normalized.append(tok.content)
        else:
            raw.append(tok.content)
        ids[tok.content] = tid
    return _alternation(raw), _alternation(normalized), ids


# Per tokenizer object: building the patterns costs up to a second on big vocabularies.
_SPLIT_CACHE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class TokenEncoder:
    """Encodes many overlapping texts (prefixes of one render) fast and exactly.

    The ``tokenizers`` library cuts its input at added tokens and encodes the text between
    them independently. Prefix renders share almost all such pieces, so encoding each
    distinct piece once and concatenating gives the same ids as encoding every prefix in
    full, at a cost linear rather than quadratic in the number of turns. The shortcut is
    only taken for tokenizers where that independence holds (no stripping or
    word-boundary added tokens, position-independent normalizer and pre-tokenizer) and
    each trajectory's longest render is re-checked against the plain encoder
    (:meth:`verify`); any mismatch turns the shortcut off for good.

    Args:
        tokenizer: A Hugging Face tokenizer.
        cache: Allow the piecewise shortcut.
        max_cache: Pieces kept before the cache is cleared.
    """

    def __init__(self, tokenizer: Any, cache: bool = True, max_cache: int = 200_000) -> None:
        self.tokenizer = tokenizer
        self.max_cache = max_cache
        self._cache: dict[str, list[int]] = {}
        self._split: re.Pattern[str] | None = None
        self._split_normalized: re.Pattern[str] | None = None
        self._ids: dict[str, int] = {}
        self.piecewise = cache and self._setup()

    def _setup(self) -> bool:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(backend, "encode_special_tokens", False):
            return False
        if getattr(self.tokenizer, "split_special_tokens", False):
            return False
        # Pieces must be encoded whole and unpadded, like the text they come from.
        if getattr(backend, "truncation", None) or getattr(backend, "padding", None):
            return False
        try:
            cached = _SPLIT_CACHE.get(self.tokenizer)
        except TypeError:  # an unhashable tokenizer class: no cache, same result
            cached = None
        if cached is None:
            cached = _split_setup(backend)
            with contextlib.suppress(TypeError):
                _SPLIT_CACHE[self.tokenizer] = cached
        if cached is None:
            return False
        self._split, self._split_normalized, self._ids = cached
        self._backend = backend
        return True

    def encode_exact(self, texts: list[str]) -> list[list[int]]:
        """Encode with the tokenizer itself (what ``apply_chat_template`` would do)."""
        if not texts:
            return []
        # The template already writes BOS where the model wants it.
        return list(self.tokenizer(texts, add_special_tokens=False)["input_ids"])

    def _pieces(self, text: str, pattern: re.Pattern[str] | None) -> list[tuple[str, bool]]:
        if pattern is None:
            return [(text, False)] if text else []
        out, pos = [], 0
        for m in pattern.finditer(text):
            if m.start() > pos:
                out.append((text[pos : m.start()], False))
            out.append((m.group(), True))
            pos = m.end()
        if pos < len(text):
            out.append((text[pos:], False))
        return out

    def _split_all(self, text: str) -> list[tuple[str, bool]]:
        pieces = self._pieces(text, self._split)
        if self._split_normalized is None:
            return pieces
        out: list[tuple[str, bool]] = []
        for piece, special in pieces:
            out.extend([(piece, True)] if special else self._pieces(piece, self._split_normalized))
        return out

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Encode ``texts`` without adding special tokens."""
        # Someone else's call may have left truncation or padding set on the shared
        # backend; the tokenizer's own call resets them, so use it then.
        if not self.piecewise or self._backend.truncation or self._backend.padding:
            return self.encode_exact(texts)
        split = [self._split_all(t) for t in texts]
        missing = list({p for pieces in split for p, tok in pieces if not tok} - self._cache.keys())
        if missing:
            if len(self._cache) + len(missing) > self.max_cache:
                self._cache.clear()
            enc = self._backend.encode_batch(missing, add_special_tokens=False)
            self._cache.update(zip(missing, (e.ids for e in enc)))
        out = []
        for pieces in split:
            ids: list[int] = []
            for p, tok in pieces:
                if tok:
                    ids.append(self._ids[p])
                else:
                    ids.extend(self._cache[p])
            out.append(ids)
        return out

    def verify(self, text: str, ids: list[int]) -> bool:
        """Check piecewise ids of ``text`` against the plain encoder; disable on mismatch."""
        if not self.piecewise:
            return True
        if self.encode_exact([text])[0] == ids:
            return True
        log.warning(
            "piecewise encoding differs from the tokenizer for %s; using plain encoding",
            getattr(self.tokenizer, "name_or_path", "?"),
        )
        self.piecewise = False
        self._cache.clear()
        return False


# ---------------------------------------------------------------------------------------
# The renderer
# ---------------------------------------------------------------------------------------
class _DirectTemplate:
    """Renders with the compiled chat template, skipping per-call input copying.

    ``apply_chat_template`` deep-copies and normalises every conversation it is given;
    prefix rendering hands it the same messages once per turn, so that copying grows with
    the square of the length. Here the messages are normalised once per trajectory in the
    same way (``None`` values dropped, reasoning aliases filled) and every prefix is a
    slice of that list. :meth:`Renderer.__init__` compares this path with
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


class _Problem(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass
class _Chat:
    """A trajectory as the template sees it, with where each message came from."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    origin: list[tuple[str, int]]  # per message: (role in the trajectory, conversation index)
    # Per assistant message (in order): the calls the render must show, as (name, args).
    # Kept apart from the messages because prompt mode turns calls into text.
    calls: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)


@dataclass
class _Turn:
    msg_index: int  # index in _Chat.messages
    start: int = 0  # first supervised token in end_ids
    end: int = 0  # one past the last supervised token in end_ids
    end_ids: list[int] = field(default_factory=list)
    has_calls: bool = False


class Renderer:
    """Turns trajectories into token ids and assistant-only labels for one tokenizer.

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template.
        options: Render options.
        report: Where problems are counted (a fresh :class:`RenderReport` by default).
        cache_encodings: Allow :class:`TokenEncoder`'s piecewise shortcut.
        fast_templates: Render with the compiled template directly (checked against
            ``apply_chat_template`` at start, which is used when they differ).

    Raises:
        RenderError: The tokenizer has no chat template, or the requested tool format
            cannot work with it.
    """

    def __init__(
        self,
        tokenizer: Any,
        options: RenderOptions | None = None,
        *,
        report: RenderReport | None = None,
        cache_encodings: bool = True,
        fast_templates: bool = True,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise RenderError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template",
                "config",
            )
        self.tokenizer = tokenizer
        self.options = options or RenderOptions()
        self.report = report if report is not None else RenderReport()
        self.encoder = TokenEncoder(tokenizer, cache=cache_encodings)
        self._template_kwargs: dict[str, Any] = {}
        if self.options.enable_thinking is not None:
            self._template_kwargs["enable_thinking"] = self.options.enable_thinking
        self.bos_id: int | None = getattr(tokenizer, "bos_token_id", None)
        self.end_of_turn_ids: set[int] = set(getattr(tokenizer, "all_special_ids", []) or [])
        for tid, tok in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
            if getattr(tok, "special", False):
                self.end_of_turn_ids.add(tid)
        self._ws_cache: dict[int, bool] = {}
        self._direct: _DirectTemplate | None = None
        if fast_templates:
            self._direct = self._setup_direct()
        self.capabilities = self.probe()
        self.arguments_as_string = (
            self.capabilities.arguments_as_string
            if self.options.arguments_as_string is None
            else self.options.arguments_as_string
        )
        self.tool_format = self._resolve_tool_format()

    # -- template capabilities ---------------------------------------------------------
    def _apply(
        self,
        convs: list[list[dict[str, Any]]],
        tools: list[dict[str, Any]] | None,
        gen: bool,
        normalized: bool = False,
    ) -> list[str]:
        """Render conversations; ``normalized`` when they come from :meth:`chat`."""
        if not convs:
            return []
        if self._direct is not None:
            if not normalized:
                convs = [self._direct.normalize(c) for c in convs]
            return self._direct.render(convs, tools, gen)
        out = self.tokenizer.apply_chat_template(
            convs,
            tools=tools or None,
            tokenize=False,
            add_generation_prompt=gen,
            **self._template_kwargs,
        )
        return [out] if isinstance(out, str) else list(out)

    def _try_render(
        self, msgs: list[dict[str, Any]], tools: list[dict] | None, normalized: bool = False
    ) -> str | None:
        try:
            return self._apply([msgs], tools, False, normalized)[0]
        except Exception:
            return None

    def _setup_direct(self) -> _DirectTemplate | None:
        """The direct template path, if it renders exactly like ``apply_chat_template``."""
        try:
            direct = _DirectTemplate(self.tokenizer, self._template_kwargs)
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
                        want: Any = self._apply([conv], tools, gen)[0]
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

    def probe(self) -> TemplateCapabilities:
        """Render small probe conversations to learn what the template supports."""
        caps = TemplateCapabilities()
        user = {"role": "user", "content": "xlam probe question"}
        try:
            prompt = self._apply([[user]], [_PROBE_TOOL], gen=True)[0]
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
            text = self._try_render([user, turn(1, as_string)], [_PROBE_TOOL])
            # The value is only in the call, so the schema in the prompt cannot match.
            if text is not None and call_in_text("xlam_probe_tool", args, text):
                caps.renders_calls, caps.arguments_as_string = True, as_string
                break
        if caps.renders_calls:
            text = self._try_render([user, turn(2, caps.arguments_as_string)], [_PROBE_TOOL])
            caps.parallel_calls = text is not None and text.count("xlam_probe_value") >= 2
        thought = "xlam probe thought"
        text = self._try_render(
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

    def _resolve_tool_format(self) -> str:
        fmt = self.options.tool_format
        caps = self.capabilities
        if fmt == "auto":
            if caps.renders_calls and caps.renders_tools:
                fmt = "template"
            elif caps.renders_calls:
                fmt = "system"
            else:
                fmt = "prompt"
            log.info("tool_format=auto resolved to %r for %s", fmt, self._name)
        return fmt

    @property
    def _name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "tokenizer"))

    # -- message preparation -----------------------------------------------------------
    def chat(self, traj: Trajectory) -> _Chat:
        """The messages and tools handed to the template for ``traj``."""
        msgs, tools = traj.to_chat()
        calls = [
            [(c.name, c.arguments) for c in m.tool_calls]
            for m in traj.conversation
            if m.role == "assistant"
        ]
        had_system = bool(msgs) and msgs[0]["role"] == "system"
        origin: list[tuple[str, int]] = [("system", -1)] if had_system else []
        origin.extend((m.role, i) for i, m in enumerate(traj.conversation))
        if self.options.enable_thinking is False:
            msgs = _strip_reasoning(msgs)
        if self.tool_format == "prompt":
            new = prompt_mode_messages(msgs, tools)
            return self._finish(_Chat(new, [], _prompt_origin(new, origin, had_system), calls))
        if self.tool_format == "system" and tools:
            msgs = system_mode_messages(msgs, tools)
            if not had_system:
                origin.insert(0, ("system", -1))
            tools = []
        if self.arguments_as_string:
            msgs = _arguments_to_strings(msgs)
        return self._finish(_Chat(msgs, tools, origin, calls))

    def _finish(self, chat: _Chat) -> _Chat:
        if self._direct is not None:
            chat.messages = self._direct.normalize(chat.messages)
        return chat

    # -- public entry point ------------------------------------------------------------
    def render(self, traj: Trajectory, *, annotate: bool = False) -> list[RenderedSample]:
        """Render one trajectory into one (``all_turns``) or several (``per_turn``) samples.

        Args:
            traj: The trajectory.
            annotate: Also fill per-token ``roles`` and ``turns`` (extra renders; for
                inspection, not training).

        Returns:
            The samples; empty when the trajectory was skipped (and counted in
            :attr:`report`).

        Raises:
            RenderError: In strict mode, on any problem of :data:`ERROR_KINDS`.
        """
        self.report.seen += 1
        warnings: list[tuple[str, str]] = []
        try:
            samples, mode = self._render(traj, warnings, annotate)
        except _Problem as p:
            self.report.add_error(p.kind, traj.id, p.detail)
            if self.options.strict:
                raise RenderError(p.detail, p.kind, traj.id) from None
            self.report.skipped += 1
            # A systematic problem hits every trajectory; the report has the full count.
            if self.report.errors[p.kind] <= LOGGED_PER_KIND:
                more = (
                    " (further ones only counted)"
                    if self.report.errors[p.kind] == LOGGED_PER_KIND
                    else ""
                )
                log.warning("skipping %s: %s: %s%s", traj.id, p.kind, p.detail, more)
            return []
        for kind, detail in warnings:
            self.report.add_warning(kind, traj.id, detail)
        self.report.rendered += 1
        self.report.modes[mode] += 1
        self.report.samples += len(samples)
        for s in samples:
            self.report.tokens += len(s)
            self.report.supervised_tokens += s.num_supervised
        return samples

    # -- the work ----------------------------------------------------------------------
    def _render(
        self, traj: Trajectory, warnings: list[tuple[str, str]], annotate: bool
    ) -> tuple[list[RenderedSample], str]:
        chat = self.chat(traj)
        msgs, tools = chat.messages, chat.tools
        asst = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        if not asst:
            raise _Problem("no_assistant_turn", "no assistant turn to supervise")
        last_is_turn = asst[-1] == len(msgs) - 1
        try:
            prompts = self._apply([msgs[:i] for i in asst], tools, gen=True, normalized=True)
            ends = self._apply(
                [msgs[: i + 1] for i in asst] + ([] if last_is_turn else [msgs]),
                tools,
                gen=False,
                normalized=True,
            )
        except Exception as e:
            raise _Problem("template_error", f"{type(e).__name__}: {e}") from None
        if traj.tools:
            missing = [n for n in traj.tool_names() if n not in prompts[0]]
            if missing:
                raise _Problem(
                    "tools_not_rendered",
                    f"the template does not show tool(s) {', '.join(missing)}; "
                    "use tool_format='system' (schemas in the system prompt) or 'prompt'",
                )
        ids = self.encoder.encode(prompts + ends)
        prompt_ids, end_ids = ids[: len(asst)], ids[len(asst) :]
        full_ids = end_ids[-1]
        full_text = ends[-1]
        if not self.encoder.verify(full_text, full_ids):
            ids = self.encoder.encode(prompts + ends)
            prompt_ids, end_ids = ids[: len(asst)], ids[len(asst) :]
            full_ids = end_ids[-1]

        turns = [
            self._turn(chat, i, chat.calls[k], prompt_ids[k], end_ids[k], warnings)
            for k, i in enumerate(asst)
        ]
        stable = all(_is_prefix(t.end_ids, full_ids) for t in turns)
        mode = self.options.mode
        if mode == "auto":
            mode = "all_turns" if stable else "per_turn"
            if not stable:
                warnings.append(("per_turn_fallback", "history renders differently later"))
        elif mode == "all_turns" and not stable:
            k = next(k for k, t in enumerate(turns) if not _is_prefix(t.end_ids, full_ids))
            raise _Problem(
                "not_prefix_stable",
                f"assistant turn {k} renders differently once later turns follow; "
                "use mode=per_turn or auto",
            )

        if mode == "all_turns":
            spans = [(t.start, t.end) for t in turns]
            cases = [(traj.id, full_ids, spans, turns, len(msgs))]
        else:
            cases = [
                (f"{traj.id}#{k}", t.end_ids, [(t.start, t.end)], [t], t.msg_index + 1)
                for k, t in enumerate(turns)
            ]
        samples = []
        for sid, seq, spans, sturns, n_msgs in cases:
            sample = self._sample(traj, sid, mode, seq, spans, sturns, chat, warnings)
            if sample is None:
                continue
            if annotate:
                self._annotate(sample, chat, n_msgs, sturns)
            samples.append(sample)
        if not samples:
            raise _Problem("no_supervised_tokens", "no sample left with a supervised token")
        return samples, mode

    def _turn(
        self,
        chat: _Chat,
        i: int,
        calls: list[tuple[str, dict[str, Any]]],
        prompt: list[int],
        end: list[int],
        warnings: list[tuple[str, str]],
    ) -> _Turn:
        """Find the supervised span of assistant message ``i`` inside its own render."""
        msg = chat.messages[i]
        turn = _Turn(msg_index=i, end_ids=end, has_calls=bool(calls))
        if _is_prefix(prompt, end):
            turn.start = len(prompt)
        else:
            # The generation prompt may add text the training render lacks (DeepSeek's
            # "<think>\n"). Accept it only if the history itself renders identically, so
            # the divergence lies inside the assistant header.
            try:
                hist_text = self._apply([chat.messages[:i]], chat.tools, False, True)[0]
            except Exception as e:
                raise _Problem(
                    "history_mismatch",
                    f"message {i}: generation prompt is not a prefix of the turn and the "
                    f"history cannot be rendered alone ({type(e).__name__}: {e})",
                ) from None
            hist = self.encoder.encode([hist_text])[0]
            if not (_is_prefix(hist, prompt) and _is_prefix(hist, end)):
                raise _Problem(
                    "history_mismatch",
                    f"message {i}: the template renders the earlier history differently "
                    "once this turn is added",
                )
            turn.start = _lcp(prompt, end)
            warnings.append(
                (
                    "gen_prompt_mismatch",
                    f"message {i}: generation prompt {self._decode(prompt[turn.start :])!r} "
                    f"vs rendered {self._decode(end[turn.start : turn.start + 3])!r}...",
                )
            )
        # The span ends with the template's end-of-turn token; whitespace the template
        # writes after it separates turns and is never generated (decoding stops first).
        stop = len(end)
        while stop > turn.start and self._is_whitespace(end[stop - 1]):
            stop -= 1
        if stop <= turn.start:
            raise _Problem("empty_turn", f"message {i}: the template rendered nothing for it")
        if end[stop - 1] not in self.end_of_turn_ids:
            raise _Problem(
                "missing_end_of_turn",
                f"message {i}: the turn ends with {self._decode(end[stop - 1 : stop])!r}, "
                "not a special end-of-turn token",
            )
        turn.end = stop
        text = self._decode(end[turn.start : turn.end])
        for name, args in calls:
            if not call_in_text(name, args, text):
                shown = json.dumps(args, ensure_ascii=False)[:80]
                raise _Problem(
                    "tool_call_dropped",
                    f"message {i}: call {name}({shown}) is missing from the rendered turn",
                )
        content = (msg.get("content") or "").strip()
        if content and content not in text:
            warnings.append(("content_dropped", f"message {i}: {content[:60]!r}"))
        reasoning = (msg.get("reasoning_content") or "").strip()
        if reasoning and reasoning not in text:
            warnings.append(("reasoning_dropped", f"message {i}: {reasoning[:60]!r}"))
        return turn

    def _sample(
        self,
        traj: Trajectory,
        sid: str,
        mode: str,
        seq: list[int],
        spans: list[tuple[int, int]],
        turns: list[_Turn],
        chat: _Chat,
        warnings: list[tuple[str, str]],
    ) -> RenderedSample | None:
        seq = list(seq)
        max_len = self.options.max_length
        if max_len is not None and len(seq) > max_len:
            kept = []
            for (a, b), t in zip(spans, turns):
                if a >= max_len:
                    continue
                if b > max_len:
                    if t.has_calls:
                        raise _Problem(
                            "truncated_tool_call",
                            f"max_length={max_len} cuts the tool call of message "
                            f"{t.msg_index} (tokens {a}-{b})",
                        )
                    b = max_len
                kept.append((a, b))
            if not kept:
                if mode == "per_turn" and spans and spans[0][0] >= max_len:
                    warnings.append(
                        ("turn_beyond_max_length", f"{sid}: turn starts at token {spans[0][0]}")
                    )
                    return None
                raise _Problem("no_supervised_tokens", f"{sid}: nothing left after truncation")
            warnings.append(("truncated", f"{sid}: {len(seq)} -> {max_len} tokens"))
            seq, spans = seq[:max_len], kept
        labels = [IGNORE_INDEX] * len(seq)
        for a, b in spans:
            labels[a:b] = seq[a:b]
        if not self.options.supervise_reasoning:
            self._mask_reasoning(seq, labels, spans, turns, chat)
        self._check(sid, seq, labels, spans)
        return RenderedSample(sid, traj.source, seq, labels, mode, spans)

    def _check(
        self, sid: str, seq: list[int], labels: list[int], spans: list[tuple[int, int]]
    ) -> None:
        """Fail on any sample that is not exactly what the masking rule promises.

        Labels are built from the spans, so this guards against bugs, not data; it uses
        slice operations only, to stay cheap on long samples.
        """
        if self.bos_id is not None and self.bos_id in seq[1:]:
            at = seq.index(self.bos_id, 1)
            raise _Problem("bos_inside", f"{sid}: BOS at position {at}")
        prev = 0
        supervised = 0
        for a, b in spans:
            if not (prev <= a < b <= len(seq)):
                raise _Problem("mask_mismatch", f"{sid}: bad span {(a, b)} after {prev}")
            if labels[prev:a].count(IGNORE_INDEX) != a - prev:
                raise _Problem("mask_mismatch", f"{sid}: supervised token before span {(a, b)}")
            inside = labels[a:b]
            if self.options.supervise_reasoning:
                if inside != seq[a:b]:
                    raise _Problem("mask_mismatch", f"{sid}: span {(a, b)} not fully supervised")
            elif any(x not in (IGNORE_INDEX, t) for x, t in zip(inside, seq[a:b])):
                raise _Problem("mask_mismatch", f"{sid}: span {(a, b)} has foreign labels")
            supervised += (b - a) - inside.count(IGNORE_INDEX)
            prev = b
        if labels[prev:].count(IGNORE_INDEX) != len(seq) - prev:
            raise _Problem("mask_mismatch", f"{sid}: supervised token after the last span")
        if supervised == 0:
            raise _Problem("no_supervised_tokens", f"{sid}: no supervised token")

    def _mask_reasoning(
        self,
        seq: list[int],
        labels: list[int],
        spans: list[tuple[int, int]],
        turns: list[_Turn],
        chat: _Chat,
    ) -> None:
        """Unsupervise the tokens of each turn's reasoning text (markers stay supervised)."""
        if not any(chat.messages[t.msg_index].get("reasoning_content") for t in turns):
            return
        text = self._decode(seq)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if list(enc["input_ids"]) != seq:
            # Offsets are only trustworthy for the same ids; keep supervision rather than
            # unmask the wrong tokens.
            log.warning("cannot map reasoning to tokens for this sample; kept supervised")
            return
        offsets = enc["offset_mapping"]
        for (a, b), t in zip(spans, turns):
            reasoning = (chat.messages[t.msg_index].get("reasoning_content") or "").strip()
            if not reasoning or a >= b:
                continue
            lo, hi = offsets[a][0], offsets[b - 1][1]
            at = text.find(reasoning, lo, hi)
            if at < 0:
                continue
            for k in range(a, b):
                s, e = offsets[k]
                if s >= at and e <= at + len(reasoning):
                    labels[k] = IGNORE_INDEX

    # -- inspection --------------------------------------------------------------------
    def _annotate(
        self, sample: RenderedSample, chat: _Chat, n_msgs: int, turns: list[_Turn]
    ) -> None:
        """Fill per-token roles and turn indices from message-boundary renders."""
        seq = sample.input_ids
        bounds: list[int] = []
        for j in range(n_msgs):
            text = self._try_render(chat.messages[: j + 1], chat.tools, normalized=True)
            if text is None:
                # Some templates cannot render every prefix (Llama 3.1 needs a user turn
                # after the system prompt); the message then shares the next boundary.
                bounds.append(bounds[-1] if bounds else 0)
                continue
            ids = self.encoder.encode([text])[0]
            b = len(ids) if _is_prefix(ids, seq) else _lcp(ids, seq)
            bounds.append(max(b, bounds[-1] if bounds else 0))
        roles = ["system"] * len(seq)
        idx = [-1] * len(seq)
        prev = 0
        for j, b in enumerate(bounds):
            b = min(b, len(seq))
            role, at = chat.origin[j]
            roles[prev:b] = [role] * (b - prev)
            idx[prev:b] = [at] * (b - prev)
            prev = max(prev, b)
        if prev < len(seq) and n_msgs:
            role, at = chat.origin[n_msgs - 1]
            roles[prev:] = [role] * (len(seq) - prev)
            idx[prev:] = [at] * (len(seq) - prev)
        # Supervised spans are exact; boundaries of templates that rewrite history are
        # only approximate, so the spans win.
        for (a, b), t in zip(sample.spans, turns):
            role, at = chat.origin[t.msg_index]
            roles[a:b] = [role] * (b - a)
            idx[a:b] = [at] * (b - a)
        sample.roles, sample.turns = roles, idx

    # -- small helpers -----------------------------------------------------------------
    def _decode(self, ids: list[int]) -> str:
        # No clean-up: checks must see exactly the text the tokens stand for.
        return self.tokenizer.decode(
            ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def _is_whitespace(self, tid: int) -> bool:
        ws = self._ws_cache.get(tid)
        if ws is None:
            ws = tid not in self.end_of_turn_ids and not self._decode([tid]).strip()
            self._ws_cache[tid] = ws
        return ws


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


class Truncation(NamedTuple):
    """A sample cut by :func:`truncate_sample`.

    Attributes:
        input_ids: The first ``max_length`` ids.
        labels: Their labels (a copy), the cut turn unsupervised.
        unsupervised_turns: Turns cut by ``max_length`` whose kept tokens became context
            (0 or 1).
        lost_turns: Turns that lost supervised tokens: the cut one and those past the cut.
    """

    input_ids: Any
    labels: Any
    unsupervised_turns: int
    lost_turns: int

    @property
    def supervised(self) -> bool:
        """Whether a supervised token is left."""
        return bool(np.any(np.asarray(self.labels) != IGNORE_INDEX))


def truncate_sample(
    input_ids: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    spans: Sequence[tuple[int, int]] | np.ndarray,
    max_length: int,
) -> Truncation:
    """Cut a rendered sample to ``max_length`` tokens without training on a cut turn.

    The truncation guard of data-side cuts (``data.overlong=truncate``): every supervised
    span of a rendered sample ends with its turn's end-of-turn token, so a span that
    ``max_length`` cuts is a turn the model would learn to leave unfinished, possibly in the
    middle of a tool call. Its kept tokens stay as context and lose their supervision;
    spans past the cut go with the tokens. Spans, not label runs, decide, so a turn whose
    reasoning is unsupervised (``supervise_reasoning=False``) is still one turn.

    Args:
        input_ids: Token ids.
        labels: Labels (``IGNORE_INDEX`` where not supervised).
        spans: The sample's supervised ``[start, end)`` spans (:attr:`RenderedSample.spans`).
        max_length: Tokens kept.
    """
    ids = input_ids[:max_length]
    out = np.array(labels[:max_length], dtype=np.int64, copy=True)
    cut = lost = 0
    for a, b in spans:
        if b <= max_length:
            continue
        lost += 1
        if a < max_length:
            out[a:] = IGNORE_INDEX  # spans are ordered: nothing supervised follows a cut one
            cut += 1
    return Truncation(ids, out, cut, lost)


def render_many(
    renderer: Renderer, trajs: list[Trajectory] | Any
) -> tuple[list[RenderedSample], RenderReport]:
    """Render an iterable of trajectories; return the samples and the renderer's report."""
    out: list[RenderedSample] = []
    for t in trajs:
        out.extend(renderer.render(t))
    return out, renderer.report


__all__ = [
    "ERROR_KINDS",
    "IGNORE_INDEX",
    "PROMPT_FORMAT_INSTRUCTION",
    "RENDERER_VERSION",
    "WARNING_KINDS",
    "RenderError",
    "RenderOptions",
    "RenderReport",
    "RenderedSample",
    "Renderer",
    "TemplateCapabilities",
    "TokenEncoder",
    "Truncation",
    "call_in_text",
    "format_calls_json",
    "prompt_mode_messages",
    "render_many",
    "system_mode_messages",
    "truncate_sample",
]
