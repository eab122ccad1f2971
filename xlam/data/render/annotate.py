"""Per-token roles and message indices of a rendered sample, for ``xlam-data inspect``.

Not used in training: it costs one extra render per message.
"""

from __future__ import annotations

from xlam.data.render.encoder import TokenEncoder, is_prefix, lcp
from xlam.data.render.sample import RenderedSample
from xlam.data.render.template import ChatTemplate
from xlam.data.render.tool_format import Chat


def annotate(
    sample: RenderedSample,
    chat: Chat,
    n_msgs: int,
    turn_messages: list[int],
    template: ChatTemplate,
    encoder: TokenEncoder,
) -> None:
    """Fill ``sample.roles`` and ``sample.turns`` from message-boundary renders.

    Args:
        sample: A sample rendered from ``chat``.
        chat: The messages it was rendered from (normalised by ``template``).
        n_msgs: How many of ``chat.messages`` the sample holds.
        turn_messages: Per supervised span of ``sample``, its index in ``chat.messages``.
        template: The template that rendered it.
        encoder: The encoder that encoded it.
    """
    seq = sample.input_ids
    bounds: list[int] = []
    for j in range(n_msgs):
        text = template.try_render(chat.messages[: j + 1], chat.tools, normalized=True)
        if text is None:
            # Some templates cannot render every prefix (Llama 3.1 needs a user turn
            # after the system prompt); the message then shares the next boundary.
            bounds.append(bounds[-1] if bounds else 0)
            continue
        ids = encoder.encode([text])[0]
        b = len(ids) if is_prefix(ids, seq) else lcp(ids, seq)
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
    for (a, b), m in zip(sample.spans, turn_messages):
        role, at = chat.origin[m]
        roles[a:b] = [role] * (b - a)
        idx[a:b] = [at] * (b - a)
    sample.roles, sample.turns = roles, idx
