"""Typed schemas of the ``model`` and ``trainer`` config groups.

Registered in Hydra's ConfigStore as ``schema/model`` and ``schema/trainer`` (see
:func:`register_configs`); ``conf/model/default.yaml`` and ``conf/trainer/default.yaml`` start
from them (``defaults: [/schema/model@_here_, _self_]``), so an unknown key or a value of the
wrong type fails when the config is composed, naming the key, instead of mid-run. The value
rules that need several fields (LoRA settings, quantization) stay where the objects are built.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class LoraConfig:
    """``model.lora`` (see :class:`xlam.models.components.lora.LoraSettings`)."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # auto | all-linear | a list of module names
    target_modules: Any = "auto"
    bias: str = "none"
    modules_to_save: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    """Schema of the ``model`` group: the arguments of ``CausalLMModule``.

    ``optimizer`` and ``scheduler`` are ``_target_``/``_partial_`` nodes, untyped here so
    that another factory with other arguments can be swapped in.
    """

    _target_: str = "xlam.models.causal_lm.CausalLMModule"
    _convert_: str = "all"
    path: str | None = MISSING
    tokenizer_path: str | None = None
    from_config: dict[str, Any] | None = None
    dtype: str = "auto"
    attn_implementation: str | None = None
    optimizer: Any = None
    weight_decay: float = 0.0
    scheduler: Any = None
    # false | true | {every: k} (xlam.models.components.kernels.checkpoint_every)
    gradient_checkpointing: Any = False
    # null | liger
    kernels: str | None = None
    # false | true | {mode, dynamic, fullgraph, backend, options} of torch.compile
    compile: Any = False
    seed: int = 0
    # null | split (xlam.models.components.build.split_short_conv_init)
    conv_init: str | None = None
    # null | space | word (xlam.models.components.embed_tie.apply_embed_tie)
    embed_tie: str | None = None
    # NEFTune: noise on the input embeddings in training (null: none)
    neftune_alpha: float | None = None
    lora: LoraConfig = field(default_factory=LoraConfig)
    quantization: str | None = None
    packing_check: bool = True
    nonfinite: str = "stop"
    max_nonfinite_skips: int = 10
    supervised_logits: bool = True
    chunked_loss: Any = "auto"
    loss_chunk_tokens: int = 512
    copy_weight: float = 1.0


_SIMPLE = (bool, int, float, str)


def _schema_type(hint: Any) -> Any:
    """``hint`` when OmegaConf can check it without changing the value, else ``Any``.

    Unions such as ``int | float`` stay ``Any``: Lightning reads ``limit_val_batches=2`` (a
    count) and ``2.0`` (a fraction) differently, so a value must never be converted.
    """
    if hint in _SIMPLE:
        return hint
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 2:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and inner[0] in _SIMPLE:
            return inner[0] | None
    return Any


@functools.cache
def trainer_schema() -> type:
    """Schema of the ``trainer`` group: every argument of ``lightning.pytorch.Trainer``.

    Built from the installed Trainer's signature (with its defaults), so it follows the
    Lightning version: a misspelt key fails at compose time, any real argument works.
    """
    from lightning.pytorch import Trainer

    hints = typing.get_type_hints(Trainer.__init__)
    specs: list[tuple[str, Any, Any]] = [
        ("_target_", str, field(default="lightning.pytorch.trainer.Trainer"))
    ]
    for name, param in inspect.signature(Trainer.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        specs.append((name, _schema_type(hints.get(name, Any)), field(default=default)))
    schema = dataclasses.make_dataclass("TrainerConfig", specs)
    schema.__module__ = __name__
    schema.__doc__ = "Schema of the ``trainer`` group (the arguments of Lightning's Trainer)."
    return schema


def register_configs() -> None:
    """Store the model and trainer schemas in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="schema", name="model", node=ModelConfig)
    store.store(group="schema", name="trainer", node=trainer_schema())
