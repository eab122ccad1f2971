"""Speed options of the model: Liger kernels, ``torch.compile``, activation checkpointing.

Pure helpers (no Lightning) behind three ``model`` keys, each of which must leave the loss
unchanged (tested: ``tests/test_kernels.py`` on the CPU, ``tests/test_gpu.py`` on CUDA):

- ``model.kernels``: ``null`` or ``liger`` (:func:`apply_kernels`): Liger's Triton RMSNorm,
  SwiGLU and RoPE patched into the model instance. Liger's fused linear cross-entropy is
  *not* used: our own loss path (supervised logits, chunked loss) keeps computing per-token
  losses, see :func:`apply_kernels` for why.
- ``model.compile``: ``false``, ``true`` or a mapping of ``torch.compile`` arguments
  (:func:`compile_layers`): each decoder layer compiled in place.
- ``model.gradient_checkpointing``: ``false``, ``true`` or ``{every: k}``
  (:func:`enable_checkpointing`): recompute the activations of every (k-th) decoder layer.

What reaches into transformers' and Liger's internals (the decoder-layer class and its
``gradient_checkpointing`` flag, Liger's private per-instance patch function) is here and
nowhere else; the day it changes, the CPU tests fail for transformers and the CUDA test for
Liger.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from typing import Any

import torch

log = logging.getLogger(__name__)

KERNELS = ("liger",)

# The torch.compile arguments model.compile may set (a typo fails before the model is built).
COMPILE_KEYS = ("mode", "dynamic", "fullgraph", "backend", "options")


# -- Liger ---------------------------------------------------------------------------------
def check_kernels(kernels: str | None, device_type: str | None = None) -> None:
    """Refuse ``model.kernels`` values that cannot run here, with what to change.

    Args:
        kernels: ``None`` or ``liger``.
        device_type: The device training runs on (``cuda``, ``cpu``); ``None``: whether CUDA
            is available at all (checked before the trainer exists).

    Raises:
        ValueError: An unknown value.
        RuntimeError: Liger without CUDA, or without the ``liger-kernel`` package.
    """
    if kernels is None:
        return
    if kernels not in KERNELS:
        raise ValueError(f"model.kernels must be null or liger, got {kernels!r}")
    on_cuda = torch.cuda.is_available() if device_type is None else device_type == "cuda"
    if not on_cuda:
        raise RuntimeError(
            "model.kernels=liger needs a CUDA GPU: Liger's kernels are written in Triton and "
            "do not run on the CPU. Set model.kernels=null (the same loss, PyTorch's kernels) "
            "or train on a GPU (trainer=gpu)"
        )
    if importlib.util.find_spec("liger_kernel") is None:
        raise RuntimeError(
            "model.kernels=liger needs the liger-kernel package: pip install 'xlam[gpu]' "
            "(or set model.kernels=null)"
        )


def apply_kernels(model: torch.nn.Module, kernels: str | None) -> None:
    """Patch ``model`` (a transformers causal LM, before LoRA) with ``kernels``' modules.

    ``liger``: Liger's RMSNorm, SwiGLU MLP and RoPE through its per-instance entry point.
    Its fused linear cross-entropy stays off, and so does its cross-entropy: our loss path
    wins. Liger's loss is computed inside a patched ``forward`` from ``labels`` and returns
    one mean per call, normalised by that micro-batch's tokens; ours needs per-token losses
    (the step's token mean over every micro-batch and rank, per-source losses, the DPO
    objective's per-pair sums), and Liger's ``reduction="none"`` backward scales every
    token's gradient by a single value of the incoming gradient, which is wrong for any
    per-token weighting. The chunked loss (``model.chunked_loss``) already keeps the
    ``[tokens, vocab]`` logits from existing.

    Note that Liger patches RoPE at module level (``modeling_<family>.apply_rotary_pos_emb``):
    every model of that family built afterwards in the same process uses it too.

    Raises:
        ValueError: The family has no Liger patch.
    """
    if kernels is None:
        return
    from liger_kernel.transformers import monkey_patch

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in monkey_patch.MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise ValueError(
            f"model.kernels=liger: Liger has no kernels for model_type {model_type!r}; "
            "set model.kernels=null"
        )
    monkey_patch._apply_liger_kernel_to_instance(
        model=model,
        rope=True,
        rms_norm=True,
        swiglu=True,
        cross_entropy=False,
        fused_linear_cross_entropy=False,
    )
    log.info("Liger kernels (RMSNorm, SwiGLU, RoPE) applied to the %s model", model_type)


# -- decoder layers ------------------------------------------------------------------------
def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated decoder blocks, in order (through PEFT wrappers too).

    transformers (4.52+) gives them the base class ``GradientCheckpointingLayer``; older
    families are matched by class name, like the FSDP wrap policy (``*DecoderLayer``).
    """
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # pragma: no cover - older transformers
        GradientCheckpointingLayer = ()
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    # Nested checkpointing layers (none in today's decoders) would be counted twice.
    layers = layers or [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    return layers


# -- activation checkpointing --------------------------------------------------------------
def checkpoint_every(policy: Any) -> int:
    """``model.gradient_checkpointing`` as "checkpoint every k-th decoder layer" (0: off).

    Args:
        policy: ``false``, ``true`` (every layer), or ``{every: k}`` with ``k >= 1``
            (layers 0, k, 2k, ...: ``k=2`` keeps half the layers' activations).

    Raises:
        ValueError: Any other value, naming the key.
    """
    if isinstance(policy, bool):
        return int(policy)
    if isinstance(policy, Mapping) and set(policy) <= {"every"}:
        every = policy.get("every", 1)
        if isinstance(every, int) and not isinstance(every, bool) and every >= 1:
            return every
    raise ValueError(
        "model.gradient_checkpointing must be false, true or {every: k} with an integer "
        f"k >= 1 (checkpoint every k-th decoder layer), got {policy!r}"
    )


def enable_checkpointing(model: torch.nn.Module, every: int) -> int:
    """Recompute in the backward the activations of every ``every``-th decoder layer.

    transformers' own non-reentrant checkpointing of each layer's ``forward`` (module hooks,
    e.g. FSDP's, stay outside the recomputation); then the layers between the chosen ones
    are switched back off, as transformers' ``every_n_layers`` (5.x) does, kept here so that
    every supported transformers version behaves the same.

    Args:
        model: A transformers model (or a PEFT model around one).
        every: ``k >= 1``; ``0`` leaves the model as it is.

    Returns:
        How many decoder layers are checkpointed.
    """
    if every < 1:
        return 0
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 (the old name warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return select_checkpointed(model, every)


def select_checkpointed(model: torch.nn.Module, every: int) -> int:
    """Keep checkpointing on layers ``0, every, 2·every, ...`` only; returns their count."""
    layers = decoder_layers(model)
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i % every == 0
    return sum(bool(getattr(layer, "gradient_checkpointing", False)) for layer in layers)


def fsdp_checkpoints_blocks(strategy: Any) -> bool:
    """Whether a Lightning FSDP strategy wraps blocks in its own activation checkpointing."""
    return bool(getattr(strategy, "_activation_checkpointing_kwargs", None))


# -- torch.compile -------------------------------------------------------------------------
def compile_options(value: Any) -> dict[str, Any] | None:
    """``model.compile`` as ``torch.compile`` keyword arguments; ``None`` when off.

    Args:
        value: ``false``, ``true`` (defaults: inductor, ``mode=None``), or a mapping with
            any of ``mode``, ``dynamic``, ``fullgraph``, ``backend``, ``options``.

    Raises:
        ValueError: Another value or an unknown key, naming it.
    """
    if value is False or value is None:
        return None
    if value is True:
        return {}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(COMPILE_KEYS))
        if unknown:
            raise ValueError(
                f"model.compile: unknown key(s) {unknown}; allowed: {', '.join(COMPILE_KEYS)}"
            )
        return dict(value)
    raise ValueError(
        f"model.compile must be false, true or a mapping of torch.compile arguments, got {value!r}"
    )


def compile_layers(model: torch.nn.Module, options: dict[str, Any]) -> int:
    """Compile each decoder layer in place (``nn.Module.compile``); returns their count.

    Per layer, not the whole model: the identical layers share one compiled graph (compile
    time does not grow with depth), and what does not trace well stays eager: transformers'
    mask building, the data-dependent ``logits_to_keep`` selection and the chunked loss's
    Python loop. In place, not ``torch.compile(module)``: no ``_orig_mod.`` wrapper, so
    parameter names, state dicts, checkpoints, resume and exports are unchanged.
    """
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(**options)
    return len(layers)


def compiled_layers(model: torch.nn.Module) -> int:
    """How many decoder layers carry a compiled call (for logs and tests)."""
    return sum(getattr(m, "_compiled_call_impl", None) is not None for m in decoder_layers(model))


__all__ = [
    "KERNELS",
    "apply_kernels",
    "check_kernels",
    "checkpoint_every",
    "compile_layers",
    "compile_options",
    "compiled_layers",
    "decoder_layers",
    "enable_checkpointing",
    "fsdp_checkpoints_blocks",
    "select_checkpointed",
]
