"""Distributed strategies: DeepSpeed (also on CPU) with a generated config, and FSDP.

DeepSpeed's JSON config duplicates settings the run already has (micro batch, accumulation,
clipping, precision). :func:`deepspeed_config` derives it from those settings, with nothing
left as ``auto``; a user JSON may add or tune keys, but one that contradicts the run is an
error naming both values (:func:`merge_deepspeed_configs`). The config actually passed to
DeepSpeed is written to the run directory.

Lightning's DeepSpeed strategy refuses non-CUDA accelerators, although DeepSpeed itself runs
on the CPU (``DS_ACCELERATOR=cpu``, gloo). :class:`XlamDeepSpeedStrategy` lifts that
restriction so multi-process ZeRO-2/3 runs are tested on CPU in CI, and fixes three details:
gradients are divided by the accumulation count once (Lightning and DeepSpeed each did it),
checkpoints are saved atomically, and a resume restores every trainable parameter or stops
(Lightning loads LoRA module states non-strictly).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

from xlam.utils.checkpoint import partial_path, replace_path

log = logging.getLogger(__name__)

# Keys derived from the run's own settings, with the setting they come from. A user JSON may
# repeat them with the same value but never contradict them; every other generated key is a
# default (bucket sizes, thresholds) that a user JSON may tune.
DERIVED: dict[str, str] = {
    "train_micro_batch_size_per_gpu": "data.batch_size",
    "gradient_accumulation_steps": "trainer.accumulate_grad_batches",
    "train_batch_size": "data.batch_size x trainer.accumulate_grad_batches x world size",
    "gradient_clipping": "trainer.gradient_clip_val",
    "bf16.enabled": "trainer.precision",
    "fp16.enabled": "trainer.precision",
    "zero_optimization.stage": "trainer.strategy.stage",
    "zero_optimization.offload_optimizer": "trainer.strategy.offload_optimizer",
    "zero_optimization.offload_optimizer.device": "trainer.strategy.offload_optimizer",
    "zero_optimization.offload_param": "trainer.strategy.offload_parameters",
    "zero_optimization.offload_param.device": "trainer.strategy.offload_parameters",
    "optimizer": "model.optimizer (DeepSpeed runs it as a client optimizer)",
    "scheduler": "model.scheduler (DeepSpeed runs it as a client scheduler)",
    "client_optimizer": "model.optimizer and model.weight_decay",
    "client_scheduler": "model.scheduler",
}


class DeepSpeedConfigConflict(ValueError):
    """A user DeepSpeed JSON contradicts a value the run derives from its own settings."""


def _zero_section(
    stage: int,
    offload_optimizer: bool,
    offload_parameters: bool,
    pin_memory: bool,
    overrides: dict[str, Any] | None,
) -> dict[str, Any]:
    if stage not in (1, 2, 3):
        raise ValueError(f"trainer.strategy.stage must be 1, 2 or 3, got {stage}")
    if offload_parameters and stage != 3:
        raise ValueError("offload_parameters needs ZeRO stage 3 (parameters are sharded there)")
    zero: dict[str, Any] = {
        "stage": stage,
        "contiguous_gradients": True,
        "overlap_comm": True,
        "reduce_scatter": True,
        "reduce_bucket_size": 200_000_000,
        "allgather_partitions": True,
        "allgather_bucket_size": 200_000_000,
    }
    if stage == 3:
        zero.update(
            {
                "sub_group_size": 1_000_000_000,
                "stage3_prefetch_bucket_size": 50_000_000,
                "stage3_param_persistence_threshold": 100_000,
                "stage3_max_live_parameters": 1_000_000_000,
                "stage3_max_reuse_distance": 1_000_000_000,
                # Export gathers the weights itself; no 16-bit copy in every checkpoint.
                "stage3_gather_16bit_weights_on_model_save": False,
            }
        )
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin_memory}
    if offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin_memory}
    zero.update(overrides or {})
    return zero


def deepspeed_config(
    *,
    stage: int,
    micro_batch_size: int,
    accumulate: int,
    world_size: int,
    gradient_clip: float | None,
    precision: str,
    offload_optimizer: bool = False,
    offload_parameters: bool = False,
    pin_memory: bool = False,
    zero: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The DeepSpeed config of a run, every value concrete.

    Args:
        stage: ZeRO stage (1, 2 or 3).
        micro_batch_size: Samples per micro-batch per rank.
        accumulate: Micro-batches per optimizer step.
        world_size: Data-parallel ranks.
        gradient_clip: Global gradient-norm clip (``None``/0: off).
        precision: Lightning precision (``32-true``, ``bf16-mixed``, ``bf16-true``, ``16-mixed``).
        offload_optimizer: Keep optimizer states (and the step) on the CPU.
        offload_parameters: Keep sharded parameters on the CPU (stage 3).
        pin_memory: Pinned host buffers for offload (CUDA only).
        zero: Extra ``zero_optimization`` keys (bucket sizes, thresholds).
        client: ``{"optimizer": ..., "scheduler": ...}`` descriptions of the client optimizer
            and schedule that Lightning builds (recorded; DeepSpeed ignores these keys).
    """
    p = str(precision)
    bf16 = p.startswith("bf16")
    fp16 = p.startswith("16")
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(micro_batch_size),
        "gradient_accumulation_steps": int(accumulate),
        "train_batch_size": int(micro_batch_size) * int(accumulate) * int(world_size),
        "gradient_clipping": float(gradient_clip or 0.0),
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": fp16},
        "zero_optimization": _zero_section(
            stage, offload_optimizer, offload_parameters, pin_memory, zero
        ),
        # The optimizer is torch's AdamW with no-decay groups, built by the module; ZeRO
        # accepts it as a client optimizer, and with offload it runs on the CPU copies.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1_000_000_000,
        "wall_clock_breakdown": False,
    }
    if fp16:
        cfg["fp16"].update(
            {
                "loss_scale": 0,
                "initial_scale_power": 16,
                "loss_scale_window": 1000,
                "hysteresis": 2,
                "min_loss_scale": 1,
            }
        )
    if client:
        cfg["client_optimizer"] = client.get("optimizer", {})
        cfg["client_scheduler"] = client.get("scheduler", {})
    return cfg


