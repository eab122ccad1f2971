"""LoRA and QLoRA: per-family target modules, adapter wrapping, nf4 quantization.

Pure helpers around peft and bitsandbytes, without Lightning, so the same code builds the
model for training and rebuilds it for export; and the check that a checkpoint restores
every trainable parameter (:func:`check_trainable_state`), whatever strategy saved it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

# The projections of every attention and MLP block: the usual "all linear layers except the
# head" recipe (QLoRA paper), which beats attention-only LoRA at equal rank.
_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

LORA_TARGET_PRESETS: dict[str, list[str]] = {
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}

QUANTIZATION_KINDS = ("nf4",)


@dataclass
class LoraSettings:
    """The ``model.lora`` node.

    Attributes:
        enabled: Train low-rank adapters instead of all weights.
        r: Adapter rank.
        alpha: Scale numerator (the update is scaled by ``alpha / r``).
        dropout: Dropout on the adapter input.
        target_modules: ``auto`` (the preset of the model family), ``all-linear``, or names.
        bias: ``none``, ``all`` or ``lora_only`` (which biases train).
        modules_to_save: Extra modules trained in full (e.g. ``[lm_head]``).
    """

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "auto"
    bias: str = "none"
    modules_to_save: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"model.lora.r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.lora.dropout must be in [0, 1), got {self.dropout}")
        if self.bias not in ("none", "all", "lora_only"):
            raise ValueError(f"model.lora.bias must be none, all or lora_only, got {self.bias!r}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | LoraSettings | None) -> LoraSettings:
        if isinstance(cfg, LoraSettings):
            return cfg
        data = dict(cfg or {})
        if data.get("target_modules") is not None and not isinstance(data["target_modules"], str):
            data["target_modules"] = list(data["target_modules"])
        data["modules_to_save"] = list(data.get("modules_to_save") or [])
        return cls(**data)


def resolve_target_modules(spec: str | list[str], model_type: str) -> str | list[str]:
    """Target module names for ``model_type`` (``auto``), or ``spec`` as given.

    Raises:
        ValueError: For ``auto`` on a family without a preset.
    """
    if isinstance(spec, str) and spec == "auto":
        if model_type not in LORA_TARGET_PRESETS:
            raise ValueError(
                f"no LoRA target preset for model_type={model_type!r} (presets: "
                f"{', '.join(sorted(LORA_TARGET_PRESETS))}); set model.lora.target_modules to "
                "a list of module names or to 'all-linear'"
            )
        return list(LORA_TARGET_PRESETS[model_type])
    return spec


def apply_lora(model: torch.nn.Module, settings: LoraSettings) -> torch.nn.Module:
    """Wrap ``model`` in a peft ``PeftModel`` whose only trainable weights are the adapters."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_target_modules(settings.target_modules, model.config.model_type)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias=settings.bias,
        modules_to_save=settings.modules_to_save or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def quantization_config(kind: str | None, compute_dtype: torch.dtype = torch.bfloat16) -> Any:
    """A transformers ``BitsAndBytesConfig`` for QLoRA, or ``None`` without quantization.

    Raises:
        ValueError: For an unknown kind.
        RuntimeError: Without CUDA or without bitsandbytes: nf4 kernels are GPU-only.
    """
    if not kind:
        return None
    if kind not in QUANTIZATION_KINDS:
        raise ValueError(
            f"model.quantization must be null or one of {QUANTIZATION_KINDS}, got {kind!r}"
        )
    if not torch.cuda.is_available():
        raise RuntimeError(
            "model.quantization=nf4 (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels do "
            "not run on the CPU. Use model.quantization=null (plain LoRA) on this machine."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise RuntimeError(
            "model.quantization=nf4 needs bitsandbytes: pip install 'xlam[gpu]'"
        ) from e
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def trainable_summary(model: torch.nn.Module) -> dict[str, int]:
    """Counts of trainable and total parameters (for logs, MFU and the run record).

    Counts the logical parameters: a ZeRO-3 partition holds ``ds_numel`` of them in an empty
    tensor, and a 4-bit tensor packs two per byte.
    """
    total = trainable = 0
    for p in model.parameters():
        n = int(getattr(p, "ds_numel", 0)) or p.numel()
        if type(p).__name__ == "Params4bit":
            n *= 2 * p.element_size()
        total += n
        trainable += n if p.requires_grad else 0
    return {"params": total, "trainable_params": trainable}


class TrainableStateMismatch(RuntimeError):
    """A checkpoint does not hold exactly the trainable state of the model it resumes."""


def _show(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit]) or "none"
    return shown + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def trainable_state_mismatch(
    saved: Iterable[str], model: torch.nn.Module
) -> tuple[list[str], list[str]]:
    """The missing and unexpected keys of a checkpoint's state dict for ``model``.

    Every trainable parameter (full weights, LoRA adapters, ``modules_to_save`` copies) must
    be in ``saved``. Frozen weights may be absent: LoRA checkpoints leave out the base, which
    is rebuilt from ``path``/``seed``. A model without frozen weights needs every key of its
    state dict, as a strict ``load_state_dict`` does. A key the model lacks is unexpected.

    Returns:
        ``(missing, unexpected)``, sorted.
    """
    have = set(saved)
    params = dict(model.named_parameters())
    known = set(model.state_dict().keys())
    if all(p.requires_grad for p in params.values()):
        required = known
    else:
        required = {name for name, p in params.items() if p.requires_grad}
    return sorted(required - have), sorted(have - known)


def check_trainable_state(saved: Iterable[str], model: torch.nn.Module, source: str) -> None:
    """Raise unless ``saved`` restores every trainable parameter of ``model`` and no more.

    Args:
        saved: Keys of the checkpoint's state dict, in ``model``'s naming.
        model: The model being restored, built as for training (adapters applied).
        source: The checkpoint, as named in the error.

    Raises:
        TrainableStateMismatch: Naming the missing and the unexpected keys.
    """
    missing, unexpected = trainable_state_mismatch(saved, model)
    if missing or unexpected:
        raise TrainableStateMismatch(
            f"{source} does not restore the trainable state of the model: "
            f"{len(missing)} missing keys (in the model, not in the checkpoint): "
            f"{_show(missing)}; {len(unexpected)} unexpected keys (in the checkpoint, not in "
            f"the model): {_show(unexpected)}. "
            "Resume with the model and model.lora settings the checkpoint was trained with."
        )
