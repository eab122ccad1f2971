"""The masking core: :class:`Renderer` finds each assistant turn's exact span and checks it.

For every assistant turn the history is rendered with a generation prompt and with the
turn; the tokens between the two are the turn's supervised span. Spans become labels,
truncation may not cut a tool call, and :meth:`Renderer._check` proves each sample's mask
covers exactly the spans before it leaves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from xlam.data.render.annotate import annotate as annotate_sample
from xlam.data.render.calls import call_in_text
from xlam.data.render.encoder import TokenEncoder, is_prefix, lcp
from xlam.data.render.options import RenderOptions
from xlam.data.render.report import Problem, RenderError, RenderReport
from xlam.data.render.sample import IGNORE_INDEX, RenderedSample
from xlam.data.render.template import (
    ChatTemplate,
    DirectTemplate,
    TemplateCapabilities,
    probe_capabilities,
    resolve_tool_format,
)
from xlam.data.render.tool_format import Chat, prepare_chat
from xlam.data.schema import Trajectory

log = logging.getLogger(__name__)

# Skipped trajectories logged per problem kind before only counting them.
LOGGED_PER_KIND = 5


@dataclass
class Turn:
    """Where one assistant turn's supervised span lies in its own render."""

    msg_index: int  # index in Chat.messages
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
        self.template = ChatTemplate(tokenizer, self._template_kwargs, direct=fast_templates)
        self.capabilities = self.probe()
        self.arguments_as_string = (
            self.capabilities.arguments_as_string
            if self.options.arguments_as_string is None
            else self.options.arguments_as_string
        )
        self.tool_format = resolve_tool_format(
            self.options.tool_format, self.capabilities, self._name
        )

    @property
    def _direct(self) -> DirectTemplate | None:
        """The direct template path, ``None`` when ``apply_chat_template`` renders."""
        return self.template.direct

    def probe(self) -> TemplateCapabilities:
        """Render small probe conversations to learn what the template supports."""
        return probe_capabilities(self.template)

    @property
    def _name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "tokenizer"))

    # -- message preparation -----------------------------------------------------------
    def chat(self, traj: Trajectory) -> Chat:
        """The messages and tools handed to the template for ``traj``."""
        chat = prepare_chat(
            traj,
            self.tool_format,
            self.arguments_as_string,
            drop_reasoning=self.options.enable_thinking is False,
        )
        chat.messages = self.template.normalize(chat.messages)
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
        except Problem as p:
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
            raise Problem("no_assistant_turn", "no assistant turn to supervise")
        last_is_turn = asst[-1] == len(msgs) - 1
        try:
            prompts = self.template.apply(
                [msgs[:i] for i in asst], tools, gen=True, normalized=True
            )
            ends = self.template.apply(
                [msgs[: i + 1] for i in asst] + ([] if last_is_turn else [msgs]),
                tools,
                gen=False,
                normalized=True,
            )
        except Exception as e:
            raise Problem("template_error", f"{type(e).__name__}: {e}") from None
        if traj.tools:
            missing = [n for n in traj.tool_names() if n not in prompts[0]]
            if missing:
                raise Problem(
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
        stable = all(is_prefix(t.end_ids, full_ids) for t in turns)
        mode = self.options.mode
        if mode == "auto":
            mode = "all_turns" if stable else "per_turn"
            if not stable:
                warnings.append(("per_turn_fallback", "history renders differently later"))
        elif mode == "all_turns" and not stable:
            k = next(k for k, t in enumerate(turns) if not is_prefix(t.end_ids, full_ids))
            raise Problem(
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
                turn_messages = [t.msg_index for t in sturns]
                annotate_sample(sample, chat, n_msgs, turn_messages, self.template, self.encoder)
            samples.append(sample)
        if not samples:
            raise Problem("no_supervised_tokens", "no sample left with a supervised token")
        return samples, mode

    def _turn(
        self,
        chat: Chat,
        i: int,
        calls: list[tuple[str, dict[str, Any]]],
        prompt: list[int],
        end: list[int],
        warnings: list[tuple[str, str]],
    ) -> Turn:
        """Find the supervised span of assistant message ``i`` inside its own render."""
        msg = chat.messages[i]
        turn = Turn(msg_index=i, end_ids=end, has_calls=bool(calls))
        if is_prefix(prompt, end):
            turn.start = len(prompt)
        else:
            # The generation prompt may add text the training render lacks (DeepSeek's
            # "<think>\n"). Accept it only if the history itself renders identically, so
            # the divergence lies inside the assistant header.
            try:
                hist_text = self.template.apply([chat.messages[:i]], chat.tools, False, True)[0]
            except Exception as e:
                raise Problem(
                    "history_mismatch",
                    f"message {i}: generation prompt is not a prefix of the turn and the "
                    f"history cannot be rendered alone ({type(e).__name__}: {e})",
                ) from None
            hist = self.encoder.encode([hist_text])[0]
            if not (is_prefix(hist, prompt) and is_prefix(hist, end)):
                raise Problem(
                    "history_mismatch",
                    f"message {i}: the template renders the earlier history differently "
                    "once this turn is added",
                )
            turn.start = lcp(prompt, end)
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
            raise Problem("empty_turn", f"message {i}: the template rendered nothing for it")
        if end[stop - 1] not in self.end_of_turn_ids:
            raise Problem(
                "missing_end_of_turn",
                f"message {i}: the turn ends with {self._decode(end[stop - 1 : stop])!r}, "
                "not a special end-of-turn token",
            )
        turn.end = stop
        text = self._decode(end[turn.start : turn.end])
        for name, args in calls:
            if not call_in_text(name, args, text):
                shown = json.dumps(args, ensure_ascii=False)[:80]
                raise Problem(
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
        turns: list[Turn],
        chat: Chat,
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
                        raise Problem(
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
                raise Problem("no_supervised_tokens", f"{sid}: nothing left after truncation")
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
            raise Problem("bos_inside", f"{sid}: BOS at position {at}")
        prev = 0
        supervised = 0
        for a, b in spans:
            if not (prev <= a < b <= len(seq)):
                raise Problem("mask_mismatch", f"{sid}: bad span {(a, b)} after {prev}")
            if labels[prev:a].count(IGNORE_INDEX) != a - prev:
                raise Problem("mask_mismatch", f"{sid}: supervised token before span {(a, b)}")
            inside = labels[a:b]
            if self.options.supervise_reasoning:
                if inside != seq[a:b]:
                    raise Problem("mask_mismatch", f"{sid}: span {(a, b)} not fully supervised")
            elif any(x not in (IGNORE_INDEX, t) for x, t in zip(inside, seq[a:b])):
                raise Problem("mask_mismatch", f"{sid}: span {(a, b)} has foreign labels")
            supervised += (b - a) - inside.count(IGNORE_INDEX)
            prev = b
        if labels[prev:].count(IGNORE_INDEX) != len(seq) - prev:
            raise Problem("mask_mismatch", f"{sid}: supervised token after the last span")
        if supervised == 0:
            raise Problem("no_supervised_tokens", f"{sid}: no supervised token")

    def _mask_reasoning(
        self,
        seq: list[int],
        labels: list[int],
        spans: list[tuple[int, int]],
        turns: list[Turn],
        chat: Chat,
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


def render_many(
    renderer: Renderer, trajs: list[Trajectory] | Any
) -> tuple[list[RenderedSample], RenderReport]:
    """Render an iterable of trajectories; return the samples and the renderer's report."""
    out: list[RenderedSample] = []
    for t in trajs:
        out.extend(renderer.render(t))
    return out, renderer.report
