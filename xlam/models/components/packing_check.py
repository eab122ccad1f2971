"""Self-check that a packed forward equals the same samples run unpacked (no Lightning).

Packed rows (:mod:`xlam.data.collate`) rely on transformers building a block-diagonal causal
mask from ``position_ids`` that restart at 0 (``masking_utils.find_packed_sequence_indices``,
transformers >= 4.53.1 with torch >= 2.6), or on varlen flash attention. When that silently
stops working (an older library, a KV cache, a new attention kernel, a model family that
builds its own mask), every sample attends to the samples packed before it and training goes
on with a plausible loss. :func:`check_packed_forward` runs a handful of real samples packed
and unpacked through the forward that training uses and refuses when any sample differs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from xlam.data.collate import packed_collate

# (input_ids, attention_mask, position_ids | None) -> logits: CausalLMModule.forward.
Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]

# Allowed max |packed - unpacked| of a sample's logits: atol + rtol x (max |logit| of it).
# The two runs differ only in kernel shapes and summation order: measured on CPU with the
# tiny and the 12-layer small_100m Qwen2 (sdpa and eager), fp32 stays below 3e-6 (1% of its
# limit) and bf16 (unit roundoff 2^-9) below 1.2% of the logit scale (23% of its limit);
# fp16 has 3 more mantissa bits. A leak moves the logits of every sample that follows
# another in its row by 40% (tiny) to 140% (small_100m) of their scale: 7x to 30x the bf16
# limit, thousands of times the fp32 one. The first sample of a row cannot show a leak.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-4),
    torch.bfloat16: (1e-3, 5e-2),
    torch.float16: (1e-3, 2e-2),
}


class PackingLeakError(RuntimeError):
    """A packed forward lets samples attend to each other."""


# Layer types (``config.layer_types``) that mix tokens through the attention mask alone.
_MASKED_LAYER_TYPES = frozenset(
    {"full_attention", "sliding_attention", "chunked_attention", "attention"}
)


def mixers_outside_attention(config: object) -> list[str]:
    """The model's layer types that mix tokens without the attention mask.

    Short convolutions (LFM2's ``conv``), state-space and linear-attention layers read the
    tokens before them whatever the mask says: packed rows leak through them.
    """
    types = getattr(config, "layer_types", None) or []
    return sorted({str(t) for t in types} - _MASKED_LAYER_TYPES)


@dataclass(frozen=True)
class SampleDiff:
    """How far one sample's packed logits are from its unpacked ones.

    Attributes:
        index: Position of the sample in the list given to the check.
        row: Packed row it was placed in.
        tokens: Its length.
        max_diff: Largest absolute logit difference over its tokens and the vocabulary.
        limit: The tolerance it was held to.
    """

    index: int
    row: int
    tokens: int
    max_diff: float
    limit: float

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.limit


@dataclass(frozen=True)
class PackingCheckResult:
    """Outcome of :func:`compare_packed_forward`."""

    diffs: list[SampleDiff]
    row_sizes: list[int]
    dtype: torch.dtype
    attn_implementation: str

    @property
    def rows(self) -> int:
        return len(self.row_sizes)

    @property
    def shares_a_row(self) -> bool:
        """Whether any row held two samples (else there was nothing to leak)."""
        return any(n > 1 for n in self.row_sizes)

    @property
    def failed(self) -> list[SampleDiff]:
        return [d for d in self.diffs if not d.ok]

    @property
    def max_diff(self) -> float:
        return max((d.max_diff for d in self.diffs), default=0.0)


def library_versions() -> str:
    """``transformers X, torch Y``: what builds the packed mask."""
    import transformers

    return f"transformers {transformers.__version__}, torch {torch.__version__}"


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` for logits computed in ``dtype`` (fp32's for other dtypes)."""
    return TOLERANCES.get(dtype, TOLERANCES[torch.float32])


def compute_dtype(model: torch.nn.Module, device_type: str) -> torch.dtype:
    """The dtype a forward computes in now: autocast's if enabled, else the weights'."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and a forked RNG for a side forward; every submodule's mode is restored."""
    modes = [(m, m.training) for m in model.modules()]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            model.eval()
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def split_packed_batch(batch: dict) -> list[list[int]]:
    """Token ids of every sample of a packed (or padded) batch, in ``sample_index`` order."""
    ids = batch["input_ids"].detach().cpu()
    index = batch["sample_index"].detach().cpu()
    n = int(index.max().item()) + 1 if index.numel() else 0
    return [ids[index == i].tolist() for i in range(n)]


def plan_rows(lengths: Sequence[int], row_tokens: int, max_rows: int = 2) -> list[list[int]]:
    """Place samples, shortest first, into at most ``max_rows`` rows of ``row_tokens``.

    Shortest first puts as many samples as possible next to each other, and keeps the check
    cheap. Samples that do not fit are left out.

    Returns:
        Sample indices of each non-empty row, each row in index order.
    """
    rows: list[list[int]] = [[] for _ in range(max_rows)]
    used = [0] * max_rows
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        n = lengths[i]
        if n <= 0:
            continue
        r = next((r for r in range(max_rows) if used[r] + n <= row_tokens), None)
        if r is None:
            break  # the rest are at least as long
        rows[r].append(i)
        used[r] += n
    return [sorted(r) for r in rows if r]


def _max_abs(a: torch.Tensor, b: torch.Tensor, chunk: int = 256) -> tuple[float, float]:
    """``(max |a - b|, max |b|)`` in fp32, a few tokens at a time (logits are vocab wide)."""
    diff = scale = 0.0
    for t in range(0, a.shape[0], chunk):
        x, y = a[t : t + chunk].float(), b[t : t + chunk].float()
        diff = max(diff, (x - y).abs().max().item())
        scale = max(scale, y.abs().max().item())
    return diff, scale


def compare_packed_forward(
    forward: Forward,
    samples: Sequence[Sequence[int]],
    dtype: torch.dtype,
    attn_implementation: str,
    row_tokens: int,
    *,
    max_rows: int = 2,
    max_samples: int = 8,
    device: torch.device | str = "cpu",
    pad_id: int = 0,
) -> PackingCheckResult:
    """Run samples packed, then each alone, through ``forward`` and compare their logits.

    The forwards made depend on the samples only (one of the packed rows, one per placed
    sample), so ranks given the same samples run the same forwards, as ZeRO-3 needs (it
    gathers weights in each). A sample alone is a batch of one with an all-ones mask, the
    way unpacked batches reach the model. Call it in eval mode.

    Args:
        forward: ``(input_ids, attention_mask, position_ids | None) -> logits``, as
            ``CausalLMModule.forward``; ``position_ids`` given means a packed batch.
        samples: Token ids of real samples.
        dtype: Dtype the forward computes in (the autocast dtype or the weights').
        attn_implementation: Name of the attention kernel (for the report).
        row_tokens: Capacity of a packed row.
        max_rows: Packed rows to build.
        max_samples: The shortest this many samples are used.
        device: Where the batches go.
        pad_id: Token id of padding.

    Returns:
        Per-sample differences and the number of samples in each packed row.
    """
    lengths = [len(s) for s in samples]
    keep = sorted(sorted(range(len(samples)), key=lambda i: (lengths[i], i))[:max_samples])
    plan = [
        [keep[j] for j in row]
        for row in plan_rows([lengths[i] for i in keep], row_tokens, max_rows)
    ]
    if not plan:
        return PackingCheckResult([], [], dtype, attn_implementation)

    def sample(i: int) -> dict:
        return {"id": str(i), "source": "check", "input_ids": samples[i], "labels": samples[i]}

    packed = packed_collate([[sample(i) for i in row] for row in plan], pad_id)
    atol, rtol = tolerance(dtype)
    diffs = []
    with torch.no_grad():
        got = forward(
            packed["input_ids"].to(device),
            packed["attention_mask"].to(device),
            packed["position_ids"].to(device),
        )
        index = packed["sample_index"].to(device)
        placed = [(r, i) for r, row in enumerate(plan) for i in row]
        for k, (row, i) in enumerate(placed):
            ids = torch.tensor([list(samples[i])], dtype=torch.long, device=device)
            alone = forward(ids, torch.ones_like(ids), None)[0]
            diff, scale = _max_abs(got[index == k], alone)  # sample k's tokens, in order
            diffs.append(SampleDiff(i, row, lengths[i], diff, atol + rtol * scale))
    return PackingCheckResult(diffs, [len(r) for r in plan], dtype, attn_implementation)


def leak_message(result: PackingCheckResult, mixers: Sequence[str] = ()) -> str:
    """What a user reads when the packed forward differs from the unpacked one.

    ``mixers``: the model's layer types that mix tokens outside attention
    (:func:`mixers_outside_attention`), named as the cause when there are any.
    """
    if mixers:
        cause = (
            f"The model's {', '.join(repr(m) for m in mixers)} layers mix each token with "
            "the ones before it whatever the attention mask says: packed rows cannot keep "
            "its samples apart. Train it with data.packing.enabled=false"
        )
    else:
        cause = (
            "The model must get position ids restarting at 0 per sample, no attention mask "
            "and no KV cache (use_cache=False), and transformers must build the "
            "block-diagonal mask from them (transformers>=4.53.1 with torch>=2.6; flash "
            "attention: rows flattened to one). Otherwise train with "
            "data.packing.enabled=false"
        )
    bad = result.failed
    atol, rtol = tolerance(result.dtype)
    shown = ", ".join(
        f"sample {d.index} (row {d.row}, {d.tokens} tokens): max |diff| {d.max_diff:.3g} > "
        f"{d.limit:.3g}"
        for d in bad[:5]
    )
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    if not bad:  # the verdict of all ranks, reported on one whose own run agreed
        shown = f"not on this rank (max |diff| {result.max_diff:.3g}), on another one"
    return (
        f"packed forward leaks across samples: with attn_implementation="
        f"{result.attn_implementation!r} ({library_versions()}), {len(bad)} of "
        f"{len(result.diffs)} samples packed into {result.rows} row(s) give other logits "
        f"than alone: {shown}{more} (tolerance for {result.dtype}: atol {atol:g} + rtol "
        f"{rtol:g} x max |logit|). Training on such rows lets every sample see the samples "
        f"before it. {cause}; model.packing_check=false skips this check"
    )


def summary(result: PackingCheckResult) -> str:
    """One line for the log of a check that passed."""
    worst = max(result.diffs, key=lambda d: d.max_diff / max(d.limit, 1e-30), default=None)
    ratio = worst.max_diff / worst.limit if worst is not None else 0.0
    return (
        f"{len(result.diffs)} samples in {result.rows} packed row(s) {result.row_sizes} equal "
        f"their unpacked forward (max |diff| {result.max_diff:.3g}, {ratio:.2g} of the "
        f"tolerance for {result.dtype}; attn_implementation={result.attn_implementation!r}, "
        f"{library_versions()})"
    )


def check_packed_forward(
    forward: Forward,
    samples: Sequence[Sequence[int]],
    dtype: torch.dtype,
    attn_implementation: str,
    row_tokens: int,
    **kwargs: object,
) -> PackingCheckResult:
    """:func:`compare_packed_forward`, raising if any sample differs.

    Raises:
        PackingLeakError: Naming the attention implementation, the library versions, the
            samples that differ and by how much.
    """
    result = compare_packed_forward(
        forward,
        samples,
        dtype,
        attn_implementation,
        row_tokens,
        **kwargs,  # type: ignore[arg-type]
    )
    if result.failed:
        raise PackingLeakError(leak_message(result))
    return result


__all__ = [
    "TOLERANCES",
    "PackingCheckResult",
    "PackingLeakError",
    "SampleDiff",
    "check_packed_forward",
    "compare_packed_forward",
    "compute_dtype",
    "eval_mode",
    "leak_message",
    "library_versions",
    "mixers_outside_attention",
    "plan_rows",
    "split_packed_batch",
    "summary",
    "tolerance",
]