def merge_deepspeed_configs(
    generated: dict[str, Any],
    user: dict[str, Any],
    user_source: str = "user config",
    derived: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Overlay ``user`` on ``generated``.

    Args:
        generated: The config derived from the run (:func:`deepspeed_config`).
        user: The user's JSON.
        user_source: How to name the user's file in errors.
        derived: Extra derived keys (dotted path -> setting), e.g. ``trainer.strategy.zero``.

    Returns:
        ``generated`` with the user's additions and tuned defaults.

    Raises:
        DeepSpeedConfigConflict: When the user contradicts a derived key (both values are
            named), sets ``optimizer``/``scheduler`` (the run's are client objects), or
            leaves a value as ``auto``.
    """
    rules = {**DERIVED, **(derived or {})}

    def conflict(where: str, ours: Any, theirs: Any) -> DeepSpeedConfigConflict:
        return DeepSpeedConfigConflict(
            f"DeepSpeed config conflict at {where}: the run sets {ours!r} (from "
            f"{rules[where]}), {user_source} sets {theirs!r}"
        )

    def walk(gen: dict[str, Any], usr: dict[str, Any], path: str) -> dict[str, Any]:
        out = dict(gen)
        for key, uval in usr.items():
            where = f"{path}.{key}" if path else key
            if uval == "auto":
                raise DeepSpeedConfigConflict(
                    f"{user_source} sets {where}='auto': the run derives every value itself; "
                    "remove the key or give a value"
                )
            if where in ("optimizer", "scheduler"):
                raise conflict(where, gen.get(f"client_{key}"), uval)
            if key not in gen:
                if where in rules:
                    raise conflict(where, None, uval)
                out[key] = uval
            elif isinstance(gen[key], dict) and isinstance(uval, dict):
                out[key] = walk(gen[key], uval, where)
            elif gen[key] == uval or _same_number(gen[key], uval):
                continue
            elif where in rules:
                raise conflict(where, gen[key], uval)
            else:
                out[key] = uval  # a default the user tunes
        return out

    return walk(generated, user, "")


def _same_number(a: Any, b: Any) -> bool:
    num = (int, float)
    return (
        isinstance(a, num)
        and isinstance(b, num)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and float(a) == float(b)
    )


class XlamDeepSpeedStrategy(DeepSpeedStrategy):
    """DeepSpeed ZeRO with a generated config, CPU support and atomic checkpoints.

    Args:
        stage: ZeRO stage.
        offload_optimizer: Optimizer states on the CPU.
        offload_parameters: Parameters on the CPU (stage 3).
        zero: Extra ``zero_optimization`` keys.
        user_config: Path of a DeepSpeed JSON overlaid on the generated config.
        config_out: Where the config actually used is written (the run dir).
        **kwargs: Passed to Lightning's :class:`DeepSpeedStrategy`.
    """

    def __init__(
        self,
        stage: int = 2,
        offload_optimizer: bool = False,
        offload_parameters: bool = False,
        zero: dict[str, Any] | None = None,
        user_config: str | None = None,
        config_out: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            stage=stage,
            offload_optimizer=offload_optimizer,
            offload_parameters=offload_parameters,
            **kwargs,
        )
        self.stage = stage
        self.offload_optimizer = offload_optimizer
        self.offload_parameters = offload_parameters
        self.zero_overrides = dict(zero or {})
        self.user_config = user_config
        self.config_out = config_out
        self._hf_ds_config: Any = None

    # -- config --------------------------------------------------------------------------
    def _micro_batch_size(self) -> int:
        trainer = self.lightning_module.trainer
        bs = getattr(trainer.datamodule, "batch_size", None)
        return int(bs) if bs else self._auto_select_batch_size()

    def _format_config(self) -> None:
        trainer = self.lightning_module.trainer
        describe = getattr(self.lightning_module, "optimizer_description", None)
        generated = deepspeed_config(
            stage=self.stage,
            micro_batch_size=self._micro_batch_size(),
            accumulate=trainer.accumulate_grad_batches,
            world_size=self.world_size,
            gradient_clip=trainer.gradient_clip_val,
            precision=self.precision_plugin.precision,
            offload_optimizer=self.offload_optimizer,
            offload_parameters=self.offload_parameters,
            pin_memory=self.root_device.type == "cuda",
            zero=self.zero_overrides,
            client=describe() if callable(describe) else None,
        )
        if self.user_config:
            user = json.loads(Path(self.user_config).read_text())
            zero_keys = {
                f"zero_optimization.{k}": f"trainer.strategy.zero.{k}" for k in self.zero_overrides
            }
            generated = merge_deepspeed_configs(generated, user, str(self.user_config), zero_keys)
        self.config = generated
        if self.config_out and self.is_global_zero:
            out = Path(self.config_out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(self.config, indent=2, default=str) + "\n")

    # -- CPU support -----------------------------------------------------------------------
    def setup_environment(self) -> None:
        if isinstance(self.accelerator, CPUAccelerator):
            # Skip DeepSpeedStrategy's CUDA-only check; DeepSpeed runs on its CPU accelerator.
            super(DeepSpeedStrategy, self).setup_environment()
        else:
            super().setup_environment()

    def setup_distributed(self) -> None:
        if not isinstance(self.accelerator, CPUAccelerator):
            super().setup_distributed()
            return
        from lightning.fabric.utilities.seed import reset_seed

        # CPU devices carry no index, so the GPU index/local-rank check does not apply.
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _device_rank(self) -> int:
        index = self.root_device.index
        return self.local_rank if index is None else index

    def _setup_model_and_optimizer(
        self, model: torch.nn.Module, optimizer: Any, lr_scheduler: Any = None
    ) -> tuple[Any, Any]:
        import deepspeed

        params = filter(lambda p: p.requires_grad, model.parameters())
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank()),
            config=self.config,
            model=model,
            model_parameters=params,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer

    def _initialize_deepspeed_inference(self, model: torch.nn.Module) -> None:
        from lightning.pytorch.strategies.deepspeed import remove_module_hooks

        remove_module_hooks(model)
        self.model = self.inference_engine(model)

    def inference_engine(self, model: torch.nn.Module) -> Any:
        """A DeepSpeed engine without optimizer for ``model``, under ZeRO-3 partitioned.

        Its hooks gather each layer's parameters for the forward, so ``model`` is called as
        usual; every rank must run the same forwards. Also DPO's frozen reference.
        """
        import deepspeed

        inference = {
            "train_micro_batch_size_per_gpu": 1,
            "bf16": self.config["bf16"],
            "fp16": self.config["fp16"],
        }
        if self.zero_stage_3:
            inference["zero_allow_untested_optimizer"] = True
            inference["zero_optimization"] = self.config["zero_optimization"]
        engine, _, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank()),
            config=inference,
            model=model,
            optimizer=None,
            lr_scheduler=None,
            model_parameters=[],
            dist_init_required=False,
        )
        return engine

    def init_deepspeed(self) -> None:
        # Lightning's, minus its warning about an overridden configure_gradient_clipping: the
        # module overrides it for FSDP only, and DeepSpeed clips inside its engine.
        from lightning.pytorch.utilities import GradClipAlgorithmType
        from lightning.pytorch.utilities.exceptions import MisconfigurationException

        trainer = self.lightning_module.trainer
        if trainer.gradient_clip_algorithm == GradClipAlgorithmType.VALUE:
            raise MisconfigurationException(
                "DeepSpeed does not support clipping gradients by value."
            )
        if trainer.training:
            self._initialize_deepspeed_train(self.model)
        else:
            self._initialize_deepspeed_inference(self.model)

    # -- model construction ----------------------------------------------------------------
    @contextmanager
    def model_sharded_context(self) -> Iterator[None]:
        """Let transformers build (or load) the model under ZeRO-3 itself.

        transformers knows how to initialise and load a checkpoint into partitioned
        parameters once it sees the DeepSpeed config; LoRA adapters added afterwards stay
        ordinary tensors, partitioned by ``deepspeed.initialize``.
        """
        self._init_config_if_needed()
        module = self.lightning_module
        if not self.zero_stage_3 or getattr(module, "builds_from_config", False):
            # A config-built model is small (tests, benchmarks): built whole, it has the same
            # initial weights as under any other strategy; deepspeed.initialize shards it.
            yield
            return
        from transformers.integrations import HfDeepSpeedConfig
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        self._hf_ds_config = HfDeepSpeedConfig(self.config)
        try:
            yield
        finally:
            unset_hf_deepspeed_config()
            self._hf_ds_config = None

    def setup(self, trainer: Any) -> None:
        # Frozen weights (LoRA's base) are rebuilt from the model path; keep them out.
        module = self.lightning_module
        if module is not None and any(not p.requires_grad for p in module.parameters()):
            self.exclude_frozen_parameters = True
        super().setup(trainer)

    # -- loss scaling ------------------------------------------------------------------------
    def backward(
        self, closure_loss: torch.Tensor, optimizer: Any, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        # Lightning already divides the loss by the accumulation count; DeepSpeed's engine
        # would divide again. One division keeps the gradient equal to other strategies'.
        kwargs.setdefault("scale_wrt_gas", False)
        return super().backward(closure_loss, optimizer, *args, **kwargs)

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None
    ) -> None:
        """Write the sharded checkpoint to a temporary folder, then swap it into place."""
        target = str(self.broadcast(str(filepath)))
        tmp = partial_path(target)
        if self.is_global_zero:
            shutil.rmtree(tmp, ignore_errors=True)
        self.barrier("xlam_ckpt_clean")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        self.barrier("xlam_ckpt_written")
        if self.is_global_zero:
            replace_path(tmp, target)
        self.barrier("xlam_ckpt_swapped")

    def load_checkpoint(
        self, checkpoint_path: Any, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's, with the module states checked before they are loaded.

        Lightning lets the engine load them non-strictly under LoRA (frozen weights are not
        saved), so a renamed adapter would silently keep its initial value. Every trainable
        parameter must be in the checkpoint and nothing else may be
        (:func:`~xlam.models.components.lora.check_trainable_state`). A single-file ZeRO-3
        checkpoint (``load_full_weights``) goes through the module's ``on_load_checkpoint``.
        """
        if self.load_full_weights and self.zero_stage_3:
            return super().load_checkpoint(checkpoint_path, weights_only)
        from lightning.pytorch.strategies.deepspeed import _validate_checkpoint_directory
        from lightning.pytorch.trainer.states import TrainerFn
        from lightning.pytorch.utilities.exceptions import MisconfigurationException

        from xlam.models.components.lora import check_trainable_state

        _validate_checkpoint_directory(checkpoint_path)
        module = self.lightning_module
        assert module is not None

        def load_module(src: dict[str, Any], dst: torch.nn.Module) -> None:
            # `dst` is the engine's module; `src` the saved module states, in its naming.
            check_trainable_state(src.keys(), dst, f"DeepSpeed checkpoint {checkpoint_path}")
            dst.load_state_dict(src, strict=False)

        _, client_state = self.deepspeed_engine.load_checkpoint(
            checkpoint_path,
            load_optimizer_states=module.trainer.state.fn == TrainerFn.FITTING,
            load_lr_scheduler_states=False,
            custom_load_fn=load_module,
        )
        if client_state is None:
            raise MisconfigurationException(
                f"DeepSpeed could not load {checkpoint_path}: not a DeepSpeed checkpoint folder"
            )
        return client_state


def _is_decoder_layer(module: torch.nn.Module, names: tuple[str, ...]) -> bool:
    return type(module).__name__.endswith(names)


def _wrap_policy(
    module: torch.nn.Module, recurse: bool, nonwrapped_numel: int, names: tuple[str, ...]
) -> bool:
    # FSDP's policy protocol: always recurse; wrap the transformer blocks.
    return True if recurse else _is_decoder_layer(module, names)


def fsdp_strategy(
    layer_suffixes: list[str] | tuple[str, ...] = ("DecoderLayer",),
    sharding_strategy: str = "FULL_SHARD",
    activation_checkpointing: bool = False,
    cpu_offload: bool = False,
    **kwargs: Any,
) -> FSDPStrategy:
    """FSDP wrapping every transformer block, for any Hugging Face decoder family.

    Args:
        layer_suffixes: Class-name suffixes of the blocks to shard (``Qwen2DecoderLayer``...):
            matching names keeps this independent of the model family.
        sharding_strategy: ``FULL_SHARD``, ``SHARD_GRAD_OP``, ``HYBRID_SHARD``, ``NO_SHARD``.
        activation_checkpointing: Checkpoint the same blocks.
        cpu_offload: Offload parameters to the CPU.
        **kwargs: Passed to :class:`FSDPStrategy`.
    """
    names = tuple(layer_suffixes)
    policy = functools.partial(_wrap_policy, names=names)
    extra: dict[str, Any] = {}
    if activation_checkpointing:
        extra["activation_checkpointing_policy"] = policy
    return FSDPStrategy(
        auto_wrap_policy=policy,
        sharding_strategy=sharding_strategy,
        cpu_offload=cpu_offload,
        # LoRA mixes frozen and trainable weights inside one wrapped block.
        use_orig_params=True,
        state_dict_type="full",
        **extra,
        **kwargs,
    )
