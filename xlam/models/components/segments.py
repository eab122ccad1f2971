"""``attn_implementation="xlam_segments"``: attention over packed rows one sample at a time.

With SDPA a packed row of ``L`` tokens attends through a block-diagonal ``L × L`` mask: the
kernel computes all ``L²`` scores and masks most of them away, and a masked SDPA cannot use
its causal fast path. This implementation cuts each row at the positions where its position
ids restart (:mod:`xlam.data.collate`) and runs causal SDPA on each sample alone, so the cost
is ``Σ Lᵢ²`` instead of ``L²`` with no mask built at all: what flash attention's varlen
kernels do on CUDA, for the CPU and for any device without them. Numerically it is SDPA on
each sample (the packed results equal the unpacked ones; ``tests/test_packing.py``).

A row may also hold a *branch* (:mod:`xlam.data.render.pairs` with ``shared_history``): where
the position ids step back to ``p > 0`` instead of restarting at 0, the tokens that follow
are another continuation of the first ``p`` tokens of the current sample; they attend to
those ``p`` tokens and causally to each other, never to the tokens in between. A preference
pair so computes its history once for both of its sides.

Anything that is not a packed training forward (a padding mask, decoding with a cache, no
position ids) is handed to transformers' SDPA unchanged, so a model built with it generates
as an SDPA model does.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

NAME = "xlam_segments"


# The last position ids seen and their spans: every layer of a forward gets the same tensor,
# so the rows are cut (a device sync and a Python pass) once per forward, not once per layer.
_last: list[Any] = [None, None]

# (start, end, prefix_start, prefix_len): the queries [start, end) attend causally to
# themselves and to all of the keys [prefix_start, prefix_start + prefix_len) (none: 0).
Span = tuple[int, int, int, int]


def _segments(position_ids: torch.Tensor) -> list[list[Span]]:
    """Per row, the spans whose position ids count up by one (see :data:`Span`).

    A span starting at position id 0 is a sample; one starting at ``p > 0`` is a branch of
    the sample before it, sharing that sample's first ``p`` tokens.
    """
    if _last[0] is position_ids:
        return _last[1]
    width = position_ids.shape[-1]
    out = []
    for row in position_ids.reshape(-1, width).tolist():
        # A cut wherever the ids do not count up by one: a new sample (0) or a branch (p > 0).
        cuts = [i for i in range(width) if i == 0 or row[i] != row[i - 1] + 1]
        spans: list[Span] = []
        root = 0
        for a, b in zip(cuts, [*cuts[1:], width], strict=True):
            p = row[a]
            if p == 0 or not spans:
                root = a
                spans.append((a, b, a, 0))
            else:
                spans.append((a, b, root, p))
        out.append(spans)
    _last[:] = [position_ids, out]
    return out


def segment_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal SDPA on each packed sample of each row (the ``AttentionInterface`` signature:
    ``query`` ``(batch, heads, seq, dim)``, ``key``/``value`` with the model's KV heads;
    returns ``(batch, seq, heads, dim)``)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    q_len, kv_len = query.shape[2], key.shape[2]
    if attention_mask is not None or position_ids is None or q_len != kv_len or q_len == 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    out = torch.empty_like(query)
    rows = _segments(position_ids)
    if len(rows) == 1:  # (1, seq) when the model made them itself: the same for every row
        rows = rows * query.shape[0]
    for b, spans in enumerate(rows):
        for start, end, pre, n_pre in spans:
            q = query[b : b + 1, :, start:end]
            if not n_pre:
                out[b : b + 1, :, start:end] = F.scaled_dot_product_attention(
                    q,
                    key[b : b + 1, :, start:end],
                    value[b : b + 1, :, start:end],
                    dropout_p=dropout,
                    scale=scaling,
                    is_causal=end - start > 1,
                )
                continue
            # A branch: the shared prefix in full, then itself causally.
            k = torch.cat([key[b : b + 1, :, pre : pre + n_pre], key[b : b + 1, :, start:end]], 2)
            v = torch.cat(
                [value[b : b + 1, :, pre : pre + n_pre], value[b : b + 1, :, start:end]], 2
            )
            n = end - start
            mask = torch.ones(n, n_pre + n, dtype=torch.bool, device=q.device)
            mask[:, n_pre:] = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
            out[b : b + 1, :, start:end] = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling
            )
    return out.transpose(1, 2).contiguous(), None


def segment_mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
    """No mask for a packed forward (the attention cuts the rows itself); SDPA's otherwise."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> None:
    """Make ``attn_implementation="xlam_segments"`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(NAME, segment_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, segment_mask)


__all__ = ["NAME", "register", "segment_attention_forward", "segment_mask"]
