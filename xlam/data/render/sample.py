"""A rendered training sample and the data-side cut that keeps it honest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from xlam.data.labels import IGNORE_INDEX


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
        split: A preference pair (:func:`~xlam.data.render.pairs.render_pair`): the length
            of its chosen half, which the rejected half follows; 0 for any other sample.
        branch: A pair rendered with ``shared_history``: the rejected half continues the
            first ``branch`` tokens of the chosen half (its position ids start there); 0:
            the rejected half is a whole sequence of its own.
    """

    id: str
    source: str
    input_ids: list[int]
    labels: list[int]
    mode: str = "all_turns"
    spans: list[tuple[int, int]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    split: int = 0
    branch: int = 0

    @property
    def num_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


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
