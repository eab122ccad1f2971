"""A preference pair as one sample: ``history + chosen`` followed by ``history + rejected``.

Each side is rendered by the same :class:`~xlam.data.render.core.Renderer` in ``per_turn``
mode and only its last sample is kept: the prompt (the shared history) and the compared
assistant turn, which alone is supervised. The two halves travel as one sample (one stream
position, one packing unit of ``len(chosen) + len(rejected)`` tokens) whose ``split`` says
where the rejected half starts; the packed collate restarts positions there, so the halves
never attend to each other (:mod:`xlam.data.collate`).

With ``RenderOptions.shared_history`` the history is in the sample once: the rejected half
keeps only what follows the tokens both sides share before their first supervised token,
plus the last shared token again (its logits predict the rejected side's first token), and
``branch`` says how many tokens of the chosen half it continues. The collate gives it the
positions it has in ``history + rejected``, and ``xlam_segments`` attention lets it see the
shared tokens and itself only (:mod:`xlam.models.components.segments`): the same log-probs
as the two separate halves, with the history computed once.
"""

from __future__ import annotations

from xlam.data.labels import IGNORE_INDEX
from xlam.data.preference import SIDES, PreferencePair
from xlam.data.render.core import Renderer
from xlam.data.render.report import RenderError
from xlam.data.render.sample import RenderedSample


def render_pair(renderer: Renderer, pair: PreferencePair) -> RenderedSample | None:
    """Render both sides of a pair into one sample (``split`` = the chosen half's length).

    Args:
        renderer: A renderer in ``per_turn`` mode (each turn its own prompt and span).
        pair: The pair.

    Returns:
        The sample, or ``None`` when a side was skipped (counted in ``renderer.report``).

    Raises:
        RenderError: The renderer is not in ``per_turn`` mode, or (strict mode) a side
            cannot be rendered.
    """
    if renderer.options.mode != "per_turn":
        raise RenderError("preference pairs render in mode=per_turn", "config")
    halves = []
    for side in SIDES:
        traj = pair.completed(side)
        turns = sum(1 for m in traj.conversation if m.role == "assistant")
        samples = renderer.render(traj)
        if not samples:
            return None
        last = samples[-1]
        if last.id != f"{traj.id}#{turns - 1}":
            # The compared turn itself was left out (it starts beyond max_length).
            raise RenderError(
                f"{side}: the compared turn was not rendered", "no_supervised_tokens", pair.id
            )
        halves.append(last)
    chosen, rejected = halves
    n = len(chosen.input_ids)
    start = shared_prefix(chosen, rejected) - 1 if renderer.options.shared_history else 0
    if start > 0:
        # The rejected half from the last shared token on, at its own positions.
        ids = rejected.input_ids[start:]
        labels = [IGNORE_INDEX, *rejected.labels[start + 1 :]]
    else:
        start, ids, labels = 0, rejected.input_ids, rejected.labels
    shift = n - start
    return RenderedSample(
        id=pair.id,
        source=pair.source,
        input_ids=[*chosen.input_ids, *ids],
        labels=[*chosen.labels, *labels],
        mode="pair",
        spans=[*chosen.spans, *((a + shift, b + shift) for a, b in rejected.spans)],
        split=n,
        branch=start,
    )


def shared_prefix(a: RenderedSample, b: RenderedSample) -> int:
    """Length of the common start of two samples that is supervised in neither."""
    n = 0
    for x, y, la, lb in zip(a.input_ids, b.input_ids, a.labels, b.labels, strict=False):
        if x != y or la != IGNORE_INDEX or lb != IGNORE_INDEX:
            break
        n += 1
    return n


__all__ = ["render_pair", "shared_prefix"]
