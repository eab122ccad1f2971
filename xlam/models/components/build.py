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


def build_causal_lm(
    path: str | None,
    vocab_size: int,
    from_config: dict[str, Any] | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    seed: int = 0,
    extra_kwargs: dict[str, Any] | None = None,
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
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = DTYPES[dtype]
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
        if attn_implementation == segments.NAME:
            segments.register()
    extra = dict(extra_kwargs or {})
    if path:
        return AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch_dtype,
            local_files_only=True,
            trust_remote_code=False,
            **kwargs,
            **extra,
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
    if extra.get("quantization_config") is not None:
        # Quantizers run inside from_pretrained; a config-built model (tests, benchmarks)
        # takes the same path through a temporary folder rather than a second code path.
        import tempfile

        with tempfile.TemporaryDirectory(prefix="xlam-build-") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            del model
            return AutoModelForCausalLM.from_pretrained(
                tmp, dtype=torch_dtype, local_files_only=True, **kwargs, **extra
            )
    return model


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
