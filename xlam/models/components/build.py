"""Building Hugging Face causal LMs: from a local folder or random-initialised from config."""

from __future__ import annotations

from typing import Any

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def build_causal_lm(
    path: str | None,
    vocab_size: int,
    tiny_config: dict[str, Any] | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    seed: int = 0,
    extra_kwargs: dict[str, Any] | None = None,
) -> torch.nn.Module:
    """Load a causal LM from a local folder, or build a random one from ``tiny_config``.

    Args:
        path: Local model folder (no hub downloads), or ``None`` for a config-built model.
        vocab_size: Tokenizer size; a config-built model uses it as its vocabulary.
        tiny_config: ``{"model_type": "qwen2" | "llama", ...}`` config fields.
        dtype: Parameter dtype.
        attn_implementation: ``eager``, ``sdpa`` or ``flash_attention_2``.
        seed: Seed of the random initialisation.
        extra_kwargs: Passed to ``from_pretrained`` (e.g. a quantization config).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = DTYPES[dtype]
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if path:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, local_files_only=True, **kwargs, **(extra_kwargs or {})
        )
    if not tiny_config:
        raise ValueError("model.path is empty and model.tiny_config is not set: nothing to build")
    cfg = dict(tiny_config)
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(model_type, vocab_size=vocab_size, **cfg)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, **kwargs)
    return model
