"""CausalLMModule: a Hugging Face causal LM trained on rendered trajectories.

Full fine-tuning, LoRA and QLoRA (nf4) share one module; the strategy (CPU, DDP, FSDP,
DeepSpeed ZeRO-2/3) and precision come from the trainer. The loss is the token mean over the
whole optimizer step, independent of how the global batch is split into micro-batches and
ranks (see :mod:`xlam.models.components.loss`).
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from xlam.data.labels import IGNORE_INDEX
from xlam.models.components.build import build_causal_lm, check_conv_init, dtype_for_precision
from xlam.models.components.embed_tie import apply_embed_tie, check_embed_tie
from xlam.models.components.kernels import (
    apply_kernels,
    check_kernels,
    checkpoint_every,
    compile_layers,
    compile_options,
    enable_checkpointing,
    fsdp_checkpoints_blocks,
    select_checkpointed,
)
from xlam.models.components.lora import (
    LoraSettings,
    apply_lora,
    check_trainable_state,
    quantization_config,
    trainable_summary,
)
from xlam.models.components.loss import (
    STEP_MICRO_KEY,
    STEP_TOKENS_KEY,
    copy_weights,
    copyable_vocab,
    step_loss_scale,
    window_end,
)
from xlam.models.components.metrics import per_source_losses
from xlam.models.components.schedules import param_groups, scheduler_factory
from xlam.models.components.tokenizer import check_tokenizer_matches
from xlam.utils.accumulation import rewind_loops, unfinished_micro_batches
from xlam.utils.strategy import strategy_kind

log = logging.getLogger(__name__)

# model.chunked_loss=auto: from this vocabulary size on, the logits dominate memory
CHUNKED_LOSS_MIN_VOCAB = 32768


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross entropy of next-token prediction; 0 where unsupervised.

    Returns:
        A ``(batch, seq - 1)`` tensor.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return loss.view(shift_labels.shape)


def slices_by_mask(model: torch.nn.Module) -> bool:
    """Whether ``model.forward`` takes a 2-D boolean ``logits_to_keep`` (packed rows).

    Every model takes ``logits_to_keep``, but only those whose module slices with
    transformers' ``slice_logits_to_keep`` (not yet in 5.17, for one) accept a boolean
    ``(batch, seq)`` mask; the others index ``hidden_states[:, mask, :]`` and fail, so they
    get full logits.
    """
    module = sys.modules.get(type(model).__module__)
    return "logits_to_keep" in inspect.signature(model.forward).parameters and callable(
        getattr(module, "slice_logits_to_keep", None)
    )


def supervised_positions(labels: torch.Tensor) -> torch.Tensor:
    """Where a logit is needed: the positions whose next token is supervised.

    Returns:
        A ``(batch, seq)`` bool mask (``logits_to_keep`` of transformers' causal LMs).
    """
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def scatter_kept(kept: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-token losses of the ``keep`` positions (row-major) as a ``(batch, seq - 1)`` tensor.

    Args:
        kept: ``(keep.sum(),)`` losses.
        keep: :func:`supervised_positions` of the labels.

    Returns:
        The losses where supervised, 0 elsewhere (the layout of :func:`token_losses`).
    """
    out = torch.zeros(keep[:, 1:].shape, dtype=torch.float32, device=kept.device)
    out[keep[:, :-1]] = kept
    return out


def _plain(value: Any) -> Any:
    # Hydra hands over ListConfig/tuples; the DeepSpeed config record wants JSON values.
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    try:
        return [_plain(v) for v in value]
    except TypeError:
        return str(value)


class CausalLMModule(L.LightningModule):
    """Wraps a causal LM; the model is built in :meth:`configure_model`.

    Args:
        path: Local folder of a pretrained model, or ``None`` to build from ``from_config``.
        tokenizer_path: Folder of the tokenizer (its size sets a config-built vocabulary).
        from_config: Transformers config fields (``model_type`` names the family) of a
            random-initialised model, built when ``path`` is ``None``; ignored otherwise.
        dtype: Parameter dtype; ``auto`` follows the trainer precision (fp32 master weights
            under ``*-mixed``, bf16 under ``bf16-true``).
        attn_implementation: Attention kernel for transformers.
        optimizer: Partial of a torch optimizer (called with parameter groups).
        weight_decay: Decay for weight matrices (never for biases and norms).
        scheduler: Partial of a scheduler factory, called with the optimizer and
            ``total_steps`` (e.g. :func:`~xlam.models.components.schedules.warmup_schedule`),
            or a mapping of that function's arguments.
        gradient_checkpointing: Recompute decoder layers' activations in the backward:
            ``false``, ``true`` (every layer) or ``{every: k}`` (every k-th layer: less
            recomputation, more memory); see
            :func:`~xlam.models.components.kernels.checkpoint_every`.
        seed: Seed of a config-built model's initialisation.
        conv_init: ``None`` or ``split``: half the channels of a config-built model's short
            convolutions start 3 taps wide
            (:func:`~xlam.models.components.build.split_short_conv_init`).
        embed_tie: ``None``, ``space`` (a config-built model's space-prefixed token
            embeddings tied to their bare forms') or ``word`` (every spacing and case of a
            word tied to one root)
            (:func:`~xlam.models.components.embed_tie.apply_embed_tie`); merged at export.
        neftune_alpha: NEFTune (Jain et al., 2023): in training, uniform noise in
            ``±alpha / sqrt(seq * hidden)`` added to the input embeddings (transformers'
            hook); ``None``: none.
        lora: The ``model.lora`` node (:class:`LoraSettings`); adapters only when enabled.
        quantization: ``null`` or ``nf4`` (QLoRA: 4-bit frozen base, needs LoRA and CUDA).
        packing_check: On the first packed batch, run its samples packed and unpacked and
            refuse to train if they differ (:mod:`xlam.models.components.packing_check`).
        nonfinite: What a NaN/inf gradient (or, under DeepSpeed, loss) does to an optimizer
            step: ``stop`` the run naming the step and sources, or ``skip`` the update and
            count it (not under DeepSpeed, which steps inside its engine).
        max_nonfinite_skips: Under ``skip``, the run stops once more steps than this were
            skipped: a diverged run is not left to skip silently.
        supervised_logits: Project onto the vocabulary only the positions whose next token
            is supervised (transformers' ``logits_to_keep``); the loss is the same, the LM
            head and the softmax cost only what the supervised tokens need. Models whose
            forward has no ``logits_to_keep`` get every logit.
        chunked_loss: With supervised logits, compute the loss through the LM head
            ``loss_chunk_tokens`` tokens at a time, never holding the ``[tokens, vocab]``
            logits (:mod:`~xlam.models.components.chunked_ce`): ``true``, ``false``, or
            ``auto`` (on for vocabularies of at least 32k tokens, where the logits dominate
            memory).
        loss_chunk_tokens: Tokens per chunk of the chunked loss.
        copy_weight: Weight in the training loss of the supervised tokens copied from the
            context (an alphanumeric token the same sample holds earlier, unsupervised:
            argument values from the query or a tool result, ids, names;
            :func:`~xlam.models.components.loss.copied_targets`); the others weigh 1 and
            the sum is still divided by the supervised tokens. 1: the plain token mean.
            Logged losses stay unweighted.
        kernels: ``None`` or ``liger`` (Liger's Triton RMSNorm, SwiGLU and RoPE; CUDA only,
            our loss path kept: :func:`~xlam.models.components.kernels.apply_kernels`).
        compile: ``False``, ``True`` or ``torch.compile`` arguments: each decoder layer is
            compiled in place (:func:`~xlam.models.components.kernels.compile_layers`).
    """

    def __init__(
        self,
        path: str | None = None,
        tokenizer_path: str | None = None,
        from_config: dict[str, Any] | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        weight_decay: float = 0.0,
        scheduler: Callable[..., Any] | dict[str, Any] | None = None,
        gradient_checkpointing: bool | dict[str, int] = False,
        seed: int = 0,
        lora: dict[str, Any] | None = None,
        quantization: str | None = None,
        packing_check: bool = True,
        nonfinite: str = "stop",
        max_nonfinite_skips: int = 10,
        supervised_logits: bool = True,
        chunked_loss: bool | str = "auto",
        loss_chunk_tokens: int = 512,
        copy_weight: float = 1.0,
        kernels: str | None = None,
        compile: bool | dict[str, Any] = False,
        conv_init: str | None = None,
        embed_tie: str | None = None,
        neftune_alpha: float | None = None,
    ) -> None:
        super().__init__()
        if not path and not (from_config and tokenizer_path):
            # Before the data is rendered with a tokenizer that is not there.
            raise ValueError(
                "model.path is not set: give the local model folder (model.path=/path/to/model), "
                "or for a random-initialised model both model.from_config and "
                "model.tokenizer_path (its vocabulary and chat template)"
            )
        if chunked_loss not in (True, False, "auto"):
            raise ValueError(
                f"model.chunked_loss must be true, false or auto, got {chunked_loss!r}"
            )
        if not copy_weight > 0:
            raise ValueError(f"model.copy_weight must be > 0, got {copy_weight!r}")
        if neftune_alpha is not None and not neftune_alpha > 0:
            raise ValueError(
                f"model.neftune_alpha must be > 0 (null: no noise), got {neftune_alpha!r}"
            )
        check_conv_init(conv_init, path)
        check_embed_tie(embed_tie, path)
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"model.nonfinite must be stop or skip, got {nonfinite!r}")
        # Fail before any data is rendered: a policy or option that cannot run here.
        self.checkpoint_every = checkpoint_every(gradient_checkpointing)
        self.compile_options = compile_options(compile)
        check_kernels(kernels)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.lora = LoraSettings.from_config(lora)
        if quantization and not self.lora.enabled:
            raise ValueError(
                f"model.quantization={quantization} freezes a 4-bit base: only adapters can "
                "train, so set model.lora.enabled=true (QLoRA)"
            )
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler_factory(scheduler)
        self.model: torch.nn.Module | None = None
        # Frozen base weights are rebuilt from `path`/`seed`, so checkpoints keep adapters only.
        self.strict_loading = not self.lora.enabled
        self.param_counts: dict[str, int] = {}
        self._warned_no_counter = False
        self._packing_check_pending = packing_check
        self._keeps_logits: bool | None = None  # decided once the model is built
        self.loss_head: Any = None  # the LM head computing chunked losses, when installed
        self._copyable: torch.Tensor | None = None  # copyable_vocab, with copy_weight != 1
        self.nonfinite_skipped = 0  # optimizer steps skipped for a NaN/inf gradient
        self._reset_window()

    # -- model -------------------------------------------------------------------------
    @property
    def builds_from_config(self) -> bool:
        """Whether the model is random-initialised from ``from_config`` (no checkpoint)."""
        return not self.hparams.path

    def configure_model(self) -> None:
        # Idempotent: Lightning may call it more than once (and ZeRO-3 needs it lazy).
        if self.model is not None:
            return
        from transformers import AutoTokenizer

        hp = self.hparams
        trainer = self._trainer
        precision = str(trainer.precision) if trainer is not None else None
        dtype = dtype_for_precision(hp.dtype, precision)
        extra: dict[str, Any] = {}
        qconfig = quantization_config(hp.quantization)
        if qconfig is not None:
            extra = {
                "quantization_config": qconfig,
                "device_map": {"": torch.cuda.current_device()},
            }
        tok = AutoTokenizer.from_pretrained(hp.tokenizer_path or hp.path, trust_remote_code=False)
        model = build_causal_lm(
            hp.path,
            len(tok),
            hp.from_config,
            dtype,
            hp.attn_implementation,
            hp.seed,
            extra_kwargs=extra,
            conv_init=hp.get("conv_init"),
        )
        # Fail now, not at serving time, if the exported folder would load another tokenizer.
        check_tokenizer_matches(
            tok,
            AutoTokenizer.from_pretrained(
                hp.tokenizer_path or hp.path, config=model.config, trust_remote_code=False
            ),
            f"a {model.config.model_type} model folder with this tokenizer",
        )
        if hp.get("copy_weight", 1.0) != 1.0:
            self._copyable = copyable_vocab(tok)
        if hp.get("embed_tie"):
            kind = strategy_kind(trainer.strategy) if trainer is not None else None
            if kind in ("deepspeed", "fsdp"):
                # a parametrized matrix is computed, not a Parameter those engines can shard
                raise ValueError(
                    f"model.embed_tie={hp.embed_tie} is for a model on one process or DDP, "
                    f"not {kind}: leave model.embed_tie=null or use trainer=cpu/gpu/ddp"
                )
            apply_embed_tie(model, tok, hp.seed, hp.embed_tie)
        kernels = hp.get("kernels")
        if kernels is not None:
            # The device is known now: a CPU trainer on a GPU machine is refused too.
            check_kernels(kernels, trainer.strategy.root_device.type if trainer else None)
            apply_kernels(model, kernels)  # before LoRA: Liger patches the base modules
        every = self.checkpoint_every
        if every and trainer is not None and fsdp_checkpoints_blocks(trainer.strategy):
            raise ValueError(
                "activation checkpointing is set twice: model.gradient_checkpointing and "
                "trainer.strategy.activation_checkpointing (FSDP) would recompute each block "
                "twice. Use model.gradient_checkpointing (one knob for every strategy) and "
                "set trainer.strategy.activation_checkpointing=false"
            )
        if qconfig is not None:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=bool(every),
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
            if every:
                select_checkpointed(model, every)
        elif every:
            enable_checkpointing(model, every)
        if every:
            model.config.use_cache = False
        if self.lora.enabled:
            model = apply_lora(model, self.lora)
        if hp.get("neftune_alpha"):
            from transformers.integrations.neftune import activate_neftune

            # transformers' hook (what its Trainer installs): active in training mode only,
            # so validation, generation and the export see clean embeddings
            activate_neftune(model, hp.neftune_alpha)
        if self.compile_options is not None:
            # Last: what is compiled is the model as it trains (Liger, LoRA and checkpointing in).
            n = compile_layers(model, self.compile_options)
            log.info("torch.compile: %d decoder layers compiled (%s)", n, self.compile_options)
        # from_pretrained returns a model in eval mode, and Lightning keeps each module's
        # mode: a loaded model would train with its dropout off
        model.train()
        self.model = model
        chunked = hp.get("chunked_loss", "auto")
        if chunked == "auto":
            chunked = len(tok) >= CHUNKED_LOSS_MIN_VOCAB
        if chunked and self.keeps_logits:
            from xlam.models.components.chunked_ce import install_loss_head

            # not a submodule of ours (it is the model's): no second copy in state dicts
            head = install_loss_head(model, hp.get("loss_chunk_tokens", 512))
            object.__setattr__(self, "loss_head", head)
            if self.loss_head is None:
                log.info("chunked loss: the LM head is not a plain linear layer; full logits")
        self.param_counts = trainable_summary(model)
        log.info(
            "model: %s parameters, %s trainable",
            f"{self.param_counts['params']:,}",
            f"{self.param_counts['trainable_params']:,}",
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits: ``(batch, seq, vocab)``, or ``(keep.sum(), vocab)`` for a bool ``keep``."""
        extra = {} if keep is None else {"logits_to_keep": keep}
        # -- packed batches (xlam.data.packing) ---------------------------------------------
        if position_ids is not None:
            # No attention mask: from position ids that restart at 0 transformers builds a
            # block-diagonal causal mask (SDPA/eager). use_cache=False matters: with a cache
            # the packed layout is not detected and samples would attend to each other.
            # Flash attention goes varlen only for one row, so the rows are flattened.
            shape = input_ids.shape
            if "flash" in str(getattr(self.model.config, "_attn_implementation", "")):
                input_ids, position_ids = input_ids.reshape(1, -1), position_ids.reshape(1, -1)
                if keep is not None:  # row-major: the kept logits keep their order
                    extra["logits_to_keep"] = keep.reshape(1, -1)
            logits = self.model(
                input_ids=input_ids, position_ids=position_ids, use_cache=False, **extra
            ).logits
            return logits if keep is not None else logits.reshape(*shape, logits.size(-1))
        # -- end packed batches -------------------------------------------------------------
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    @property
    def keeps_logits(self) -> bool:
        """Whether training computes logits of the supervised positions only."""
        if self._keeps_logits is None:
            model = self.model
            if hasattr(model, "get_base_model"):  # PEFT passes keyword arguments through
                model = model.get_base_model()
            self._keeps_logits = bool(self.hparams.get("supervised_logits", True)) and (
                slices_by_mask(model)
            )
        return self._keeps_logits

    def _check_packing_once(self, batch: dict[str, Any]) -> None:
        """Refuse to train if samples of a packed row attend to each other (first batch only).

        Runs inside the training step, so the forward sees what training sees: autocast,
        and weights gathered the same way under DDP, FSDP or DeepSpeed ZeRO-3.
        """
        if not self._packing_check_pending:
            return
        self._packing_check_pending = False
        if "position_ids" not in batch:
            return  # not packed
        from xlam.models.components import packing_check as pc

        t0 = time.perf_counter()
        # Rank 0's samples on every rank: the same forwards everywhere (ZeRO-3 gathers
        # weights in each) and the same verdict. No more rows than training runs at once.
        samples, (rows, width) = self.trainer.strategy.broadcast(
            (pc.split_packed_batch(batch), tuple(batch["input_ids"].shape)), src=0
        )
        dtype = pc.compute_dtype(self.model, self.device.type)
        attn = str(getattr(self.model.config, "_attn_implementation", None))
        # Eager even under model.compile: every sample alone is a new shape, and compiling
        # each for a one-off check cost more than the run's first steps (the mask under test
        # is built outside the compiled layers; the layers compute the same function).
        with pc.eval_mode(self.model), torch.compiler.set_stance("force_eager"):
            result = pc.compare_packed_forward(
                self, samples, dtype, attn, width, max_rows=min(rows, 2), device=self.device
            )
        bad = self._all_sum(torch.tensor(float(len(result.failed)), device=self.device))
        if bad.item() > 0:
            mixers = pc.mixers_outside_attention(self.model.config)
            raise pc.PackingLeakError(pc.leak_message(result, mixers))
        if not result.shares_a_row:
            log.warning("packing check: no two samples of the first batch fit one row")
            return
        log.info("packing check (%.1f s): %s", time.perf_counter() - t0, pc.summary(result))

    def model_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Forward and per-token losses; shared by training and validation.

        Returns:
            ``loss_sum`` (summed token loss), ``n_sup`` (supervised tokens), ``loss`` (their
            ratio, the micro-batch mean), and the per-token ``losses`` and ``mask``.
        """
        args = (batch["input_ids"], batch["attention_mask"], batch.get("position_ids"))
        labels = batch["labels"]
        if self.keeps_logits:
            keep = supervised_positions(labels)
            targets = labels[:, 1:][keep[:, :-1]]
            if self.loss_head is not None:  # the head returns the losses (chunked_ce)
                self.loss_head.targets = targets
                try:
                    kept = self(*args, keep=keep)[:, 0]
                finally:
                    self.loss_head.targets = None
            else:
                kept = F.cross_entropy(self(*args, keep=keep).float(), targets, reduction="none")
            losses = scatter_kept(kept, keep)
        else:
            losses = token_losses(self(*args), labels)
        mask = (labels[:, 1:] != IGNORE_INDEX).float()
        n_sup = mask.sum()
        loss_sum = losses.sum()
        return {
            "loss": loss_sum / n_sup.clamp(min=1),
            "loss_sum": loss_sum,
            "losses": losses,
            "mask": mask,
            "n_sup": n_sup,
        }

    # -- training ----------------------------------------------------------------------
    def _reset_window(self) -> None:
        # [summed loss, supervised tokens] of this rank's window, kept on the device so
        # logging costs no host sync per micro-batch.
        self._win_stats: torch.Tensor | None = None
        self._win_step_tokens: torch.Tensor | None = None
        # What the window trained on, read only to name the culprits of a NaN/inf step.
        self._win_batches: list[tuple[dict[str, Any], torch.Tensor]] = []

    def _world_accum(self) -> tuple[int, int]:
        trainer = self._trainer
        if trainer is None:
            return 1, 1
        return trainer.world_size, trainer.accumulate_grad_batches

    def _step_tokens(self, batch: dict[str, Any], n_sup: torch.Tensor) -> torch.Tensor:
        """Supervised tokens of the whole optimizer step (all micro-batches, all ranks)."""
        _world, accum = self._world_accum()
        if STEP_TOKENS_KEY in batch:
            if batch[STEP_MICRO_KEY] == 0 or self._win_step_tokens is None:
                local = torch.tensor(
                    float(batch[STEP_TOKENS_KEY]), dtype=torch.float64, device=self.device
                )
                self._win_step_tokens = self._all_sum(local)
            return self._win_step_tokens
        # No StepTokenCounter in front of the loader (e.g. a bare Trainer in a notebook):
        # normalise by this micro-batch's global count, exact only without accumulation.
        if accum > 1 and not self._warned_no_counter:
            log.warning(
                "batches carry no step token count: the loss is a per-micro-batch "
                "token mean; wrap the train loader with StepTokenCounter"
            )
            self._warned_no_counter = True
        return self._all_sum(n_sup.detach().double()) * accum

    def _all_sum(self, value: torch.Tensor) -> torch.Tensor:
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return value
        return trainer.strategy.reduce(value, reduce_op="sum")

    def _is_window_end(self, batch: dict[str, Any], batch_idx: int) -> bool:
        return window_end(batch, batch_idx, self._world_accum()[1])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        self._check_packing_once(batch)
        out = self.model_step(batch)
        world, accum = self._world_accum()
        n_step = self._step_tokens(batch, out["n_sup"])
        # Lightning divides by `accum`, data parallelism averages over `world`: this factor
        # makes the accumulated gradient that of (Σ token losses of the step) / n_step.
        scale = step_loss_scale(world, accum, n_step)
        loss = self._weighted_sum(batch, out) * scale.to(out["loss_sum"].dtype)
        stats = torch.stack([out["loss_sum"].detach().double(), out["n_sup"].double()])
        self._add_to_window(batch, batch_idx, stats, out["losses"])
        # Per-token losses for the metrics callbacks (xlam/utils/monitors.py).
        return {"loss": loss, "token_losses": out["losses"].detach()}

    def _weighted_sum(self, batch: dict[str, Any], out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The micro-batch's summed token loss, copied targets weighted by ``copy_weight``."""
        if self._copyable is None:
            return out["loss_sum"]
        if self._copyable.device != batch["labels"].device:  # once: the model's device
            self._copyable = self._copyable.to(batch["labels"].device)
        weights = copy_weights(
            batch["input_ids"],
            batch["labels"],
            batch.get("sample_index"),
            self._copyable,
            self.hparams.copy_weight,
            out["losses"].dtype,
        )
        return (out["losses"] * weights).sum()

    def _add_to_window(
        self, batch: dict[str, Any], batch_idx: int, stats: torch.Tensor, losses: torch.Tensor
    ) -> None:
        """Add a micro-batch's ``stats`` (its summed loss first) to its optimizer step's."""
        self._win_stats = stats if self._win_stats is None else self._win_stats + stats
        self._win_batches.append((batch, losses.detach()))
        if self._is_deepspeed() and self._is_window_end(batch, batch_idx):
            # The engine steps right after this backward: check the step's loss on all ranks.
            bad = self._all_sum((~torch.isfinite(self._win_stats[:1])).double())
            if bool(bad.item()):
                self._on_nonfinite("loss")

    def on_fit_start(self) -> None:
        if self.hparams.nonfinite == "skip" and self._is_deepspeed():
            raise ValueError(
                "model.nonfinite=skip is not available under DeepSpeed (its engine steps "
                "inside backward); use model.nonfinite=stop"
            )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called before clipping, after DDP reduction and unscaling: the true gradient norm.
        # DeepSpeed clips inside its engine; its norm is read after the step instead.
        if self._is_deepspeed():
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        sq = torch.stack([g.detach().float().pow(2).sum() for g in grads]).sum()
        if strategy_kind(self.trainer.strategy) == "fsdp":
            sq = self._all_sum(sq)  # each rank holds a disjoint shard of the gradients
        # fp16 loss scaling skips overflowing steps itself; everywhere else a NaN/inf is ours.
        # Gradients are reduced across ranks by now, so every rank takes the same decision.
        finite = str(self.trainer.precision) == "16-mixed" or bool(torch.isfinite(sq))
        if not finite and self._on_nonfinite(f"gradient norm {float(sq.sqrt())}"):
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None  # torch optimizers leave a parameter without grad as is
            return
        self.log("train/grad_norm", sq.sqrt(), on_step=True, on_epoch=False)

    def _on_nonfinite(self, what: str) -> bool:
        """Apply ``model.nonfinite`` to this step; True when the update is to be skipped."""
        bad: set[str] = set()
        ids: list[str] = []
        for batch, losses in self._win_batches:
            ids += batch.get("ids") or []
            if "sample_index" in batch:
                by_source = per_source_losses(
                    losses, batch["labels"], batch["sample_index"], batch["sources"]
                )
                bad |= {n for n, v in by_source.items() if not torch.isfinite(v[0])}
        where = (
            f"non-finite {what} at step {self.global_step}; sources with a non-finite loss "
            f"in this step on rank {self.global_rank}: "
            f"{sorted(bad) or 'none (overflow in backward)'}; samples: {ids[:8]}"
        )
        if self.hparams.nonfinite == "stop":
            raise FloatingPointError(
                f"{where}. model.nonfinite=skip skips such steps and counts them"
            )
        self.nonfinite_skipped += 1
        if self.nonfinite_skipped > self.hparams.max_nonfinite_skips:
            raise FloatingPointError(
                f"{where}: {self.nonfinite_skipped} steps skipped so far, more than "
                f"model.max_nonfinite_skips={self.hparams.max_nonfinite_skips}"
            )
        log.warning("%s: update skipped (%d so far)", where, self.nonfinite_skipped)
        self.log("train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=True)
        return True

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        if gradient_clip_val and strategy_kind(self.trainer.strategy) == "fsdp":
            # FSDP shards the gradients: only the wrapped module computes the global norm.
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError(
                    "FSDP clips by norm only: set trainer.gradient_clip_algorithm=norm"
                )
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._is_window_end(batch, batch_idx) or self._win_stats is None:
            return
        stats = self._all_sum(self._win_stats).tolist()
        self._reset_window()
        self._log_window(stats)
        if self._is_deepspeed():  # its engine clipped; the norm is known after the step
            norm = self.trainer.strategy.deepspeed_engine.get_global_grad_norm()
            if norm is not None:
                self.log("train/grad_norm", float(norm), on_step=True, on_epoch=False)

    def _log_window(self, stats: list[float]) -> None:
        """Log one optimizer step from its window's all-reduced ``_win_stats``."""
        loss_sum, sup = stats
        bar = {"prog_bar": True, "on_step": True, "on_epoch": False}
        self.log("train/loss", loss_sum / max(sup, 1.0), **bar)

    def _is_deepspeed(self) -> bool:
        return strategy_kind(self._trainer.strategy if self._trainer else None) == "deepspeed"

    # -- validation --------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = torch.zeros(2, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.model_step(batch)
        self._val += torch.stack([out["loss_sum"].detach().double(), out["n_sup"].double()])
        return out["loss"]

    def on_validation_epoch_end(self) -> None:
        # Token mean over the whole validation set and all ranks, not a mean of batch means.
        total = self._all_sum(self._val)
        if total[1] > 0:
            # Already global: sync_dist only averages identical values (and keeps Lightning quiet).
            self.log("val/loss", total[0] / total[1], prog_bar=True, sync_dist=True)

    # -- optimisation --------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("model.optimizer is not set")
        func = getattr(self.optimizer_factory, "func", self.optimizer_factory)
        named = getattr(func, "named_params", False)  # MuonAdamW: names pick its matrices
        if named and strategy_kind(self.trainer.strategy) in ("deepspeed", "fsdp"):
            # Muon orthogonalises each matrix's whole update; these shard gradients
            raise ValueError(
                f"model.optimizer {func.__name__} needs whole gradients: it runs on one "
                "process or under DDP (trainer=cpu|gpu|ddp), not under DeepSpeed or FSDP "
                "(use model/optimizer=adamw there)"
            )
        groups = param_groups(self.model, self.hparams.weight_decay, named=named)
        opt = self.optimizer_factory(groups)
        total = int(self.trainer.estimated_stepping_batches)
        sched = self.scheduler_factory(opt, total_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def optimizer_description(self) -> dict[str, Any]:
        """The optimizer and schedule as plain values (for the DeepSpeed config record)."""
        factory = self.optimizer_factory
        opt: dict[str, Any] = {}
        if factory is not None:
            func = getattr(factory, "func", factory)
            params = {k: _plain(v) for k, v in getattr(factory, "keywords", {}).items()}
            opt = {
                "type": f"{func.__module__}.{func.__qualname__}",
                "params": {
                    **params,
                    "weight_decay": self.hparams.weight_decay,
                    "no_decay": "biases and norm weights",
                },
            }
        sched = self.scheduler_factory
        sched_func = getattr(sched, "func", sched)
        return {
            "optimizer": opt,
            "scheduler": {
                "type": f"{sched_func.__module__}.{sched_func.__qualname__}",
                "params": {k: _plain(v) for k, v in getattr(sched, "keywords", {}).items()},
            },
        }

    # -- checkpoints -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Saved inside an accumulation window: resume at its start (the data cursor and
        # source counts rewind themselves; see xlam/utils/accumulation.py).
        rewind_loops(checkpoint, unfinished_micro_batches(self._trainer))
        checkpoint["xlam"] = {"nonfinite_skipped": self.nonfinite_skipped}
        if not self.lora.enabled or "state_dict" not in checkpoint:
            return
        # The frozen base is rebuilt from `path` (or `seed`) on load; keep what trains.
        trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if k in trainable
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_skipped = int(checkpoint.get("xlam", {}).get("nonfinite_skipped", 0))
        # Called before the state dict is loaded, non-strictly under LoRA (the frozen base
        # is not saved): a renamed or missing adapter must stop the run, not train from its
        # initial value. DeepSpeed loads its module states itself and checks them there
        # (XlamDeepSpeedStrategy.load_checkpoint); its checkpoint dict has no state_dict.
        state = checkpoint.get("state_dict")
        if state is None or self.model is None:
            return
        trainer = self._trainer
        path = getattr(trainer, "ckpt_path", None) if trainer is not None else None
        check_trainable_state(state.keys(), self, f"checkpoint {path}" if path else "checkpoint")
