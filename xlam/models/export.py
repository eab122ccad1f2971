"""Export a trained model as a Hugging Face folder that transformers and vLLM load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def export_hf(model: torch.nn.Module, tokenizer: Any, out_dir: str | Path) -> Path:
    """Save ``model`` (merging LoRA adapters if present) and ``tokenizer`` to ``out_dir``.

    Writes safetensors weights, the config, a generation config whose EOS is the
    tokenizer's end-of-turn token, and the tokenizer with its chat template.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        if tokenizer.eos_token_id is not None:
            gen.eos_token_id = tokenizer.eos_token_id
        if tokenizer.pad_token_id is not None:
            gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        model.config.eos_token_id = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
