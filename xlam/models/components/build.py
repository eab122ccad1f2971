"""Building Hugging Face causal LMs: from a local folder or random-initialised from config."""

from __future__ import annotations

from typing import Any

import torch

from xlam.models.components import segments

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


# What every from_pretrained of ours passes: local files only, no repository code, and no hub
# kernels (transformers 5.x kernelizes a model loaded onto a GPU by default, fetching layers
# from the hub at load time: offline that load fails, online it downloads code).
LOAD_KWARGS: dict[str, Any] = {
    "local_files_only": True,
    "trust_remote_code": False,
    "use_kernels": False,
}


def build_causal_lm(
    path: str | None,
    vocab_size: int,
    from_config: dict[str, Any] | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    seed: int = 0,
    extra_kwargs: dict[str, Any] | None = None,
    conv_init: str | None = None,
) -> torch.nn.Module:
    """Load a causal LM from a local folder, or build a random one from ``from_config``.

    Args:
        path: Local model folder (no hub downloads), or ``None`` for a config-built model.
        vocab_size: Tokenizer size; a config-built model uses it as its vocabulary.
        from_config: Transformers config fields, ``model_type`` first (``qwen2``,
            ``llama``...); the vocabulary size comes from ``vocab_size``.
        dtype: Parameter dtype.
        attn_implementation: ``eager``, ``sdpa``, ``flash_attention_2`` or ``xlam_segments``
            (:mod:`.segments`: SDPA per packed sample, no block-diagonal mask).
        seed: Seed of the random initialisation.
        extra_kwargs: Passed to ``from_pretrained`` (e.g. ``quantization_config``,
            ``device_map``); a config-built model is saved and reloaded to apply them.
        conv_init: ``None`` (the library's initialisation) or ``split``
            (:func:`split_short_conv_init`); a config-built model with short convolutions only.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = DTYPES[dtype]
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
        if attn_implementation == segments.NAME:
            segments.register()
    extra = dict(extra_kwargs or {})
    check_conv_init(conv_init, path)
    if path:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, **LOAD_KWARGS, **kwargs, **extra
        )
    if not from_config:
        raise ValueError("model.path is empty and model.from_config is not set: nothing to build")
    cfg = dict(from_config)
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(model_type, vocab_size=vocab_size, **cfg)
    # Initialised on the CPU whatever device the strategy's init context names (Lightning's
    # single-device and DeepSpeed ZeRO-2 build on the GPU, ZeRO-3 and FSDP on the CPU), so a
    # seed gives the same weights under every strategy and on every machine.
    with torch.random.fork_rng(), torch.device("cpu"):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, **kwargs)
    if conv_init == "split":
        split_short_conv_init(model)
    if extra.get("quantization_config") is not None:
        # Quantizers run inside from_pretrained; a config-built model (tests, benchmarks)
        # takes the same path through a temporary folder rather than a second code path.
        import tempfile

        with tempfile.TemporaryDirectory(prefix="xlam-build-") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            del model
            return AutoModelForCausalLM.from_pretrained(
                tmp, dtype=torch_dtype, **LOAD_KWARGS, **kwargs, **extra
            )
    return model


CONV_INITS = (None, "split")
# the taps a narrow channel starts with: the current token and the two before it, the short
# convolution that makes one attention layer an induction head (docs/synthetic_data.md)
NARROW_TAPS = 3


def check_conv_init(conv_init: str | None, path: str | None) -> None:
    """Refuse an unknown ``model.conv_init``, or one asked of a model loaded from ``path``."""
    if conv_init not in CONV_INITS:
        raise ValueError(f"model.conv_init must be one of {CONV_INITS}, got {conv_init!r}")
    if path and conv_init:
        raise ValueError(
            "model.conv_init initialises a model built from model.from_config; "
            f"{path} holds trained weights: leave model.conv_init=null"
        )


def short_convs(model: torch.nn.Module) -> list[torch.nn.Conv1d]:
    """The depthwise (one filter a channel) 1-D convolutions of ``model``: LFM2's short
    convolutions and their kind."""
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Conv1d) and m.groups == m.in_channels == m.out_channels
    ]


@torch.no_grad()
def split_short_conv_init(model: torch.nn.Module) -> None:
    """Start half the channels of every short convolution narrow, the other half wide.

    Why: a wide window (32 tokens) lets a position see which call of a turn it is in and
    what came a few lines before, which the next action needs; a 3-token window is what
    copies a value token by token (its key names the exact predecessor). Randomly
    initialised, every channel of a wide kernel blurs the predecessor with 30 other tokens.
    Here the first half of the channels keep only their last :data:`NARROW_TAPS` taps, scaled
    so each channel's output variance is unchanged; training may widen them again.

    Raises:
        ValueError: ``model`` has no short convolution wider than :data:`NARROW_TAPS`.
    """
    convs = [c for c in short_convs(model) if c.kernel_size[0] > NARROW_TAPS]
    if not convs:
        raise ValueError(
            f"model.conv_init=split: {type(model).__name__} has no depthwise convolution wider "
            f"than {NARROW_TAPS} taps (an LFM2 with model.from_config.conv_L_cache > "
            f"{NARROW_TAPS} has)"
        )
    for conv in convs:
        w = conv.weight  # [channels, 1, taps]; the last tap multiplies the current token
        half, taps = w.shape[0] // 2, w.shape[-1]
        w[:half, :, : taps - NARROW_TAPS] = 0.0
        w[:half] *= (taps / NARROW_TAPS) ** 0.5


def dtype_for_precision(dtype: str, precision: str | None) -> str:
    """Parameter dtype to build with: ``auto`` follows the trainer's precision.

    Mixed precision keeps fp32 master weights (autocast computes in bf16/fp16), so only the
    ``*-true`` precisions build in half precision.
    """
    if dtype != "auto":
        return dtype
    p = str(precision or "32-true")
    if p.startswith("bf16-true"):
        return "bfloat16"
    if p.startswith("16-true"):
        return "float16"
    return "float32"
